"""Trust at the seams, each test a refusal that must happen, against the real agent, a real Spark
Connect server with the real listener, and the kernel extension's own client:

- a program on the stream's port that cannot prove it knows a notebook's token learns nothing
  from the notebook's kernel;
- whoever holds the listener token and announces another application's Connect session never
  receives that session's interrupts, and the session's own cancel stops its own job;
- an impostor with a real application's id, while that application's listener reconnects, is
  refused, and the real driver gets back in;
- a user removed from the token file loses the stream it has open within a second, and what it
  asks to cancel is refused;
- a driver's UI address that is no http or https address never becomes a link.

The impostors are written here, from docs/wire-protocol.md and docs/streaming-api.md, apart from
the real parts on purpose: they are the people the real parts must refuse.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import socket
import threading
import time
import uuid
from pathlib import Path

import harness
import nbformat
import pytest
from harness import nbrun
from harness.fake_agent import FakeAgent

SLEEPY = "reflect('java.lang.Thread', 'sleep', cast({ms} as bigint))"


def proof(token: str, *parts: str) -> str:
    """HMAC-SHA256 over the parts, each followed by a newline (docs/wire-protocol.md)."""
    data = b"".join(p.encode() + b"\n" for p in parts)
    return hmac.new(token.encode(), data, hashlib.sha256).hexdigest()


class ImpostorListener:
    """A listener that holds the listener token (whoever can read it can be one), for an
    application of its own or someone else's, speaking protocol 3."""

    def __init__(self, addr: str, token: str, app_id: str, run_id: str) -> None:
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.file = self.sock.makefile("rwb")
        nonce = secrets.token_hex(16)
        hello = {
            "Event": "SparkscopeHello",
            "protocol": 3,
            "appId": app_id,
            "runId": run_id,
            "nonce": nonce,
            "taskEvents": "coalesced",
        }
        self.send(hello)
        challenge = json.loads(self.file.readline())
        self.answer = challenge
        if not challenge.get("ok"):
            return
        mine = proof(token, "sparkscope-listener-3", challenge["nonce"], nonce, app_id, run_id)
        self.send({"Event": "SparkscopeProof", "proof": mine})
        self.answer = json.loads(self.file.readline() or b"{}")

    @property
    def welcome(self) -> bool:
        return self.answer.get("welcome") is True

    def send(self, event: dict) -> None:
        self.file.write((json.dumps(event) + "\n").encode())
        self.file.flush()

    def close(self) -> None:
        self.sock.close()


class Recorder:
    """A TCP port that records whether anybody connected (an impostor's Spark Connect)."""

    def __init__(self) -> None:
        self.srv = socket.create_server((harness.LOOPBACK, 0))
        self.port = self.srv.getsockname()[1]
        self.connected = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            self.connected += 1
            conn.close()

    def close(self) -> None:
        self.srv.close()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("trust")


USERS = {"alice": "alice-" + secrets.token_hex(16), "bob": "bob-" + secrets.token_hex(16)}


@pytest.fixture(scope="module")
def tokens_file(work: Path) -> Path:
    path = work / "users"
    path.write_text("".join(f"{u} {t}\n" for u, t in USERS.items()))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def agent(work: Path, tokens_file: Path, require_piece):
    binary = require_piece(harness.agent_binary(), "sparkscope binary", "make setup")
    env = {
        "SPARKSCOPE_SUBSCRIBER_TOKEN": "",  # users only, from the file
        "SPARKSCOPE_SUBSCRIBER_TOKENS_FILE": str(tokens_file),
    }
    with harness.Agent(binary, work / "agent", token=secrets.token_hex(16), env=env) as a:
        yield a


@pytest.fixture(scope="module")
def proxy(agent: harness.Agent):
    p = harness.Proxy(agent.ingest_addr)
    yield p
    p.close()


