"""Cancel, end to end against a real Spark Connect server, the listener and the agent, through
the agent's WebSocket (what the notebook widget uses) and its operator endpoint:

- a cell run (client tag) is interrupted through Spark Connect's Interrupt: its job stops, the
  client sees pyspark's cancellation error, and another session's job keeps running;
- one of two jobs running at once in one cell is cancelled through the listener; the other
  completes;
- a subscriber of one session cannot cancel another session's work, and a wrong token is refused;
- `sparkscope cancel` (operators, admin token) stops a tagged operation.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import harness
import pytest
import websocket
from pyspark.errors import PySparkException

SLEEPY = "reflect('java.lang.Thread', 'sleep', cast({ms} as bigint))"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cancel")


@pytest.fixture(scope="module")
def admin_token() -> str:
    return secrets.token_hex(16)


@pytest.fixture(scope="module")
def agent(work: Path, admin_token: str, require_piece):
    binary = require_piece(harness.agent_binary(), "sparkscope binary", "cargo build")
    token = secrets.token_hex(16)
    with harness.Agent(binary, work / "agent", token=token, admin_token=admin_token) as a:
        yield a


@pytest.fixture(scope="module")
def server(work: Path, agent: harness.Agent, reporting_to):
    with reporting_to(work / "server", agent) as s:
        yield s


class Session:
    """A Connect session of one user, with the ids the agent knows it by."""

    def __init__(self, server: harness.SparkConnectServer, user: str) -> None:
        self.user = user
        self.spark = harness.connect_session(server.remote_url(user_id=user))
        self.session_id = self.spark.client._session_id

    def key(self) -> dict:
        return {"sessionId": self.session_id, "userId": self.user}


@pytest.fixture(scope="module")
def alice(server):
    s = Session(server, "alice")
    yield s
    s.spark.stop()


@pytest.fixture(scope="module")
def bob(server):
    s = Session(server, "bob_smith")
    yield s
    s.spark.stop()


class Stream:
    """The agent's WebSocket, as a notebook holds it."""

    def __init__(self, agent: harness.Agent, token: str | None = None) -> None:
        self.ws = websocket.create_connection(
            agent.stream_url,
            suppress_origin=True,  # as the kernel: no web page's origin
            header=[f"Authorization: Bearer {token or agent.subscriber_token}"],
            timeout=15,
        )

    def subscribe(self, session: Session) -> None:
        self.ws.send(json.dumps({"subscribe": {"sessions": [session.key()]}}))

    def cancel(self, session: Session, **target) -> dict:
        rid = uuid.uuid4().hex
        self.ws.send(json.dumps({"cancel": {"requestId": rid, **session.key(), **target}}))
        while True:
            msg = json.loads(self.ws.recv())
            if "cancelResult" in msg and msg["cancelResult"].get("requestId") == rid:
                return msg["cancelResult"]

    def close(self) -> None:
        self.ws.close()


class Query(threading.Thread):
    """Runs `fn(spark)` on its own thread with `tag` added there (tags are per thread)."""

    def __init__(self, session: Session, tag: str | None, fn: Callable) -> None:
        super().__init__(daemon=True)
        self.session, self.tag, self.fn = session, tag, fn
        self.error: BaseException | None = None
        self.done = False

    def run(self) -> None:
        spark = self.session.spark
        if self.tag:
            spark.addTag(self.tag)
        try:
            self.fn(spark)
            self.done = True
        except PySparkException as e:
            self.error = e
        finally:
            if self.tag:
                spark.removeTag(self.tag)


def sleepy(ms: int, tasks: int = 2) -> Callable:
    return lambda spark: (
        spark.range(0, tasks, numPartitions=tasks).selectExpr(SLEEPY.format(ms=ms)).collect()
    )


def running_jobs_of(agent: harness.Agent, app_id: str, session: Session, tag: str) -> list[dict]:
    """The session's jobs with this tag whose tasks are running, as the agent reports them."""
    return [
        j
        for j in agent.jobs(app_id)
        if j["status"] == "RUNNING"
        and j["numActiveTasks"] > 0
        and (j.get("connect") or {}).get("sessionId") == session.session_id
        and tag in (j.get("connect") or {}).get("tags", [])
    ]


def wait_running(agent, server, session, tag, n=1, timeout=60) -> list[dict]:
    return harness.wait_until(
        lambda: (
            (jobs := running_jobs_of(agent, server.app_id, session, tag))
            and len(jobs) >= n
            and jobs
        ),
        timeout,
        0.2,
        f"{n} running job(s) tagged {tag}",
    )


def spark_status(server, job_id: int) -> str:
    return server.rest(f"jobs/{job_id}")["status"]


