"""Cancel from the widget, in an in-process IPython shell against the stand-in agent
(fake_agent.py): the frames the package sends (a cell run by its tag in every session its
operations ran in, a job by its id, each with the session and user id the agent reported), and
what the widget shows for every answer — success, the agent's error codes, and the answers the
package gives itself when the agent cannot (no connection, a refused token, no answer).

The agent's own checks (a subscriber cancels only the sessions it follows, a wrong token is
refused) are tested against the real agent in tests/e2e/test_cancel.py."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from fake_agent import FakeAgent
from sparkscope.cellview import CellView
from sparkscope.extension import CANCEL_REASON, Monitor
from sparkscope.report import text_report
from sparkscope.widget import CellWidget, parse_cancel
from support import RecordingPublisher, StubClient

APP = "local-1795258400000"
SID = "11111111-1111-4111-8111-111111111111"
SID2 = "33333333-3333-4333-8333-333333333333"
OP = "22222222-2222-4222-8222-222222222222"
OP2 = "44444444-4444-4444-8444-444444444444"
REASON = {"reason": CANCEL_REASON}


# -- frames as the agent sends them (docs/streaming-api.md; defaults left out, int64 as strings)


def snapshot(*sessions: tuple[str, str]) -> dict:
    return {
        "update": {
            "generation": "1",
            "snapshot": True,
            "sentAtMs": "1795258404000",
            "applications": [{"id": APP, "name": "Spark Connect server", "live": True}],
            "sessions": [
                {"appId": APP, "sessionId": sid, **({"userId": user} if user else {})}
                for sid, user in sessions
            ],
        }
    }


def operation(op_id: str, sid: str, user: str, tag: str, state: str, job_ids: list[int]) -> dict:
    op = {
        "appId": APP,
        "operationId": op_id,
        "sessionId": sid,
        "tags": [tag],
        "state": f"OPERATION_STATE_{state}",
        "startTimeMs": "1795258404000",
        "statement": "range(0, 2, step=1, splits=Some(2))",
        "jobIds": job_ids,
    }
    if user:
        op["userId"] = user
    return op


def job(job_id: int, op_id: str, sid: str, user: str, tag: str, status: str) -> dict:
    ended = status != "RUNNING"
    connect = {"sessionId": sid, "operationId": op_id, "tags": [tag]}
    if user:
        connect["userId"] = user
    return {
        "appId": APP,
        "jobId": job_id,
        "name": "collect at NativeMethodAccessorImpl.java:0",
        "status": f"JOB_STATUS_{status}",
        "stageIds": [job_id * 10],
        "tasks": {"total": 2}
        | {"FAILED": {"killed": 2}, "SUCCEEDED": {"completed": 2}}.get(status, {"active": 2}),
        "submissionTimeMs": str(1795258404100 + job_id),
        **({"completionTimeMs": "1795258405000"} if ended else {}),
        "connect": connect,
    }


def update(generation: int, ops: list[dict], jobs: list[dict]) -> dict:
    return {
        "update": {
            "generation": str(generation),
            "sentAtMs": str(1795258404000 + generation * 100),
            "operations": ops,
            "jobs": jobs,
        }
    }


# -- helpers


def run(shell, code: str) -> None:
    result = shell.run_cell(code)
    assert result.success, result.error_in_exec or result.error_before_exec


def cell_with_jobs(shell, monitor: Monitor, agent: FakeAgent, two_sessions: bool = False):
    """A finished cell whose tag the agent reports on a running job (two sessions: one job in
    each, the second session without a user id). Returns (tag, widget)."""
    clients = [StubClient(session_id=SID, user_id="alice")]
    sessions = [(SID, "alice")]
    if two_sessions:
        clients.append(StubClient(session_id=SID2, user_id=None))
        sessions.append((SID2, ""))
    for client in clients:
        monitor.tracker.track(client)
    shell.user_ns["clients"] = clients  # the tracker holds them weakly, like pyspark's sessions
    agent.wait_for(lambda: sum(len(sub["sessions"]) for sub in agent.subscribes()) == len(sessions))
    agent.wait_for(lambda: monitor.connection.client.status.connected)
    shell.user_ns["monitor"] = monitor
    run(shell, "tag = monitor.current_tag()")
    tag = shell.user_ns["tag"]
    ops = [operation(OP, SID, "alice", tag, "READY", [4])]
    jobs = [job(4, OP, SID, "alice", tag, "RUNNING")]
    if two_sessions:
        ops.append(operation(OP2, SID2, "", tag, "READY", [6]))
        jobs.append(job(6, OP2, SID2, "", tag, "RUNNING"))
    agent.send([snapshot(*sessions), update(2, ops, jobs)])
    publisher: RecordingPublisher = monitor.publisher  # type: ignore[assignment]
    publisher.wait_for(lambda: publisher.of("display"))
    widget = monitor.runs.get(tag).widget
    assert widget is not None and [j["jobId"] for j in widget.jobs] == [4, 6][: len(jobs)]
    return tag, widget


def click(widget: CellWidget, **message: Any) -> None:
    """What the widget's ESM sends on a Cancel click, as ipywidgets hands it to the widget."""
    widget._on_custom_msg(widget, {"kind": "cancel", **message}, [])


