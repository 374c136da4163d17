"""Core pipeline, end to end: a real Spark Connect server with the sparkscope listener streams to a
real agent while two users run a concurrent workload; the agent's jobs (live, and replayed from the
event log afterwards) must equal Spark's own REST view, job by job and field by field, and every
Connect job must be attributed to the same session, operation and client tags as Spark's
`/connect/operations` says.

One server, one agent and one workload serve the whole module. The Spark-side test runs without
the pieces under test; the agent tests skip until the listener jar and the agent binary are built
(and fail instead of skipping in CI, see conftest.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
import pytest
import workload as wl

KILL_TAG = "killme-b"

JOB_FIELDS = harness.JOB_FIELDS
# JobData's other fields: not part of the agent's contract, but equal to Spark's when reported.
JOBDATA_OTHER_FIELDS = (
    "name",
    "description",
    "jobGroup",
    "numCompletedIndices",
    "killedTasksSummary",
)
CONNECT_FIELDS = ("userId", "sessionId", "operationId", "tags")
OPERATION_TAG_PREFIX = "SparkConnect_OperationTag_"
RUNNING_OPERATION_STATES = {"STARTED", "COMPILED", "READY"}
ABSENT = "<absent>"


# ---------------------------------------------------------------------------------------------
# the workload


@dataclass
class SparkView:
    """Spark's REST view of the application once everything has settled."""

    app: dict
    jobs: list[dict]
    operations: list[dict]
    sessions: list[dict]

    def job(self, job_id: int) -> dict:
        return next(j for j in self.jobs if j["jobId"] == job_id)

    def operations_tagged(self, tags: tuple[str, ...]) -> list[dict]:
        return [op for op in self.operations if sorted(op["sparkSessionTags"]) == sorted(tags)]

    def jobs_of(self, op: dict) -> list[dict]:
        return [self.job(int(j)) for j in op["jobIds"]]


@dataclass
class Interruption:
    """The interrupted query's job as Spark's REST and the agent showed it while it ran."""

    spark_job: dict
    agent_job: dict | None  # None: no agent, or it did not show the job as running in time
    interrupted: list[str]  # operation ids returned by interruptTag


@dataclass
class Workload:
    session_ids: dict[str, str]  # user -> Connect session id
    queries: list[wl.Query]
    interruption: Interruption
    spark: SparkView
    timings: dict[str, float] = field(default_factory=dict)

    def query(self, label: str) -> wl.Query:
        return next(q for q in self.queries if q.label == label)


def _interrupt_when_running(
    server: harness.SparkConnectServer, agent: harness.Agent | None, spark: Any, q: wl.Query
) -> Interruption:
    """Wait until q's job has running tasks, give the agent a moment to show it running too, then
    interrupt it by tag from this thread (not the one that runs it)."""
    suffix = f"_Tag_{q.tags[0]}"

    def running_job() -> Any:
        if q.outcome is not None:
            return "finished"
        for job in server.jobs("running"):
            if job["numActiveTasks"] > 0 and any(t.endswith(suffix) for t in job["jobTags"]):
                return job
        return None

    job = harness.wait_until(running_job, 180, 0.3, f"a running job tagged {q.tags[0]}")
    assert job != "finished", (
        f"{q.label} ended before it could be interrupted: {q.outcome} {q.error}"
    )
    seen = None
    if agent is not None:

        def agent_shows_running() -> dict | None:
            jobs = agent.jobs(server.app_id)
            mine = [j for j in jobs if j.get("jobId") == job["jobId"]]
            return mine[0] if mine and mine[0].get("status") == "RUNNING" else None

        try:
            seen = harness.wait_until(agent_shows_running, 15, 0.2, "the agent to show the job")
        except TimeoutError:
            seen = None
    return Interruption(job, seen, spark.interruptTag(q.tags[0]))


