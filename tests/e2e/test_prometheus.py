"""Prometheus and the Grafana dashboards, end to end: a real Prometheus server scrapes the agent
every second while a real Spark Connect server with the listener runs a two-user workload
(tagged and untagged queries, a multi-job query, a failing query, a cancelled one, a notebook
stream and a stream too slow to keep). Then:

- `promtool check metrics` accepts the agent's exposition, taken mid-workload and at the end;
- every panel query of every dashboard under grafana/dashboards/, with its variables filled in,
  returns at least one series from Prometheus's HTTP API, and the dashboards' variables list the
  workload's application and users;
- the counters Prometheus scraped equal Spark's own REST counts, and the series count follows
  the label sets of docs/metrics.md (per application, per application and user).

The static checks of the dashboards (catalog names, datasource variable, units,
`$__rate_interval`) and of the example configs need no server and run first.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
import pytest
import requests
import websocket
import workload as wl
import yaml

GRAFANA = harness.REPO_ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
CATALOG_DOC = harness.REPO_ROOT / "docs" / "metrics.md"

JOB = "sparkscope"
SCRAPE_INTERVAL_S = 1
# What $__rate_interval stands for: Grafana makes it at least four scrape intervals.
RATE_INTERVAL = "15s"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
SCHEMA_VERSION = 39  # Grafana 10.4 and 11.0-11.2; later versions migrate it on load

KILL_TAG = "sleepy-b"
SLOW_SUBSCRIBER_TIMEOUT_MS = 1000


# ---------------------------------------------------------------------------------------------
# the dashboards and the catalog, as data


def catalog() -> dict[str, dict[str, Any]]:
    """docs/metrics.md's table: name -> {"type", "labels"}."""
    rows = re.findall(
        r"^\| `(sparkscope_\w+)` \| (\w+) \| ([^|]*) \|", CATALOG_DOC.read_text(), re.MULTILINE
    )
    assert rows, f"no metric table found in {CATALOG_DOC}"
    return {
        name: {
            "type": kind,
            "labels": [] if labels.strip() == "—" else [x.strip() for x in labels.split(",")],
        }
        for name, kind, labels in rows
    }


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def panels(dashboard: dict) -> Iterator[dict]:
    """Every panel, including those inside collapsed rows."""
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])


def variables(dashboard: dict) -> dict[str, dict]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def queries(dashboard: dict) -> Iterator[tuple[str, str, str]]:
    """(panel title, refId, expr) of every Prometheus query of every panel."""
    for p in panels(dashboard):
        for t in p.get("targets", []):
            yield p.get("title", "?"), t.get("refId", "?"), t.get("expr", "")


def variable_query(var: dict) -> str:
    q = var.get("query")
    return q.get("query", "") if isinstance(q, dict) else str(q or "")


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bsparkscope_[a-zA-Z0-9_]+", expr))


def catalog_name(name: str, known: dict[str, dict]) -> str | None:
    """The catalog entry a series name belongs to (a histogram's _bucket, _sum and _count
    belong to the histogram)."""
    if name in known:
        return name
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and known.get(base, {}).get("type") == "histogram":
            return base
    return None


def substitute(expr: str, values: dict[str, str]) -> str:
    """Grafana's variable interpolation, for the variables our dashboards use."""
    out = expr.replace("${__rate_interval}", RATE_INTERVAL).replace(
        "$__rate_interval", RATE_INTERVAL
    )
    for name, value in values.items():
        out = out.replace("${" + name + "}", value).replace("$" + name, value)
    return out


# ---------------------------------------------------------------------------------------------
# static checks: no server needed


