"""Security, each test a refusal that must happen, against a real Spark Connect server and the
real listener: what leaves the driver (no session confs, no plans, no token), and an impostor on
the agent's port, which learns no token and can cancel nothing.

The agents here are stand-ins written for the test, on purpose: one records every line the
listener sends (the real agent would parse them away), the other is the impostor.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import socket
import threading
import time
from pathlib import Path

import harness
import pytest

SECRET_CONF = ("spark.sparkscope.test.password", "hunter2-s3cret-value")
# A streaming query's name travels in Spark's streaming events, which are not the agent's.
SECRET_QUERY = "password_hunter2_s3cret_stream"
# What a third party's event carries.
THIRD_PARTY_SECRET = "third-party-token-" + secrets.token_hex(8)
SLEEPY = "reflect('java.lang.Thread', 'sleep', cast({ms} as bigint))"


def proof(token: str, *parts: str) -> str:
    """The handshake's HMAC-SHA256 (docs/wire-protocol.md, protocol 3): every part ends with a
    newline. Written here from the document, apart from both real sides, on purpose."""
    data = b"".join(p.encode() + b"\n" for p in parts)
    return hmac.new(token.encode(), data, hashlib.sha256).hexdigest()


class StandInAgent:
    """The agent's side of the listener protocol on a fixed loopback port: with `token` it
    proves itself and records every line; without it, it is an impostor that makes up a proof,
    then sends a cancel command anyway."""

    def __init__(self, port: int, token: str | None) -> None:
        self.token = token
        self.lines: list[str] = []
        self.hellos: list[dict] = []
        self.after_refusal: list[str] = []
        # the impostor's target: a running job it tries to cancel
        self.cancel_job_id: int | None = None
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind((harness.LOOPBACK, port))
        self.srv.listen(8)
        self.stopped = False
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as f:
            hello_line = f.readline()
            if not hello_line:
                return
            hello = json.loads(hello_line)
            self.hellos.append(hello)
            mine = secrets.token_hex(16)
            if self.token is None:
                challenge = {"ok": True, "agent": "impostor", "nonce": mine, "proof": "0" * 64}
                f.write((json.dumps(challenge) + "\n").encode())
                if self.cancel_job_id is not None:
                    cmd = {"cmd": "cancelJob", "id": "c1", "jobId": self.cancel_job_id}
                    f.write((json.dumps(cmd) + "\n").encode())
                f.flush()
                try:
                    self.after_refusal.extend(line.decode() for line in f)
                except ConnectionResetError:
                    pass  # the listener closed with our command unread: a close too
                return
            app, run, nonce = hello["appId"], hello["runId"], hello["nonce"]
            challenge = {
                "ok": True,
                "agent": "recorder",
                "nonce": mine,
                "proof": proof(self.token, "sparkscope-agent-3", mine, nonce, app, run),
            }
            f.write((json.dumps(challenge) + "\n").encode())
            f.flush()
            theirs = json.loads(f.readline())
            want = proof(self.token, "sparkscope-listener-3", mine, nonce, app, run)
            if not hmac.compare_digest(theirs.get("proof", ""), want):
                return
            f.write(b'{"ok":true,"welcome":true}\n')
            f.flush()
            for line in f:
                self.lines.append(line.decode())

    def stop(self) -> None:
        """Closes the port and every connection, as an agent that goes away does."""
        self.stopped = True
        for sock in [self.srv, *self.conns]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("security")


@pytest.fixture(scope="module")
def token() -> str:
    return secrets.token_hex(16)


@pytest.fixture(scope="module")
def agent_port() -> int:
    return harness.free_port()


@pytest.fixture(scope="module")
def recorder(agent_port: int, token: str):
    agent = StandInAgent(agent_port, token)
    yield agent
    agent.stop()


@pytest.fixture(scope="module")
def server(work: Path, recorder: StandInAgent, agent_port: int, token: str, require_piece):
    """The listener beside a third party's (listeners/ThirdPartyEvents.java), which posts an event
    of its own carrying THIRD_PARTY_SECRET; Spark's event log, kept uncompressed, shows it was
    posted."""
    jar = require_piece(harness.listener_jar(), "listener jar", "listener-jar/build.sh")
    third_party = harness.compile_listener(
        Path(__file__).parent / "listeners" / "ThirdPartyEvents.java", work
    )
    with harness.SparkConnectServer(
        work / "server",
        listener_jar=jar,
        agent_addr=f"{harness.LOOPBACK}:{agent_port}",
        token=token,
        event_log_dir=work / "events",
        event_log_compress=False,
        conf={
            "spark.driver.extraClassPath": str(third_party),
            "spark.extraListeners": f"{harness.LISTENER_CLASS},sparkscope.test.ThirdPartyEvents",
            "spark.sparkscope.test.thirdPartySecret": THIRD_PARTY_SECRET,
        },
    ) as s:
        yield s


def found(value: object, secret: str, path: str = "") -> list[str]:
    """Where in a decoded JSON value `secret` occurs, as paths (`Properties.spark.job.description`)."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in found(v, secret, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [p for v in value for p in found(v, secret, f"{path}[]")]
    return [path] if isinstance(value, str) and secret in value else []


# Where a streaming query's name may travel: in what the user wrote (the Connect plan's text,
# redacted by Spark's own rules), in the descriptions Spark gives the query's batch jobs, and in
# the error Spark gives a batch job that stopping the query cancels (it quotes that description;
# seen when the stop lands mid-batch, on a loaded machine).
USERS_OWN_TEXT = {
    "statementText",
    "description",
    "Properties.spark.job.description",
    "Stage Info.Details",
    "Stage Infos[].Details",
    "Job Result.Exception.Message",
    "Stage Info.Failure Reason",
}