def _settled_spark_view(server: harness.SparkConnectServer) -> SparkView:
    """Spark's REST view once no job or operation runs and two reads in a row agree."""
    previous: list[Any] = [None]

    def settled() -> Any:
        if server.jobs("running"):
            return None
        ops = server.connect_operations()
        if any(op["state"] in RUNNING_OPERATION_STATES for op in ops):
            return None
        current = (server.jobs(), ops, server.connect_sessions())
        same = current == previous[0]
        previous[0] = current
        return current if same else None

    jobs, ops, sessions = harness.wait_until(settled, 120, 0.5, "Spark's REST view to settle")
    app = harness.rest_get(server.ui_url, f"applications/{server.app_id}")
    return SparkView(app=app, jobs=jobs, operations=ops, sessions=sessions)


def run_workload(
    server: harness.SparkConnectServer, agent: harness.Agent | None = None
) -> Workload:
    """Run the two users' queries concurrently, interrupt the long one, stop the sessions and
    return Spark's settled REST view. With `agent`, also record its view of the running job."""
    from pyspark.logger import PySparkLogger

    # the expected query errors would each dump a JVM stack trace to stderr
    PySparkLogger.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    sessions = {u: harness.connect_session(server.remote_url(user_id=u)) for u in wl.USERS}
    try:
        session_ids = {u: s.session_id for u, s in sessions.items()}
        assert len(set(session_ids.values())) == len(wl.USERS), f"sessions reused: {session_ids}"
        queries = wl.queries(KILL_TAG)
        threads = [
            threading.Thread(
                target=wl.run_user,
                args=(sessions[u], [q for q in queries if q.user == u]),
                name=f"workload-{u}",
                daemon=True,
            )
            for u in wl.USERS
        ]
        for t in threads:
            t.start()
        victim = next(q for q in queries if q.interrupt)
        interruption = _interrupt_when_running(server, agent, sessions[victim.user], victim)
        for t in threads:
            t.join(timeout=300)
            assert not t.is_alive(), f"{t.name} still running after 300 s"
        timings["queries"] = time.monotonic() - t0
    finally:
        # a pyspark Connect client left open makes the interpreter's atexit cleanup retry RPCs
        # against the stopped server for minutes; stop() also releases the server-side session
        for s in sessions.values():
            s.stop()
    spark = _settled_spark_view(server)
    timings["settled"] = time.monotonic() - t0
    return Workload(session_ids, queries, interruption, spark, timings)


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def token() -> str:
    return "e2e-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def agent(artifacts_dir: Path, log_registry, token: str):
    """The agent, or None while its binary has not been built."""
    binary = harness.agent_binary()
    if binary is None:
        yield None
        return
    log_registry(artifacts_dir / "sparkscope-agent.log", "sparkscope agent log")
    with harness.Agent(binary, artifacts_dir, token=token) as agent:
        yield agent


@pytest.fixture(scope="module")
def server(artifacts_dir: Path, log_registry, agent, token: str):
    log_registry(artifacts_dir / "spark-connect-server.log", "Spark Connect server log")
    jar = harness.listener_jar()
    # with the jar but no agent yet, point the listener at a port nobody listens on
    agent_addr = agent.ingest_addr if agent else f"127.0.0.1:{harness.free_port()}"
    with harness.SparkConnectServer(
        artifacts_dir,
        listener_jar=jar,
        agent_addr=agent_addr,
        token=token,
        event_log_dir=artifacts_dir / "event-logs",
    ) as server:
        yield server


@pytest.fixture(scope="module")
def workload(server: harness.SparkConnectServer, agent, artifacts_dir: Path) -> Workload:
    w = run_workload(server, agent)
    snapshot = {
        "appId": server.app_id,
        "sessionIds": w.session_ids,
        "interruption": dataclasses.asdict(w.interruption),
        "queries": [
            {
                "label": q.label,
                "user": q.user,
                "tags": q.tags,
                "outcome": q.outcome,
                "error": q.error,
            }
            for q in w.queries
        ],
        "timings": w.timings,
        "app": w.spark.app,
        "jobs": w.spark.jobs,
        "connectOperations": w.spark.operations,
        "connectSessions": w.spark.sessions,
    }
    (artifacts_dir / "spark-rest-snapshot.json").write_text(json.dumps(snapshot, indent=1))
    return w


