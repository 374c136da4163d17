"""The per-cell widget: an anywidget whose synced traits hold the cell's jobs and stage attempts
(the ESM in static/ draws them), and the plain-text summary that frontends without widgets show.

Synced traits (names are API: tests read them from a notebook's saved widget state):

- `tag` (str): the cell run's Spark tag, `sparkscope-cell-<12 hex>`.
- `state` (str): `running`, or `done` once every job has ended and the cell has finished.
- `cell_done` (bool): the cell's code has finished running.
- `jobs` (list of dict), one per job, oldest first: `appId, jobId, name, description, status`
  (`RUNNING|SUCCEEDED|FAILED|UNKNOWN`), `stageIds`, `tasks` {`total, active, completed, skipped,
  failed, killed`} and `stages` {`active, completed, skipped, failed`} with the meaning of Spark's
  REST `JobData`, `submissionTimeMs, completionTimeMs` (Spark's clock, null while running),
  `sessionId, userId, operationId, error`, and `label` (what the row shows: the operation's SQL
  text or plan outline, since Spark names every Connect job after its truncated request).
- `stages` (list of dict), one per stage attempt of those jobs: `appId, stageId, attemptId, name,
  status` (`PENDING|ACTIVE|COMPLETE|FAILED|SKIPPED`), `numTasks, activeTasks, completedTasks,
  failedTasks, killedTasks, jobIds, submissionTimeMs, completionTimeMs, failureReason`.
- `operation_ids` (list of str): the Connect operations (ExecutePlan requests) of the cell.
- `session_ids` (list of str): the Connect sessions they ran in.
- `server_time_ms` (int): the agent's clock at its last update (`sentAtMs`), so the browser can
  run durations on Spark's clock whatever its own clock says.
- `summary` (str): the one-line summary, also the display's `text/plain`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import anywidget
import traitlets

STATIC = Path(__file__).parent / "static"

JOB_FIELDS = (
    "appId",
    "jobId",
    "name",
    "description",
    "status",
    "stageIds",
    "tasks",
    "stages",
    "submissionTimeMs",
    "completionTimeMs",
    "error",
)
STAGE_FIELDS = (
    "appId",
    "stageId",
    "attemptId",
    "name",
    "status",
    "numTasks",
    "activeTasks",
    "completedTasks",
    "failedTasks",
    "killedTasks",
    "jobIds",
    "submissionTimeMs",
    "completionTimeMs",
    "failureReason",
)


class CellWidget(anywidget.AnyWidget):
    """Spark jobs of one notebook cell run, live."""

    _esm = STATIC / "widget.js"
    _css = STATIC / "widget.css"

    tag = traitlets.Unicode("").tag(sync=True)
    state = traitlets.Unicode("running").tag(sync=True)
    cell_done = traitlets.Bool(False).tag(sync=True)
    jobs = traitlets.List(traitlets.Dict()).tag(sync=True)
    stages = traitlets.List(traitlets.Dict()).tag(sync=True)
    operation_ids = traitlets.List(traitlets.Unicode()).tag(sync=True)
    session_ids = traitlets.List(traitlets.Unicode()).tag(sync=True)
    server_time_ms = traitlets.Int(0).tag(sync=True)
    summary = traitlets.Unicode("").tag(sync=True)

    def __repr__(self) -> str:
        return self.summary or f"sparkscope cell {self.tag}"


# Spark Connect relation and command names worth showing (spark/connect/relations.proto,
# commands.proto); the rest of a plan's text (common, input, expressions, …) is structure.
_PLAN_NODES = frozenset(
    (
        "read",
        "project",
        "filter",
        "join",
        "set_op",
        "sort",
        "limit",
        "aggregate",
        "sql",
        "local_relation",
        "sample",
        "offset",
        "deduplicate",
        "range",
        "subquery_alias",
        "repartition",
        "to_df",
        "with_columns_renamed",
        "show_string",
        "drop",
        "tail",
        "with_columns",
        "hint",
        "unpivot",
        "to_schema",
        "repartition_by_expression",
        "map_partitions",
        "collect_metrics",
        "parse",
        "group_map",
        "co_group_map",
        "with_watermark",
        "apply_in_pandas_with_state",
        "html_string",
        "cached_local_relation",
        "cached_remote_relation",
        "as_of_join",
        "lateral_join",
        "transpose",
        "write_operation",
        "write_operation_v2",
        "create_dataframe_view",
        "sql_command",
        "write_stream_operation_start",
    )
)
_SQL_TEXT = re.compile(r'^\s*(?:query|sql): "((?:[^"\\]|\\.)*)"', re.MULTILINE)
_NODE = re.compile(r"^\s*([a-z_0-9]+) \{", re.MULTILINE)
_CONNECT_NAME = "Spark Connect - "


def plan_label(statement: str, limit: int = 80) -> str:
    """A short name for a Connect operation from its plan text: the SQL it ran, else its plan's
    relations outermost first (`sort ← aggregate ← range`)."""
    sql = _SQL_TEXT.search(statement)
    if sql:
        text = " ".join(sql.group(1).replace("\\'", "'").replace('\\"', '"').split())
    else:
        nodes: list[str] = []
        for name in _NODE.findall(statement):
            if name in _PLAN_NODES and name not in nodes:
                nodes.append(name)
        text = " ← ".join(nodes)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def widget_job(job: Mapping[str, Any], label: str = "") -> dict[str, Any]:
    """A normalized agent job (state.normalize_job) as the widget's `jobs` holds it; `label` is
    what the row shows (Connect jobs are all named by the same truncated request text)."""
    out = {k: job[k] for k in JOB_FIELDS}
    connect = job.get("connect") or {}
    out["sessionId"] = connect.get("sessionId", "")
    out["userId"] = connect.get("userId", "")
    out["operationId"] = connect.get("operationId", "")
    name = job["name"]
    out["label"] = label or ("" if name.startswith(_CONNECT_NAME) else name)
    return out


def widget_stage(stage: Mapping[str, Any]) -> dict[str, Any]:
    return {k: stage[k] for k in STAGE_FIELDS}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def format_seconds(ms: int) -> str:
    s = max(ms, 0) / 1000
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(int(s), 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def elapsed_ms(jobs: Iterable[Mapping[str, Any]], now_ms: int) -> int:
    """From the first job's submission to the last job's end (or `now_ms`), Spark's clock."""
    jobs = list(jobs)
    starts = [j["submissionTimeMs"] for j in jobs if j["submissionTimeMs"]]
    if not starts:
        return 0
    ends = [j["completionTimeMs"] or now_ms for j in jobs]
    return max(ends) - min(starts)