def outcome(agent: FakeAgent, widget: CellWidget) -> dict:
    return agent.wait_for(lambda: widget.cancel if widget.cancel.get("status") == "done" else None)


# -- the frames the package sends


def test_cell_cancel_names_the_tag_in_every_session_of_the_cells_operations(
    shell, make_monitor, agent
) -> None:
    monitor = make_monitor(url=agent.url)
    tag, widget = cell_with_jobs(shell, monitor, agent, two_sessions=True)
    answered: list[dict] = []

    def answer(request: dict) -> dict:
        answered.append(request)
        op = OP if request["sessionId"] == SID else OP2
        return {
            "ok": True,
            "message": "interrupted 1 operation(s)",
            "interruptedOperationIds": [op],
        }

    agent.on_cancel = answer
    click(widget, target="cell", requestId="req1")
    result = outcome(agent, widget)

    assert agent.cancels() == [
        {"requestId": "req1-0", "sessionId": SID, "userId": "alice", "tag": tag, **REASON},
        # pyspark sent no user id: the agent knows the user as "" (left out, like subscribe)
        {"requestId": "req1-1", "sessionId": SID2, "tag": tag, **REASON},
    ]
    assert result["requestId"] == "req1" and result["target"] == "cell"
    assert result["ok"] is True and result["code"] == ""
    assert result["message"] == "interrupted 1 operation(s)"
    assert result["interruptedOperations"] == 2 and "interruptedOperationIds" not in result
    assert widget.state == "running"  # the jobs have not ended yet

    # the agent reports the interrupted work ended: the widget says cancelled, the jobs FAILED
    agent.send(
        [
            update(
                3,
                [
                    operation(OP, SID, "alice", tag, "CANCELED", [4]),
                    operation(OP2, SID2, "", tag, "CANCELED", [6]),
                ],
                [job(4, OP, SID, "alice", tag, "FAILED"), job(6, OP2, SID2, "", tag, "FAILED")],
            )
        ]
    )
    agent.wait_for(lambda: widget.state == "cancelled")
    assert [j["status"] for j in widget.jobs] == ["FAILED", "FAILED"]
    publisher: RecordingPublisher = monitor.publisher  # type: ignore[assignment]
    (final,) = publisher.wait_for(lambda: publisher.of("update"))
    assert "· cancelled" in final["data"]["text/plain"].splitlines()[0]