@pytest.fixture(scope="module")
def live_agent(agent: harness.Agent | None, require_piece) -> harness.Agent:
    """The running agent fed by the listener; skips (or fails in CI) until both are built."""
    require_piece(
        harness.listener_jar(),
        "listener jar (listener-jar/target/sparkscope-listener.jar)",
        "listener-jar/build.sh",
    )
    require_piece(agent and agent.binary, "sparkscope binary (target/*/sparkscope)", "cargo build")
    assert agent is not None
    return agent


@dataclass
class AgentView:
    app: dict | None
    jobs: list[dict]
    caught_up: bool
    waited: float


@pytest.fixture(scope="module")
def agent_view(live_agent: harness.Agent, server, workload: Workload) -> AgentView:
    """The agent's application once it has caught up with Spark (same job ids, same statuses),
    or what it has after 60 s."""
    want = {j["jobId"]: j["status"] for j in workload.spark.jobs}
    t0 = time.monotonic()

    def caught_up() -> bool:
        have = {j.get("jobId"): j.get("status") for j in live_agent.jobs(server.app_id)}
        return have == want

    try:
        harness.wait_until(caught_up, 60, 0.5, "the agent to catch up")
        ok = True
    except TimeoutError:
        ok = False
    app = live_agent.application(server.app_id)
    return AgentView(app, list(app.get("jobs", [])) if app else [], ok, time.monotonic() - t0)


# ---------------------------------------------------------------------------------------------
# comparison helpers (every problem names the job and the field)


def _norm(field_name: str, value: Any) -> Any:
    if field_name == "jobTags" and isinstance(value, list):
        return sorted(value)
    return value


def _brief(job: dict | None) -> str:
    if job is None:
        return "None"
    return json.dumps({k: job[k] for k in sorted(job) if k != "jobTags"}, sort_keys=True)


def job_problems(spark_jobs: list[dict], got_jobs: list[dict], source: str) -> list[str]:
    """Differences between Spark's REST jobs and `source`'s jobs, one line per job and field."""
    problems: list[str] = []
    expected = {j["jobId"]: j for j in spark_jobs}
    got: dict[Any, dict] = {}
    for j in got_jobs:
        if j.get("jobId") in got:
            problems.append(f"{source} lists job {j.get('jobId')} twice")
        got[j.get("jobId")] = j
    for jid in sorted(expected.keys() - got.keys()):
        problems.append(f"job {jid}: in Spark REST, missing in {source}: {_brief(expected[jid])}")
    for jid in sorted(got.keys() - expected.keys(), key=str):
        problems.append(f"job {jid}: in {source}, not in Spark REST: {_brief(got[jid])}")
    allowed = set(JOB_FIELDS) | set(JOBDATA_OTHER_FIELDS) | {"connect"}
    for jid in sorted(expected.keys() & got.keys()):
        want, have = expected[jid], got[jid]
        differing = []
        compared = JOB_FIELDS + tuple(f for f in JOBDATA_OTHER_FIELDS if f in have)
        for f in compared:
            w, h = _norm(f, want.get(f, ABSENT)), _norm(f, have.get(f, ABSENT))
            if w != h:
                differing.append(f)
                problems.append(f"job {jid} field {f}: spark={w!r} {source}={h!r}")
        extra = sorted(set(have) - allowed)
        if extra:
            problems.append(f"job {jid}: {source} has fields Spark's JobData does not: {extra}")
        if differing:
            problems.append(f"  job {jid} spark:   {_brief({k: want.get(k) for k in compared})}")
            problems.append(f"  job {jid} {source}: {_brief(have)}")
    return problems


