"""A cell run's view as static output: the display's text/plain (terminals, nbconvert, frontends
without widgets) and, once the cell's work has ended, its text/html, so a saved notebook shows its
jobs where no kernel and no widget manager run: GitHub, nbviewer, nbconvert, a reopened notebook.
The HTML is a plain table with inline styles only: sanitizers keep tables and text, and drop the
rest."""

from __future__ import annotations

from html import escape

from .cellview import CellView, details, format_duration, is_http_url, shorten

_COLORS = {
    "RUNNING": "#1976d2",
    "SUCCEEDED": "#388e3c",
    "FAILED": "#d32f2f",
    "UNKNOWN": "#757575",
}


def text_report(view: CellView, max_jobs: int = 20) -> str:
    """The summary, the gaps its numbers went through, the root cause of each failure
    (shortened), and one line per job."""
    note = " · cancelled" if view.state == "cancelled" else ""
    lines = [f"sparkscope: {view.summary_text}{note}  [{view.tag}]"]
    lines.extend(f"  note: {n['message']}" for n in view.notices)
    for e in view.errors:
        lines.append(f"  error: {shorten(e['message'], 200)}")
    for cause in view.root_causes:
        f = cause.failure
        lines.append(
            f"  error: job {cause.job_id}, stage {cause.stage_id}: {shorten(cause.text, 200)} "
            f"(task {f['index']} attempt {f['attempt']} on executor {f['executorId']}, "
            f"{f['host']})"
        )
    for job in view.jobs[:max_jobs]:
        t = job["tasks"]
        done = job["completionTimeMs"] or view.now_ms
        took = format_duration(done - job["submissionTimeMs"]) if job["submissionTimeMs"] else ""
        skipped = f", {t['skipped']} skipped" if t["skipped"] else ""
        failed = f", {t['failed']} failed" if t["failed"] else ""
        name = job.get("label") or ""
        name = name if len(name) <= 60 else name[:59] + "…"
        lines.append(
            f"  job {job['jobId']} {job['status']:<9} {t['completed']}/{t['total']} tasks"
            f"{skipped}{failed}  {took}  {name}".rstrip()
        )
    if len(view.jobs) > max_jobs:
        lines.append(f"  … {len(view.jobs) - max_jobs} more jobs")
    return "\n".join(lines)


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


def html_report(view: CellView) -> str:
    ctx = view.context
    link = view.links["ui"]
    cancelled = " · cancelled" if view.state == "cancelled" else ""
    parts = [
        (
            f'<div class="sparkscope-static" data-tag="{escape(view.tag)}" '
            f'data-state="{escape(view.state)}" style="font-family:system-ui,sans-serif;'
            'font-size:13px;border:1px solid #e0e0e0;border-radius:4px;padding:4px 8px">'
        ),
        f"<div><b>Spark</b> · {escape(view.summary_text)}{cancelled}</div>",
    ]
    shown = [text for key, text in details(ctx) if key in ("spark", "master", "app")]
    if shown:
        parts.append(f'<div style="color:#616161">{escape(" · ".join(shown))}</div>')
    for n in view.notices:
        parts.append(f'<div style="color:#8a6d00">note: {escape(n["message"])}</div>')
    for e in view.errors:
        parts.append(f'<div style="color:#d32f2f">error: {escape(e["message"])}</div>')
    parts.append(
        '<table style="border-collapse:collapse;margin-top:4px">'
        "<thead><tr><th align=left>job</th><th align=left>what</th><th align=left>tasks</th>"
        "<th></th><th align=left>status</th><th align=right>duration</th></tr></thead><tbody>"
    )
    for job in view.jobs:
        t = job["tasks"]
        took = ""
        if job["submissionTimeMs"]:
            took = format_duration(
                (job["completionTimeMs"] or view.now_ms) - job["submissionTimeMs"]
            )
        name = job.get("label") or ""
        job_link = view.links["jobs"].get(f"{job['appId']}/{job['jobId']}", "")
        job_cell = f"Job {job['jobId']}"
        if is_http_url(job_link):
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
        # what the job row's badges say, then why it failed
        hints = [f.text for f in view.findings_of(job) if f.job_label]
        cause = view.root_cause_of(job)
        if cause is not None:
            f = cause.failure
            hints.append(
                f"stage {cause.stage_id}: {cause.text} (task {f['index']} attempt "
                f"{f['attempt']}, executor {f['executorId']} on {f['host']})"
            )
        elif job.get("error"):
            hints.append(job["error"])
        for h in hints:
            parts.append(
                f'<tr><td></td><td colspan="5" style="color:#616161">{escape(h[:300])}</td></tr>'
            )
    parts.append("</tbody></table>")
    if is_http_url(link):
        parts.append(f'<div><a href="{escape(link)}">Spark UI</a></div>')
    parts.append("</div>")
    return "".join(parts)
