"""The extension in an in-process IPython shell against the stand-in agent (fake_agent.py):
cell tags, subscriptions, the widget's appearance and state, throttling, settling, no agent,
reconnects."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest
import sparkscope
from fake_agent import FakeAgent, load_frames
from sparkscope.extension import Monitor
from support import RecordingPublisher, StubClient

SID = "11111111-1111-4111-8111-111111111111"
OP = "22222222-2222-4222-8222-222222222222"
RECORDED_TAG = "sparkscope-cell-000000000001"
TAG_RE = re.compile(r"^sparkscope-cell-[0-9a-f]{12}$")


def frames_for(tag: str) -> list[str]:
    return load_frames("handmade_cell.jsonl", {RECORDED_TAG: tag})


def run(shell, code: str) -> None:
    result = shell.run_cell(code)
    assert result.success, result.error_in_exec or result.error_before_exec


def connected(monitor: Monitor, agent: FakeAgent, client: StubClient) -> None:
    monitor.tracker.track(client)
    agent.wait_for(lambda: agent.subscribes())
    assert monitor.connection.client is not None
    agent.wait_for(lambda: monitor.connection.client.status.connected)


def test_tag_is_on_the_sessions_while_the_cell_runs_and_only_then(shell, make_monitor) -> None:
    monitor = make_monitor()
    client = StubClient()
    monitor.tracker.track(client)
    shell.user_ns.update(client=client, monitor=monitor)

    run(shell, "seen = client.get_tags(); tag = monitor.current_tag()")
    first = shell.user_ns["seen"]
    assert first == {shell.user_ns["tag"]}
    assert TAG_RE.match(shell.user_ns["tag"])
    assert client.get_tags() == set()  # removed after the cell
    assert monitor.current_tag() is None

    run(shell, "seen = client.get_tags()")
    assert len(shell.user_ns["seen"]) == 1 and shell.user_ns["seen"] != first  # fresh per run


def test_session_created_inside_the_cell_is_tagged_before_its_first_query(
    shell, make_monitor
) -> None:
    monitor = make_monitor()
    shell.user_ns.update(StubClient=StubClient, monitor=monitor)
    # what the SparkConnectClient.__init__ hook does for a client made in the cell
    run(shell, "c = StubClient(); monitor.tracker.track(c); seen = c.get_tags()")
    assert shell.user_ns["seen"] == {list(monitor.runs)[-1].tag}
    assert shell.user_ns["c"].get_tags() == set()


def test_other_threads_carry_the_tag_only_through_the_helpers(
    shell, make_monitor, monkeypatch
) -> None:
    monitor = make_monitor()
    monkeypatch.setattr(sparkscope, "_monitor", monitor)
    client = StubClient()
    monitor.tracker.track(client)
    shell.user_ns.update(client=client, sparkscope=sparkscope, threading=threading)
    run(
        shell,
        """
out = {}
def plain():
    out["plain"] = client.get_tags()
def helped(tag):
    with sparkscope.cell_tag(tag):
        out["helped"] = client.get_tags()
    out["after"] = client.get_tags()
def wrapped():
    out["wrapped"] = client.get_tags()
tag = sparkscope.current_tag()
threads = [threading.Thread(target=plain), threading.Thread(target=helped, args=(tag,)),
           threading.Thread(target=sparkscope.wrap(wrapped))]