def test_dashboards_exist() -> None:
    names = {p.name for p in DASHBOARDS}
    want = {
        "sparkscope-cluster-overview.json",
        "sparkscope-users-and-sessions.json",
        "sparkscope-agent-health.json",
    }
    assert want <= names, f"grafana/dashboards/ has {sorted(names)}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_is_provisionable(path: Path) -> None:
    """What file provisioning needs, and the conventions every panel follows."""
    text = path.read_text()
    d = json.loads(text)
    problems: list[str] = []
    if "${DS_" in text or "__inputs" in d:
        problems.append("uses import-time ${DS_…} inputs, which file provisioning cannot resolve")
    if d.get("schemaVersion") != SCHEMA_VERSION:
        problems.append(f"schemaVersion {d.get('schemaVersion')}, want {SCHEMA_VERSION}")
    if not d.get("uid") or not d.get("title"):
        problems.append("no uid or title")
    if d.get("id") is not None:
        problems.append(f"id {d['id']}: provisioned dashboards leave it null")
    vs = variables(d)
    ds = vs.get("datasource", {})
    if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append(f"no datasource variable of type datasource for prometheus: {ds}")
    for name, v in vs.items():
        if v.get("type") == "query" and v.get("datasource") != DATASOURCE:
            problems.append(f"variable {name}: datasource {v.get('datasource')}")
    ids = [p.get("id") for p in panels(d)]
    if len(ids) != len(set(ids)) or None in ids:
        problems.append(f"panel ids not unique: {ids}")
    for p in panels(d):
        title = p.get("title", "?")
        if p.get("type") == "row":
            continue
        if p.get("datasource") != DATASOURCE:
            problems.append(f"panel {title!r}: datasource {p.get('datasource')}")
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if not unit:
            problems.append(f"panel {title!r}: no fieldConfig.defaults.unit")
        if not p.get("targets"):
            problems.append(f"panel {title!r}: no queries")
        for t in p.get("targets", []):
            if t.get("datasource") != DATASOURCE:
                problems.append(f"panel {title!r} {t.get('refId')}: datasource {t['datasource']}")
            expr = t.get("expr", "")
            if "${datasource}" in expr or "$datasource" in expr:
                problems.append(f"panel {title!r} {t.get('refId')}: datasource in the query")
            if re.search(r"\b(rate|irate|increase)\s*\(", expr):
                ranges = re.findall(r"\[([^\]]*)\]", expr)
                if not ranges or any(r != "$__rate_interval" for r in ranges):
                    problems.append(
                        f"panel {title!r} {t.get('refId')}: ranges {ranges}, want "
                        f"[$__rate_interval]: {expr}"
                    )
    exprs = " ".join(e for _, _, e in queries(d))
    if "application" in vs and "$application" not in exprs:
        problems.append("has an application variable that no query uses")
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def test_dashboard_variables() -> None:
    """Every dashboard selects the application; the users dashboard also the user."""
    problems: list[str] = []
    for path in DASHBOARDS:
        vs = variables(load(path))
        app = variable_query(vs.get("application", {}))
        if not re.fullmatch(r"label_values\(sparkscope_executors(\{.*\})?, application\)", app):
            problems.append(f"{path.name}: application variable query {app!r}")
    users = load(GRAFANA / "dashboards" / "sparkscope-users-and-sessions.json")
    user = variable_query(variables(users).get("user", {}))
    if not re.fullmatch(
        r"label_values\(sparkscope_connect_operation_duration_seconds_count(\{.*\})?, user\)",
        user,
    ):
        problems.append(f"users dashboard: user variable query {user!r}")
    exprs = [e for _, _, e in queries(users)]
    if not any('user=~"$user"' in e for e in exprs):
        problems.append("users dashboard: no query filters on $user")
    assert not problems, "\n".join(problems)


def test_dashboard_metrics_are_in_the_catalog() -> None:
    known = catalog()
    problems: list[str] = []
    for path in DASHBOARDS:
        d = load(path)
        exprs = [(f"panel {t!r} {r}", e) for t, r, e in queries(d)]
        exprs += [(f"variable {n}", variable_query(v)) for n, v in variables(d).items()]
        for where, expr in exprs:
            for name in sorted(metric_names(expr)):
                if catalog_name(name, known) is None:
                    problems.append(f"{path.name} {where}: {name} is not in docs/metrics.md")
    assert not problems, "\n".join(problems)


def test_example_prometheus_config(require_piece) -> None:
    promtool = require_piece(harness.promtool_binary(), "promtool", "apt-get install prometheus")
    path = GRAFANA / "prometheus.yml"
    proc = subprocess.run(
        [str(promtool), "check", "config", str(path)],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"promtool check config {path}:\n{proc.stdout}{proc.stderr}"
    config = yaml.safe_load(path.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == JOB]
    assert job.get("metrics_path") == "/metrics"
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:4740"]


def test_grafana_provisioning_files() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "sparkscope.yaml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["url"].startswith("http"), source
    dash = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "sparkscope.yaml").read_text())
    (provider,) = dash["providers"]
    assert provider["type"] == "file", provider
    assert provider["options"]["path"].rstrip("/").endswith("dashboards/sparkscope"), provider