def test_cancel_a_cell_run_stops_its_jobs_and_only_them(agent, server, alice, bob) -> None:
    tag_a, tag_b = f"cell-{uuid.uuid4().hex[:8]}", f"cell-{uuid.uuid4().hex[:8]}"
    victim = Query(alice, tag_a, sleepy(60_000))
    bystander = Query(bob, tag_b, sleepy(4_000, tasks=1))
    victim.start()
    (job,) = wait_running(agent, server, alice, tag_a)
    bystander.start()
    stream = Stream(agent)
    try:
        stream.subscribe(alice)
        result = stream.cancel(alice, tag=tag_a)
    finally:
        stream.close()
    assert result.get("ok"), result
    assert result.get("interruptedOperationIds"), result
    harness.wait_until(
        lambda: spark_status(server, job["jobId"]) != "RUNNING", 15, 0.1, "job to stop"
    )
    victim.join(30)
    assert not victim.done and victim.error is not None, "the cell's query must end with an error"
    assert "CANCEL" in str(victim.error).upper(), victim.error
    # Killed tasks end a moment after the job does.
    spark_job = harness.wait_until(
        lambda: (j := server.rest(f"jobs/{job['jobId']}"))["numActiveTasks"] == 0 and j,
        15,
        0.1,
        "the job's tasks to end",
    )
    counts = json.dumps({k: v for k, v in spark_job.items() if k.startswith("num")})
    assert spark_job["status"] == "FAILED" and spark_job["numKilledTasks"] >= 1, counts
    bystander.join(60)
    assert bystander.done, f"bob's query must be unaffected: {bystander.error}"
    # The agent reports the cancelled operation as such.
    ops = harness.wait_until(
        lambda: [
            o
            for o in server.connect_operations()
            if tag_a in o.get("sparkSessionTags", []) and o["state"] in ("CANCELED", "CLOSED")
        ],
        15,
        0.2,
        "Spark to record the cancelled operation",
    )
    assert ops


def test_cancel_one_of_two_jobs_in_a_cell(agent, server, alice) -> None:
    tag = f"cell-{uuid.uuid4().hex[:8]}"
    # One task each, so both run at once on the server's two cores.
    slow = Query(alice, tag, sleepy(60_000, tasks=1))
    slow.start()
    (slow_job,) = wait_running(agent, server, alice, tag)
    quick = Query(alice, tag, sleepy(3_000, tasks=1))
    quick.start()
    jobs = wait_running(agent, server, alice, tag, n=2)
    assert slow_job["jobId"] in {j["jobId"] for j in jobs}
    stream = Stream(agent)
    try:
        stream.subscribe(alice)
        result = stream.cancel(alice, jobId=slow_job["jobId"], reason="test: one job")
    finally:
        stream.close()
    assert result.get("ok") and result.get("cancelledJobIds") == [slow_job["jobId"]], result
    harness.wait_until(
        lambda: spark_status(server, slow_job["jobId"]) == "FAILED", 15, 0.1, "the job to fail"
    )
    quick.join(60)
    assert quick.done, f"the other job of the cell must complete: {quick.error}"
    slow.join(30)
    assert slow.error is not None


def test_no_cancel_across_sessions_and_no_wrong_token(agent, server, alice, bob) -> None:
    tag = f"cell-{uuid.uuid4().hex[:8]}"
    bobs = Query(bob, tag, sleepy(3_000, tasks=1))
    bobs.start()
    (job,) = wait_running(agent, server, bob, tag)
    stream = Stream(agent)
    try:
        stream.subscribe(alice)  # alice's notebook
        for target in ({"tag": tag}, {"jobId": job["jobId"]}):
            result = stream.cancel(bob, **target)
            assert not result.get("ok") and result.get("code") == "forbidden", result
        # Claiming bob's session under alice's name does not work either.
        forged = {"sessionId": bob.session_id, "userId": "alice"}
        stream.ws.send(json.dumps({"subscribe": {"sessions": [forged]}}))
        rid = "forged"
        stream.ws.send(json.dumps({"cancel": {"requestId": rid, **forged, "tag": tag}}))
        while True:
            msg = json.loads(stream.ws.recv())
            if msg.get("cancelResult", {}).get("requestId") == rid:
                break
        assert msg["cancelResult"].get("code") == "not_found", msg
    finally:
        stream.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        Stream(agent, token="wrong")
    assert refused.value.status_code == 401
    bobs.join(60)
    assert bobs.done, f"bob's query must be unaffected: {bobs.error}"
    assert spark_status(server, job["jobId"]) == "SUCCEEDED"


def test_operator_cancel_from_the_command_line(agent, server, alice, admin_token) -> None:
    tag = f"cell-{uuid.uuid4().hex[:8]}"
    q = Query(alice, tag, sleepy(60_000))
    q.start()
    (job,) = wait_running(agent, server, alice, tag)
    cmd = [str(agent.binary), "cancel", "--agent", agent.url, "--session", alice.session_id]

    def env(token: str) -> dict[str, str]:
        # the admin token comes from the environment, never the command line
        return {**os.environ, "SPARKSCOPE_ADMIN_TOKEN": token}

    refused = subprocess.run(
        [*cmd, "--tag", tag], capture_output=True, text=True, check=False, env=env("nope")
    )
    assert refused.returncode != 0 and "admin token" in refused.stderr, refused.stderr
    t0 = time.monotonic()
    ok = subprocess.run(
        [*cmd, "--tag", tag], capture_output=True, text=True, check=False, env=env(admin_token)
    )
    assert ok.returncode == 0, ok.stderr
    assert "interrupted" in ok.stdout, ok.stdout
    harness.wait_until(lambda: spark_status(server, job["jobId"]) != "RUNNING", 15, 0.1, "stop")
    q.join(30)
    assert q.error is not None
    again = subprocess.run(
        [*cmd, "--tag", tag], capture_output=True, text=True, check=False, env=env(admin_token)
    )
    assert again.returncode != 0 and "finished" in again.stderr, (again.stdout, again.stderr)
    assert time.monotonic() - t0 < 60
