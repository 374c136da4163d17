"""The contention line: shares of the cores' time over a cell's run, from busy-slots samples."""

from __future__ import annotations

from sparkscope.contention import contention


def test_shares_come_from_the_samples_over_the_window_only() -> None:
    # 2 cores; from 0 to 10 s: 2 busy (the cell's one and another session's one), 2 sessions
    rows = [(0, 2, 2, 1, 2), (10_000, 1, 2, 1, 1), (20_000, 0, 2, 1, 0)]
    c = contention(rows, 0, 20_000, own_ms=10_000)
    assert c is not None
    assert (c.cores_ms, c.own_ms, c.others_ms) == (40_000, 10_000, 20_000)
    assert (c.own_share, c.others_share) == (0.25, 0.5)
    assert c.other_sessions == 1
    assert c.full_ms == 10_000
    assert c.text() == (
        "this cell held 25% of the cores; 1 other session held 50%; "
        "every core was busy for 10.0 s of its run"
    )
    # a window inside the samples: only its part counts, the last sample holds until its end
    c = contention(rows, 15_000, 25_000, own_ms=0)
    assert c is not None and (c.cores_ms, c.others_ms, c.other_sessions) == (20_000, 5_000, 1)
    assert c.text() == "this cell held 0% of the cores; 1 other session held 25%"


def test_nothing_to_say_for_short_runs_or_without_samples() -> None:
    assert contention([], 0, 60_000, own_ms=1) is None
    assert contention([(0, 1, 2, 1, 1)], 0, 1_000, own_ms=1) is None
    assert contention([(0, 1, 0, 0, 1)], 0, 10_000, own_ms=1) is None


def test_the_cells_time_is_never_counted_as_others() -> None:
    # the cell's own run time can exceed the sampled busy time (a task ended between samples)
    c = contention([(0, 1, 2, 1, 1)], 0, 10_000, own_ms=12_000)
    assert c is not None and c.others_ms == 0 and c.other_sessions == 0
    assert c.as_dict()["ownShare"] == 0.6


def test_a_cell_views_window_is_its_jobs_run() -> None:
    from sparkscope.cellview import contention_of

    jobs = [{"submissionTimeMs": 5_000}, {"submissionTimeMs": 0}, {"submissionTimeMs": 7_000}]
    stages = [{"executorRunTimeMs": 4_000}, {"executorRunTimeMs": 2_000}]
    rows = [(0, 2, 2, 1, 2), (15_000, 0, 2, 1, 0)]
    c = contention_of(jobs, stages, rows, 15_000)
    assert c is not None
    assert (c["startMs"], c["endMs"], c["coresMs"]) == (5_000, 15_000, 20_000)
    assert (c["ownMs"], c["othersMs"], c["otherSessions"]) == (6_000, 14_000, 1)
    assert contention_of([{"submissionTimeMs": 0}], stages, rows, 15_000) is None


def test_its_tasks_waited_for_cores_others_held() -> None:
    from sparkscope.contention import waited

    # 2 cores; another session holds both from 0 to 6 s, then one until 8 s
    rows = [(0, 2, 2, 1, 1), (6_000, 2, 2, 1, 2), (8_000, 2, 2, 1, 1), (12_000, 0, 2, 1, 0)]
    # the cell's stage is submitted at 2 s with 8 tasks: all wait until 6 s, then one runs
    # beside the other session's, then two at once (waiting on itself: not counted)
    points = [(0, 0, 0), (2_000, 0, 8), (6_000, 1, 7), (8_000, 2, 6), (12_000, 0, 0)]
    # 2 s..6 s: 8 waiting, others hold 2 -> 2 x 4 s; 6 s..8 s: others hold 1 -> 1 x 2 s
    assert waited(rows, points, 0, 12_000) == 10_000
    c = contention(rows, 0, 12_000, own_ms=8_000, points=points)
    assert c is not None and c.waited_ms == 10_000 and c.as_dict()["waitedMs"] == 10_000
    assert c.text().endswith("its tasks waited 10.0 s for cores others held"), c.text()
    # a free core: waiting tasks do not wait for others (locality, the scheduler)
    assert waited([(0, 1, 2, 1, 1)], [(0, 0, 3)], 0, 5_000) == 0
    # only the window counts; no points, no wait
    assert waited(rows, points, 5_000, 7_000) == 2 * 1_000 + 1 * 1_000
    assert waited(rows, [], 0, 12_000) == 0


def test_a_runs_tasks_over_time_come_from_its_running_stages() -> None:
    from sparkscope.cellrun import MAX_SLOT_POINTS, CellRun

    run = CellRun(tag="t", parent=None, thread=0)
    stage = {"status": "ACTIVE", "numTasks": 8, "activeTasks": 2, "completedTasks": 1}
    run.stages[("a", 1, 0)] = stage
    run.stages[("a", 2, 0)] = {"status": "PENDING", "numTasks": 5, "activeTasks": 0}
    run.note_slots(1_000)
    run.note_slots(1_500)  # nothing changed: no point
    run.stages[("a", 1, 0)] = {**stage, "activeTasks": 1, "completedTasks": 7}
    run.note_slots(900)  # sent before the last point's time: kept in order
    assert run.slot_points == [(1_000, 2, 5), (1_000, 1, 0)]
    for i in range(MAX_SLOT_POINTS + 10):
        run.stages[("a", 1, 0)] = {**stage, "activeTasks": i % 2}
        run.note_slots(2_000 + i)
    assert len(run.slot_points) <= MAX_SLOT_POINTS
    assert run.slot_points[0] == (1_000, 2, 5), "the start stays"