@pytest.fixture(scope="module")
def server(work: Path, agent: harness.Agent, proxy: harness.Proxy, require_piece):
    jar = require_piece(harness.listener_jar(), "listener jar", "listener-jar/build.sh")
    with harness.SparkConnectServer(
        work / "server", listener_jar=jar, agent_addr=proxy.addr, token=agent.token
    ) as s:
        harness.wait_until(lambda: live(agent, s.app_id), 60, 0.2, "the listener")
        yield s


def live(agent: harness.Agent, app_id: str) -> bool:
    app = agent.application(app_id)
    return bool(app and app["live"])


def client(user: str, url: str, token: str):
    """The kernel extension's own client of the agent's stream."""
    from sparkscope.agent import AgentClient

    updates: list[dict] = []
    c = AgentClient(url, token, updates.append)
    return c, updates


def test_a_kernel_tells_an_impostor_on_the_stream_port_nothing(work: Path, server) -> None:
    """Outside JupyterHub: a kernel holding one of the agent's tokens meets a program on the
    stream's port that cannot prove it knows it. It names the token by its key id, and stops
    there: no proof, no request, no token."""
    token = USERS["alice"]
    with FakeAgent(token=None, impostor=True) as impostor:
        source = work / "outside.ipynb"
        nb = nbformat.v4.new_notebook()
        setup = nbrun.SETUP
        cells = (setup, "spark.range(0, 1000, 1, 2).count()", "import time; time.sleep(2)")
        nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
        nbformat.write(nb, source)
        (work / "outside").mkdir(exist_ok=True)
        env = nbrun.kernel_env(
            work / "outside",
            {
                "SPARKSCOPE_URL": impostor.url,
                "SPARKSCOPE_TOKEN": token,
                "SPARK_REMOTE": server.remote_url(user_id="alice"),
            },
        )
        env.pop("JUPYTERHUB_API_TOKEN", None)
        run = nbrun.NotebookRun("outside", source, work / "outside.out.ipynb", env)
        nbrun.execute_concurrently([run], timeout=300)
        assert run.error is None, run.error
        received = "\n".join(impostor.raw)
        assert impostor.hellos, "the kernel never tried the impostor"
        assert token not in received, "the token reached the impostor"
        assert "authorization" not in received.lower(), received[:500]
        assert not any("proof" in json.loads(r) for r in impostor.raw if r.startswith("{")), (
            "the kernel proved itself to an agent that had not"
        )
        assert impostor.messages == [], "the kernel sent requests to an unproven agent"


