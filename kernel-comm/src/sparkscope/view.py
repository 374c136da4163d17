"""What a cell's widget shows besides its jobs, from what the agent streamed: the cluster context
of the cell's application, its busy task slots over the cell's run, the errors of its Connect
operations, links into Spark's UI, and the hints on its stages (skew, spill, GC)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .state import Sample

# A stage is skewed when its slowest task takes more than this many times its median, and at
# least SKEW_MIN_MS longer (a few milliseconds either way are no finding).
SKEW_RATIO = 3.0
SKEW_MIN_MS = 1000
# Samples sent to the browser per cell: enough for a chart as wide as a notebook.
MAX_POINTS = 400
# After a cell's last job ended, the first sample this soon after still belongs to it.
SETTLE_MS = 2000


def context(app: Mapping[str, Any] | None, app_id: str, session_id: str, user_id: str) -> dict:
    """The details line: Spark version, master, application, Connect server, user, session."""
    app = app or {}
    return {
        "appId": app_id,
        "appName": app.get("name", ""),
        "sparkVersion": app.get("sparkVersion", ""),
        "master": app.get("master", ""),
        "connectAddress": app.get("connectAddress", ""),
        "userId": user_id,
        "sessionId": session_id,
        "live": bool(app.get("live", False)),
        "uiLink": ui_link(app.get("uiLink", ""), user_id),
    }


def ui_link(template: str, user: str) -> str:
    """The agent's UI address with the `{user}` it leaves for the client filled in."""
    return template.replace("{user}", user) if template else ""


def cluster(app: Mapping[str, Any] | None) -> dict[str, int]:
    c = (app or {}).get("cluster") or {}
    return {
        "executors": int(c.get("executors", 0)),
        "cores": int(c.get("totalCores", 0)),
        "busy": int(c.get("activeTasks", 0)),
    }


def window(
    samples: Sequence[Sample], start_ms: int, end_ms: int, max_points: int = MAX_POINTS
) -> list[list[int]]:
    """The samples of [start_ms, end_ms] as `[atMs, activeTasks, totalCores]` rows, starting with
    the value in force at start_ms; at most `max_points`, keeping each bucket's busiest sample
    (a short burst of tasks stays visible)."""
    rows: list[list[int]] = []
    before = None
    for at, active, cores, _executors in samples:
        if at < start_ms:
            before = [start_ms, active, cores]
            continue
        if at > end_ms:
            # the agent samples at its stream's cadence: the value the work ended on comes a
            # moment after Spark's end time
            if at <= end_ms + SETTLE_MS:
                rows.append([at, active, cores])
            break
        rows.append([at, active, cores])
    if before is not None:
        rows.insert(0, before)
    if len(rows) <= max_points:
        return rows
    span = max(end_ms - start_ms, 1)
    buckets: dict[int, list[int]] = {}
    for row in rows:
        b = min((row[0] - start_ms) * max_points // span, max_points - 1)
        kept = buckets.get(b)
        if kept is None or row[1] > kept[1] or (row[1] == kept[1] and row[2] != kept[2]):
            buckets[b] = row
    out = [buckets[b] for b in sorted(buckets)]
    # the latest value is the one in force now
    if out[-1] is not rows[-1]:
        out.append(rows[-1])
    return out


def operation_errors(operations: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Connect operations of the cell that failed before running any job (an analysis error):
    a failed job shows its own root cause."""
    return [
        {"operationId": op["operationId"], "message": op["error"]}
        for op in sorted(operations, key=lambda o: o["startTimeMs"])
        if op.get("error") and "FAILED" in (op["state"], op["finalState"]) and not op["jobIds"]
    ]


def skewed(stage: Mapping[str, Any]) -> bool:
    d = stage.get("taskDurations")
    if not d:
        return False
    return d["maxMs"] - d["medianMs"] >= SKEW_MIN_MS and d["maxMs"] > SKEW_RATIO * d["medianMs"]


def spilled(stage: Mapping[str, Any]) -> int:
    return int(stage.get("memorySpilledBytes", 0)) + int(stage.get("diskSpilledBytes", 0))


def root_cause(
    job: Mapping[str, Any], stages: Iterable[Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """The first task failure among the job's stage attempts (by when it happened)."""
    failures = [
        (s["firstFailure"]["timeMs"], s["stageId"], s["attemptId"], s)
        for s in stages
        if s["appId"] == job["appId"] and s["stageId"] in job["stageIds"] and s.get("firstFailure")
    ]
    if not failures:
        return None
    return min(failures, key=lambda f: f[:3])[3]