def connect_problems(spark: SparkView, got_jobs: list[dict], source: str) -> list[str]:
    """Each Connect job's `connect` block against the `/connect/operations` entry holding it."""
    problems: list[str] = []
    op_of_job: dict[int, dict] = {}
    for op in spark.operations:
        for jid in op["jobIds"]:
            op_of_job[int(jid)] = op
    got = {j.get("jobId"): j for j in got_jobs}
    for job in spark.jobs:
        jid = job["jobId"]
        have = got.get(jid)
        if have is None:
            continue  # reported by job_problems
        is_connect = any(t.startswith(OPERATION_TAG_PREFIX) for t in job["jobTags"])
        if not is_connect:
            if "connect" in have:
                problems.append(f"job {jid}: not a Connect job, {source} has {have['connect']!r}")
            continue
        op = op_of_job.get(jid)
        if op is None:
            problems.append(f"job {jid}: Spark's /connect/operations has no operation for it")
            continue
        want = {
            "userId": op["userId"],
            "sessionId": op["sessionId"],
            "operationId": op["operationId"],
            "tags": sorted(op["sparkSessionTags"]),
        }
        block = have.get("connect")
        if not isinstance(block, dict):
            problems.append(f"job {jid}: {source} connect={block!r}, Spark's operation: {want}")
            continue
        for f in CONNECT_FIELDS:
            if block.get(f, ABSENT) != want[f]:
                problems.append(
                    f"job {jid} connect.{f}: spark={want[f]!r} {source}={block.get(f, ABSENT)!r}"
                )
        extra = sorted(set(block) - set(CONNECT_FIELDS))
        if extra:
            problems.append(f"job {jid}: {source} connect block has extra fields {extra}")
    return problems


def attribution_problems(w: Workload, got_jobs: list[dict], source: str) -> list[str]:
    """Per query of the workload: its jobs carry exactly its tags, its user and its session."""
    problems: list[str] = []
    got = {j.get("jobId"): j for j in got_jobs}
    for q in w.queries:
        if not q.tags:
            continue
        for op in w.spark.operations_tagged(q.tags):
            for jid in (int(j) for j in op["jobIds"]):
                block = (got.get(jid) or {}).get("connect") or {}
                want = (q.user, w.session_ids[q.user], sorted(q.tags))
                have = (block.get("userId"), block.get("sessionId"), block.get("tags"))
                if have != want:
                    problems.append(
                        f"job {jid} of query {q.label}: (user, session, tags) "
                        f"want {want} {source} has {have}"
                    )
    untagged_users = {q.user for q in w.queries if not q.tags}
    for op in w.spark.operations:
        if op["sparkSessionTags"] or op["userId"] not in untagged_users:
            continue
        for jid in (int(j) for j in op["jobIds"]):
            tags = ((got.get(jid) or {}).get("connect") or {}).get("tags")
            if tags != []:
                problems.append(
                    f"job {jid} of untagged operation {op['operationId']}: tags={tags!r}"
                )
    owner = {sid: user for user, sid in w.session_ids.items()}
    for jid, job in got.items():
        block = job.get("connect") or {}
        user, sid = block.get("userId"), block.get("sessionId")
        if (user in w.session_ids or sid in owner) and owner.get(sid) != user:
            problems.append(
                f"job {jid}: attributed to user {user!r} with session {sid!r}, which is "
                f"{owner.get(sid, 'nobody')}'s session (sessions: {w.session_ids})"
            )
    return problems


def _fail_on(problems: list[str], what: str, limit: int = 150) -> None:
    if problems:
        shown = problems[:limit]
        more = f"\n… and {len(problems) - limit} more" if len(problems) > limit else ""
        pytest.fail(
            f"{what}: {len(problems)} problem(s)\n" + "\n".join(shown) + more, pytrace=False
        )


# ---------------------------------------------------------------------------------------------
# tests