for t in threads: t.start()
for t in threads: t.join()
""",
    )
    out, tag = shell.user_ns["out"], shell.user_ns["tag"]
    assert out["plain"] == set()  # pyspark's tags are per thread
    assert out["helped"] == {tag} and out["after"] == set()
    assert out["wrapped"] == {tag}


def test_subscribes_with_the_session_and_user_the_server_sees(make_monitor, agent) -> None:
    monitor = make_monitor(url=agent.url)
    connected(monitor, agent, StubClient(session_id=SID, user_id="alice"))
    monitor.tracker.track(
        StubClient(session_id="33333333-3333-4333-8333-333333333333", user_id=None)
    )
    agent.wait_for(lambda: len(agent.subscribes()) == 2)
    assert agent.subscribes() == [
        {"sessions": [{"sessionId": SID, "userId": "alice"}]},
        # no user id: pyspark sends none, so the agent knows it as "" (left out in proto3 JSON)
        {"sessions": [{"sessionId": "33333333-3333-4333-8333-333333333333"}]},
    ]


def test_widget_appears_on_the_cells_first_job_in_that_cells_output(
    shell, make_monitor, agent, monkeypatch
) -> None:
    monitor = make_monitor(url=agent.url)
    publisher: RecordingPublisher = monitor.publisher  # type: ignore[assignment]
    connected(monitor, agent, StubClient(session_id=SID))
    shell.user_ns["monitor"] = monitor

    # cell 1 runs no Spark job; cell 2 does, but its jobs are reported while cell 3 runs
    parents = iter([{"header": {"msg_id": f"request-{i}"}} for i in (1, 2, 3)])
    parent: dict = {}
    monkeypatch.setattr(shell, "get_parent", lambda: parent, raising=False)
    tags = []
    for _ in range(3):
        parent = next(parents)
        run(shell, "tag = monitor.current_tag()")
        tags.append(shell.user_ns["tag"])
        if len(tags) == 2:
            frames = frames_for(tags[1])
            agent.send(frames[:1])  # snapshot: the session, no operation yet
            agent.send([_operation_only(frames[1])])  # an operation but no job yet
    time.sleep(0.3)
    assert publisher.events == []  # no job, no widget

    agent.send(frames[1:2])  # the first job of cell 2
    (shown,) = publisher.wait_for(lambda: publisher.of("display"))
    assert shown["parent"] == {"header": {"msg_id": "request-2"}}  # cell 2's request
    assert shown["thread"] == "sparkscope-ui"
    assert "application/vnd.jupyter.widget-view+json" in shown["data"]
    widget = monitor.runs.get(tags[1]).widget
    assert widget is not None and widget.tag == tags[1]
    assert [j["jobId"] for j in widget.jobs] == [4] and widget.state == "running"
    assert all(monitor.runs.get(t).widget is None for t in (tags[0], tags[2]))

    agent.send(frames[2:])
    publisher.wait_for(lambda: publisher.of("update"))
    assert widget.state == "done" and widget.cell_done
    assert [(j["jobId"], j["status"]) for j in widget.jobs] == [
        (4, "SUCCEEDED"),
        (5, "SUCCEEDED"),
    ]
    # the operation stays kernel-side, out of the synced (saved) rows
    assert widget.operation_ids == [OP]
    assert all("operationId" not in j and "sessionId" not in j for j in widget.jobs)
    assert widget.jobs[1]["tasks"] == {
        "total": 16,
        "active": 0,
        "completed": 8,
        "skipped": 8,
        "failed": 0,
        "killed": 0,
    }
    assert widget.jobs[1]["stageIds"] == [7, 8]
    assert [(s["stageId"], s["status"]) for s in widget.stages] == [
        (6, "COMPLETE"),
        (7, "SKIPPED"),
        (8, "COMPLETE"),
    ]
    assert widget.operation_ids == [OP] and widget.session_ids == [SID]
    (final,) = publisher.of("update")
    assert final["display_id"] == shown["display_id"]
    text = final["data"]["text/plain"]
    assert text.startswith("sparkscope: 2 jobs (2 succeeded) · 16/24 tasks (8 skipped) · 0.6 s")
    assert "job 5 SUCCEEDED 8/16 tasks, 8 skipped" in text
    assert len(publisher.of("display")) == 1


def _operation_only(frame: str) -> str:
    msg = json.loads(frame)
    update = msg["update"]
    for key in ("jobs", "stages", "tagGroups"):
        update.pop(key, None)
    update["operations"][0].pop("jobIds")
    return json.dumps(msg)


def test_updates_are_throttled_per_cell(shell, make_monitor, agent) -> None:
    monitor = make_monitor(url=agent.url, throttle_ms=300)
    connected(monitor, agent, StubClient(session_id=SID))
    shell.user_ns["monitor"] = monitor
    run(shell, "tag = monitor.current_tag()")
    frames = frames_for(shell.user_ns["tag"])
    agent.send(frames[:2])
    publisher: RecordingPublisher = monitor.publisher  # type: ignore[assignment]
    publisher.wait_for(lambda: publisher.of("display"))
    widget = monitor.runs.get(shell.user_ns["tag"]).widget
    changes = []
    widget.observe(lambda change: changes.append(change["new"]), names="jobs")

    progress = json.loads(frames[2])
    for completed in range(1, 101):  # a busy session: 100 progress updates at once
        job = progress["update"]["jobs"][0]
        job["tasks"] = {"total": 100, "completed": completed}
        agent.send([progress])
    agent.wait_for(lambda: changes and changes[-1][0]["tasks"]["completed"] == 100)
    assert len(changes) <= 5  # ~100 frames in well under a second, 300 ms apart at most


def test_settles_the_cells_final_state_before_the_cell_returns(shell, make_monitor, agent) -> None:
    monitor = make_monitor(url=agent.url, settle_ms=5000)
    client = StubClient(session_id=SID)
    connected(monitor, agent, client)
    agent.send(load_frames("handmade_cell.jsonl")[:1])  # the agent knows the session
    agent.wait_for(lambda: monitor.state.knows_session(SID))
    shell.user_ns.update(client=client, monitor=monitor, agent=agent, frames_for=frames_for, OP=OP)
    publisher: RecordingPublisher = monitor.publisher  # type: ignore[assignment]

    # the operation ends in the cell; the agent reports it a little later, asynchronously
    run(
        shell,
        "client.execute(OP)\n"
        "import threading\n"
        "tag = monitor.current_tag()\n"
        "threading.Timer(0.2, agent.send, [frames_for(monitor.current_tag())[1:]]).start()",
    )
    # no waiting here: the display and its final state were published inside the cell (as one
    # display, or a display and its update, depending on when the first job came in)
    assert publisher.events and publisher.events[0]["kind"] == "display"
    assert "2 jobs (2 succeeded)" in publisher.events[-1]["data"]["text/plain"]
    assert monitor.runs.get(shell.user_ns["tag"]).widget.state == "done"


def test_no_agent_warns_once_and_cells_run_as_before(shell, make_monitor, capsys) -> None:
    # nothing listens there, and outside the ephemeral range a connect can't meet itself
    url = "ws://127.0.0.1:9/api/v1/stream"
    monitor = make_monitor(url=url)
    client = StubClient()
    monitor.tracker.track(client)
    shell.user_ns.update(client=client)
    agent_client = monitor.connection.client
    assert agent_client is not None
    deadline = time.monotonic() + 10
    while agent_client.status.failures == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    for i in range(4):
        run(shell, f"x = {i} + len(client.get_tags())")
        assert shell.user_ns["x"] == i + 1
    err = capsys.readouterr().err
    assert err.count("sparkscope: cannot reach the agent") == 1
    assert url in err and "ConnectionRefusedError" in err
    assert not agent_client.status.connected


def test_wrong_token_is_reported_as_such(shell, make_monitor, agent, capsys) -> None:
    monitor = make_monitor(url=agent.url, token="not-the-token")
    monitor.tracker.track(StubClient())
    agent.wait_for(lambda: agent.refused)
    agent.wait_for(lambda: monitor.connection.client.status.failures)
    run(shell, "pass")
    err = capsys.readouterr().err
    assert "refused this notebook's credential" in err
    assert "not-the-token" not in err
    assert monitor.connection.client.status.unauthorized


def test_reconnects_after_the_agent_drops_and_resubscribes(shell, make_monitor, agent) -> None:
    monitor = make_monitor(url=agent.url)
    client = StubClient(session_id=SID)
    connected(monitor, agent, client)
    shell.user_ns["monitor"] = monitor
    run(shell, "tag = monitor.current_tag()")
    tag = shell.user_ns["tag"]
    frames = frames_for(tag)
    agent.send(frames[:3])
    publisher: RecordingPublisher = monitor.publisher  # type: ignore[assignment]
    publisher.wait_for(lambda: publisher.of("display"))

    agent.drop(code=None)  # the TCP connection just goes away
    agent.wait_for(lambda: len(agent.subscribes()) == 2, timeout=15)
    agent.drop(code=1008, reason="slow consumer")  # the agent's slow-consumer close
    agent.wait_for(lambda: len(agent.subscribes()) == 3, timeout=15)
    assert agent.subscribes()[1:] == [{"sessions": [{"sessionId": SID, "userId": "alice"}]}] * 2
    assert monitor.connection.client.status.attempts >= 3

    # after a reconnect the stream starts with a snapshot; the cell's widget keeps going
    agent.send([frames[0], *frames[3:]])
    widget = monitor.runs.get(tag).widget
    agent.wait_for(lambda: widget.state == "done")
    assert len(publisher.of("display")) == 1


@pytest.mark.parametrize("code", ["pass", "raise ValueError('user error')"])
def test_hooks_never_raise_into_the_cell(shell, make_monitor, code) -> None:
    monitor = make_monitor()

    class Broken(StubClient):
        def add_tag(self, tag: str) -> None:
            raise RuntimeError("broken client")

    monitor.tracker.track(Broken())
    result = shell.run_cell(code)
    if code == "pass":
        assert result.success
    else:
        assert isinstance(result.error_in_exec, ValueError)


RECORDED_TAGS = ("sparkscope-cell-000000000001", "sparkscope-cell-000000000002")


def test_recorded_agent_stream_two_cells_settled(shell, make_monitor, agent) -> None:
    """Frames recorded from the real agent (record_frames.py): a cell with an aggregation (four
    jobs, skipped stages under AQE) and a cell whose query fails; each cell's final state is
    in its widget when the cell returns."""
    monitor = make_monitor(url=agent.url, settle_ms=5000)
    client = StubClient(session_id=SID)
    connected(monitor, agent, client)
    recorded = load_frames("agent_stream.jsonl")
    agent.send(recorded[:2])  # snapshot, then the application and the session
    agent.wait_for(lambda: monitor.state.knows_session(SID))
    ops = [json.loads(f)["update"].get("operations", []) for f in recorded]
    cell_ops = [
        sorted({o["operationId"] for frame in ops for o in frame if tag in o.get("tags", [])})
        for tag in RECORDED_TAGS
    ]
    split = next(i for i, f in enumerate(recorded) if RECORDED_TAGS[1] in f)
    shell.user_ns.update(client=client, monitor=monitor, agent=agent, threading=threading)

    widgets = []
    for n, (first, last) in enumerate(((2, split), (split, len(recorded)))):
        shell.user_ns["ops"] = cell_ops[n]
        shell.user_ns["send"] = lambda tag, a=first, b=last, old=RECORDED_TAGS[n]: agent.send(
            [f.replace(old, tag) for f in recorded[a:b]]
        )
        # pyspark reports each operation as the cell runs it; the agent's frames come later
        run(
            shell,
            "for op in ops: client.execute(op)\n"
            "tag = monitor.current_tag()\n"
            "threading.Timer(0.1, send, [tag]).start()",
        )
        widget = monitor.runs.get(shell.user_ns["tag"]).widget
        assert widget is not None and widget.state == "done"  # settled inside the cell
        widgets.append(widget)

    aggregation, failing = widgets
    assert [(j["jobId"], j["status"]) for j in aggregation.jobs] == [
        (0, "SUCCEEDED"),
        (1, "SUCCEEDED"),
        (2, "SUCCEEDED"),
        (3, "SUCCEEDED"),
    ]
    assert [j["tasks"]["skipped"] for j in aggregation.jobs] == [0, 8, 8, 9]
    assert {j["label"] for j in aggregation.jobs} == {"sort ← aggregate ← range"}
    assert ("SKIPPED", 5) in {(s["status"], s["stageId"]) for s in aggregation.stages}
    assert aggregation.summary.startswith("4 jobs (4 succeeded) · 11/36 tasks (25 skipped)")

    (job,) = failing.jobs
    assert job["status"] == "FAILED" and job["tasks"]["failed"] == 2
    assert "USER_RAISED_EXCEPTION" in (job["error"] or "")
    assert job["label"].startswith("SELECT raise_error(")
    assert failing.operation_ids == cell_ops[1]  # the sql command and the collect
    assert [s["status"] for s in failing.stages] == ["FAILED"]
    assert "1 failed" in failing.summary


def test_magic_shows_status_and_rejects_bad_options(shell, capsys, monkeypatch, tmp_path) -> None:
    from IPython.core.error import UsageError

    monkeypatch.setenv("SPARKSCOPE_URL", "ws://127.0.0.1:9/api/v1/stream")
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-from-a-file\n")
    shell.run_line_magic("load_ext", "sparkscope")
    try:
        shell.run_line_magic("sparkscope", f"--settle-ms 0 --token-file {token_file}")
        out = capsys.readouterr().out
        assert "ws://127.0.0.1:9/api/v1/stream" in out
        assert "settle 0 ms" in out and "token set" in out and "s3cret" not in out
        assert sparkscope._monitor.config.token == "s3cret-from-a-file"
        with pytest.raises(UsageError):
            shell.run_line_magic("sparkscope", "--token s3cret")  # never in a cell
        with pytest.raises(UsageError):
            shell.run_line_magic("sparkscope", "--no-such-option")
    finally:
        shell.run_line_magic("unload_ext", "sparkscope")
    assert sparkscope._monitor is None


def test_gaps_the_cells_numbers_went_through_are_shown_not_hidden(
    shell, make_monitor, agent
) -> None:
    monitor = make_monitor(url=agent.url)
    publisher: RecordingPublisher = monitor.publisher  # type: ignore[assignment]
    connected(monitor, agent, StubClient(session_id=SID))
    shell.user_ns["monitor"] = monitor
    run(shell, "tag = monitor.current_tag()")
    tag = shell.user_ns["tag"]
    frames = frames_for(tag)
    app_id = json.loads(frames[1])["update"]["jobs"][0]["appId"]
    agent.send(frames)
    publisher.wait_for(lambda: publisher.of("display"))
    now_ms = int(time.time() * 1000)
    notices = [
        {"kind": "NOTICE_KIND_DROPPED", "atMs": "1", "message": "before this cell: not shown"},
        {
            "kind": "NOTICE_KIND_RESYNC",
            "atMs": str(now_ms + 1000),
            "message": "reconnected: 1 running job(s) and operation(s) restored from Spark",
        },
    ]
    agent.send(
        [
            json.dumps(
                {
                    "update": {
                        "generation": "99",
                        "applications": [{"id": app_id, "live": True, "notices": notices}],
                    }
                }
            )
        ]
    )
    widget = monitor.runs.get(tag).widget
    time.sleep(1)
    print(
        "DEBUG",
        monitor.state.applications,
        monitor.runs.get(tag).started_ms,
        monitor.runs.get(tag).notices,
        list(monitor.runs.get(tag).jobs)[:2],
    )
    publisher.wait_for(lambda: widget.notices)
    assert [(n["kind"], n["message"]) for n in widget.notices] == [
        ("resync", "reconnected: 1 running job(s) and operation(s) restored from Spark")
    ]
    final = publisher.wait_for(
        lambda: [
            e for e in publisher.of("update") if "note: reconnected" in e["data"]["text/plain"]
        ]
    )
    assert final


def test_the_credential_is_found_without_configuration(monkeypatch, tmp_path) -> None:
    from sparkscope.extension import default_token

    for name in ("SPARKSCOPE_TOKEN", "SPARKSCOPE_TOKEN_FILE", "JUPYTERHUB_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert default_token() is None
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hub-token")
    assert default_token() == "hub-token"  # inside JupyterHub: the Hub says who we are
    path = tmp_path / "t"
    path.write_text("file-token\n")
    monkeypatch.setenv("SPARKSCOPE_TOKEN_FILE", str(path))
    assert default_token() == "file-token"
    monkeypatch.setenv("SPARKSCOPE_TOKEN", "env-token")
    assert default_token() == "env-token"


def test_a_fingerprint_lost_with_the_connection_goes_again_after_the_reconnect(
    shell, make_monitor, agent, monkeypatch
) -> None:
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/ann/work.ipynb")
    parent = {"header": {"msg_id": "request-1"}, "metadata": {"cellId": "cell-a"}}
    monkeypatch.setattr(shell, "get_parent", lambda: parent, raising=False)
    monitor = make_monitor(url=agent.url)
    connected(monitor, agent, StubClient(session_id=SID))
    shell.user_ns["monitor"] = monitor
    run(shell, "tag = monitor.current_tag()")
    tag = shell.user_ns["tag"]
    agent.send(frames_for(tag))

    def fingerprints() -> list[dict]:
        return [m["fingerprint"] for m in agent.messages if "fingerprint" in m]

    # the run is done: its fingerprint goes out, and the connection goes before the answer
    (first,) = agent.wait_for(fingerprints)
    assert (first["tag"], first["cellId"]) == (tag, "cell-a"), first
    agent.drop(code=None)
    agent.wait_for(lambda: len(agent.subscribes()) == 2, timeout=15)
    # after the reconnect's snapshot it goes again; the agent answers with this very run (the
    # first try did reach it): no diff against itself
    agent.send(frames_for(tag)[:1])
    again = agent.wait_for(lambda: len(fingerprints()) == 2 and fingerprints(), timeout=15)
    assert again[1]["tag"] == tag and again[1]["requestId"] != first["requestId"]
    (conn,) = [c for c in agent.open_connections()]
    conn.send_text(
        json.dumps({"previousRun": {"requestId": again[1]["requestId"], "previous": again[1]}})
    )
    time.sleep(0.5)
    assert monitor.runs.get(tag).diff is None
    assert monitor.runs.get(tag).fingerprint_tries == 2
