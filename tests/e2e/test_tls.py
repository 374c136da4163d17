"""TLS on every socket of the agent, end to end: the real listener in a real Spark Connect server
verifies the agent's certificate before it says anything; a notebook reaches the stream over
`wss://`, trusting the certificate named by SPARKSCOPE_CA_FILE and presenting a credential it
read from a file, and neither the saved notebook nor the kernel's history holds that credential.
A listener that trusts another certificate never connects, and the agent counts the refusal.
"""

from __future__ import annotations

import json
import secrets
import socket
import sqlite3
import ssl
import subprocess
from pathlib import Path

import harness
import nbformat
import pytest
import requests
import websocket
from harness import nbrun


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tls")


@pytest.fixture(scope="module")
def certs(work: Path) -> dict[str, tuple[Path, Path]]:
    return {name: harness.self_signed(work / "certs", name) for name in ("agent", "stranger")}


@pytest.fixture(scope="module")
def agent(work: Path, certs, require_piece):
    binary = require_piece(harness.agent_binary(), "sparkscope binary", "cargo build")
    with harness.Agent(
        binary, work / "agent", token=secrets.token_hex(16), tls=certs["agent"]
    ) as a:
        yield a


@pytest.fixture(scope="module")
def server(work: Path, agent: harness.Agent, certs, reporting_to):
    trust = {"spark.sparkscope.tls.trustCert": str(certs["agent"][0])}
    with reporting_to(work / "server", agent, conf=trust) as s:
        harness.wait_until(lambda: live(agent, s.app_id), 60, 0.2, "the listener over TLS")
        yield s


def live(agent: harness.Agent, app_id: str) -> bool:
    app = agent.application(app_id)
    return bool(app and app["live"])


def metric(agent: harness.Agent, name: str, **labels: str) -> float:
    text = requests.get(f"{agent.url}/metrics", timeout=10, verify=agent.verify).text
    total = 0.0
    for line in text.splitlines():
        if line.split("{")[0].split(" ")[0] != name:
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_plain_text_and_untrusted_clients_get_nothing(agent: harness.Agent) -> None:
    # the same ports without TLS: no HTTP answer, no WebSocket
    plain = agent.url.replace("https://", "http://")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{plain}/healthz", timeout=5)
    # a client that does not trust the agent's certificate stops at the handshake
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{agent.url}/healthz", timeout=5, verify=True)
    with pytest.raises(ssl.SSLCertVerificationError):
        websocket.create_connection(
            agent.stream_url,
            suppress_origin=True,  # as the kernel: no web page's origin
            header=[f"Authorization: Bearer {agent.subscriber_token}"],
            timeout=10,
        )


def notebook(path: Path, token_file: Path) -> None:
    cells = [
        # the credential comes from a file: nothing secret is typed into a cell
        f"%load_ext sparkscope\n%sparkscope --token-file {token_file}",
        nbrun.CONNECT,
        'spark.range(0, 20_000, 1, 4).selectExpr("id % 7 AS k").groupBy("k").count().collect()',
        "import time; time.sleep(2)",
    ]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


def test_a_notebook_over_wss_shows_its_jobs_and_stores_no_secret(
    work: Path, agent: harness.Agent, server: harness.SparkConnectServer, certs
) -> None:
    token_file = work / "notebook-token"
    token_file.write_text(agent.subscriber_token + "\n")
    token_file.chmod(0o600)
    source = work / "tls.ipynb"
    notebook(source, token_file)
    (work / "kernel").mkdir(exist_ok=True)
    env = nbrun.kernel_env(
        work / "kernel",
        {
            "SPARKSCOPE_URL": agent.stream_url,
            "SPARKSCOPE_CA_FILE": str(certs["agent"][0]),
            "SPARK_REMOTE": server.remote_url(user_id="carol"),
        },
    )
    for name in ("SPARKSCOPE_TOKEN", "SPARKSCOPE_TOKEN_FILE", "JUPYTERHUB_API_TOKEN"):
        env.pop(name, None)
    history = work / "kernel" / "history.sqlite"
    run = nbrun.NotebookRun("tls", source, work / "tls.out.ipynb", env, history_file=history)
    nbrun.execute_concurrently([run], timeout=300)
    assert run.error is None, run.error

    ((model_id, _),) = nbrun.cell_widgets(run.nb, 2)
    state = nbrun.widget_states(run.nb)[model_id]["state"]
    assert state["state"] == "done", state
    assert state["jobs"] and all(j["status"] == "SUCCEEDED" for j in state["jobs"]), state["jobs"]
    # the widget keeps no user ids; the agent attributed the jobs it shows to carol
    users = {j["jobId"]: (j.get("connect") or {}).get("userId") for j in agent.jobs(server.app_id)}
    assert {users[j["jobId"]] for j in state["jobs"]} == {"carol"}, users

    # nothing the notebook keeps holds the credential: the saved file (widget state and
    # outputs included) and the kernel's input history, which did record the magic's line
    saved = run.out_path.read_text()
    assert "--token-file" in saved
    assert agent.subscriber_token not in saved
    with sqlite3.connect(history) as db:
        inputs = "\n".join(r[0] for r in db.execute("SELECT source_raw FROM history"))
    assert "--token-file" in inputs, inputs
    assert agent.subscriber_token not in inputs
    assert agent.subscriber_token not in history.read_bytes().decode("utf-8", "replace")

    # a subscriber over wss follows the same session and gets the same jobs
    (session,) = {j["connect"]["sessionId"] for j in agent.jobs(server.app_id) if j.get("connect")}
    ws = websocket.create_connection(
        agent.stream_url,
        suppress_origin=True,  # as the kernel: no web page's origin
        header=[f"Authorization: Bearer {agent.subscriber_token}"],
        sslopt={"ca_certs": str(certs["agent"][0])},
        timeout=15,
    )
    try:
        key = {"sessionId": session, "userId": "carol"}
        ws.send(json.dumps({"subscribe": {"sessions": [key]}}))
        update = json.loads(ws.recv())["update"]
        assert update["snapshot"]
        # proto3 JSON leaves out zeros: job 0 has no jobId
        assert sorted(j.get("jobId", 0) for j in update["jobs"]) == sorted(
            j["jobId"] for j in agent.jobs(server.app_id)
        )
    finally:
        ws.close()