def test_workload_as_spark_reports_it(workload: Workload) -> None:
    """The workload did what the other tests rely on, according to Spark itself."""
    w, spark = workload, workload.spark
    problems: list[str] = []

    sessions = {s["sessionId"]: s["userId"] for s in spark.sessions}
    for user, sid in w.session_ids.items():
        if sessions.get(sid) != user:
            problems.append(f"session {sid} of {user}: Spark REST says user {sessions.get(sid)!r}")

    for q in w.queries:
        if q.outcome != ("error" if q.expect_error else "ok"):
            problems.append(
                f"query {q.label}: outcome {q.outcome}, expected error={q.expect_error}: {q.error}"
            )
        if q.tags:
            ops = spark.operations_tagged(q.tags)
            if len(ops) != 1:
                problems.append(f"query {q.label}: {len(ops)} operations tagged {q.tags}")
            for op in ops:
                if (op["userId"], op["sessionId"]) != (q.user, w.session_ids[q.user]):
                    owner = f"{op['userId']}/{op['sessionId']}"
                    problems.append(f"query {q.label}: operation {op['operationId']} of {owner}")

    def jobs_of(label: str) -> list[dict]:
        q = w.query(label)
        return [j for op in spark.operations_tagged(q.tags) for j in spark.jobs_of(op)]

    for label in ("a-agg", "b-join"):
        jobs = jobs_of(label)
        if len(jobs) < 2 or not any(j["numSkippedStages"] > 0 for j in jobs):
            problems.append(f"{label}: expected several jobs, one with skipped stages: {jobs}")

    failed = [
        j for j in jobs_of("a-task-failure") if j["status"] == "FAILED" and j["numFailedTasks"] > 0
    ]
    if not failed:
        problems.append(
            f"a-task-failure: no FAILED job with failed tasks: {jobs_of('a-task-failure')}"
        )

    missing = spark.operations_tagged(w.query("a-missing-table").tags)
    if not missing or missing[0]["jobIds"] or "TABLE_OR_VIEW_NOT_FOUND" not in missing[0]["detail"]:
        problems.append(f"a-missing-table: expected a failed operation without jobs: {missing}")

    killme_ops = spark.operations_tagged((KILL_TAG,))
    interrupted = w.interruption.interrupted
    if not killme_ops or killme_ops[0]["operationId"] not in interrupted:
        problems.append(f"b-killme: interruptTag returned {interrupted}, operations {killme_ops}")
    killed = [j for j in jobs_of("b-killme") if j["status"] == "FAILED" and j["numKilledTasks"] > 0]
    if not killed:
        problems.append(f"b-killme: no FAILED job with killed tasks: {jobs_of('b-killme')}")

    for user in wl.USERS:
        plain = [
            op
            for op in spark.operations
            if op["userId"] == user and not op["sparkSessionTags"] and op["jobIds"]
        ]
        if not plain:
            problems.append(f"{user}: no untagged operation with jobs")

    _fail_on(problems, "workload as seen by Spark's REST API")


def test_agent_showed_the_running_job_attributed(
    live_agent: harness.Agent, workload: Workload
) -> None:
    """While the long query ran (before the interrupt), the agent listed its job as running,
    attributed to bob_smith's session, operation and tag."""
    it = workload.interruption
    job = it.agent_job
    assert job is not None, (
        f"the agent did not list running job {it.spark_job['jobId']} as RUNNING within 15 s"
    )
    q = workload.query("b-killme")
    (op,) = workload.spark.operations_tagged(q.tags)
    want = {
        "status": "RUNNING",
        "completionTime": ABSENT,
        "stageIds": it.spark_job["stageIds"],
        "numTasks": it.spark_job["numTasks"],
        "submissionTime": it.spark_job["submissionTime"],
        "jobTags": sorted(it.spark_job["jobTags"]),
        "connect": {
            "userId": q.user,
            "sessionId": workload.session_ids[q.user],
            "operationId": op["operationId"],
            "tags": sorted(q.tags),
        },
    }
    have = {k: _norm(k, job.get(k, ABSENT)) for k in want}
    diff = {k: (want[k], have[k]) for k in want if want[k] != have[k]}
    assert not diff, f"running job {job.get('jobId')}: field: (spark, agent): {diff}"