def test_another_application_announcing_a_session_never_gets_its_interrupts(
    agent: harness.Agent, server
) -> None:
    fake_connect = Recorder()
    spark = harness.connect_session(server.remote_url(user_id="alice"))
    impostor = None
    try:
        session = spark.client._session_id
        tag = "cell-" + uuid.uuid4().hex[:8]
        done = threading.Event()

        def sleepy() -> None:
            from pyspark.errors import PySparkException

            spark.addTag(tag)  # pyspark's tags are the thread's
            try:
                spark.range(0, 2, numPartitions=2).selectExpr(SLEEPY.format(ms=60_000)).collect()
            except PySparkException as e:  # interrupted, as it should be
                print(f"the query ended: {type(e).__name__}")
            finally:
                done.set()

        threading.Thread(target=sleepy, daemon=True).start()
        running = harness.wait_until(lambda: server.jobs("running"), 60, 0.2, "the job to run")
        job_id = running[0]["jobId"]
        harness.wait_until(
            lambda: any(
                (j.get("connect") or {}).get("sessionId") == session
                for j in agent.jobs(server.app_id)
            ),
            30,
            0.2,
            "the agent to attribute the job",
        )
        # Someone with the listener token announces the same session, under an application
        # of its own whose Spark Connect is a port it listens on.
        impostor = ImpostorListener(agent.ingest_addr, agent.token, "app-impostor", "run-x")
        assert impostor.welcome, impostor.answer
        op = str(uuid.uuid4())
        for event in (
            {
                "Event": "org.apache.spark.sql.connect.service.SparkListenerConnectServiceStarted",
                "hostAddress": "127.0.0.1",
                "bindingPort": fake_connect.port,
            },
            {
                "Event": "org.apache.spark.sql.connect.service.SparkListenerConnectSessionStarted",
                "sessionId": session,
                "userId": "alice",
                "eventTime": int(time.time() * 1000) - 60_000,
            },
            {
                "Event": "org.apache.spark.sql.connect.service.SparkListenerConnectOperationStarted",
                "jobTag": f"SparkConnect_OperationTag_User_alice_Session_{session}_Operation_{op}",
                "operationId": op,
                "eventTime": int(time.time() * 1000),
                "sessionId": session,
                "userId": "alice",
                "statementText": "",
                "sparkSessionTags": [tag],
            },
        ):
            impostor.send(event)
        harness.wait_until(
            lambda: agent.application("app-impostor"), 15, 0.2, "the impostor's application"
        )
        # Alice cancels her cell, as her notebook does: only her session's server is told.
        c, _ = client("alice", agent.stream_url, USERS["alice"])
        results: list[dict] = []
        try:
            from sparkscope.sessions import SessionKey

            key = SessionKey(session, "alice")
            c.follow([key])
            harness.wait_until(lambda: c.status.connected, 30, 0.1, "alice's stream")
            c.cancel(key, {"tag": tag}, results.append, reason="stop it")
            harness.wait_until(lambda: results, 30, 0.1, "the cancel's answer")
        finally:
            c.stop()
        assert results[0]["ok"], results
        harness.wait_until(done.is_set, 30, 0.2, "the query to stop")
        status = server.rest(f"jobs/{job_id}")["status"]
        assert status == "FAILED", f"Spark says job {job_id} is {status}"
        assert fake_connect.connected == 0, "the impostor's Spark Connect was asked to interrupt"
        conflicts = harness_metric(agent, "sparkscope_connect_session_conflicts_total")
        assert conflicts >= 1, conflicts
    finally:
        if impostor is not None:
            impostor.close()
        fake_connect.close()
        spark.stop()


def harness_metric(agent: harness.Agent, name: str, **labels: str) -> float:
    import requests

    text = requests.get(f"{agent.url}/metrics", timeout=10, verify=agent.verify).text
    total = 0.0
    for line in text.splitlines():
        if line.split("{")[0].split(" ")[0] == name and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_an_impostor_with_the_real_application_id_during_a_reconnect_is_refused(
    agent: harness.Agent, server, proxy: harness.Proxy
) -> None:
    proxy.cut()  # the driver's connection drops; its reconnects are held off for a while
    harness.wait_until(lambda: not live(agent, server.app_id), 15, 0.1, "the driver gone")
    impostor = ImpostorListener(agent.ingest_addr, agent.token, server.app_id, "another-run")
    try:
        assert not impostor.welcome, "the impostor took the application"
        assert "another driver" in impostor.answer.get("error", ""), impostor.answer
    finally:
        impostor.close()
    proxy.resume()
    harness.wait_until(lambda: live(agent, server.app_id), 30, 0.2, "the real driver back")
    assert harness_metric(agent, "sparkscope_listener_refusals_total", reason="taken") >= 1