# ---------------------------------------------------------------------------------------------
# the live pieces


@pytest.fixture(scope="module")
def token() -> str:
    return "prom-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def agent(artifacts_dir: Path, log_registry, token: str, require_piece):
    binary = require_piece(
        harness.agent_binary(), "sparkscope binary (target/*/sparkscope)", "cargo build"
    )
    log_registry(artifacts_dir / "sparkscope-agent.log", "sparkscope agent log")
    args = ["--slow-subscriber-timeout-ms", str(SLOW_SUBSCRIBER_TIMEOUT_MS)]
    with harness.Agent(binary, artifacts_dir, token=token, extra_args=args) as a:
        yield a


@pytest.fixture(scope="module")
def prometheus(artifacts_dir: Path, log_registry, agent: harness.Agent, require_piece):
    binary = require_piece(harness.prometheus_binary(), "prometheus", "apt-get install prometheus")
    work = artifacts_dir / "prometheus"
    log_registry(work / "prometheus.log", "prometheus log")
    job = harness.Prometheus.scrape_job(JOB, f"127.0.0.1:{agent.http_port}")
    with harness.Prometheus(binary, work, [job], scrape_interval=f"{SCRAPE_INTERVAL_S}s") as p:
        p.wait_target_up(JOB)
        yield p


@pytest.fixture(scope="module")
def server(artifacts_dir: Path, log_registry, agent: harness.Agent, prometheus, require_piece):
    jar = require_piece(
        harness.listener_jar(),
        "listener jar (listener-jar/target/sparkscope-listener.jar)",
        "listener-jar/build.sh",
    )
    log_registry(artifacts_dir / "spark-connect-server.log", "Spark Connect server log")
    # heartbeats every second: the executors' memory series exist from the workload's start
    # (with Spark's 10 s, the GC panel's rate() may have too few samples of a short workload)
    with harness.SparkConnectServer(
        artifacts_dir,
        listener_jar=jar,
        agent_addr=agent.ingest_addr,
        token=agent.token,
        conf={"spark.executor.heartbeatInterval": "1s"},
    ) as s:
        yield s


# ---------------------------------------------------------------------------------------------
# the workload