def test_only_what_is_needed_leaves_the_driver(server, recorder, token) -> None:
    spark = harness.connect_session(server.remote_url(user_id="alice"))
    try:
        spark.conf.set(*SECRET_CONF)
        spark.sql("SELECT 1 AS x").collect()
        df = spark.range(0, 1000, numPartitions=4).selectExpr("id % 7 AS k")
        df.groupBy("k").count().collect()
        stream = (
            spark.readStream.format("rate")
            .option("rowsPerSecond", 10)
            .load()
            .writeStream.format("noop")
            .queryName(SECRET_QUERY)
            .start()
        )
        harness.wait_until(
            lambda: stream.lastProgress is not None, 60, 0.2, "the streaming query's progress"
        )
        stream.stop()
    finally:
        spark.stop()
    harness.wait_until(
        lambda: any("SparkListenerSQLExecutionEnd" in line for line in recorder.lines),
        30,
        0.2,
        "the SQL executions to reach the recorder",
    )
    time.sleep(1)
    text = "".join(recorder.lines)
    assert SECRET_CONF[1] not in text, "a session conf left the driver"
    events = {json.loads(line)["Event"] for line in recorder.lines}
    assert not any("Streaming" in e or "QueryProgress" in e for e in events), events
    # the streaming query's name only where the user's own text goes, never in Spark's
    # streaming events (QueryStartedEvent, QueryProgressEvent, QueryTerminatedEvent)
    places = {p for line in recorder.lines for p in found(json.loads(line), SECRET_QUERY)}
    # a plan node's one-line description is Spark's account of the user's query
    plan_text = {p for p in places if p.startswith("sparkPlanInfo") and p.endswith("simpleString")}
    assert places - plan_text <= USERS_OWN_TEXT, places
    # the third party's event was posted (Spark's event log has it) and did not leave
    logs = [p for p in server.event_log_dir.rglob("*") if p.is_file()]  # rolling: a directory
    logged = "".join(p.read_text(errors="replace") for p in logs)
    assert f'"secret":"{THIRD_PARTY_SECRET}"' in logged and "SecretEvent" in logged
    assert THIRD_PARTY_SECRET not in text, "a third party's event left the driver"
    assert not any("ThirdParty" in e for e in events), events
    assert token not in text and all(token not in json.dumps(h) for h in recorder.hellos)
    for field in ("modifiedConfigs", "physicalPlanDescription", "metadata", "extraTags"):
        assert f'"{field}"' not in text, f"{field} left the driver"
    starts = [json.loads(line) for line in recorder.lines if "SQLExecutionStart" in line]
    assert starts and all(
        set(s)
        <= {
            "Event",
            "executionId",
            "rootExecutionId",
            "description",
            "time",
            "jobTags",
            "jobGroupId",
            "queryId",
            "sparkPlanInfo",
        }
        for s in starts
    )
    # plans: the tree, names, one-line descriptions cut short, metric ids; nothing else
    todo = [s["sparkPlanInfo"] for s in starts if "sparkPlanInfo" in s]
    assert todo, "the plans the Plan view shows still leave"
    while todo:
        node = todo.pop()
        assert set(node) <= {"nodeName", "simpleString", "children", "metrics"}, node.keys()
        assert len(node.get("simpleString", "")) <= 301, node["simpleString"]
        assert all(set(m) <= {"name", "accumulatorId", "metricType"} for m in node["metrics"])
        todo.extend(node.get("children", []))
    assert any(s.get("jobTags") for s in starts), "what the agent needs still leaves"
    for line in recorder.lines:
        event = json.loads(line)
        for value in event.values():
            assert not (isinstance(value, str) and len(value) > 4097), (event["Event"], len(value))
    props = [json.loads(line)["Properties"] for line in recorder.lines if "JobStart" in line]
    allowed = {
        "spark.job.tags",
        "spark.job.description",
        "callSite.short",
        "spark.sql.execution.id",
        "spark.sql.execution.root.id",
        "spark.jobGroup.id",
        "spark.scheduler.pool",
    }
    assert props and all(set(p) <= allowed for p in props)


def test_an_impostor_on_the_agents_port_learns_no_token_and_cancels_nothing(
    server, recorder, agent_port, token
) -> None:
    recorder.stop()
    # The listener notices the recorder is gone when it next writes; the impostor takes the port.
    impostor = StandInAgent(agent_port, None)
    spark = harness.connect_session(server.remote_url(user_id="alice"))
    done = threading.Event()

    def sleepy() -> None:
        spark.range(0, 2, numPartitions=2).selectExpr(SLEEPY.format(ms=6000)).collect()
        done.set()

    try:
        query = threading.Thread(target=sleepy, daemon=True)
        query.start()
        running = harness.wait_until(
            lambda: server.jobs("running"), 60, 0.2, "the sleepy job to run"
        )
        impostor.cancel_job_id = running[0]["jobId"]
        seen = len(impostor.hellos)
        # The listener keeps trying (every second at most); each time the impostor commands.
        harness.wait_until(
            lambda: len(impostor.hellos) >= seen + 2, 15, 0.2, "the listener to try the impostor"
        )
        query.join(60)
        assert done.is_set(), "the query did not end"
        assert server.rest(f"jobs/{impostor.cancel_job_id}")["status"] == "SUCCEEDED"
        assert impostor.hellos and all(token not in json.dumps(h) for h in impostor.hellos)
        assert all("token" not in h for h in impostor.hellos)
        assert impostor.after_refusal == [], "the listener said something to an impostor"
        log = (server.work_dir / "spark-connect-server.log").read_text(errors="replace")
        assert "could not prove it knows the token" in log
    finally:
        spark.stop()
        impostor.stop()