def test_a_revoked_user_loses_its_open_stream_and_its_cancels(
    agent: harness.Agent, server, tokens_file: Path
) -> None:
    from sparkscope.sessions import SessionKey

    spark = harness.connect_session(server.remote_url(user_id="bob"))
    try:
        spark.range(0, 100, numPartitions=2).count()
        key = SessionKey(spark.client._session_id, "bob")
        c, updates = client("bob", agent.stream_url, USERS["bob"])
        try:
            c.follow([key])
            harness.wait_until(lambda: updates, 30, 0.1, "bob's snapshot")
            assert c.status.connected
            # Bob leaves the team: his line goes.
            tokens_file.write_text(f"alice {USERS['alice']}\n")
            tokens_file.chmod(0o600)
            revoked_at = time.monotonic()
            harness.wait_until(lambda: not c.status.connected, 5, 0.02, "bob's stream closed")
            took = time.monotonic() - revoked_at
            print(f"bob's open stream closed {took:.2f} s after his line was removed")
            assert took <= 1.0, took
            results: list[dict] = []
            c.cancel(key, {"tag": "anything"}, results.append)
            harness.wait_until(lambda: results, 30, 0.1, "the cancel's answer")
            assert not results[0]["ok"] and results[0]["code"] in ("unauthorized", "no_agent"), (
                results
            )
            harness.wait_until(lambda: c.status.unauthorized, 30, 0.1, "bob refused for good")
        finally:
            c.stop()
        assert harness_metric(agent, "sparkscope_subscribers_revoked_total") >= 1
    finally:
        tokens_file.write_text("".join(f"{u} {t}\n" for u, t in USERS.items()))
        tokens_file.chmod(0o600)
        spark.stop()


def test_a_ui_address_that_is_no_http_url_never_becomes_a_link(
    work: Path, agent: harness.Agent, server, require_piece
) -> None:
    """A driver may announce any UI address (`spark.sparkscope.uiUrl`). Beside a notebook on the
    genuine server, whose widget links to Spark's UI, one on a server announcing a `javascript:`
    address: nothing in its saved widget state or HTML snapshot holds that address."""
    jar = require_piece(harness.listener_jar(), "listener jar", "listener-jar/build.sh")
    address = "javascript:alert(document.domain)//"
    with harness.SparkConnectServer(
        work / "js-server",
        listener_jar=jar,
        agent_addr=agent.ingest_addr,
        token=agent.token,
        master="local[1]",
        conf={"spark.sparkscope.uiUrl": address},
    ) as hostile:
        harness.wait_until(lambda: live(agent, hostile.app_id), 60, 0.2, "the listener")
        runs = []
        for name, srv in (("genuine", server), ("hostile", hostile)):
            source = work / f"{name}.ipynb"
            nb = nbformat.v4.new_notebook()
            cells = (
                nbrun.SETUP,
                "spark.range(0, 1000, 1, 2).count()",
                "import time; time.sleep(2)",
            )
            nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
            nbformat.write(nb, source)
            (work / name).mkdir(exist_ok=True)
            env = nbrun.kernel_env(
                work / name,
                {
                    "SPARKSCOPE_URL": agent.stream_url,
                    "SPARKSCOPE_TOKEN": USERS["alice"],
                    "SPARK_REMOTE": srv.remote_url(user_id="alice"),
                },
            )
            env.pop("JUPYTERHUB_API_TOKEN", None)
            runs.append(nbrun.NotebookRun(name, source, work / f"{name}.out.ipynb", env))
        nbrun.execute_concurrently(runs, timeout=300)
        for run in runs:
            assert run.error is None, run.error
            ((model_id, _),) = nbrun.cell_widgets(run.nb, 1)
            state = nbrun.widget_states(run.nb)[model_id]["state"]
            assert state["state"] == "done" and state["jobs"], state
        genuine, attacked = runs
        links = nbrun.widget_states(genuine.nb)[nbrun.cell_widgets(genuine.nb, 1)[0][0]]["state"]
        assert links["links"].get("ui", "").startswith("http://"), links["links"]
        saved = attacked.out_path.read_text()
        # (the widget's own code, saved with it, names the scheme in a comment: look for the address)
        assert "javascript:alert" not in saved.lower(), "the address reached the saved notebook"
        state = nbrun.widget_states(attacked.nb)[nbrun.cell_widgets(attacked.nb, 1)[0][0]]
        assert not state["state"]["links"].get("ui"), state["state"]["links"]
        assert agent.application(hostile.app_id).get("uiLink", "") == ""


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch) -> None:
    # The kernel extension's client inside this test process: no settings from outside.
    for name in [k for k in os.environ if k.startswith("SPARKSCOPE_")]:
        monkeypatch.delenv(name, raising=False)
