"""The Jupyter server extension's link to the agent (labserver.AgentLink) against the stand-in
agent, and the labels kernels send so that the sidebar can name the cell behind each tag: what is
asked, what is answered, what is refused before anything is sent. The endpoints in a real Jupyter
server, with the real agent and JupyterLab, are tested in tests/e2e/test_lab_sidebar.py."""

from __future__ import annotations

import time

import pytest
from fake_agent import FakeAgent
from sparkscope import labserver
from sparkscope.labserver import AgentLink, relative_notebook
from support import StubClient

SID = "11111111-1111-4111-8111-111111111111"
APP = "local-1795258400000"


def run_of(notebook: str, state: str = "running") -> dict:
    return {
        "appId": APP,
        "sessionId": SID,
        "userId": "alice",
        "tag": "sparkscope-cell-0123456789ab",
        "notebook": notebook,
        "cellId": "c-1",
        "executionCount": 3,
        "state": state,
        "startTimeMs": "1795258404000",
        "jobs": 1,
        "jobsRunning": 1,
        "tasksTotal": 8,
        "tasksCompleted": 2,
    }


@pytest.fixture
def agent():
    with FakeAgent(token="S") as a:
        yield a


def test_my_work_is_asked_over_the_proven_stream_and_paths_made_relative(agent, tmp_path) -> None:
    nb = tmp_path / "work" / "etl.ipynb"
    agent.on_my_work = lambda req: {
        "applications": [{"id": APP, "name": "Spark Connect server", "live": True}],
        "runs": [run_of(str(nb))],
    }
    link = AgentLink(agent.url, "S", str(tmp_path))
    try:
        work = link.work()
        assert work["ok"], work
        (run,) = work["runs"]
        assert run["notebook"] == "work/etl.ipynb"
        assert (run["tasksTotal"], run["tasksCompleted"], run["state"]) == (8, 2, "running")
        assert run["endTimeMs"] is None and run["error"] is None  # defaults filled in
        assert work["applications"][0]["cluster"]["executors"] == 0
        # the token never crossed the wire: the stream's handshake proves it
        assert not any("S" == h.get("token") for h in agent.hellos)
        assert all('"S"' not in raw for raw in agent.raw)
        # a poll within FRESH is answered from the last answer
        asked = len([m for m in agent.messages if "myWork" in m])
        link.work()
        assert len([m for m in agent.messages if "myWork" in m]) == asked
    finally:
        link.stop()


def test_no_agent_is_an_answer_not_an_exception(monkeypatch) -> None:
    monkeypatch.setattr(labserver, "CONNECT_WAIT", 0.3)
    link = AgentLink("ws://127.0.0.1:9/api/v1/stream", "S")
    try:
        started = time.monotonic()
        work = link.work()
        assert not work["ok"] and work["code"] == "no_agent", work
        assert work["runs"] == []
        assert time.monotonic() - started < 3
    finally:
        link.stop()


def test_cancel_names_one_target_and_is_checked_before_it_is_sent(agent) -> None:
    agent.on_cancel = lambda req: {"ok": True, "message": "interrupted 1 operation(s)"}
    link = AgentLink(agent.url, "S")
    try:
        bad = link.cancel({"sessionId": SID, "userId": "alice"})
        assert bad["code"] == "bad_request"
        both = link.cancel({"sessionId": SID, "tag": "t", "operationId": "o"})
        assert both["code"] == "bad_request"
        assert agent.cancels() == []
        ok = link.cancel(
            {"appId": APP, "sessionId": SID, "userId": "alice", "tag": "t", "extra": "x"}
        )
        assert ok["ok"], ok
        (sent,) = agent.cancels()
        assert sent["sessionId"] == SID and sent["userId"] == "alice"
        assert sent["tag"] == "t" and sent["appId"] == APP and "extra" not in sent
        assert "JupyterLab" in sent["reason"]
        # the agent stops only followed sessions: the session was followed first, naming its app
        (sub,) = agent.subscribes()
        assert sub["sessions"] == [{"sessionId": SID, "userId": "alice", "appId": APP}]
        order = [next(iter(m)) for m in agent.messages]
        assert order.index("subscribe") < order.index("cancel"), order
    finally:
        link.stop()


def test_relative_notebook() -> None:
    assert relative_notebook("/srv/nb/a/b.ipynb", "/srv/nb") == "a/b.ipynb"
    assert relative_notebook("/elsewhere/b.ipynb", "/srv/nb") == "/elsewhere/b.ipynb"
    assert relative_notebook("a/b.ipynb", "/srv/nb") == "a/b.ipynb"
    assert relative_notebook("", "/srv/nb") == ""


