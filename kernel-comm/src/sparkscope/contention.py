"""A cell's share of a shared server over its run: the contention line.

From the application's busy-slots samples (each value holds until the next sample) and the
cell's own task time (the executor run time of its stages' ended tasks), over the cell run's
window:

- the cell's share of the cores: its task time over the cores' time;
- the other sessions' share: the busy slots' time less the cell's own, over the cores' time;
- how many other sessions had tasks running at once, at most (the agent counts the sessions
  with running tasks at each sample; the cell's own is one of them while it runs);
- how long every core was busy while the cell ran (its tasks could start only as others ended).

Nothing here is guessed from timing about whose a task is: the cell's own time is its own
stages', and the others' is what the server ran besides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# (atMs, activeTasks, totalCores, executors, busySessions)
Row = tuple[int, int, int, int, int]

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
        if self.full_ms >= 1000:
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
            "text": self.text(),
        }


def contention(rows: Sequence[Row], start_ms: int, end_ms: int, own_ms: int) -> Contention | None:
    """The cell's contention over [start_ms, end_ms], or None without samples or cores."""
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
    return Contention(window, cores_ms, own, others, other_sessions, full_ms)
