"""Failure is normal: a real Spark Connect server with the listener, and an agent that is killed
(SIGKILL), kept away for whole jobs, restarted again and again, fed hostile input, or that sees
Spark's own listener bus drop events. Whatever happened, the agent ends with Spark's numbers: its
REST API's jobs, field by field.

Timing targets live in benchmarks; the few time limits here are the issue's "within 2 s of the
listener's reconnect" and generous bounds that only a hang would break.
"""

from __future__ import annotations

import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import harness
import pytest
import requests
from pyspark.errors import PySparkException

SLEEPY = "reflect('java.lang.Thread', 'sleep', cast({ms} as bigint))"
# What can change between two reads of a running job; everything else must be equal at once.
MONOTONIC = ("numCompletedTasks", "numFailedTasks", "numKilledTasks")
MOVING = ("numActiveTasks", "numActiveStages", "numCompletedStages") + MONOTONIC


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("failures")


@pytest.fixture(scope="module")
def agent(work: Path, require_piece):
    binary = require_piece(harness.agent_binary(), "sparkscope binary", "cargo build")
    # Reconcile only after gaps here: every correction the tests see is one a gap asked for.
    with harness.Agent(
        binary,
        work / "agent",
        token=secrets.token_hex(16),
        extra_args=["--reconcile-interval-seconds", "0"],
    ) as a:
        yield a


@pytest.fixture(scope="module")
def server(work: Path, agent: harness.Agent, reporting_to):
    with reporting_to(work / "server", agent) as s:
        yield s


@pytest.fixture(scope="module")
def spark(server):
    session = harness.connect_session(server.remote_url(user_id="alice"))
    yield session
    session.stop()


class Query(threading.Thread):
    """`fn(spark)` on its own thread, with a cell tag added there (tags are per thread)."""

    def __init__(self, spark, fn: Callable) -> None:
        super().__init__(daemon=True)
        self.spark, self.fn = spark, fn
        self.tag = f"cell-{uuid.uuid4().hex[:8]}"
        self.error: BaseException | None = None

    def run(self) -> None:
        self.spark.addTag(self.tag)
        try:
            self.fn(self.spark)
        except PySparkException as e:  # reported by the test that waits for it
            self.error = e
        finally:
            self.spark.removeTag(self.tag)

    def finish(self, timeout: float = 120) -> None:
        self.join(timeout)
        assert not self.is_alive(), "the query did not finish"
        assert self.error is None, self.error


def two_stages(ms: int, tasks: int) -> Callable:
    """A shuffle between two stages of sleeping tasks (AQE runs them as two jobs)."""
    sleep = SLEEPY.format(ms=ms)
    return lambda spark: (
        spark.range(0, tasks, numPartitions=tasks)
        .selectExpr("id", f"{sleep} AS s")
        .repartition(tasks)
        .selectExpr(f"{sleep} AS t")
        .collect()
    )


def jobs_of(tag: str, jobs: list[dict]) -> list[dict]:
    return [j for j in jobs if any(t.endswith(f"_Tag_{tag}") for t in j.get("jobTags", []))]


def fields(job: dict) -> dict:
    return {k: job.get(k) for k in harness.JOB_FIELDS}


def same_jobs(agent: harness.Agent, server: harness.SparkConnectServer, tag: str | None = None):
    """The agent's jobs (all, or a cell's) equal Spark's REST jobs, field by field: a list of
    differences, empty when they agree."""
    spark = {j["jobId"]: fields(j) for j in server.jobs()}
    mine = {j["jobId"]: fields(j) for j in agent.jobs(server.app_id)}
    if tag is not None:
        ids = {j["jobId"] for j in jobs_of(tag, server.jobs())}
        spark = {k: v for k, v in spark.items() if k in ids}
        mine = {k: v for k, v in mine.items() if k in ids}
    diffs = []
    for job_id in sorted(set(spark) | set(mine)):
        a, b = mine.get(job_id), spark.get(job_id)
        if a != b:
            diffs.append(f"job {job_id}: agent {a}\n        spark {b}")
    return diffs


def wait_same(agent, server, tag=None, timeout: float = 30) -> None:
    last: list[str] = []

    def agree() -> bool:
        nonlocal last
        last = same_jobs(agent, server, tag)
        return not last

    try:
        harness.wait_until(agree, timeout, 0.25, "the agent to equal Spark's REST API")
    except TimeoutError as e:
        raise AssertionError("\n".join(last)) from e


