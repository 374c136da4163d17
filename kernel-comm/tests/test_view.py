"""What the widget shows besides its jobs: busy-slot samples (decoded, windowed, bounded), the
cluster context, the hints on stages, root causes, and the static HTML and text reports."""

from __future__ import annotations

from html.parser import HTMLParser

from sparkscope import cellview as view
from sparkscope.agent import normalize_task_list
from sparkscope.cellview import CellView
from sparkscope.report import html_report, text_report
from sparkscope.state import StreamState, normalize_samples, normalize_stage
from sparkscope.widget import parse_tasks

APP = "local-1795258400000"


def stage(**fields) -> dict:
    return normalize_stage({"appId": APP, "stageId": 3, **fields})


def job(status: str = "SUCCEEDED", **fields) -> dict:
    base = {
        "appId": APP,
        "jobId": 7,
        "name": "",
        "label": "agg",
        "status": status,
        "stageIds": [3],
        "tasks": {"total": 4, "active": 0, "completed": 3, "skipped": 0, "failed": 1, "killed": 0},
        "stages": {"active": 0, "completed": 0, "skipped": 0, "failed": 1},
        "submissionTimeMs": 1000,
        "completionTimeMs": 3000,
        "error": None,
        "sqlExecutionId": 2,
    }
    return {**base, **fields}


def test_samples_arrive_as_columns_and_deltas_append() -> None:
    raw = {
        "startMs": "1000",
        "offsetMs": [0, 100, 250],
        "activeTasks": [0, 4],
        "totalCores": [8] * 3,
    }
    assert normalize_samples(raw) == [(1000, 0, 8, 0, 0), (1100, 4, 8, 0, 0), (1250, 0, 8, 0, 0)]
    state = StreamState()
    app = {"id": APP, "taskSamples": {"startMs": "1000", "offsetMs": [0], "activeTasks": [1]}}
    state.apply({"snapshot": True, "applications": [app]})
    app["taskSamples"] = {"startMs": "1100", "offsetMs": [0, 50], "activeTasks": [2, 0]}
    state.apply({"applications": [app]})
    assert [s[:2] for s in state.samples[APP]] == [(1000, 1), (1100, 2), (1150, 0)]
    assert "taskSamples" not in state.applications[APP]
    # a resent sample is not kept twice
    state.apply({"applications": [app]})
    assert len(state.samples[APP]) == 3


def test_window_starts_with_the_value_in_force_and_keeps_bursts() -> None:
    samples = [(0, 5, 8, 1), (900, 2, 8, 1), (1000, 3, 8, 1), (1500, 0, 8, 1), (9000, 7, 8, 1)]
    assert view.window(samples, 950, 2000) == [[950, 2, 8], [1000, 3, 8], [1500, 0, 8]]
    # the value the work ended on comes a moment after Spark's end time
    assert view.window(samples, 950, 1400)[-1] == [1500, 0, 8]
    many = [(t, 1 if t != 5000 else 64, 8, 1) for t in range(0, 10_000, 10)]
    w = view.window(many, 0, 10_000, max_points=50)
    assert len(w) <= 51 and max(r[1] for r in w) == 64, "a one-sample burst survives"


def test_context_fills_the_user_into_the_operators_link() -> None:
    app = {
        "name": "Spark Connect server",
        "sparkVersion": "4.3.0",
        "master": "local[4]",
        "connectAddress": "10.0.0.1:15002",
        "live": True,
        "uiLink": "https://hub.example/user/{user}/proxy/4040",
        "cluster": {"executors": 2, "totalCores": 8, "activeTasks": 3},
    }
    ctx = view.context(app, APP, "s-1", "alice")
    assert ctx["uiLink"] == "https://hub.example/user/alice/proxy/4040"
    assert ctx["master"] == "local[4]" and ctx["sessionId"] == "s-1"
    assert view.cluster(app) == {"executors": 2, "cores": 8, "busy": 3}
    assert view.context(None, APP, "", "")["uiLink"] == ""