def test_kernels_label_each_tag_with_its_notebook_and_cell(
    shell, make_monitor, agent, monkeypatch
) -> None:
    monkeypatch.setenv("JPY_SESSION_NAME", "/srv/nb/work/etl.ipynb")
    monitor = make_monitor(url=agent.url, token="S")
    client = StubClient(SID)
    shell.user_ns.update(StubClient=StubClient, monitor=monitor, SID=SID)
    # the cell that makes the session: its tag is labelled once the session is known
    assert shell.run_cell("c = StubClient(SID); monitor.tracker.track(c)").success
    first = agent.wait_for(lambda: agent.labels())
    assert first[0]["sessionId"] == SID and first[0]["userId"] == "alice"
    assert first[0]["notebook"] == "/srv/nb/work/etl.ipynb"
    # the next cell: labelled before it runs, with the execution count it shows
    count = shell.execution_count
    assert shell.run_cell("x = 1", store_history=True).success
    labels = agent.wait_for(lambda: len(agent.labels()) >= 2 and agent.labels())
    assert labels[-1]["tag"] != labels[0]["tag"]
    assert labels[-1]["tag"].startswith("sparkscope-cell-")
    assert labels[-1]["executionCount"] == count == shell.execution_count - 1
    assert "executionCount" not in labels[0]  # run without history: no count shown
    # a new stream gets the labels again (the agent keeps them in memory only)
    before = len(agent.labels())
    agent.drop()
    agent.wait_for(lambda: len(agent.labels()) >= before + 2, timeout=15)
    del client


def test_the_link_follows_where_the_agent_is_now(monkeypatch, tmp_path) -> None:
    """A server started from the sidebar leaves a new address and token: the next request uses
    them, and the old stream is closed."""
    monkeypatch.delenv("SPARKSCOPE_URL", raising=False)
    monkeypatch.delenv("SPARKSCOPE_TOKEN", raising=False)
    monkeypatch.delenv("SPARKSCOPE_TOKEN_FILE", raising=False)
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    monkeypatch.setenv("SPARKSCOPE_HOME", str(tmp_path))
    made: list[StubLink] = []

    class StubLink:
        def __init__(self, url: str, token: str | None, root: str) -> None:
            self.url, self.token, self.stopped = url, token, False
            made.append(self)

        def stop(self) -> None:
            self.stopped = True

    link = labserver.Link("", make=StubLink)
    first = link.get()
    assert first.url == labserver.DEFAULT_URL and first.token is None
    assert link.get() is first  # nothing changed: the same stream
    (tmp_path / "stream-url").write_text("ws://127.0.0.1:7777/api/v1/stream\n")
    (tmp_path / "token").write_text("T1\n")
    second = link.get()
    assert (second.url, second.token) == ("ws://127.0.0.1:7777/api/v1/stream", "T1")
    assert first.stopped and not second.stopped
    (tmp_path / "token").write_text("T2\n")  # a restart: new tokens
    assert link.get().token == "T2" and second.stopped
    link.stop()
    assert made[-1].stopped and len(made) == 3


def test_the_driver_log_is_read_in_whole_lines_from_an_offset(tmp_path, monkeypatch) -> None:
    log = tmp_path / "driver.log"
    missing = labserver.read_log(log, -1)
    assert not missing["exists"] and missing["lines"] == []
    log.write_bytes(b"one\ntwo\nthr")
    first = labserver.read_log(log, -1)
    assert first["lines"] == ["one", "two"] and first["offset"] == 8  # "thr" still being written
    with log.open("ab") as f:
        f.write(b"ee\nfour\n")
    more = labserver.read_log(log, first["offset"])
    assert more["lines"] == ["three", "four"] and more["offset"] == log.stat().st_size
    assert labserver.read_log(log, more["offset"])["lines"] == []
    # a new server's log is shorter than where the reader was: read from its start
    log.write_bytes(b"new\n")
    again = labserver.read_log(log, more["offset"])
    assert again["reset"] and again["lines"] == ["new"]
    # a first request gets the tail only, from a line's start; one answer is bounded
    monkeypatch.setattr(labserver, "LOG_TAIL", 10)
    log.write_bytes(b"aaaaaaaa\nbbbb\ncccc\n")
    tail = labserver.read_log(log, -1)
    assert tail["lines"] == ["bbbb", "cccc"] and tail["offset"] == log.stat().st_size
    log.write_bytes(b"aaaaaaaa\nbbbbb\ncccc\n")
    assert labserver.read_log(log, -1)["lines"] == ["cccc"]  # "bbbbb" cut: not shown
    monkeypatch.setattr(labserver, "LOG_CHUNK", 12)
    chunk = labserver.read_log(log, 0)
    assert chunk["lines"] == ["aaaaaaaa"] and chunk["offset"] == 9
    # bytes that are no UTF-8 are shown, not fatal
    log.write_bytes(b"\xff\xfe bad\n")
    assert labserver.read_log(log, 0)["lines"] == ["\ufffd\ufffd bad"]