def running_equal_now(agent, server, tag: str) -> list[str]:
    """The tag's running jobs, agent against Spark, read between two reads of Spark's REST API:
    what may move while they run lies between Spark's two answers, the rest is equal."""
    before = {j["jobId"]: j for j in jobs_of(tag, server.jobs())}
    mine = {j["jobId"]: j for j in jobs_of(tag, agent.jobs(server.app_id))}
    after = {j["jobId"]: j for j in jobs_of(tag, server.jobs())}
    diffs = []
    for job_id, b in before.items():
        a = after.get(job_id, b)
        if b["status"] != "RUNNING" or a["status"] != "RUNNING":
            continue
        m = mine.get(job_id)
        if m is None:
            diffs.append(f"job {job_id} running in Spark, unknown to the agent")
            continue
        for k in harness.JOB_FIELDS:
            if k in MOVING:
                lo, hi = sorted((b[k], a[k])) if k not in MONOTONIC else (b[k], a[k])
                if not lo <= m[k] <= hi:
                    diffs.append(f"job {job_id} {k}: agent {m[k]}, Spark {b[k]}..{a[k]}")
            elif m.get(k) != b.get(k):
                diffs.append(f"job {job_id} {k}: agent {m.get(k)}, Spark {b.get(k)}")
    return diffs


def app_live(agent: harness.Agent, app_id: str) -> bool:
    try:
        app = agent.application(app_id)
    except requests.RequestException:
        return False
    return bool(app and app["live"])


