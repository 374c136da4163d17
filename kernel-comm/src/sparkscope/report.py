"""The cell's final state as static HTML (the display's `text/html`), so a saved notebook shows its
jobs where no kernel and no widget manager run: GitHub, nbviewer, nbconvert, a reopened notebook.
A plain table with inline styles only: sanitizers keep tables and text, and drop the rest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from .view import root_cause, skewed, spilled
from .widget import failure_text, format_seconds, summarize

_COLORS = {
    "RUNNING": "#1976d2",
    "SUCCEEDED": "#388e3c",
    "FAILED": "#d32f2f",
    "UNKNOWN": "#757575",
}


def _bar(completed: int, total: int, failed: int) -> str:
    total = max(total, 1)
    done = max(0, min(100, round(100 * completed / total)))
    bad = max(0, min(100 - done, round(100 * failed / total)))
    return (
        '<div style="display:flex;width:12em;height:0.8em;background:#e0e0e0;'
        'border-radius:2px;overflow:hidden">'
        f'<div style="width:{done}%;background:#388e3c"></div>'
        f'<div style="width:{bad}%;background:#d32f2f"></div></div>'
    )


def html_report(
    tag: str,
    jobs: Sequence[Mapping[str, Any]],
    stages: Sequence[Mapping[str, Any]],
    now_ms: int,
    *,
    context: Mapping[str, Any] | None = None,
    errors: Sequence[Mapping[str, Any]] = (),
    state: str = "",
    notices: Sequence[Mapping[str, Any]] = (),
) -> str:
    ctx = context or {}
    link = ctx.get("uiLink", "")
    cancelled = " · cancelled" if state == "cancelled" else ""
    parts = [
        (
            f'<div class="sparkscope-static" data-tag="{escape(tag)}" '
            f'data-state="{escape(state)}" style="font-family:system-ui,sans-serif;'
            'font-size:13px;border:1px solid #e0e0e0;border-radius:4px;padding:4px 8px">'
        ),
        f"<div><b>Spark</b> · {escape(summarize(list(jobs), now_ms))}{cancelled}</div>",
    ]
    details = [
        f"Spark {ctx['sparkVersion']}" if ctx.get("sparkVersion") else "",
        ctx.get("master", ""),
        f"{ctx.get('appName', '')} ({ctx['appId']})" if ctx.get("appId") else "",
        f"user {ctx['userId']}" if ctx.get("userId") else "",
    ]
    if any(details):
        parts.append(
            f'<div style="color:#616161">{escape(" · ".join(d for d in details if d))}</div>'
        )
    for n in notices:
        parts.append(f'<div style="color:#8a6d00">note: {escape(n["message"])}</div>')
    for e in errors:
        parts.append(f'<div style="color:#d32f2f">error: {escape(e["message"])}</div>')
    parts.append(
        '<table style="border-collapse:collapse;margin-top:4px">'
        "<thead><tr><th align=left>job</th><th align=left>what</th><th align=left>tasks</th>"
        "<th></th><th align=left>status</th><th align=right>duration</th></tr></thead><tbody>"
    )
    for job in jobs:
        t = job["tasks"]
        took = ""
        if job["submissionTimeMs"]:
            took = format_seconds((job["completionTimeMs"] or now_ms) - job["submissionTimeMs"])
        name = job.get("label") or ""
        job_link = f"{link}/jobs/job/?id={job['jobId']}" if link else ""
        job_cell = f"Job {job['jobId']}"
        if job_link:
            job_cell = f'<a href="{escape(job_link)}">{job_cell}</a>'
        color = _COLORS.get(job["status"], "#757575")
        counts = f"{t['completed']}/{t['total']}"
        if t["skipped"]:
            counts += f" · {t['skipped']} skipped"
        if t["failed"]:
            counts += f" · {t['failed']} failed"
        parts.append(
            f'<tr class="sparkscope-static-job" data-job-id="{job["jobId"]}" '
            f'data-status="{escape(job["status"])}">'
            f"<td>{job_cell}</td><td>{escape(name[:80])}</td>"
            f"<td>{_bar(t['completed'] + t['skipped'], t['total'], t['failed'])}</td>"
            f"<td>{escape(counts)}</td>"
            f'<td style="color:{color}">{escape(job["status"])}</td>'
            f'<td align="right">{escape(took)}</td></tr>'
        )
        mine = [s for s in stages if s["appId"] == job["appId"] and s["stageId"] in job["stageIds"]]
        hints = []
        for s in mine:
            if skewed(s):
                d = s["taskDurations"]
                hints.append(
                    f"stage {s['stageId']}: skew, slowest task {format_seconds(d['maxMs'])} "
                    f"against a median of {format_seconds(d['medianMs'])}"
                )
            if spilled(s):
                hints.append(f"stage {s['stageId']}: spilled {spilled(s):,} bytes")
        cause = root_cause(job, mine) if job["status"] == "FAILED" else None
        if cause is not None:
            f = cause["firstFailure"]
            hints.append(
                f"stage {cause['stageId']}: {failure_text(f)} (task {f['index']} attempt "
                f"{f['attempt']}, executor {f['executorId']} on {f['host']})"
            )
        elif job.get("error"):
            hints.append(job["error"])
        for h in hints:
            parts.append(
                f'<tr><td></td><td colspan="5" style="color:#616161">{escape(h[:300])}</td></tr>'
            )
    parts.append("</tbody></table>")
    if link:
        parts.append(f'<div><a href="{escape(link)}">Spark UI</a></div>')
    parts.append("</div>")
    return "".join(parts)