def test_a_listener_trusting_another_certificate_never_connects(
    work: Path, agent: harness.Agent, server: harness.SparkConnectServer, certs, reporting_to
) -> None:
    refused_before = metric(agent, "sparkscope_listener_refusals_total", reason="tls")
    trust = {"spark.sparkscope.tls.trustCert": str(certs["stranger"][0])}
    with reporting_to(work / "stranger-server", agent, master="local[1]", conf=trust) as s:
        harness.wait_until(
            lambda: (
                metric(agent, "sparkscope_listener_refusals_total", reason="tls") > refused_before
            ),
            60,
            0.2,
            "the agent to count the refused TLS handshake",
        )
        assert agent.application(s.app_id) is None
        log = s.log_path.read_text(errors="replace")
        assert "SSLHandshakeException" in log or "certificate" in log.lower(), log[-3000:]
        assert "connected to agent" not in log
    # the genuine listener is untouched
    assert live(agent, server.app_id)


def subscribe_frame(session: str, user: str) -> bytes:
    """A SubscribeRequest with one SessionKey, in protobuf's wire format (field 1 of each)."""

    def field(number: int, payload: bytes) -> bytes:
        assert len(payload) < 128
        return bytes([number << 3 | 2, len(payload)]) + payload

    key = field(1, session.encode()) + field(2, user.encode())
    return field(1, key)


def test_grpc_speaks_tls_only(
    agent: harness.Agent, server: harness.SparkConnectServer, certs
) -> None:
    import grpc

    (session,) = {j["connect"]["sessionId"] for j in agent.jobs(server.app_id) if j.get("connect")}
    method = "/sparkscope.v1.Monitor/Subscribe"
    metadata = [("authorization", f"Bearer {agent.subscriber_token}")]
    trusted = grpc.ssl_channel_credentials(root_certificates=certs["agent"][0].read_bytes())
    with grpc.secure_channel(agent.grpc_addr, trusted) as channel:
        call = channel.unary_stream(method)(
            subscribe_frame(session, "carol"), metadata=metadata, timeout=15
        )
        first = next(iter(call))
        call.cancel()
    # an Update with applications (field 3) holding this server's application id
    assert server.app_id.encode() in first, first[:200]

    # in clear text the port answers nothing a gRPC client can use
    with grpc.insecure_channel(agent.grpc_addr) as channel:
        call = channel.unary_stream(method)(
            subscribe_frame(session, "carol"), metadata=metadata, timeout=10
        )
        with pytest.raises(grpc.RpcError) as err:
            next(iter(call))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
    # nor to a client that trusts another certificate
    stranger = grpc.ssl_channel_credentials(root_certificates=certs["stranger"][0].read_bytes())
    with grpc.secure_channel(agent.grpc_addr, stranger) as channel:
        call = channel.unary_stream(method)(
            subscribe_frame(session, "carol"), metadata=metadata, timeout=10
        )
        with pytest.raises(grpc.RpcError) as err:
            next(iter(call))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value


def test_a_certificate_that_cannot_be_loaded_stops_the_agent(
    work: Path, certs, require_piece
) -> None:
    binary = require_piece(harness.agent_binary(), "sparkscope binary", "cargo build")
    # the agent's certificate with another key: nothing may serve, not even in clear
    mismatched = (certs["agent"][0], certs["stranger"][1])
    a = harness.Agent(binary, work / "mismatched", token=secrets.token_hex(16), tls=mismatched)
    a._pick_ports()
    a.work_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        a.command(),
        check=False,
        env=a._environment(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode != 0, proc.stderr[-2000:]
    assert "key" in proc.stderr.lower() or "certificate" in proc.stderr.lower(), proc.stderr
    for port in (a.ingest_port, a.http_port, a.grpc_port):
        with socket.socket() as s:
            s.settimeout(1)
            assert s.connect_ex((harness.LOOPBACK, port)) != 0, f"port {port} is open"