def summarize(jobs: list[Mapping[str, Any]], now_ms: int) -> str:
    """`3 jobs (2 succeeded, 1 failed) · 180/200 tasks (20 skipped, 1 failed) · 4.2 s`."""
    if not jobs:
        return "no Spark jobs"
    by_status: dict[str, int] = {}
    for job in jobs:
        by_status[job["status"]] = by_status.get(job["status"], 0) + 1
    order = ("RUNNING", "SUCCEEDED", "FAILED", "UNKNOWN")
    statuses = ", ".join(
        f"{by_status[s]} {s.lower()}" for s in sorted(by_status, key=lambda s: _rank(order, s))
    )
    tasks = {k: sum(j["tasks"][k] for j in jobs) for k in jobs[0]["tasks"]}
    extra = [
        f"{tasks[k]} {label}"
        for k, label in (("active", "running"), ("skipped", "skipped"), ("failed", "failed"))
        if tasks[k]
    ]
    task_text = f"{tasks['completed']}/{tasks['total']} tasks"
    if extra:
        task_text += f" ({', '.join(extra)})"
    return (
        f"{_plural(len(jobs), 'job')} ({statuses}) · {task_text} · "
        f"{format_seconds(elapsed_ms(jobs, now_ms))}"
    )


def _rank(order: tuple[str, ...], status: str) -> int:
    return order.index(status) if status in order else len(order)


def text_report(tag: str, jobs: list[Mapping[str, Any]], now_ms: int, max_jobs: int = 20) -> str:
    """The display's text/plain: the summary and one line per job (nbconvert, terminals)."""
    lines = [f"sparkscope: {summarize(jobs, now_ms)}  [{tag}]"]
    for job in jobs[:max_jobs]:
        t = job["tasks"]
        done = job["completionTimeMs"] or now_ms
        took = format_seconds(done - job["submissionTimeMs"]) if job["submissionTimeMs"] else ""
        skipped = f", {t['skipped']} skipped" if t["skipped"] else ""
        failed = f", {t['failed']} failed" if t["failed"] else ""
        name = job.get("label") or ""
        name = name if len(name) <= 60 else name[:59] + "…"
        lines.append(
            f"  job {job['jobId']} {job['status']:<9} {t['completed']}/{t['total']} tasks"
            f"{skipped}{failed}  {took}  {name}".rstrip()
        )
    if len(jobs) > max_jobs:
        lines.append(f"  … {len(jobs) - max_jobs} more jobs")
    return "\n".join(lines)