def test_skew_needs_a_ratio_and_a_second() -> None:
    def d(lo: int, med: int, hi: int) -> dict:
        return stage(taskDurations={"minMs": lo, "medianMs": med, "maxMs": hi})

    assert view.skewed(d(100, 150, 5000))
    assert not view.skewed(d(100, 150, 600)), "3x but only 450 ms apart"
    assert not view.skewed(d(1000, 4000, 9000)), "a second apart but not 3x"
    assert not view.skewed(stage())
    assert view.spilled(stage(memorySpilledBytes="10", diskSpilledBytes=5)) == 15


def test_root_cause_is_the_first_failure_and_reports_say_it() -> None:
    early = {"taskId": 1, "index": 0, "attempt": 1, "executorId": "2", "host": "h2",
             "reason": "ExceptionFailure", "exceptionClass": "java.lang.ArithmeticException",
             "message": "/ by zero", "stackTrace": "java.lang.ArithmeticException: / by zero",
             "timeMs": 5}  # fmt: skip
    late = {**early, "taskId": 9, "message": "later", "timeMs": 50}
    stages = [stage(firstFailure=late), stage(stageId=4, firstFailure=early)]
    j = job("FAILED", stageIds=[3, 4])
    assert view.root_cause(j, stages)["stageId"] == 4
    text = text_report(CellView("sparkscope-cell-1", [j], stages, 4000))
    assert "error: job 7, stage 4: java.lang.ArithmeticException: / by zero" in text
    assert "task 0 attempt 1 on executor 2, h2" in text
    errors = [{"operationId": "o", "message": "[UNRESOLVED_COLUMN] no such column\nat line 1"}]
    assert (
        "  error: [UNRESOLVED_COLUMN] no such column"
        in text_report(CellView("t", [], [], 0, errors=errors)).splitlines()
    )


def test_operation_errors_only_for_operations_without_jobs() -> None:
    def op(jobs: list[int]) -> dict:
        return {"operationId": f"o{len(jobs)}", "error": "boom", "state": "FAILED",
                "finalState": "UNSPECIFIED", "jobIds": jobs, "startTimeMs": 1}  # fmt: skip

    assert view.operation_errors([op([]), op([3])]) == [{"operationId": "o0", "message": "boom"}]


def test_html_report_is_static_escaped_and_linked() -> None:
    stages = [stage(taskDurations={"minMs": 1, "medianMs": 10, "maxMs": 4000})]
    ctx = {"uiLink": "http://driver:4040", "appId": APP, "sparkVersion": "4.3.0"}
    html = html_report(
        CellView("sparkscope-cell-1", [job(label="<script>x</script>")], stages, 5000, context=ctx)
    )
    assert "<script>" not in html and "&lt;script&gt;" in html
    rows: list[dict] = []

    class Rows(HTMLParser):
        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if "sparkscope-static-job" in (a.get("class") or ""):
                rows.append(a)
            if tag == "a":
                rows.append({"href": a["href"]})

    Rows().feed(html)
    assert {"data-job-id": "7", "data-status": "SUCCEEDED"}.items() <= rows[0].items()
    assert {"href": "http://driver:4040/jobs/job/?id=7"} in rows
    assert "skew" in html


def test_task_requests_and_answers_are_checked() -> None:
    assert parse_tasks({"kind": "tasks", "appId": APP, "stageId": 3, "attemptId": 0}) == {
        "app_id": APP,
        "stage_id": 3,
        "attempt_id": 0,
        "thread_dump": False,
    }
    # "Is it stuck?": only a true JSON boolean asks for a thread dump
    for ask, dump in ((True, True), ("yes", False), (1, False)):
        msg = {"kind": "tasks", "appId": APP, "stageId": 3, "attemptId": 0, "threadDump": ask}
        assert parse_tasks(msg)["thread_dump"] is dump
    for bad in ({"appId": APP, "stageId": True, "attemptId": 0}, {"appId": 1, "stageId": 3,
                "attemptId": 0}, {"appId": APP, "stageId": -1, "attemptId": 0}):  # fmt: skip
        assert parse_tasks(bad) is None
    answer = normalize_task_list(
        {
            "requestId": "r",
            "ok": True,
            "total": 8,
            "tasks": [{"taskId": "12", "durationMs": "5"}, 3],
        }
    )
    assert answer["tasks"][0]["taskId"] == 12 and answer["tasks"][0]["computeMs"] == 0
    assert len(answer["tasks"]) == 1 and answer["total"] == 8
