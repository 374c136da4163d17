"""Real identities for the people on a shared server, through a real JupyterHub (from PyPI) and
its proxy (configurable-http-proxy, from npm).

Each notebook's kernel holds only what JupyterHub gives every kernel it spawns, its user's API
token (JUPYTERHUB_API_TOKEN), plus the stream's `wss://` URL and the CA that signed the agent's
certificate: no sparkscope credential of its own. The extension sends that token only to an agent
that proved itself with that certificate, and the agent asks the Hub whose it is
(`--jupyterhub-api-url`); to a plain ws:// address, or any other, it sends nothing.
Each user then sees and cancels only their own Spark Connect sessions, on every surface (JupyterLab's
Spark sidebar too: each user's Jupyter server asks the agent with that user's Hub token, and each
sidebar, in Chromium, lists that user's cell runs and never the other's); a forged, an expired,
or a service's token is refused. The kernels run under nbclient with that
environment rather than inside Hub-spawned servers: what the extension and the agent see is the
same.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
import uuid
from pathlib import Path

import harness
import nbformat
import pytest
import requests
import websocket
from harness import browser, nbrun

USERS = ("alice", "bob")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jupyterhub")


@pytest.fixture(scope="module")
def hub(work: Path):
    if harness.configurable_http_proxy() is None:
        pytest.fail("configurable-http-proxy is not installed (make setup)")
    with harness.JupyterHub(work / "hub") as h:
        yield h


# Unknown tokens one address may have the agent ask the Hub about per minute.
LOOKUPS = 20


@pytest.fixture(scope="module")
def cert(work: Path) -> tuple[Path, Path]:
    return harness.self_signed(work / "certs", "agent")


@pytest.fixture(scope="module")
def agent(work: Path, hub: harness.JupyterHub, cert, require_piece):
    binary = require_piece(harness.agent_binary(), "sparkscope binary", "cargo build")
    env = {
        # no shared subscriber token: every subscriber is a Hub user
        "SPARKSCOPE_SUBSCRIBER_TOKEN": "",
        "SPARKSCOPE_JUPYTERHUB_API_URL": hub.api_url,
        "SPARKSCOPE_JUPYTERHUB_LOOKUPS_PER_MINUTE": str(LOOKUPS),
    }
    with harness.Agent(binary, work / "agent", token=secrets.token_hex(16), env=env, tls=cert) as a:
        yield a


@pytest.fixture(scope="module")
def server(work: Path, agent: harness.Agent, cert, reporting_to):
    trust = {"spark.sparkscope.tls.trustCert": str(cert[0])}
    with reporting_to(work / "server", agent, conf=trust) as s:
        yield s


@pytest.fixture(scope="module")
def tokens(hub: harness.JupyterHub) -> dict[str, str]:
    return {u: hub.user_token(u) for u in USERS}


def notebook(path: Path) -> None:
    setup = nbrun.SETUP
    work = 'spark.range(0, 20_000, 1, 4).selectExpr("id % 13 AS k").groupBy("k").count().collect()'
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in (setup, work, "import time; time.sleep(2)")]
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def executed(work: Path, agent, server, tokens, cert) -> dict[str, nbrun.NotebookRun]:
    runs = {}
    for user in USERS:
        source = work / f"{user}.ipynb"
        notebook(source)
        env = nbrun.kernel_env(
            work / user,
            {
                "JUPYTERHUB_API_TOKEN": tokens[user],
                "JUPYTERHUB_USER": user,
                "SPARKSCOPE_URL": agent.stream_url,
                "SPARKSCOPE_CA_FILE": str(cert[0]),
                "SPARK_REMOTE": server.remote_url(user_id=user),
            },
        )
        for name in ("SPARKSCOPE_TOKEN", "SPARKSCOPE_TOKEN_FILE"):
            env.pop(name, None)
        runs[user] = nbrun.NotebookRun(user, source, work / f"{user}.out.ipynb", env)
    nbrun.execute_concurrently(list(runs.values()), timeout=300)
    for run in runs.values():
        assert run.error is None, run.error
    return runs


def session_of(run: nbrun.NotebookRun) -> str:
    return nbrun.stdout(run.nb, 0).strip().splitlines()[-1]


def stream(agent: harness.Agent, token: str) -> websocket.WebSocket:
    return websocket.create_connection(
        agent.stream_url,
        header=[f"Authorization: Bearer {token}"],
        timeout=15,
        suppress_origin=True,  # as the kernel: no web page's origin
        sslopt={"ca_certs": agent.verify},
    )


def test_each_users_notebook_shows_only_its_own_work_with_no_configuration(
    executed, agent, server
) -> None:
    for user, run in executed.items():
        ((model_id, _),) = nbrun.cell_widgets(run.nb, 1)
        state = nbrun.widget_states(run.nb)[model_id]["state"]
        jobs = state["jobs"]
        assert jobs, f"{user}'s widget shows no jobs: the Hub token did not get it in"
        # whose jobs they are, by the agent's attribution (the widget keeps no ids)
        attributed = {j["jobId"]: j.get("connect") or {} for j in agent.jobs(server.app_id)}
        owners = {
            (attributed[j["jobId"]].get("userId"), attributed[j["jobId"]].get("sessionId"))
            for j in jobs
        }
        assert owners == {(user, session_of(run))}, owners
        assert state["state"] == "done"


def test_a_user_cannot_follow_or_cancel_another_users_session(agent, executed, tokens) -> None:
    alice, bob = (session_of(executed[u]) for u in USERS)
    ws = stream(agent, tokens["alice"])
    try:
        ws.send(json.dumps({"subscribe": {"sessions": [{"sessionId": bob, "userId": "bob"}]}}))
        answer = json.loads(ws.recv())
        assert answer.get("error", {}).get("code") == "forbidden", answer
        rid = uuid.uuid4().hex
        ws.send(
            json.dumps(
                {"cancel": {"requestId": rid, "sessionId": bob, "userId": "bob", "tag": "anything"}}
            )
        )
        result = json.loads(ws.recv())["cancelResult"]
        assert result["requestId"] == rid and result["code"] == "forbidden", result
        # her own session, named as the server knows it, is hers to follow
        ws.send(json.dumps({"subscribe": {"sessions": [{"sessionId": alice, "userId": "alice"}]}}))
        update = json.loads(ws.recv())["update"]
        assert update["snapshot"] and all(
            j["connect"]["userId"] == "alice" for j in update.get("jobs", [])
        )
    finally:
        ws.close()


def test_forged_expired_and_service_tokens_are_refused(agent, hub) -> None:
    expiring = hub.user_token("alice", expires_in=1)
    time.sleep(2.5)
    for what, token in (
        ("forged", secrets.token_hex(16)),
        ("expired", expiring),
        ("a service's", hub.service_token),
    ):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            stream(agent, token)
        assert refused.value.status_code == 401, what
    # and the JSON API, an operator's view, takes none of the users' credentials
    resp = requests.get(
        f"{agent.url}/api/v1/applications",
        headers={"Authorization": f"Bearer {hub.user_token('bob')}"},
        timeout=10,
        verify=agent.verify,
    )
    assert resp.status_code == 401


def metric(agent: harness.Agent, name: str, **labels: str) -> float:
    text = requests.get(f"{agent.url}/metrics", timeout=10, verify=agent.verify).text
    total = 0.0
    for line in text.splitlines():
        if line.split("{")[0].split(" ")[0] == name and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_bogus_tokens_cost_the_hub_a_bounded_number_of_requests(agent, hub, tokens) -> None:
    """A thousand made-up tokens from one address: the Hub is asked about at most the agent's
    lookups per minute of them, and a genuine user stays known without asking it again."""
    stream(agent, tokens["alice"]).close()  # alice is known (and cached) before the flood
    asked = metric(agent, "sparkscope_jupyterhub_requests_total")
    refused = 0
    for i in range(1000):
        try:
            stream(agent, f"bogus-{i:04}-{secrets.token_hex(8)}").close()
        except websocket.WebSocketBadStatusException as e:
            assert e.status_code in (401, 429), e.status_code
            refused += 1
    flood = metric(agent, "sparkscope_jupyterhub_requests_total") - asked
    print(f"1,000 bogus tokens: {flood:.0f} Hub requests, {refused} refused")
    assert refused == 1000
    assert flood <= LOOKUPS, f"the Hub was asked {flood:.0f} times"
    assert (
        metric(agent, "sparkscope_limit_hits_total", limit="jupyterhub_lookups") >= 1000 - LOOKUPS
    )
    stream(agent, tokens["alice"]).close()
    assert metric(agent, "sparkscope_jupyterhub_requests_total") - asked == flood, (
        "alice's token was asked about again: the flood evicted her"
    )


def test_a_kernel_sends_its_hub_token_to_no_agent_that_has_not_proven_itself(
    work: Path, tokens, server, cert
) -> None:
    """A program on the stream's port, speaking plain ws:// (the agent down, someone else on its
    port) or TLS with a certificate the kernel does not trust, receives nothing from a kernel
    inside JupyterHub: no connection at all, or none past the TLS handshake."""
    from harness.fake_agent import FakeAgent

    stranger = harness.self_signed(work / "stranger", "stranger")
    for tls in (None, stranger):
        with FakeAgent(token=None, tls=tls) as impostor:
            (work / "impostor").mkdir(exist_ok=True)
            source = work / "impostor.ipynb"
            notebook(source)
            env = nbrun.kernel_env(
                work / "impostor",
                {
                    "JUPYTERHUB_API_TOKEN": tokens["alice"],
                    "SPARKSCOPE_URL": impostor.url,
                    # the kernel trusts the real agent's certificate, not the stranger's
                    "SPARKSCOPE_CA_FILE": str(cert[0]),
                    "SPARK_REMOTE": server.remote_url(user_id="alice"),
                },
            )
            for name in ("SPARKSCOPE_TOKEN", "SPARKSCOPE_TOKEN_FILE"):
                env.pop(name, None)
            run = nbrun.NotebookRun("impostor", source, work / "impostor.out.ipynb", env)
            nbrun.execute_concurrently([run], timeout=300)
            assert run.error is None, run.error
            received = "\n".join(impostor.raw)
            assert tokens["alice"] not in received, "the Hub token reached the impostor"
            assert "authorization" not in received.lower(), received[:500]
            assert impostor.messages == [] and impostor.connections == [], impostor.raw


SIDEBAR_RUNS_JS = """() => [...document.querySelectorAll('#sparkscope-sidebar .sparkscope-sb-run')]
  .map(n => ({...n.dataset}))"""
# long enough for both users' cells to be running side by side
SLEEPY = (
    "spark.range(0, 2, 1, 2).selectExpr(\"reflect('java.lang.Thread', 'sleep', "
    'cast(12000 as bigint)) AS x").collect()'
)


def test_each_hub_users_sidebar_lists_only_their_own_cell_runs(
    work: Path, agent, server, tokens, cert, require_browser
) -> None:
    labs, pages = {}, {}
    with contextlib.ExitStack() as stack:
        # one browser: the two Jupyter servers are two origins, each with its own login cookie
        context = stack.enter_context(browser.chromium(work / "chromium-hub-users"))
        for user in USERS:
            root = work / f"lab-{user}"
            root.mkdir(exist_ok=True)
            nb = nbformat.v4.new_notebook()
            nb.cells = [nbformat.v4.new_code_cell(nbrun.SETUP), nbformat.v4.new_code_cell(SLEEPY)]
            nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
            nbformat.write(nb, root / f"{user}.ipynb")
            # a Hub user's single-user server: its Hub token, and nothing of sparkscope's own
            env = {
                "JUPYTERHUB_API_TOKEN": tokens[user],
                "JUPYTERHUB_USER": user,
                "SPARKSCOPE_URL": agent.stream_url,
                "SPARKSCOPE_CA_FILE": str(cert[0]),
                "SPARKSCOPE_TOKEN": "",
                "SPARKSCOPE_TOKEN_FILE": "",
                "SPARKSCOPE_HOME": str(work / f"home-{user}"),
                "SPARKSCOPE_OWN_SERVER": "off",
                "SPARK_REMOTE": server.remote_url(user_id=user),
            }
            labs[user] = stack.enter_context(
                harness.JupyterLab(root, work / f"lab-{user}-run", env=env)
            )
            pages[user] = browser.open_beside(context, labs[user], f"{user}.ipynb", user)
        for nb in pages.values():
            nb.run_cell(0)
        for nb in pages.values():
            nb.wait_cell_done(0, 180)
        for nb in pages.values():
            nb.run_cell(1)
            nb.page.evaluate("() => window.jupyterapp.shell.activateById('sparkscope-sidebar')")

        def both_running() -> dict | None:
            seen = {u: nb.page.evaluate(SIDEBAR_RUNS_JS) for u, nb in pages.items()}
            running = all(any(r["state"] == "running" for r in seen[u]) for u in USERS)
            return seen if running else None

        seen = harness.wait_until(
            both_running, 60, 0.3, "each user's running cell in their sidebar"
        )
        for user, runs in seen.items():
            assert {r["user"] for r in runs} == {user}, (user, runs)
            # the Lab notebook's run, and this user's earlier runs (the nbclient notebooks above
            # carry no notebook name); nothing of the other user's
            running = [r for r in runs if r["state"] == "running"]
            assert {r["notebook"] for r in running} == {f"{user}.ipynb"}, (user, runs)
            other = next(u for u in USERS if u != user)
            assert not any(r["notebook"] == f"{other}.ipynb" for r in runs), (user, runs)
        for nb in pages.values():
            nb.wait_cell_done(1, 90)
        after = {u: nb.page.evaluate(SIDEBAR_RUNS_JS) for u, nb in pages.items()}
        for user, runs in after.items():
            assert runs and {r["user"] for r in runs} == {user}, (user, runs)
    print(
        f"sidebars while both ran: { {u: len(r) for u, r in seen.items()} } run(s), each only its user's"
    )