def metric(agent: harness.Agent, name: str, **labels: str) -> float:
    text = requests.get(f"{agent.url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def restart_and_wait(agent: harness.Agent, server: harness.SparkConnectServer) -> float:
    """Starts the agent again and returns when the listener is back (monotonic seconds)."""
    agent.restart()
    harness.wait_until(
        lambda: app_live(agent, server.app_id), 15, 0.05, "the listener to reconnect"
    )
    return time.monotonic()


def test_agent_killed_mid_job_equals_spark_within_2s_of_the_reconnect(agent, server, spark):
    # Two stages of 16 tasks of 0.7 s on two cores: 5.6 s each. The agent is away for the
    # first one's end, and back with the second stage about half done.
    q = Query(spark, two_stages(ms=700, tasks=16))
    q.start()
    harness.wait_until(
        lambda: any(
            j["status"] == "RUNNING" and j["numCompletedTasks"] > 0
            for j in jobs_of(q.tag, agent.jobs(server.app_id))
        ),
        60,
        0.1,
        "the first stage under way",
    )
    agent.kill()
    time.sleep(5)  # the first stage completes meanwhile
    restarted = time.monotonic()
    back = restart_and_wait(agent, server)
    diffs: list[str] = ["not compared yet"]
    while time.monotonic() - back < 2.0 and diffs:
        diffs = running_equal_now(agent, server, q.tag)
        if diffs and not jobs_of(q.tag, server.jobs("running")):
            # The work ended while it was compared (Spark's numbers of a moment ago are gone):
            # the point of this test was not checked, which must not pass as a success.
            pytest.fail(f"the job ended before it could be compared while running: {diffs}")
    assert not diffs, f"2 s after the reconnect the agent still differs: {diffs}"
    equal_after = time.monotonic() - back
    print(
        f"agent restarted: listener back after {back - restarted:.2f} s, running jobs equal to "
        f"Spark's REST API {equal_after:.2f} s later: "
        + "; ".join(
            f"job {j['jobId']} {j['numCompletedTasks']}/{j['numTasks']} tasks, "
            f"{j['numCompletedStages']} stage(s) completed"
            for j in jobs_of(q.tag, agent.jobs(server.app_id))
        )
    )
    q.finish()
    # Every job, the ones that ended while the agent was down included.
    wait_same(agent, server, timeout=20)
    assert metric(agent, "sparkscope_listener_resyncs_total") >= 1
    print(
        "at the end, equal to Spark field by field: "
        + "; ".join(
            f"job {j['jobId']} {j['status']} {j['numCompletedTasks']}/{j['numTasks']} tasks, "
            f"{j['numSkippedTasks']} skipped, {j['numCompletedStages']} stage(s) completed, "
            f"{j['numSkippedStages']} skipped"
            for j in jobs_of(q.tag, agent.jobs(server.app_id))
        )
    )


def test_jobs_run_while_the_agent_was_down_appear_reconciled(agent, server, spark):
    agent.kill()
    q = Query(
        spark,
        lambda s: [
            s.range(0, 2000, numPartitions=4).selectExpr("sum(id)").collect() for _ in range(3)
        ],
    )
    q.start()
    q.finish()
    back = restart_and_wait(agent, server)
    wait_same(agent, server, timeout=15)
    print(
        f"missed jobs filled in and equal to Spark {time.monotonic() - back:.2f} s after the "
        "listener reconnected"
    )
    missed = jobs_of(q.tag, agent.jobs(server.app_id))
    assert missed, "the jobs of the missed cell are there"
    for job in missed:
        connect = job.get("connect") or {}
        assert connect.get("userId") == "alice", job
        assert connect.get("sessionId") == spark.client._session_id, job
        assert q.tag in connect.get("tags", []), job
    assert metric(agent, "sparkscope_reconcile_corrections_total", kind="filled") >= len(missed)
    # and a notebook following the session gets them under the cell's tag, though the agent
    # never saw the operation that ran them
    from harness.feed import Feed
    from sparkscope.sessions import SessionKey

    feed = Feed(agent, SessionKey(spark.client._session_id, "alice"))
    try:
        want = {j["jobId"] for j in missed}
        feed.wait(
            "the missed cell's jobs in its widget",
            lambda a, j, s, g: q.tag in g and want <= set(g[q.tag].get("jobIds", [])) <= set(j),
            15,
        )
    finally:
        feed.close()


def test_restarted_again_and_again_during_one_job(agent, server, spark):
    q = Query(spark, two_stages(ms=500, tasks=16))
    q.start()
    harness.wait_until(
        lambda: jobs_of(q.tag, agent.jobs(server.app_id)), 60, 0.1, "the job to start"
    )
    for graceful in (False, True, False):
        time.sleep(1.5)
        if graceful:
            agent.stop()
        else:
            agent.kill()
        time.sleep(0.5)
        restart_and_wait(agent, server)
    q.finish()
    wait_same(agent, server, timeout=20)


def test_hostile_input_on_the_ingest_port_is_refused_and_counted(agent, server, spark):
    host, port = agent.ingest_addr.split(":")
    addr = (host, int(port))
    refused_before = metric(agent, "sparkscope_listener_refusals_total")
    # Hundreds of connections that never say hello, and garbage instead of a hello.
    idle = [socket.create_connection(addr, timeout=5) for _ in range(300)]
    for junk in (b"\x00\xff garbage\n", b"x" * (64 * 1024), b'{"Event":"SparkListenerJobEnd"}\n'):
        with socket.create_connection(addr, timeout=5) as s:
            s.sendall(junk)
    # Still up, the real listener still connected, work still followed.
    assert app_live(agent, server.app_id)
    rss_mb = (
        int(Path(f"/proc/{agent.proc.pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024
    )
    assert rss_mb < 100, f"agent RSS {rss_mb:.0f} MB with 300 idle connections"
    print(f"agent RSS with 300 silent connections open: {rss_mb:.1f} MB")
    spark.range(10).count()
    wait_same(agent, server, timeout=15)
    refused = metric(agent, "sparkscope_listener_refusals_total") - refused_before
    evicted = metric(agent, "sparkscope_limit_hits_total", limit="pending_listeners")
    assert refused >= 2 and evicted >= 300 - 64, (refused, evicted)
    for s in idle:
        s.close()


# ---------------------------------------------------------------------------------------------
# Spark's own listener bus drops events


@pytest.fixture(scope="module")
def slow_listener_jar(work: Path) -> Path:
    """The slow listener, compiled against the installed pyspark's jars."""
    return harness.compile_listener(Path(__file__).parent / "listeners" / "SlowListener.java", work)


@pytest.fixture(scope="module")
def dropping(work: Path, agent: harness.Agent, slow_listener_jar: Path, require_piece):
    """A second server whose `shared` queue holds 20 events and shares a slow listener."""
    jar = require_piece(harness.listener_jar(), "listener jar", "listener-jar/build.sh")
    server = harness.SparkConnectServer(
        work / "dropping-server",
        listener_jar=jar,
        agent_addr=agent.ingest_addr,
        token=agent.token,
        conf={
            "spark.driver.extraClassPath": str(slow_listener_jar),
            "spark.extraListeners": f"{harness.LISTENER_CLASS},sparkscope.test.SlowListener",
            "spark.scheduler.listenerbus.eventqueue.shared.capacity": "20",
        },
    )
    with server as s:
        yield s


def test_events_spark_drops_are_restored_from_its_rest_api(agent, dropping):
    spark = harness.connect_session(dropping.remote_url(user_id="carol"))
    try:
        for _ in range(2):
            spark.range(0, 400, numPartitions=400).selectExpr("sum(id)").collect()
        harness.wait_until(lambda: not dropping.jobs("running"), 60, 0.2, "the jobs to end")
        wait_same(agent, dropping, timeout=30)
    finally:
        spark.stop()
    dropped = metric(
        agent, "sparkscope_spark_bus_dropped_events_total", application=dropping.app_id
    )
    assert dropped > 0, "Spark's bus dropped nothing: the test did not test anything"
    assert (
        metric(agent, "sparkscope_reconciliations_total", application=dropping.app_id, result="ok")
        >= 1
    )
    fixed = {
        kind: metric(
            agent,
            "sparkscope_reconcile_corrections_total",
            application=dropping.app_id,
            kind=kind,
        )
        for kind in ("filled", "ended", "corrected")
    }
    spark_jobs = dropping.jobs()
    ended = [j for j in spark_jobs if j["status"] != "RUNNING"]

    def counted() -> tuple[float, float]:
        app = dropping.app_id
        return (
            metric(agent, "sparkscope_jobs_started_total", application=app),
            metric(agent, "sparkscope_jobs_finished_total", application=app),
        )

    harness.wait_until(
        lambda: counted() == (len(spark_jobs), len(ended)), 30, 0.25, "each job counted once"
    )
    assert not [j for j in agent.jobs(dropping.app_id) if j["status"] == "RUNNING"]
    print(
        f"Spark's bus dropped {dropped:.0f} event(s); reconciliation changed {fixed}; "
        f"jobs started/finished {counted()} against Spark's {len(spark_jobs)}/{len(ended)}"
    )
    log = (dropping.work_dir / "spark-connect-server.log").read_text(errors="replace")
    assert re.search(r"Dropping event from queue shared", log)


# ---------------------------------------------------------------------------------------------
# the notebook's view


def test_a_cells_widget_ends_with_sparks_numbers_after_the_agent_was_killed(agent, server, work):
    import nbformat
    from harness import nbrun

    setup = "%load_ext sparkscope\n" + nbrun.CONNECT
    sleep = SLEEPY.format(ms=700)
    long_cell = (
        f'rows = spark.range(0, 12, 1, 12).selectExpr("id", "{sleep} AS s")'
        f'.repartition(12).selectExpr("{sleep} AS t").collect()\nlen(rows)'
    )
    nb = nbformat.v4.new_notebook()
    # the last cell waits until the kernel's stream is back (its reconnect backs off while the
    # agent is away), then gives late updates (reconciliation after the cell) time to arrive
    settle = (
        "import time, sparkscope\n"
        "deadline = time.monotonic() + 60\n"
        "while not sparkscope._monitor.connection.client.status.connected"
        " and time.monotonic() < deadline:\n"
        "    time.sleep(0.1)\n"
        "time.sleep(4)"
    )
    nb.cells = [nbformat.v4.new_code_cell(c) for c in (setup, long_cell, settle)]
    source = work / "killed-agent.ipynb"
    nbformat.write(nb, source)
    env = nbrun.kernel_env(
        work,
        {
            "SPARK_REMOTE": server.remote_url(user_id="dave"),
            "SPARKSCOPE_URL": agent.stream_url,
            "SPARKSCOPE_TOKEN": agent.subscriber_token,
        },
    )
    run = nbrun.NotebookRun("killed", source, work / "killed-agent.out.ipynb", env)
    runner = threading.Thread(target=nbrun.execute_concurrently, args=([run], 300), daemon=True)
    runner.start()

    def daves_running_job() -> bool:
        return any(
            j["status"] == "RUNNING"
            and j["numCompletedTasks"] > 0
            and (j.get("connect") or {}).get("userId") == "dave"
            for j in agent.jobs(server.app_id)
        )

    harness.wait_until(daves_running_job, 120, 0.1, "the cell's job under way")
    agent.kill()
    time.sleep(4)
    restart_and_wait(agent, server)
    runner.join(300)
    assert not runner.is_alive() and run.error is None, run.error

    ((model_id, _text),) = nbrun.cell_widgets(run.nb, 1)
    state = nbrun.widget_states(run.nb)[model_id]["state"]
    spark_jobs = {j["jobId"]: j for j in jobs_of(state["tag"], server.jobs())}
    assert spark_jobs, "Spark ran the cell's jobs"
    mine = {j["jobId"]: j for j in state["jobs"]}
    assert set(mine) == set(spark_jobs), (sorted(mine), sorted(spark_jobs))
    for job_id, s in spark_jobs.items():
        m = mine[job_id]
        want = (
            s["status"],
            s["numTasks"],
            s["numCompletedTasks"],
            s["numSkippedTasks"],
            s["numFailedTasks"],
            s["numActiveTasks"],
        )
        t = m["tasks"]
        have = (m["status"], t["total"], t["completed"], t["skipped"], t["failed"], t["active"])
        assert have == want, f"job {job_id}: widget {have}, Spark {want}"
    assert state["state"] == "done"
    kinds = [n["kind"] for n in state.get("notices", [])]
    assert "resync" in kinds, state.get("notices")
