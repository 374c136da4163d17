"""The client-side state: proto3 JSON defaults, int64 strings, snapshot vs delta, views by tag."""

from __future__ import annotations

import json

from fake_agent import load_frames
from sparkscope.state import StreamState, normalize_job, normalize_stage

TAG = "sparkscope-cell-000000000001"
APP = "local-1795258400000"


def updates() -> list[dict]:
    return [json.loads(f)["update"] for f in load_frames("handmade_cell.jsonl")]


def test_defaults_and_int64_strings() -> None:
    job = normalize_job({"appId": APP, "jobId": 4, "submissionTimeMs": "1795258404100"})
    assert job["status"] == "UNSPECIFIED"
    assert job["tasks"] == dict.fromkeys(
        ("total", "active", "completed", "skipped", "failed", "killed"), 0
    )
    assert job["stages"] == dict.fromkeys(("active", "completed", "skipped", "failed"), 0)
    assert job["stageIds"] == [] and job["connect"] is None and job["error"] is None
    assert job["submissionTimeMs"] == 1795258404100
    assert job["completionTimeMs"] is None  # optional: absent means unset, not 0

    stage = normalize_stage({"stageId": 7, "status": "STAGE_STATUS_SKIPPED", "inputBytes": "5"})
    assert stage["attemptId"] == 0 and stage["numTasks"] == 0
    assert stage["status"] == "SKIPPED" and stage["inputBytes"] == 5


def test_deltas_replace_by_identity_and_views_follow_the_tag() -> None:
    state = StreamState()
    first, *rest = updates()
    assert state.apply(first) is None  # snapshot
    assert state.knows_session("11111111-1111-4111-8111-111111111111")
    touched = state.apply(rest[0])
    assert touched == {TAG}
    view = state.view(TAG)
    assert [k for k in view.jobs] == [(APP, 4)]
    assert view.jobs[(APP, 4)]["status"] == "RUNNING"
    assert list(view.stages) == [(APP, 6, 0)]

    for update in rest[1:]:
        state.apply(update)
    view = state.view(TAG)
    assert sorted(view.jobs) == [(APP, 4), (APP, 5)]
    job5 = view.jobs[(APP, 5)]
    assert job5["status"] == "SUCCEEDED"
    # the delta's copy replaced the old one whole: active went back to its default
    assert job5["tasks"] == {
        "total": 16,
        "active": 0,
        "completed": 8,
        "skipped": 8,
        "failed": 0,
        "killed": 0,
    }
    assert {k: s["status"] for k, s in view.stages.items()} == {
        (APP, 6, 0): "COMPLETE",
        (APP, 7, 0): "SKIPPED",
        (APP, 8, 0): "COMPLETE",
    }
    (op,) = view.operations.values()
    assert op["state"] == "FINISHED" and op["producedRowCount"] == 1
    assert state.generation == 5 and state.sent_at_ms == 1795258404800
    # an entity left out of a delta keeps its last copy
    assert state.applications[APP]["cluster"]["activeTasks"] == 2


def test_snapshot_replaces_everything() -> None:
    state = StreamState()
    for update in updates():
        state.apply(update)
    assert state.view(TAG).jobs
    assert state.apply({"generation": "9", "snapshot": True}) is None
    assert state.view(TAG).jobs == {}
    assert state.jobs == {} and state.stages == {} and state.generation == 9


def test_jobs_found_by_tag_group_or_operation_without_connect_ref() -> None:
    state = StreamState()
    state.apply(
        {
            "jobs": [{"appId": APP, "jobId": 1, "status": "JOB_STATUS_RUNNING"}],
            "tagGroups": [{"tag": TAG, "jobIds": [1], "appId": APP, "sessionId": "s"}],
        }
    )
    state.apply(
        {
            "jobs": [{"appId": APP, "jobId": 2}],
            "operations": [{"appId": APP, "operationId": "o", "tags": [TAG], "jobIds": [2]}],
        }
    )
    assert sorted(state.view(TAG).jobs) == [(APP, 1), (APP, 2)]
    assert state.view("another-tag").jobs == {}


