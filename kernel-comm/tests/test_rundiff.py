"""Run-to-run diffs: a finished cell run's fingerprint, and the line a rerun shows."""

from __future__ import annotations

from sparkscope import rundiff
from sparkscope.agent import _failure, normalize_previous_run
from sparkscope.cellview import CellView
from sparkscope.widget import traits
from test_advisor import job, plan, stage

CELL = {"notebook": "work/etl.ipynb", "cellId": "c-1", "executionCount": 4}
MiB = 1 << 20


def view(*stages: dict, jobs=None, plans=(), state: str = "done") -> CellView:
    jobs = [job(stage_ids=[s["stageId"] for s in stages])] if jobs is None else jobs
    return CellView("tag-1", jobs, list(stages), 0, state=state, plans=list(plans))


def smj_plan() -> dict:
    return plan((-1, "SortMergeJoin", "SortMergeJoin [k#1], [k#2], Inner", {}))


def bhj_plan() -> dict:
    return plan((-1, "BroadcastHashJoin", "BroadcastHashJoin [k#1], [k#2], Inner", {}))


def test_a_fingerprint_sums_what_ran_and_leaves_skipped_stages_out() -> None:
    v = view(
        stage(3, inputBytes=10 * MiB, numTasks=4, submissionTimeMs=1000, completionTimeMs=2000),
        stage(4, attemptId=0, status="FAILED", inputBytes=MiB, numTasks=2, submissionTimeMs=2000),
        stage(4, attemptId=1, shuffleWriteBytes=500, numTasks=2, completionTimeMs=2800),
        stage(5, status="SKIPPED", inputBytes=99 * MiB, numTasks=200),
        plans=[smj_plan()],
    )
    fp = rundiff.fingerprint(v, CELL)
    assert fp is not None
    assert fp["notebook"] == "work/etl.ipynb" and fp["cellId"] == "c-1"
    assert fp["executionCount"] == 4 and fp["tag"] == "tag-1"
    assert (fp["startMs"], fp["endMs"]) == (1000, 3000)
    assert fp["inputBytes"] == 11 * MiB, "both attempts of stage 4 read; the skipped stage did not"
    assert fp["shuffleBytes"] == 500
    assert fp["tasks"] == 6
    assert [s["stageId"] for s in fp["stages"]] == [3, 4]
    assert fp["stages"][1]["durationMs"] == 800, "from its first attempt's start"
    assert fp["joins"] == ["SortMergeJoin"] and len(fp["planShape"]) == 16
    assert fp["state"] == "succeeded"


def test_no_fingerprint_without_a_job_or_without_the_cell() -> None:
    v = view(stage(3))
    assert rundiff.fingerprint(v, {"notebook": "", "cellId": "c"}) is None
    assert rundiff.fingerprint(v, {"notebook": "a.ipynb"}) is None
    assert rundiff.fingerprint(view(jobs=[]), CELL) is None


def fp_of(input_bytes: int, end: int, plans=(), skew: bool = False, tasks: int = 4) -> dict:
    durations = {"minMs": 10, "medianMs": 100, "maxMs": 9000 if skew else 120}
    s = stage(
        7,
        inputBytes=input_bytes,
        numTasks=tasks,
        submissionTimeMs=1000,
        completionTimeMs=end,
        taskDurations=durations,
    )
    fp = rundiff.fingerprint(view(s, jobs=[job(stage_ids=[7], end=end)], plans=plans), CELL)
    assert fp is not None
    return fp


def test_a_slower_rerun_names_what_changed() -> None:
    before = fp_of(10 * MiB, 2000, plans=[bhj_plan()])
    after = fp_of(14 * MiB, 4100, plans=[smj_plan()], skew=True)
    d = rundiff.diff(before, after)
    assert d["ratio"] == 3.1 and d["inputRatio"] == 1.4
    assert d["text"].startswith("3.1× slower than the previous run (1.0 s → 3.1 s): input +40%")
    assert "BroadcastHashJoin became SortMergeJoin" in d["parts"]
    assert "new skew in stage 7" in d["parts"]
    assert "the plan changed" not in d["parts"], "the join says it"


def test_a_rerun_on_four_times_the_input() -> None:
    d = rundiff.diff(fp_of(MiB, 2000), fp_of(4 * MiB, 5000, tasks=16))
    assert d["inputRatio"] == 4.0
    assert "input +300% (1.0 MiB → 4.0 MiB)" in d["parts"]
    assert "tasks 4 → 16" in d["parts"]


def test_small_changes_are_noise_and_faster_runs_say_so() -> None:
    d = rundiff.diff(fp_of(MiB, 2000), fp_of(MiB + 1000, 2050))
    assert d["text"] == "about as fast as the previous run (1.0 s → 1.1 s)"
    assert d["parts"] == []
    d = rundiff.diff(fp_of(MiB, 5000), fp_of(MiB, 2000))
    assert d["text"].startswith("4.0× faster than the previous run")


def test_the_agents_answer_read_as_it_sends_it() -> None:
    """proto3 JSON: int64 as strings, defaults left out; a fingerprint read back diffs like the
    one sent."""
    sent = fp_of(MiB, 2000, plans=[bhj_plan()])
    wire = {
        **{k: str(v) if isinstance(v, int) else v for k, v in sent.items()},
        "stages": [{**s, "durationMs": str(s["durationMs"])} for s in sent["stages"]],
    }
    del wire["shuffleBytes"]  # 0: left out
    answer = normalize_previous_run({"requestId": "r", "previous": wire})
    back = rundiff.normalize(answer["previous"])
    assert back == sent
    assert rundiff.diff(back, sent)["parts"] == []
    assert normalize_previous_run({"requestId": "r"})["previous"] is None
    assert normalize_previous_run({"previous": "junk"})["previous"] is None
    assert rundiff.normalize({"startMs": "x", "stages": ["junk", {"stageId": "3"}]})["startMs"] == 0
    assert _failure("fingerprint", "r", "no_agent", "down")["previous"] is None


def test_the_widget_carries_the_diff() -> None:
    v = view(stage(3))
    assert traits(v)["diff"] == {}
    v.diff = rundiff.diff(fp_of(MiB, 2000), fp_of(4 * MiB, 5000))
    assert traits(v)["diff"]["inputRatio"] == 4.0
