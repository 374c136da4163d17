"""A cell's share of a shared server over its run: the contention line.

From the application's busy-slots samples (each value holds until the next sample) and the
cell's own task time (the executor run time of its stages' ended tasks), over the cell run's
window:

- the cell's share of the cores: its task time over the cores' time;
- the other sessions' share: the busy slots' time less the cell's own, over the cores' time;
- how many other sessions had tasks running at once, at most (the agent counts the sessions
  with running tasks at each sample; the cell's own is one of them while it runs);
- how long every core was busy while the cell ran (its tasks could start only as others ended);
- how long its tasks waited for cores others held: over the time every core was busy, the
  cell's tasks waiting for a slot (of its running stages, not yet launched; from its stages'
  counts as the agent streamed them), up to the slots the other work held, summed over its
  tasks.

Nothing here is guessed from timing about whose a task is: the cell's own time is its own
stages', and the others' is what the server ran besides.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

# (atMs, activeTasks, totalCores, executors, busySessions)
Row = tuple[int, int, int, int, int]
# (atMs, the cell's running tasks, its tasks waiting for a slot)
Point = tuple[int, int, int]

# Below this the line is not worth a glance (a cell of a second or two).
MIN_WINDOW_MS = 2_000


@dataclass(frozen=True)
class Contention:
    window_ms: int
    cores_ms: int  # the cores' time over the window
    own_ms: int  # the cell's task time
    others_ms: int  # the other work's task time
    other_sessions: int  # other sessions with tasks running at once, at most
    full_ms: int  # time every core was busy
    waited_ms: int = 0  # its tasks' waiting for cores others held, summed over its tasks

    @property
    def own_share(self) -> float:
        return self.own_ms / self.cores_ms if self.cores_ms else 0.0

    @property
    def others_share(self) -> float:
        return self.others_ms / self.cores_ms if self.cores_ms else 0.0

    def text(self) -> str:
        own = round(self.own_share * 100)
        parts = [f"this cell held {own}% of the cores"]
        if self.other_sessions:
            n = self.other_sessions
            others = round(self.others_share * 100)
            parts.append(f"{n} other session{'s' if n != 1 else ''} held {others}%")
        elif self.others_ms:
            parts.append(f"other work held {round(self.others_share * 100)}%")
        if self.waited_ms >= 1000:
            parts.append(f"its tasks waited {self.waited_ms / 1000:.1f} s for cores others held")
        elif self.full_ms >= 1000:
            parts.append(f"every core was busy for {self.full_ms / 1000:.1f} s of its run")
        return "; ".join(parts)

    def as_dict(self) -> dict:
        return {
            "windowMs": self.window_ms,
            "coresMs": self.cores_ms,
            "ownMs": self.own_ms,
            "othersMs": self.others_ms,
            "ownShare": round(self.own_share, 4),
            "othersShare": round(self.others_share, 4),
            "otherSessions": self.other_sessions,
            "fullMs": self.full_ms,
            "waitedMs": self.waited_ms,
            "text": self.text(),
        }


def waited(rows: Sequence[Row], points: Sequence[Point], start_ms: int, end_ms: int) -> int:
    """How long the cell's tasks waited for cores others held over [start_ms, end_ms], summed
    over its tasks (ms): while every core was busy, its waiting tasks, up to the slots the other
    work held. Both series hold each value until their next."""
    if not rows or not points:
        return 0
    row_at = [r[0] for r in rows]
    point_at = [p[0] for p in points]
    edges = sorted(
        {start_ms, end_ms}
        | {t for t in row_at if start_ms < t < end_ms}
        | {t for t in point_at if start_ms < t < end_ms}
    )
    total = 0
    for lo, hi in pairwise(edges):
        r, p = bisect_right(row_at, lo) - 1, bisect_right(point_at, lo) - 1
        if r < 0 or p < 0:
            continue
        _, active, cores, _executors, _sessions = rows[r]
        _, running, waiting = points[p]
        if cores and active >= cores and waiting:
            total += min(waiting, max(0, active - running)) * (hi - lo)
    return total


def contention(
    rows: Sequence[Row],
    start_ms: int,
    end_ms: int,
    own_ms: int,
    points: Sequence[Point] = (),
) -> Contention | None:
    """The cell's contention over [start_ms, end_ms] (`points`: its running and waiting tasks
    over time), or None without samples or cores."""
    window = end_ms - start_ms
    if window < MIN_WINDOW_MS or not rows:
        return None
    cores_ms = busy_ms = full_ms = 0
    most_sessions = 0
    for i, (at, active, cores, _executors, sessions) in enumerate(rows):
        until = rows[i + 1][0] if i + 1 < len(rows) else end_ms
        lo, hi = max(at, start_ms), min(until, end_ms)
        if hi <= lo:
            continue
        span = hi - lo
        cores_ms += cores * span
        busy_ms += min(active, cores) * span if cores else active * span
        if cores and active >= cores:
            full_ms += span
        most_sessions = max(most_sessions, sessions)
    if not cores_ms:
        return None
    own = max(0, own_ms)
    others = max(0, busy_ms - own)
    other_sessions = max(0, most_sessions - (1 if own else 0))
    wait = waited(rows, points, start_ms, end_ms)
    return Contention(window, cores_ms, own, others, other_sessions, full_ms, wait)