def test_prune_keeps_running_and_newest_jobs() -> None:
    state = StreamState()
    jobs = [
        {
            "appId": APP,
            "jobId": i,
            "status": "JOB_STATUS_SUCCEEDED" if i < 8 else "JOB_STATUS_RUNNING",
            "stageIds": [i],
            "completionTimeMs": str(1000 + i) if i < 8 else None,
        }
        for i in range(10)
    ]
    jobs = [{k: v for k, v in j.items() if v is not None} for j in jobs]
    stages = [{"appId": APP, "stageId": i, "jobIds": [i]} for i in range(10)]
    state.apply({"jobs": jobs, "stages": stages})
    state.prune(max_jobs=4)
    # the oldest ended jobs went first; running ones are never dropped
    assert sorted(j for _, j in state.jobs) == [6, 7, 8, 9]
    assert sorted(s for _, s, _ in state.stages) == [6, 7, 8, 9]


def test_log_lines_reach_the_cell_whose_job_stage_or_operation_they_name() -> None:
    from sparkscope.cellrun import CellRun, CellRuns
    from sparkscope.cellview import build
    from sparkscope.state import MAX_LOG_LINES

    state = StreamState()
    first, *rest = updates()
    state.apply(first)
    for update in rest:
        state.apply(update)
    line = {"appId": APP, "level": "ERROR", "timeMs": "1795258404200", "logger": "a.b.Executor"}
    touched = state.apply(
        {
            "logLines": [
                # by the job: the agent tied it through the stage the line names
                {
                    **line,
                    "seq": "1",
                    "message": "Exception in task 0.0 in stage 6.0",
                    "jobId": 4,
                    "stageId": 6,
                    "sessionId": "s",
                    "userId": "u",
                    "thrown": "java.lang.X: boom",
                },
                # by the client tag of the operation's thread
                {**line, "seq": "2", "level": "WARN", "message": "slow", "tags": [TAG]},
                # another cell's
                {**line, "seq": "3", "message": "not mine", "tags": ["sparkscope-cell-other"]},
            ]
        }
    )
    assert touched is not None and TAG in touched
    view = state.view(TAG)
    assert [k[2] for k in sorted(view.logs)] == [1, 2]

    runs = CellRuns()
    run = CellRun(tag=TAG, parent=None, thread=0)
    runs.start(run)
    runs.merge(state, {}, {TAG})
    assert run.urgent, "an ERROR line is shown at once"
    rows = build(run, state, 1795258405000).logs
    assert [r["message"] for r in rows] == ["Exception in task 0.0 in stage 6.0", "slow"]
    assert rows[0]["jobId"] == 4 and rows[0]["stageId"] == 6 and rows[1]["jobId"] is None
    assert rows[0]["thrown"] == "java.lang.X: boom"
    # whose it is stays in the kernel: the widget's rows name no session or user
    assert not {"sessionId", "userId", "operationId", "tags"} & set(rows[0])

    # the agent restarted: its snapshot numbers lines from 1 again; the run keeps what it was
    # shown and adds the new line
    state.apply({"snapshot": True, "generation": "1"})
    for update in updates()[1:]:
        state.apply(update)
    state.apply({"logLines": [{**line, "seq": "1", "timeMs": "1795258409000", "tags": [TAG]}]})
    runs.merge(state, {}, {TAG})
    assert len(build(run, state, 1795258410000).logs) == 3

    # bounded: the oldest go
    state.apply(
        {"logLines": [{**line, "seq": str(10 + i), "message": "x"} for i in range(MAX_LOG_LINES)]}
    )
    assert len(state.log_lines) == MAX_LOG_LINES
    assert (APP, 1795258404200, 1) not in state.log_lines