class Stream:
    """The agent's WebSocket stream, as a notebook holds it."""

    def __init__(self, agent: harness.Agent, **kwargs: Any) -> None:
        self.ws = websocket.create_connection(
            agent.stream_url,
            suppress_origin=True,  # as the kernel: no web page's origin
            header=[f"Authorization: Bearer {agent.subscriber_token}"],
            timeout=15,
            **kwargs,
        )

    def subscribe(self, sessions: list[dict]) -> None:
        self.ws.send(json.dumps({"subscribe": {"sessions": sessions}}))

    def cancel(self, session: dict, **target: Any) -> dict:
        rid = uuid.uuid4().hex
        self.ws.send(json.dumps({"cancel": {"requestId": rid, **session, **target}}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("cancelResult", {}).get("requestId") == rid:
                return msg["cancelResult"]

    def close(self) -> None:
        self.ws.close()


class SlowSubscriber(threading.Thread):
    """A subscriber that never reads: a tiny receive buffer, and a resubscription every 50 ms
    (each answered with a full snapshot), so the agent's sends back up until it drops it."""

    def __init__(self, agent: harness.Agent, sessions: list[dict]) -> None:
        super().__init__(name="slow-subscriber", daemon=True)
        self.stream = Stream(agent, sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
        self.sessions = sessions
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.stream.subscribe(self.sessions)
            except (OSError, websocket.WebSocketException):
                return  # the agent hung up on us: what we are here for
            self.stopping.wait(0.05)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)
        try:
            self.stream.ws.shutdown()
        except (OSError, websocket.WebSocketException):
            pass


def exposition_value(text: str, name: str, labels: dict[str, str]) -> float | None:
    """One sample's value from a text exposition."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        m = re.match(r"([^{ ]+)(?:\{(.*)\})? (\S+)", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return None


@dataclass
class Workload:
    app_id: str
    session_ids: dict[str, str]
    queries: list[wl.Query]
    scrape_during: str  # the agent's /metrics while bob's query ran
    scrape_end: str  # the agent's /metrics once everything settled
    cancel_ok: dict
    cancel_forbidden: dict
    eval_at: float  # when to evaluate the dashboards' queries (Unix seconds)
    spark_jobs: list[dict]
    spark_stages: list[dict]
    spark_operations: list[dict]
    timings: dict[str, float] = field(default_factory=dict)

    def query(self, label: str) -> wl.Query:
        return next(q for q in self.queries if q.label == label)


def _settled(server: harness.SparkConnectServer) -> tuple[list, list, list]:
    """Spark's jobs, stages and Connect operations once nothing runs and two reads agree."""
    previous: list[Any] = [None]

    def settled() -> Any:
        if server.jobs("running"):
            return None
        ops = server.connect_operations()
        if any(op["state"] in ("STARTED", "COMPILED", "READY") for op in ops):
            return None
        current = (server.jobs(), server.rest("stages"), ops)
        same = current == previous[0]
        previous[0] = current
        return current if same else None

    return harness.wait_until(settled, 120, 0.5, "Spark's REST view to settle")


@pytest.fixture(scope="module")
def workload(
    server: harness.SparkConnectServer,
    agent: harness.Agent,
    prometheus: harness.Prometheus,
    artifacts_dir: Path,
) -> Workload:
    import logging

    from pyspark.logger import PySparkLogger

    # the expected query errors would each dump a JVM stack trace to stderr
    PySparkLogger.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    sessions = {u: harness.connect_session(server.remote_url(user_id=u)) for u in wl.USERS}
    notebook: Stream | None = None
    slow: SlowSubscriber | None = None
    try:
        keys = {u: {"sessionId": s.session_id, "userId": u} for u, s in sessions.items()}
        slow = SlowSubscriber(agent, list(keys.values()))
        slow.start()
        qs = wl.queries(KILL_TAG)
        threads = [
            threading.Thread(
                target=wl.run_user,
                args=(sessions[u], [q for q in qs if q.user == u]),
                name=f"workload-{u}",
                daemon=True,
            )
            for u in wl.USERS
        ]
        for t in threads:
            t.start()

        def sleepy_running() -> bool | str:
            if qs[-1].outcome is not None:
                return "ended"
            return any(
                j.get("status") == "RUNNING"
                and j.get("numActiveTasks", 0) > 0
                and KILL_TAG in (j.get("connect") or {}).get("tags", [])
                for j in agent.jobs(server.app_id)
            )

        state = harness.wait_until(sleepy_running, 180, 0.3, f"a running job tagged {KILL_TAG}")
        assert state is True, f"b-killme ended before it was cancelled: {qs[-1].error}"
        timings["sleepy running"] = time.monotonic() - t0
        scrape_during = requests.get(f"{agent.url}/metrics", timeout=10).text
        # bob's notebook (it reads only while it cancels, so it connects just for that); one
        # more followed session gets it a fresh snapshot: a resync
        notebook = Stream(agent)
        notebook.subscribe([keys["bob_smith"]])
        notebook.subscribe([keys["bob_smith"], keys["alice"]])
        cancel_ok = notebook.cancel(keys["bob_smith"], tag=KILL_TAG)
        stranger = {"sessionId": str(uuid.uuid4()), "userId": "mallory"}
        cancel_forbidden = notebook.cancel(stranger, tag="anything")
        notebook.close()
        for t in threads:
            t.join(timeout=300)
            assert not t.is_alive(), f"{t.name} still running after 300 s"
        timings["queries"] = time.monotonic() - t0

        def slow_dropped() -> bool:
            text = requests.get(f"{agent.url}/metrics", timeout=10).text
            v = exposition_value(
                text, "sparkscope_subscribers_dropped_total", {"transport": "websocket"}
            )
            return bool(v and v >= 1)

        harness.wait_until(slow_dropped, 60, 0.5, "the agent to drop the slow subscriber")
        timings["slow subscriber dropped"] = time.monotonic() - t0
        last_event = time.time()
    finally:
        if slow is not None:
            slow.stop()
        if notebook is not None:
            notebook.close()
        # a Connect client left open retries RPCs against the stopped server at exit
        for s in sessions.values():
            s.stop()
    jobs, stages, ops = _settled(server)
    # every counter has been scraped a few times by then, so rates over RATE_INTERVAL at
    # eval_at see two points of each, including those that appeared last
    eval_at = last_event + 4 * SCRAPE_INTERVAL_S

    def scraped_after(t: float) -> bool:
        samples = prometheus.query(f'timestamp(up{{job="{JOB}"}})')
        return bool(samples) and float(samples[0]["value"][1]) > t

    harness.wait_until(lambda: scraped_after(eval_at), 30, 0.5, "a scrape after the workload")
    # and one scrape more that carries the final, settled counters
    settled_at = time.time()
    harness.wait_until(lambda: scraped_after(settled_at), 30, 0.5, "a scrape of the settled state")
    scrape_end = requests.get(f"{agent.url}/metrics", timeout=10).text
    timings["settled"] = time.monotonic() - t0
    w = Workload(
        app_id=server.app_id,
        session_ids={u: k["sessionId"] for u, k in keys.items()},
        queries=qs,
        scrape_during=scrape_during,
        scrape_end=scrape_end,
        cancel_ok=cancel_ok,
        cancel_forbidden=cancel_forbidden,
        eval_at=eval_at,
        spark_jobs=jobs,
        spark_stages=stages,
        spark_operations=ops,
        timings=timings,
    )
    (artifacts_dir / "metrics-during.txt").write_text(scrape_during)
    (artifacts_dir / "metrics-end.txt").write_text(scrape_end)
    print(f"workload timings (s): {json.dumps({k: round(v, 1) for k, v in timings.items()})}")
    return w


# ---------------------------------------------------------------------------------------------
# live checks


def test_workload_did_what_the_checks_rely_on(workload: Workload) -> None:
    problems = [
        f"query {q.label}: outcome {q.outcome}, expected {'error' if q.expect_error else 'ok'}: "
        f"{q.error}"
        for q in workload.queries
        if q.outcome != ("error" if q.expect_error else "ok")
    ]
    if not workload.cancel_ok.get("ok"):
        problems.append(f"cancelling {KILL_TAG} through the stream: {workload.cancel_ok}")
    if workload.cancel_forbidden.get("code") != "forbidden":
        problems.append(f"cancelling a stranger's session: {workload.cancel_forbidden}")
    statuses = [j["status"] for j in workload.spark_jobs]
    if "FAILED" not in statuses or statuses.count("SUCCEEDED") < 4:
        problems.append(f"Spark's job statuses: {statuses}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("when", ["during", "end"])
def test_promtool_accepts_the_exposition(workload: Workload, when: str, require_piece) -> None:
    promtool = require_piece(harness.promtool_binary(), "promtool", "apt-get install prometheus")
    text = workload.scrape_during if when == "during" else workload.scrape_end
    proc = subprocess.run(
        [str(promtool), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, (
        f"promtool check metrics on the scrape taken {when} the workload exited with "
        f"{proc.returncode}:\n{proc.stdout}{proc.stderr}"
    )


def _variable_values(workload: Workload) -> dict[str, str]:
    return {"application": workload.app_id, "user": "alice", "job": JOB}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_query_returns_series(
    path: Path, workload: Workload, prometheus: harness.Prometheus
) -> None:
    values = _variable_values(workload)
    problems: list[str] = []
    checked = 0
    for title, ref, expr in queries(load(path)):
        promql = substitute(expr, values)
        where = f"{path.name} panel {title!r} query {ref}: {promql}"
        if "$" in promql:
            problems.append(f"{where}: a variable the test does not fill in")
            continue
        try:
            result = prometheus.query(promql, at=workload.eval_at)
        except harness.PromQLError as exc:
            problems.append(f"{where}: Prometheus error {exc}")
            continue
        checked += 1
        if not result:
            problems.append(f"{where}: no series")
    assert checked, f"{path.name}: no query checked"
    assert not problems, f"{len(problems)} of the queries failed:\n" + "\n".join(problems)


def test_variables_list_the_workload(workload: Workload, prometheus: harness.Prometheus) -> None:
    """label_values() variables, asked the way Grafana asks (series over the time range)."""
    values = _variable_values(workload)
    start = workload.eval_at - 600
    want = {"application": {workload.app_id}, "user": set(wl.USERS), "job": {JOB}}
    problems: list[str] = []
    for path in DASHBOARDS:
        for name, var in variables(load(path)).items():
            if var.get("type") != "query":
                continue
            q = substitute(variable_query(var), {**values, "application": ".*"})
            m = re.fullmatch(r"label_values\((.+), (\w+)\)", q)
            if not m:
                problems.append(f"{path.name} variable {name}: not label_values(): {q}")
                continue
            got = set(prometheus.label_values(m.group(2), m.group(1), start, workload.eval_at))
            if not want.get(name, set()) <= got:
                problems.append(f"{path.name} variable {name}: {q} lists {sorted(got)}")
    assert not problems, "\n".join(problems)


def _counter(prometheus: harness.Prometheus, expr: str) -> dict[str, float]:
    """`sum by (x) (...)` as {x value: number}; a plain sum as {"": number}."""
    out: dict[str, float] = {}
    for s in prometheus.query(expr):
        key = next(iter(s["metric"].values()), "")
        out[key] = float(s["value"][1])
    return out


def test_scraped_counters_equal_spark_rest(
    workload: Workload, prometheus: harness.Prometheus
) -> None:
    """What Prometheus holds for the application once it settled, against Spark's REST API."""
    app = f'application="{workload.app_id}"'
    jobs, stages, ops = workload.spark_jobs, workload.spark_stages, workload.spark_operations

    def count(items: list[dict], key: str, value: str) -> float:
        return float(sum(1 for i in items if i[key] == value))

    def total(items: list[dict], key: str) -> float:
        return float(sum(i[key] for i in items))

    ops_by_user = {u: float(sum(1 for o in ops if o["userId"] == u)) for u in wl.USERS}
    checks: list[tuple[str, str, dict[str, float]]] = [
        ("jobs started", f"sum(sparkscope_jobs_started_total{{{app}}})", {"": len(jobs)}),
        (
            "jobs finished",
            f"sum by (result) (sparkscope_jobs_finished_total{{{app}}})",
            {
                "succeeded": count(jobs, "status", "SUCCEEDED"),
                "failed": count(jobs, "status", "FAILED"),
            },
        ),
        (
            "stage attempts finished",
            f"sum by (result) (sparkscope_stages_finished_total{{{app}}})",
            {
                "complete": count(stages, "status", "COMPLETE"),
                "failed": count(stages, "status", "FAILED"),
                "skipped": count(stages, "status", "SKIPPED"),
            },
        ),
        (
            "tasks finished",
            f"sum by (result) (sparkscope_tasks_finished_total{{{app}}})",
            {
                "succeeded": total(stages, "numCompleteTasks"),
                "failed": total(stages, "numFailedTasks"),
                "killed": total(stages, "numKilledTasks"),
            },
        ),
        (
            "tasks started",
            f"sum(sparkscope_tasks_started_total{{{app}}})",
            {
                "": total(stages, "numCompleteTasks")
                + total(stages, "numFailedTasks")
                + total(stages, "numKilledTasks")
            },
        ),
        (
            "closed operations per user",
            f"sum by (user) (sparkscope_connect_operation_duration_seconds_count{{{app}}})",
            ops_by_user,
        ),
        (
            "operations closed (all states)",
            f"sum(sparkscope_connect_operations_total{{{app}}})",
            {"": float(len(ops))},
        ),
    ]
    for name in (
        "sparkscope_jobs_running",
        "sparkscope_stages_active",
        "sparkscope_busy_task_slots",
        "sparkscope_connect_operations_running",
        "sparkscope_connect_sessions_active",
    ):
        checks.append((f"{name} after the workload", f"sum({name}{{{app}}})", {"": 0.0}))
    problems = []
    for what, expr, want in checks:
        have = _counter(prometheus, expr)
        if have != want:
            problems.append(f"{what}: Spark REST {want}, Prometheus {have} ({expr})")
    states = _counter(prometheus, f"sum by (state) (sparkscope_connect_operations_total{{{app}}})")
    # a-task-failure and a-missing-table failed; b-killme was cancelled. Spark's
    # ExecuteEventsManager lets OperationCanceled follow OperationFailed (an interrupt that
    # reaches a failed operation; it happened in a test run): the agent counts it cancelled, as its
    # user saw it last.
    failed, canceled = states.get("failed", 0), states.get("canceled", 0)
    if failed + canceled < 3 or canceled < 1:
        problems.append(f"operations closed by state: {states}")
    cancels = _counter(
        prometheus, 'sum by (outcome) (sparkscope_cancel_requests_total{target="tag"})'
    )
    # Every outcome's series exists from the start, at 0; only these two may have counted.
    if {k: v for k, v in cancels.items() if v} != {"ok": 1.0, "forbidden": 1.0}:
        problems.append(f"tag cancel requests by outcome: {cancels}, want one ok, one forbidden")
    dropped = _counter(prometheus, "sum by (transport) (sparkscope_subscribers_dropped_total)")
    if dropped != {"websocket": 1.0, "grpc": 0.0}:
        problems.append(f"slow subscribers dropped: {dropped}, want the one that never read")
    subscribers = _counter(prometheus, "sum by (transport) (sparkscope_subscribers)")
    if any(subscribers.values()):
        problems.append(f"subscribers after every stream closed: {subscribers}")
    assert not problems, "\n".join(problems)


def test_core_time_per_user_equals_sparks_executor_run_time(
    workload: Workload, prometheus: harness.Prometheus
) -> None:
    """Chargeback: the task time Prometheus holds per user, against the run time of the stages
    of that user's jobs in Spark's REST API (a stage counts for the first of its jobs that has
    a user; one of no user's job is `unattributed`), within 5%."""
    app = f'application="{workload.app_id}"'
    users_of_stage: dict[int, str] = {}
    for job in sorted(workload.spark_jobs, key=lambda j: j["jobId"]):
        user = next(
            (
                t.split("_User_", 1)[1].split("_Session_", 1)[0]
                for t in job.get("jobTags", [])
                if t.startswith("SparkConnect_OperationTag_User_")
            ),
            None,
        )
        for sid in job["stageIds"]:
            if users_of_stage.get(sid, "unattributed") == "unattributed":
                users_of_stage[sid] = user or "unattributed"
    spark: dict[str, float] = {}
    for st in workload.spark_stages:
        user = users_of_stage.get(st["stageId"], "unattributed")
        spark[user] = spark.get(user, 0.0) + float(st["executorRunTime"])
    seconds = _counter(prometheus, f"sum by (user) (sparkscope_task_core_seconds_total{{{app}}})")
    ours = {u: v * 1000 for u, v in seconds.items()}
    problems = []
    for user in sorted(set(spark) | set(ours)):
        want, have = spark.get(user, 0.0), ours.get(user, 0.0)
        if abs(have - want) > 0.05 * max(want, 1.0) + 1:
            problems.append(f"{user}: Spark's stages ran {want:.0f} ms, Prometheus {have:.0f} ms")
    total_spark, total_ours = sum(spark.values()), sum(ours.values())
    print(
        "task core time per user (ms), Prometheus vs Spark's stages: "
        + ", ".join(f"{u} {ours.get(u, 0):.0f}/{spark.get(u, 0):.0f}" for u in sorted(spark))
        + f"; total {total_ours:.0f}/{total_spark:.0f}"
    )
    assert total_spark > 0 and set(wl.USERS) <= set(ours), (spark, ours)
    assert not problems, "\n".join(problems)


def _event_kinds() -> list[str]:
    """The kinds the agent counts lines by, read from the one place they are written."""
    source = (harness.util.REPO_ROOT / "agent/src/model/event.rs").read_text()
    body = re.search(r"pub const KINDS: \[&str; (\d+)\] = \[(.*?)\];", source, re.DOTALL)
    assert body, "KINDS not found in agent/src/model/event.rs"
    kinds = re.findall(r'"([a-z_]+)"', body.group(2))
    assert len(kinds) == int(body.group(1)), kinds
    return kinds


EVENT_KINDS = _event_kinds()


# Series per label set, from docs/metrics.md: per application, the gauges and plain counters
# have one series, the by-result and by-state counters one per value, the lines counter one per
# event kind (every kind the agent knows, from the start, so a kind's first line shows in
# increase()); per (application, user) two gauges (sessions open, operations running) and the
# duration histogram, one series per bucket (13 bounds and +Inf) plus _sum and _count.
PER_APPLICATION_FIXED = {
    "sparkscope_executors": 1,
    "sparkscope_executor_cores": 1,
    "sparkscope_busy_task_slots": 1,
    "sparkscope_jobs_running": 1,
    "sparkscope_stages_active": 1,
    "sparkscope_jobs_started_total": 1,
    "sparkscope_jobs_finished_total": 2,
    "sparkscope_stages_submitted_total": 1,
    "sparkscope_stages_finished_total": 3,
    "sparkscope_tasks_started_total": 1,
    "sparkscope_tasks_finished_total": 3,
    "sparkscope_connect_operations_total": 3,
    "sparkscope_ingest_lines_total": len(EVENT_KINDS),
    "sparkscope_ingest_malformed_lines_total": 1,
    "sparkscope_ingest_unknown_events_total": 1,
    "sparkscope_listener_dropped_lines_total": 1,
    "sparkscope_spark_bus_dropped_events_total": 1,
    "sparkscope_listener_evictions_total": 1,
    "sparkscope_listener_resyncs_total": 1,
    "sparkscope_listener_connection_failures_total": 1,
    "sparkscope_reconciliations_total": 2,
    "sparkscope_reconcile_corrections_total": 3,
}
DURATION_SERIES_PER_USER = 13 + 1 + 2
PER_APPLICATION_AND_USER = (
    "sparkscope_connect_sessions_active",
    "sparkscope_connect_operations_running",
)


def test_series_count_follows_the_label_sets(
    workload: Workload, prometheus: harness.Prometheus, artifacts_dir: Path
) -> None:
    families = {
        s["metric"]["__name__"]: int(float(s["value"][1]))
        for s in prometheus.query('count by (__name__) ({__name__=~"sparkscope_.+"})')
    }
    total = int(float(prometheus.query('count({__name__=~"sparkscope_.+"})')[0]["value"][1]))
    apps = len(prometheus.label_values("application", "sparkscope_executors"))
    users = len(
        prometheus.label_values("user", "sparkscope_connect_operation_duration_seconds_count")
    )
    kinds = prometheus.label_values("kind", "sparkscope_ingest_lines_total")
    per_app = sum(PER_APPLICATION_FIXED.values())
    duration = sum(
        n for name, n in families.items() if name.startswith("sparkscope_connect_operation_dur")
    )
    record = {
        "series": total,
        "applications": apps,
        "users": users,
        "event kinds": len(kinds),
        "per application (fixed)": per_app,
        "per application and user": DURATION_SERIES_PER_USER + len(PER_APPLICATION_AND_USER),
        "by family": families,
    }
    (artifacts_dir / "series-count.json").write_text(json.dumps(record, indent=1))
    print(f"sparkscope series at the end of the workload: {json.dumps(record)}")
    problems = [
        f"{name}: {families.get(name)} series, want {n} x {apps} application(s)"
        for name, n in PER_APPLICATION_FIXED.items()
        if families.get(name) != n * apps
    ]
    if duration != DURATION_SERIES_PER_USER * apps * users:
        problems.append(
            f"operation duration histogram: {duration} series, want "
            f"{DURATION_SERIES_PER_USER} x {apps} application(s) x {users} user(s)"
        )
    if sorted(kinds) != sorted(EVENT_KINDS):
        problems.append(
            f"kind label values {sorted(kinds)}, want the agent's {sorted(EVENT_KINDS)}"
        )
    if users != len(wl.USERS):
        problems.append(f"{users} user label values, want {len(wl.USERS)}")
    for name in PER_APPLICATION_AND_USER:
        gauge_users = len(prometheus.label_values("user", name))
        if families.get(name) != apps * gauge_users or gauge_users < len(wl.USERS):
            problems.append(
                f"{name}: {families.get(name)} series for {gauge_users} user(s), want one per "
                f"application and user, at least {len(wl.USERS)} users"
            )
    assert not problems, "\n".join(problems) + f"\n{record}"