def test_job_cancel_names_the_job_and_its_session(shell, make_monitor, agent) -> None:
    monitor = make_monitor(url=agent.url)
    tag, widget = cell_with_jobs(shell, monitor, agent, two_sessions=True)
    agent.on_cancel = lambda request: {
        "ok": True,
        "message": f"asked Spark to cancel job {request['jobId']}",
        "cancelledJobIds": [request["jobId"]],
    }
    click(widget, target="job", jobId=6, appId=APP, requestId="req2")
    result = outcome(agent, widget)

    (sent,) = agent.cancels()
    assert sent == {"requestId": "req2", "sessionId": SID2, "jobId": 6, **REASON}
    assert result["ok"] is True and result["target"] == "job" and result["jobId"] == 6
    assert result["message"] == "asked Spark to cancel job 6"
    assert widget.cancelled_jobs == [6]

    # the other job completes; one cancelled job does not make the cell "cancelled"
    agent.send(
        [
            update(
                3,
                [
                    operation(OP, SID, "alice", tag, "FINISHED", [4]),
                    operation(OP2, SID2, "", tag, "FAILED", [6]),
                ],
                [job(4, OP, SID, "alice", tag, "SUCCEEDED"), job(6, OP2, SID2, "", tag, "FAILED")],
            )
        ]
    )
    agent.wait_for(lambda: widget.state == "done")
    assert [(j["jobId"], j["status"]) for j in widget.jobs] == [(4, "SUCCEEDED"), (6, "FAILED")]


def test_the_request_is_pending_in_the_widget_until_the_agent_answers(
    shell, make_monitor, agent
) -> None:
    monitor = make_monitor(url=agent.url)
    _, widget = cell_with_jobs(shell, monitor, agent)
    click(widget, target="cell", requestId="slow")
    agent.wait_for(lambda: agent.cancels())
    agent.wait_for(lambda: widget.cancel.get("status") == "pending")
    assert widget.cancel["requestId"] == "slow" and "asking the agent" in widget.cancel["message"]
    (conn,) = agent.open_connections()
    conn.send_text(json.dumps({"cancelResult": {"requestId": "slow", "ok": True}}))
    assert outcome(agent, widget)["ok"] is True


# -- what the widget shows when nothing was cancelled


AGENT_ERRORS = {
    "finished": "everything tagged 'x' has already finished",
    "not_found": "unknown session 11111111-1111-4111-8111-111111111111 for user 'alice'",
    "forbidden": "this subscriber does not follow session … of user 'alice'",
    "refused": "Spark Connect refused the interrupt: INVALID_HANDLE.SESSION_CHANGED",
    "unavailable": "the Spark Connect server's address is unknown; start the agent with …",
}


@pytest.mark.parametrize("code", sorted(AGENT_ERRORS))
def test_the_agents_error_codes_are_shown(shell, make_monitor, agent, code: str) -> None:
    monitor = make_monitor(url=agent.url)
    _, widget = cell_with_jobs(shell, monitor, agent)
    agent.on_cancel = lambda request: {"code": code, "message": AGENT_ERRORS[code]}
    click(widget, target="job", jobId=4, appId=APP, requestId="r")
    result = outcome(agent, widget)
    assert (result["ok"], result["code"], result["message"]) == (False, code, AGENT_ERRORS[code])
    assert widget.cancelled_jobs == [] and widget.state == "running"


def test_a_job_the_cell_does_not_have_is_not_sent(shell, make_monitor, agent) -> None:
    monitor = make_monitor(url=agent.url)
    _, widget = cell_with_jobs(shell, monitor, agent)
    click(widget, target="job", jobId=99, appId=APP, requestId="r")
    result = outcome(agent, widget)
    assert result["code"] == "not_found" and "job 99" in result["message"]
    assert agent.cancels() == []


