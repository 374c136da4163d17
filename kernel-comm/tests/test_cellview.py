"""The view-model of a cell run (cellview), from recorded frames and from hand-made stages: its
rows, summary, findings, root causes and links; the widget's traits made from it; and the numbers
the browser formats on its own, which must read as the kernel's."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fake_agent import load_frames
from sparkscope import cellview
from sparkscope.cellrun import CellRun, CellRuns
from sparkscope.cellview import CellView
from sparkscope.report import html_report, text_report
from sparkscope.state import StreamState, normalize_stage
from sparkscope.widget import CellWidget, traits

TAG = "sparkscope-cell-000000000001"
APP = "local-1795258400000"
WIDGET_JS = Path(cellview.__file__).parent / "static" / "widget.js"


def replay(frames: list[str], tag: str = TAG, finished: bool = True) -> tuple[CellRun, StreamState]:
    """A cell run of `tag` as the kernel merges the frames into it."""
    state, runs = StreamState(), CellRuns()
    run = CellRun(tag, None, 0, finished=finished)
    runs.start(run)
    for frame in frames:
        update = json.loads(frame)["update"]
        runs.merge(state, update, state.apply(update))
    return run, state


def stage(stage_id: int = 3, **fields) -> dict:
    return cellview.stage_row(normalize_stage({"appId": APP, "stageId": stage_id, **fields}))


def job(job_id: int = 7, status: str = "SUCCEEDED", stage_ids=(3,), **fields) -> dict:
    base = {
        "appId": APP,
        "jobId": job_id,
        "name": "",
        "label": "agg",
        "status": status,
        "stageIds": list(stage_ids),
        "tasks": {"total": 4, "active": 0, "completed": 4, "skipped": 0, "failed": 0, "killed": 0},
        "stages": {"active": 0, "completed": 1, "skipped": 0, "failed": 0},
        "submissionTimeMs": 1000,
        "completionTimeMs": 3000,
        "error": None,
        "sqlExecutionId": None,
    }
    return {**base, **fields}


def test_a_recorded_cell_run_as_its_view() -> None:
    run, state = replay(load_frames("handmade_cell.jsonl"))
    view = cellview.build(run, state, now_ms=1795258405000)
    # the statement is no plan text: the job's own name stays
    assert [(j["jobId"], j["status"], j["label"]) for j in view.jobs] == [
        (4, "SUCCEEDED", "count at NativeMethodAccessorImpl.java:0"),
        (5, "SUCCEEDED", "count at NativeMethodAccessorImpl.java:0"),
    ]
    assert [(s["stageId"], s["status"]) for s in view.stages] == [
        (6, "COMPLETE"),
        (7, "SKIPPED"),
        (8, "COMPLETE"),
    ]
    assert view.state == "done" and view.cell_done
    # from the first submission to the last completion, not to now
    assert view.summary_text == "2 jobs (2 succeeded) · 16/24 tasks (8 skipped) · 0.6 s"
    assert view.summary.to_json()["elapsed"] == {
        "startMs": 1795258404100,
        "endMs": 1795258404700,
        "live": False,
    }
    # GC below its share: shown plainly, no warning
    assert [(f.kind, f.severity, f.label) for f in view.findings] == [("gc", "info", "GC 0%")]
    assert view.root_causes == []
    # no UI address; no executor logs in local mode
    assert view.links == {"ui": "", "jobs": {}, "sql": {}, "stages": {}, "executorLogs": []}
    assert view.operation_ids == ["22222222-2222-4222-8222-222222222222"]
    assert view.context["appId"] == APP and view.context["sessionId"]


def test_a_running_cell_runs_its_elapsed_time_to_now() -> None:
    run, state = replay(load_frames("handmade_cell.jsonl")[:2], finished=False)
    view = cellview.build(run, state, now_ms=1795258406100)
    assert view.state == "running"
    assert view.summary.live and view.summary_text.endswith("· 2.0 s")
    overview = view.summary.to_json()
    assert overview["jobCounts"] == {"running": 1, "succeeded": 0, "failed": 0, "unknown": 0}


def test_the_two_cells_of_a_real_agents_stream_stay_apart() -> None:
    frames = load_frames("agent_stream.jsonl")
    views = {}
    for tag in ("sparkscope-cell-000000000001", "sparkscope-cell-000000000002"):
        run, state = replay(frames, tag)
        views[tag] = cellview.build(run, state, now_ms=state.sent_at_ms)
    ids = [{j["jobId"] for j in v.jobs} for v in views.values()]
    assert all(ids) and not ids[0] & ids[1]
    for v in views.values():
        counts = v.summary.job_counts
        assert sum(counts.values()) == len(v.jobs)
        assert v.summary_text.startswith(cellview.plural(len(v.jobs), "job"))
        assert v.context["sparkVersion"] == "4.3.0"


def test_every_trait_comes_from_the_view_and_is_json() -> None:
    run, state = replay(load_frames("handmade_cell.jsonl"))
    view = cellview.build(run, state, now_ms=1795258405000)
    values = traits(view, agent_error="", hidden=False)
    # every trait of the cell but `view`, which the browser sets
    ours = set(CellWidget.class_own_traits()) - {"view"}
    assert ours == values.keys()
    json.dumps(values)
    assert values["summary"] == view.summary_text
    assert values["overview"]["text"] == "2 jobs (2 succeeded) · 16/24 tasks (8 skipped)"
    assert values["overview"]["details"] == (
        "Spark 4.3.0 · Spark Connect server (local-1795258400000)"
    )
    # Who ran the cell, and in which session and operations, never reaches a synced trait (the
    # notebook file saves those); the kernel keeps them.
    synced = json.dumps(
        {k: v for k, v in values.items() if CellWidget.class_traits()[k].metadata.get("sync")}
    )
    assert "11111111-1111-4111-8111-111111111111" not in synced
    assert "alice" not in synced
    assert "22222222-2222-4222-8222-222222222222" not in synced
    assert view.session_ids == ["11111111-1111-4111-8111-111111111111"]


def test_findings_carry_their_evidence_and_say_it_as_the_widget_did() -> None:
    skewed = stage(3, taskDurations={"minMs": 100, "medianMs": 150, "maxMs": 5000})
    spill = stage(4, memorySpilledBytes=1024, diskSpilledBytes=512)
    gc = stage(5, executorRunTimeMs=8000, gcTimeMs=1000)
    quiet = stage(6, executorRunTimeMs=8000, gcTimeMs=80)
    view = CellView("t", [job(stage_ids=(3, 4, 5, 6))], [skewed, spill, gc, quiet], 4000)
    found = {(f.stage_id, f.kind): f for f in view.findings}
    assert list(found) == [(3, "skew"), (4, "spill"), (5, "gc"), (6, "gc")]
    skew = found[(3, "skew")]
    assert skew.evidence == {"minMs": 100, "medianMs": 150, "maxMs": 5000}
    assert skew.title == (
        "Skew: the slowest task took 5.0 s, the median 150 ms (more than 3×). One partition "
        "holds much more data than the others: repartition, or salt the key."
    )
    assert (skew.label, skew.job_label, skew.job_ids) == ("skew", "stage 3: skew", (7,))
    s = found[(4, "spill")]
    assert s.evidence["bytes"] == 1536 and s.label == "spill 1.5 KiB"
    assert s.title.startswith("Spill: 1.0 KiB in memory, 512 B on disk.")
    assert s.text == "stage 4: spilled 1,536 bytes"
    # 12.5 % rounds up, as the browser's Math.round did
    g = found[(5, "gc")]
    assert (g.severity, g.label, g.job_label) == ("warning", "GC 13%", "")
    assert g.title == "Garbage collection took 1.0 s of 8.0 s task time"
    assert found[(6, "gc")].severity == "info"
    assert [f.kind for f in view.findings_of(view.jobs[0]) if f.job_label] == ["skew", "spill"]
    html = html_report(view)
    assert "stage 3: skew, slowest task 5.0 s against a median of 0.1 s" in html


def test_the_root_cause_is_the_first_failure_and_says_where() -> None:
    failure = {"taskId": 11, "index": 2, "attempt": 1, "executorId": "", "host": "h1",
               "reason": "ExceptionFailure", "exceptionClass": "", "message": "boom",
               "stackTrace": "", "timeMs": 50}  # fmt: skip
    stages = [
        stage(3, attemptId=1, firstFailure=failure),
        stage(4, firstFailure={**failure, "timeMs": 70}),
    ]
    view = CellView(
        "t", [job(status="FAILED", stage_ids=(3, 4)), job(8, stage_ids=(4,))], stages, 0
    )
    (cause,) = view.root_causes  # the job that succeeded has none
    assert (cause.job_id, cause.stage_id) == (7, 3)
    assert cause.to_json()["what"] == "ExceptionFailure"  # no exception class: Spark's reason
    assert cause.where == "stage 3 (attempt 1) · task 2, attempt 1 · executor ? on h1"
    assert "error: job 7, stage 3: ExceptionFailure: boom" in text_report(view)


def test_links_into_sparks_ui() -> None:
    ctx = {"uiLink": "http://driver:4040", "appId": APP}
    view = CellView("t", [job(sqlExecutionId=2)], [stage(3, attemptId=1)], 0, context=ctx)
    assert view.links == {
        "ui": "http://driver:4040",
        "jobs": {f"{APP}/7": "http://driver:4040/jobs/job/?id=7"},
        "sql": {f"{APP}/7": "http://driver:4040/SQL/execution/?id=2"},
        "stages": {f"{APP}/3/1": "http://driver:4040/stages/stage/?id=3&attempt=1"},
        "executorLogs": [],
    }


def test_connect_names_are_not_worth_a_label() -> None:
    assert stage(name="Spark Connect - range(0, 8)")["label"] == ""
    assert stage(name="collect at <stdin>:1")["label"] == "collect at <stdin>:1"


@pytest.mark.skipif(shutil.which("node") is None, reason="no node to run the widget's formats")
def test_the_widget_formats_numbers_as_the_kernel_does() -> None:
    source = WIDGET_JS.read_text(encoding="utf-8")
    funcs = [
        re.search(rf"^function {name}\(.*?^\}}$", source, re.MULTILINE | re.DOTALL).group(0)
        for name in ("fmtDuration", "fmtShort")
    ]
    values = [0, 49, 950, 999, 1000, 1049, 1050, 1250, 1350, 59_950, 59_999, 60_000, 61_500,
              3_599_999, 3_600_000, 7_325_000, 86_400_000]  # fmt: skip
    script = "\n".join(funcs) + (
        f"\nconst v = {json.dumps(values)};"
        "\nconsole.log(JSON.stringify(v.map((x) => [fmtDuration(x), fmtShort(x)])));"
    )
    out = subprocess.run(
        ["node", "-e", script], capture_output=True, text=True, check=True, timeout=30
    )
    browser = json.loads(out.stdout)
    kernel = [[cellview.format_duration(x), cellview.format_short(x)] for x in values]
    assert kernel == browser


HREFS = [
    "http://driver:4040/jobs/job/?id=3",
    "https://spark.example.org/proxy/app-1/",
    "HTTP://DRIVER:4040/",
    "javascript:alert(document.cookie)",
    "JavaScript:alert(1)",
    " javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "file:///etc/passwd",
    "//evil.example/x",
    "/relative/path",
    "http://",
    "https:///nohost",
    "http://driver:4040/\x07jobs",
    "",
]


@pytest.mark.skipif(shutil.which("node") is None, reason="no node to run the widget's link check")
def test_the_widget_links_only_what_the_kernel_links() -> None:
    source = WIDGET_JS.read_text(encoding="utf-8")
    func = re.search(r"^function isHttpUrl\(.*?^\}$", source, re.MULTILINE | re.DOTALL).group(0)
    script = func + (
        f"\nconst v = {json.dumps(HREFS)};\nconsole.log(JSON.stringify(v.map(isHttpUrl)));"
    )
    out = subprocess.run(
        ["node", "-e", script], capture_output=True, text=True, check=True, timeout=30
    )
    browser = json.loads(out.stdout)
    kernel = [cellview.is_http_url(h) for h in HREFS]
    assert browser == kernel, list(zip(HREFS, browser, kernel, strict=True))
    # and what both let through is exactly the http and https links
    assert kernel == [True, True, True] + [False] * (len(HREFS) - 3)


def test_executor_log_links_are_web_addresses_only() -> None:
    from sparkscope.cellview import executor_logs

    app = {
        "executorLogs": [
            {"executorId": "0", "kind": "stdout", "url": "http://w:8081/logPage/?executorId=0"},
            {"executorId": "0", "kind": "stderr", "url": "javascript:alert(1)"},
        ]
    }
    assert executor_logs(app) == [
        {"executorId": "0", "kind": "stdout", "url": "http://w:8081/logPage/?executorId=0"}
    ]
    assert executor_logs(None) == []


def test_too_many_small_tasks_is_found_with_a_fix_to_insert() -> None:
    def small(n: int, median: int) -> list:
        durations = {"minMs": 1, "medianMs": median, "maxMs": median * 2}
        s = stage(numTasks=n, taskDurations=durations, completedTasks=n)
        view = CellView("t", [job()], [s], 0, cluster={"executors": 1, "cores": 2, "busy": 0})
        return [f for f in view.findings if f.kind == "small-tasks"]

    (f,) = small(6000, 4)
    assert f.severity == "warning" and f.evidence == {"numTasks": 6000, "medianMs": 4}
    assert f.label == "6,000 small tasks" and f.job_label == "stage 3: 6,000 small tasks"
    # a fix to insert, sized to the cores, that runs nothing by itself but the coalesce
    assert f.fix.endswith("df = df.coalesce(6)"), f.fix
    assert all(line.startswith("#") for line in f.fix.splitlines()[:-1]), f.fix
    assert f.to_json()["fix"] == f.fix
    # DataFlint's thresholds: more than 5,000 tasks, a median under 500 ms
    assert small(5000, 4) == [] and small(6000, 500) == []