def test_agent_application(agent_view: AgentView, workload: Workload, server) -> None:
    assert agent_view.app is not None, f"the agent does not list application {server.app_id}"
    want = {
        "id": workload.spark.app["id"],
        "name": workload.spark.app["name"],
        "sparkVersion": workload.spark.app["attempts"][0]["appSparkVersion"],
    }
    have = {k: agent_view.app.get(k) for k in want}
    assert have == want


def test_agent_jobs_equal_spark_rest(agent_view: AgentView, workload: Workload) -> None:
    problems = job_problems(workload.spark.jobs, agent_view.jobs, "agent")
    note = (
        ""
        if agent_view.caught_up
        else f" (agent had not caught up after {agent_view.waited:.0f} s)"
    )
    _fail_on(problems, "agent jobs vs Spark REST /jobs" + note)


def test_agent_connect_attribution_equals_spark_operations(
    agent_view: AgentView, workload: Workload
) -> None:
    _fail_on(
        connect_problems(workload.spark, agent_view.jobs, "agent"),
        "agent connect blocks vs Spark REST /connect/operations",
    )


def test_agent_attributes_each_query(agent_view: AgentView, workload: Workload) -> None:
    _fail_on(
        attribution_problems(workload, agent_view.jobs, "agent"),
        "agent attribution of the workload's queries",
    )


def test_replay_of_event_log_equals_spark_rest(
    server: harness.SparkConnectServer, workload: Workload, require_piece
) -> None:
    """Runs last: it stops the server so the event log is finalized."""
    binary = require_piece(
        harness.agent_binary(), "sparkscope binary (target/*/sparkscope)", "cargo build"
    )
    server.stop()
    path = server.event_log_path()
    leftovers = [p.name for p in ([path, *path.iterdir()] if path.is_dir() else [path])]
    assert not [n for n in leftovers if n.endswith(".inprogress")], (
        f"event log not finalized: {leftovers}"
    )
    out = harness.replay(binary, path)
    apps = {a.get("id"): a for a in out.get("applications", [])}
    assert server.app_id in apps, f"replay of {path} lists applications {sorted(apps, key=str)}"
    app = apps[server.app_id]
    jobs = app.get("jobs", [])
    spark_app = workload.spark.app
    app_problems = [
        f"application {k}: spark={v!r} replay={app.get(k, ABSENT)!r}"
        for k, v in (
            ("name", spark_app["name"]),
            ("sparkVersion", spark_app["attempts"][0]["appSparkVersion"]),
        )
        if app.get(k, ABSENT) != v
    ]
    _fail_on(
        app_problems
        + job_problems(workload.spark.jobs, jobs, "replay")
        + connect_problems(workload.spark, jobs, "replay")
        + attribution_problems(workload, jobs, "replay"),
        f"sparkscope replay {path.name} vs Spark REST",
    )


def test_history_server_agrees_with_replay(
    server: harness.SparkConnectServer, tmp_path: Path, require_piece
) -> None:
    """Spark's History Server and `sparkscope replay`, reading the same finished event log,
    report the same jobs field by field. Runs after the replay test has stopped the server."""
    binary = require_piece(
        harness.agent_binary(), "sparkscope binary (target/*/sparkscope)", "cargo build"
    )
    server.stop()
    out = harness.replay(binary, server.event_log_path())
    (app,) = [a for a in out["applications"] if a.get("id") == server.app_id]
    with harness.HistoryServer(server.event_log_path().parent, tmp_path / "history") as hs:
        hs.wait_listed(server.app_id)
        history_jobs = hs.get(f"applications/{server.app_id}/jobs")
    assert history_jobs, "the History Server lists no jobs"
    _fail_on(
        job_problems(history_jobs, app["jobs"], "replay"),
        "sparkscope replay vs Spark's History Server",
    )
