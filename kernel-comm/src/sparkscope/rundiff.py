"""Run-to-run diffs: a finished cell run reduced to a fingerprint (what tells two runs of a cell
apart: its duration, input, output and shuffle bytes, tasks, its SQL plans' shape and joins,
its stages), and how a rerun differs from the cell's previous run, as one line:
"3.1× slower than the previous run: input +40%, BroadcastHashJoin became SortMergeJoin, new
skew in stage 7".

The kernel computes the fingerprint when a cell ends (it alone knows where a cell begins and
ends) and sends it to the agent, which keeps the newest per user, notebook and cell across
restarts and answers with the one it replaced (a `PreviousRun`)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from .cellview import CellView, format_bytes, format_duration, skew_advised

# A change smaller than this (as a ratio) is noise: "about as fast", no byte line.
SPEED_NOISE = 0.10
BYTES_NOISE = 0.10
# Task counts are named when they changed by this factor.
TASKS_FACTOR = 2.0
# What the agent keeps of a fingerprint (agent/src/publish/stream/runs.rs).
MAX_STAGES = 64
MAX_JOINS = 64


def _is_join(name: str) -> bool:
    return name.endswith("Join") or name == "CartesianProduct"


def _stages(view: CellView) -> list[dict[str, Any]]:
    """Its stages that ran, one per stage id (attempts summed; the last one's status)."""
    by_id: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for s in view.stages:
        by_id.setdefault((s["appId"], s["stageId"]), []).append(s)
    out = []
    for (_, stage_id), attempts in sorted(by_id.items(), key=lambda kv: kv[0][1]):
        attempts.sort(key=lambda a: a["attemptId"])
        last = attempts[-1]
        if str(last["status"]).upper() == "SKIPPED":
            continue
        starts = [a["submissionTimeMs"] for a in attempts if a.get("submissionTimeMs")]
        end = last.get("completionTimeMs") or 0
        out.append(
            {
                "stageId": stage_id,
                "name": last.get("label") or last.get("name") or "",
                "durationMs": max(0, end - min(starts)) if starts and end else 0,
                "tasks": int(last.get("numTasks") or 0),
                "inputBytes": sum(int(a.get("inputBytes") or 0) for a in attempts),
                "skewed": any(skew_advised(a) for a in attempts),
            }
        )
    return out


def plan_shape(plans: Sequence[Mapping[str, Any]]) -> str:
    """A hash of its plans' operator names and tree shape (the final plan of each query);
    empty without a plan."""
    if not plans:
        return ""
    h = hashlib.sha256()
    for p in plans:
        for n in p["nodes"]:
            h.update(f"{n['depth']}:{n['name']};".encode())
        h.update(b"|")
    return h.hexdigest()[:16]


def fingerprint(view: CellView, cell: Mapping[str, Any]) -> dict[str, Any] | None:
    """The fingerprint of a finished cell run (a `RunFingerprint` without its session), or None
    when it ran no job or its notebook and cell are not known."""
    notebook, cell_id = cell.get("notebook") or "", cell.get("cellId") or ""
    if not view.jobs or not notebook or not cell_id:
        return None
    starts = [j["submissionTimeMs"] for j in view.jobs if j["submissionTimeMs"]]
    ends = [j["completionTimeMs"] for j in view.jobs if j["completionTimeMs"]]
    if not starts or not ends:
        return None
    stages = _stages(view)
    state = "cancelled" if view.state == "cancelled" else "succeeded"
    if state == "succeeded" and any(j["status"] == "FAILED" for j in view.jobs):
        state = "failed"
    return {
        "notebook": notebook,
        "cellId": cell_id,
        "tag": view.tag,
        "executionCount": int(cell.get("executionCount") or 0),
        "startMs": min(starts),
        "endMs": max(ends),
        "inputBytes": sum(s["inputBytes"] for s in stages),
        "outputBytes": sum(int(s.get("outputBytes") or 0) for s in view.stages),
        "shuffleBytes": sum(int(s.get("shuffleWriteBytes") or 0) for s in view.stages),
        "jobs": len(view.jobs),
        "tasks": sum(s["tasks"] for s in stages),
        "planShape": plan_shape(view.plans),
        "joins": [n["name"] for p in view.plans for n in p["nodes"] if _is_join(n["name"])][
            :MAX_JOINS
        ],
        "stages": stages[:MAX_STAGES],
        "state": state,
    }


def normalize(fp: Mapping[str, Any]) -> dict[str, Any]:
    """A fingerprint as the agent sent it (proto3 JSON: int64 as strings, defaults left out)."""

    def num(v: Any) -> int:
        try:
            return int(v or 0)
        except (TypeError, ValueError):
            return 0

    stages = [
        {
            "stageId": num(s.get("stageId")),
            "name": str(s.get("name") or ""),
            "durationMs": num(s.get("durationMs")),
            "tasks": num(s.get("tasks")),
            "inputBytes": num(s.get("inputBytes")),
            "skewed": bool(s.get("skewed")),
        }
        for s in fp.get("stages") or []
        if isinstance(s, Mapping)
    ]
    return {
        "notebook": str(fp.get("notebook") or ""),
        "cellId": str(fp.get("cellId") or ""),
        "tag": str(fp.get("tag") or ""),
        "executionCount": num(fp.get("executionCount")),
        "startMs": num(fp.get("startMs")),
        "endMs": num(fp.get("endMs")),
        "inputBytes": num(fp.get("inputBytes")),
        "outputBytes": num(fp.get("outputBytes")),
        "shuffleBytes": num(fp.get("shuffleBytes")),
        "jobs": num(fp.get("jobs")),
        "tasks": num(fp.get("tasks")),
        "planShape": str(fp.get("planShape") or ""),
        "joins": [str(j) for j in fp.get("joins") or []],
        "stages": stages,
        "state": str(fp.get("state") or ""),
    }


def _pct(before: int, after: int) -> str:
    change = (after - before) / before * 100
    return f"{change:+.0f}%"


def _bytes_part(what: str, before: int, after: int) -> str | None:
    if before <= 0 and after <= 0:
        return None
    if before <= 0:
        return f"{what} {format_bytes(after)} (none before)"
    if after <= 0:
        return f"no {what} (was {format_bytes(before)})"
    if abs(after / before - 1) < BYTES_NOISE:
        return None
    return f"{what} {_pct(before, after)} ({format_bytes(before)} → {format_bytes(after)})"


def _joins_part(before: Sequence[str], after: Sequence[str]) -> list[str]:
    if list(before) == list(after):
        return []
    if len(before) == len(after):
        return [f"{a} became {b}" for a, b in zip(before, after, strict=True) if a != b]
    return [f"joins {', '.join(before) or 'none'} → {', '.join(after) or 'none'}"]


def duration_ms(fp: Mapping[str, Any]) -> int:
    return max(0, int(fp["endMs"]) - int(fp["startMs"]))


def diff(previous: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """How `current` differs from the cell's `previous` run: the speed ratio, what changed
    (bytes, joins, plan, tasks, skew), and the line the widget shows."""
    before, after = duration_ms(previous), duration_ms(current)
    ratio = after / before if before > 0 else 0.0
    if before <= 0 or abs(ratio - 1) < SPEED_NOISE:
        speed = "about as fast as the previous run"
    elif ratio > 1:
        speed = f"{ratio:.1f}× slower than the previous run"
    else:
        speed = f"{1 / ratio:.1f}× faster than the previous run" if ratio > 0 else ""
    speed += f" ({format_duration(before)} → {format_duration(after)})"
    parts: list[str] = []
    for what, key in (
        ("input", "inputBytes"),
        ("output", "outputBytes"),
        ("shuffle", "shuffleBytes"),
    ):
        part = _bytes_part(what, int(previous[key]), int(current[key]))
        if part:
            parts.append(part)
    parts.extend(_joins_part(previous["joins"], current["joins"]))
    if (
        previous["joins"] == current["joins"]
        and previous["planShape"]
        and current["planShape"]
        and previous["planShape"] != current["planShape"]
    ):
        parts.append("the plan changed")
    t0, t1 = int(previous["tasks"]), int(current["tasks"])
    if t0 > 0 and t1 > 0 and max(t0, t1) >= TASKS_FACTOR * min(t0, t1):
        parts.append(f"tasks {t0:,} → {t1:,}")
    prev_stages = previous["stages"]
    for i, s in enumerate(current["stages"]):
        was = prev_stages[i]["skewed"] if i < len(prev_stages) else False
        if s["skewed"] and not was:
            parts.append(f"new skew in stage {s['stageId']}")
    if previous["state"] != current["state"] and previous["state"] == "failed":
        parts.append("the previous run failed")
    elif previous["state"] != current["state"] and previous["state"] == "cancelled":
        parts.append("the previous run was cancelled")
    text = speed + (": " + ", ".join(parts) if parts else "")
    p_in, c_in = int(previous["inputBytes"]), int(current["inputBytes"])
    return {
        "text": text,
        "ratio": round(ratio, 3),
        "inputRatio": round(c_in / p_in, 3) if p_in > 0 else None,
        "durationMs": after,
        "previousDurationMs": before,
        "previousTag": previous["tag"],
        "previousEndMs": int(previous["endMs"]),
        "previousExecutionCount": int(previous["executionCount"]),
        "inputBytes": c_in,
        "previousInputBytes": p_in,
        "parts": parts,
    }
