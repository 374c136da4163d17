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