def test_no_agent_connection_is_said_at_once(shell, make_monitor, agent) -> None:
    monitor = make_monitor(url=agent.url)
    _, widget = cell_with_jobs(shell, monitor, agent)
    assert widget.agent_error == ""
    agent.stop()  # gone: the client's reconnects are refused
    agent.wait_for(lambda: widget.agent_error, timeout=15)
    assert "not connected to the agent" in widget.agent_error
    assert agent.url in widget.agent_error
    t0 = time.monotonic()
    click(widget, target="cell", requestId="r")
    result = outcome(agent, widget)
    assert time.monotonic() - t0 < 2.0  # answered at once, not after a timeout
    assert result["status"] == "done" and result["code"] == "no_agent"
    assert "not connected to the agent" in result["message"] and agent.url in result["message"]


def test_a_refused_token_is_said_as_such(shell, make_monitor, agent) -> None:
    monitor = make_monitor(url=agent.url)
    _, widget = cell_with_jobs(shell, monitor, agent)
    monitor.reconfigure(token="not-the-token")  # reconnects, and the agent refuses it
    agent.wait_for(lambda: agent.refused)
    agent.wait_for(lambda: "refused this notebook's credential" in widget.agent_error)
    click(widget, target="cell", requestId="r")
    result = outcome(agent, widget)
    assert (
        result["code"] == "unauthorized"
        and "refused this notebook's credential" in result["message"]
    )
    assert "not-the-token" not in result["message"] + widget.agent_error
    assert agent.cancels() == []


def test_a_lost_connection_answers_what_was_sent(shell, make_monitor, agent) -> None:
    monitor = make_monitor(url=agent.url)
    _, widget = cell_with_jobs(shell, monitor, agent)
    click(widget, target="cell", requestId="r")  # never answered
    agent.wait_for(lambda: agent.cancels())
    agent.drop(code=None)
    result = outcome(agent, widget)
    assert result["code"] == "no_answer" and "lost" in result["message"]
    # not replayed on the new stream: a late cancel could stop newer work
    agent.wait_for(lambda: len(agent.subscribes()) == 2, timeout=15)
    time.sleep(0.3)
    assert len(agent.cancels()) == 1


def test_an_unanswered_request_times_out(shell, make_monitor, agent) -> None:
    monitor = make_monitor(url=agent.url)
    _, widget = cell_with_jobs(shell, monitor, agent)
    monitor.connection.client.cancel_timeout = 0.3
    click(widget, target="cell", requestId="r")
    result = outcome(agent, widget)
    assert result["code"] == "no_answer" and "did not answer" in result["message"]


# -- the widget's message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"kind": "cancel", "target": "cell", "requestId": "ab12"}, {"request_id": "ab12"}),
        (
            {"kind": "cancel", "target": "job", "jobId": 3, "appId": APP, "requestId": "x"},
            {"request_id": "x", "job_id": 3, "app_id": APP},
        ),
        # an id that is not a short token is replaced by the kernel's own
        ({"kind": "cancel", "target": "cell", "requestId": "a b" * 40}, {"request_id": None}),
        ({"kind": "cancel", "target": "job", "jobId": "3"}, None),
        ({"kind": "cancel", "target": "job", "jobId": True}, None),
        ({"kind": "cancel", "target": "job"}, None),
        ({"kind": "cancel", "target": "everything"}, None),
        ({"kind": "other"}, None),
        ("cancel", None),
    ],
)
def test_parse_cancel(content: Any, expected: dict | None) -> None:
    assert parse_cancel(content) == expected


def test_a_bad_message_or_a_failing_handler_never_raises() -> None:
    widget = CellWidget(tag="sparkscope-cell-000000000001")
    calls = []
    widget.on_cancel(lambda **kw: calls.append(kw) or 1 / 0)
    widget._on_custom_msg(widget, {"kind": "cancel", "target": "cell"}, [])
    widget._on_custom_msg(widget, None, [])
    assert calls == [{"request_id": None}]
    widget.close()


def test_text_report_says_cancelled() -> None:
    assert text_report(CellView("t", [], [], 0, state="cancelled")).startswith(
        "sparkscope: no Spark jobs · "
    )
