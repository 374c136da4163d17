"""The per-cell widget: an anywidget whose synced traits hold the cell's jobs and stage attempts
(the ESM in static/ draws them), its Cancel buttons' messages to the kernel, and the plain-text
summary that frontends without widgets show.

Synced traits (names are API: tests read them from a notebook's saved widget state):

- `tag` (str): the cell run's Spark tag, `sparkscope-cell-<12 hex>`.
- `state` (str): `running`; `cancelled` once a cancel of the cell run from the widget succeeded
  and its jobs have ended, or once the cell has finished and all its jobs have ended when one of
  its operations ended CANCELED (Jupyter's stop button: pyspark interrupts its operation); else
  `done` once every job has ended and the cell has finished.
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
- `server_time_ms` (int): the agent's clock at its last update (`sentAtMs`), so the browser can
  run durations on Spark's clock whatever its own clock says.
- `cancel` (dict): the outcome of the latest Cancel click, `{}` before any: `requestId, target`
  (`cell|job`), `jobId, status` (`pending|done`), `ok, code, message` (the agent's
  `CancelResult`, or the kernel's own codes `no_agent`, `unauthorized`, `no_answer`),
  `interruptedOperationIds, cancelledJobIds`.
- `cancelled_jobs` (list of int): jobs Spark was asked to cancel one by one.
- `agent_error` (str): why a Cancel cannot reach the agent now, `""` when it can.
- `notices` (list of dict): gaps the cell's numbers went through since it started, newest last
  (at most 3): `kind` (`resync`: the listener reconnected and live state was restored from Spark;
  `dropped`: events were dropped on the way; `reconciled`: counts were corrected from Spark's
  REST API; `unreconciled`: Spark's REST API could not be asked), `atMs`, `message`.
- `context` (dict): the cell's application and session: `appId, appName, sparkVersion, master,
  connectAddress, userId, sessionId, live, uiLink` (Spark's UI for people, "" when unknown).
- `cluster` (dict): `executors, cores, busy` (tasks running now on the application).
- `samples` (list of `[atMs, activeTasks, totalCores]`): the application's busy task slots over
  the cell's run (agent clock), each value holding until the next; at most 400.
- `errors` (list of dict): the cell's Connect operations that failed, `operationId, message`
  (an analysis error has no job to show it).
- `task_lists` (dict): per opened stage attempt, `"<appId>/<stageId>/<attemptId>"` →
  `{status: pending|done, ok, code, message, total, tasks: [TaskDetail as in
  docs/streaming-api.md]}`.
- `view` (str): the view the user chose, `jobs|tasks|timeline`; set by the browser, saved with
  the notebook.
- `hidden` (bool): every sparkscope widget of the notebook is hidden (the widget's "Hide all",
  `%sparkscope off`).

Stages also carry `executorRunTimeMs, memorySpilledBytes, diskSpilledBytes, gcTimeMs`,
`taskDurations` {`minMs, medianMs, maxMs`} of their successful tasks, and `firstFailure` {`taskId,
index, attempt, executorId, host, reason, exceptionClass, message, stackTrace, timeMs`}.

Kernel-side traits, not sent to the browser (it draws from the jobs it has):

- `operation_ids` (list of str): the Connect operations (ExecutePlan requests) of the cell.
- `session_ids` (list of str): the Connect sessions they ran in.
- `summary` (str): the one-line summary, also the display's `text/plain`.

Cancel reaches the kernel as a custom comm message `{"kind": "cancel", "target": "cell"|"job",
"jobId", "appId", "requestId"}`; opening a stage's tasks as `{"kind": "tasks", "appId", "stageId",
"attemptId"}`; Hide all / Show as `{"kind": "hide_all"}` / `{"kind": "show_all"}`. JupyterLab (>= 4.4, `commsOverSubshells`) sends widget comm
messages on a kernel subshell, so a kernel busy with the cell could take them on the subshell's
thread — but ipykernel 7.4 re-routes each comm message to the subshell its comm last published
from (`BaseComm._reply_subshell_for`), and this widget publishes from a background thread whose
parent is the main shell's request: the click would wait for the cell to end. So the widget's comm
keeps the frontend's choice (`_route_to_sender`), and the handler never blocks: it hands the
request to the agent client's thread.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import anywidget
import traitlets

log = logging.getLogger("sparkscope")

STATIC = Path(__file__).parent / "static"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

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
    "sqlExecutionId",
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
    "executorRunTimeMs",
    "memorySpilledBytes",
    "diskSpilledBytes",
    "gcTimeMs",
    "taskDurations",
    "firstFailure",
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
    operation_ids = traitlets.List(traitlets.Unicode())
    session_ids = traitlets.List(traitlets.Unicode())
    server_time_ms = traitlets.Int(0).tag(sync=True)
    summary = traitlets.Unicode("")
    cancel = traitlets.Dict().tag(sync=True)
    cancelled_jobs = traitlets.List(traitlets.Int()).tag(sync=True)
    agent_error = traitlets.Unicode("").tag(sync=True)
    notices = traitlets.List(traitlets.Dict()).tag(sync=True)
    context = traitlets.Dict().tag(sync=True)
    cluster = traitlets.Dict().tag(sync=True)
    samples = traitlets.List(traitlets.List()).tag(sync=True)
    errors = traitlets.List(traitlets.Dict()).tag(sync=True)
    task_lists = traitlets.Dict().tag(sync=True)
    view = traitlets.Unicode("jobs").tag(sync=True)
    hidden = traitlets.Bool(False).tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cancel_handler: Callable[..., Any] | None = None
        self._tasks_handler: Callable[..., Any] | None = None
        self._hide_handler: Callable[[bool], Any] | None = None
        self.on_msg(self._on_custom_msg)
        _route_to_sender(self.comm)

    def on_cancel(self, handler: Callable[..., Any]) -> None:
        """`handler(job_id=None|int, app_id=None|str, request_id=str)` for each Cancel click;
        called on the thread that received the comm message, so it must not block."""
        self._cancel_handler = handler

    def on_tasks(self, handler: Callable[..., Any]) -> None:
        """`handler(app_id=str, stage_id=int, attempt_id=int)` when a user opens a stage's
        tasks; must not block."""
        self._tasks_handler = handler

    def on_hide_all(self, handler: Callable[[bool], Any]) -> None:
        """`handler(hidden)` when a user hides (or shows again) every sparkscope widget."""
        self._hide_handler = handler

    def _on_custom_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        try:
            kind = content.get("kind") if isinstance(content, Mapping) else None
            if kind == "tasks":
                request = parse_tasks(content)
                if request is not None and self._tasks_handler is not None:
                    self._tasks_handler(**request)
                return
            if kind in ("hide_all", "show_all"):
                if self._hide_handler is not None:
                    self._hide_handler(kind == "hide_all")
                return
            request = parse_cancel(content)
            if request is None or self._cancel_handler is None:
                return
            self._cancel_handler(**request)
        except Exception:  # a bad message never reaches the kernel's log as a crash
            log.exception("sparkscope: handling a widget message failed")

    def __repr__(self) -> str:
        return self.summary or f"sparkscope cell {self.tag}"


def parse_cancel(content: Any) -> dict[str, Any] | None:
    """The keyword arguments for `Monitor.cancel` from a widget's message, or None if it is not
    a well-formed cancel request."""
    if not isinstance(content, Mapping) or content.get("kind") != "cancel":
        return None
    rid = content.get("requestId")
    request: dict[str, Any] = {
        "request_id": rid if isinstance(rid, str) and _REQUEST_ID.match(rid) else None
    }
    target = content.get("target")
    if target == "cell":
        return request
    job_id = content.get("jobId")
    if target != "job" or isinstance(job_id, bool) or not isinstance(job_id, int) or job_id < 0:
        return None
    app_id = content.get("appId")
    return {**request, "job_id": job_id, "app_id": app_id if isinstance(app_id, str) else None}


def parse_tasks(content: Mapping[str, Any]) -> dict[str, Any] | None:
    """The keyword arguments for `Monitor.request_tasks` from a widget's message, or None."""
    app_id, stage_id, attempt_id = (content.get(k) for k in ("appId", "stageId", "attemptId"))
    ints = [v for v in (stage_id, attempt_id) if isinstance(v, int) and not isinstance(v, bool)]
    if not isinstance(app_id, str) or len(ints) != 2 or min(ints) < 0:
        return None
    return {"app_id": app_id, "stage_id": stage_id, "attempt_id": attempt_id}


def _route_to_sender(comm: Any) -> None:
    """Handle this comm's messages on the kernel subshell the frontend sent them to (ipykernel
    7.4 would send them to the subshell the comm last published from: the busy main shell, since
    the widget publishes from a background thread). The widget never waits for a frontend reply,
    which is what ipykernel's re-routing is for. No-op on kernels without it."""
    if comm is not None and hasattr(comm, "_reply_subshell_for"):
        comm._reply_subshell_for = lambda _data, subshell_id: subshell_id


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


def failure_text(f: Mapping[str, Any]) -> str:
    """`java.lang.ArithmeticException: / by zero`; the reason when there is no exception."""
    what = f["exceptionClass"] or f["reason"]
    return f"{what}: {f['message']}" if f["message"] else what


def _short(text: str, limit: int) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _rank(order: tuple[str, ...], status: str) -> int:
    return order.index(status) if status in order else len(order)


def text_report(
    tag: str,
    jobs: list[Mapping[str, Any]],
    now_ms: int,
    max_jobs: int = 20,
    state: str = "",
    notices: list[Mapping[str, Any]] | None = None,
    stages: list[Mapping[str, Any]] | None = None,
    errors: list[Mapping[str, Any]] | None = None,
) -> str:
    """The display's text/plain: the summary, the gaps its numbers went through, the root cause
    of each failure (shortened), and one line per job (nbconvert, terminals)."""
    from .view import root_cause

    note = " · cancelled" if state == "cancelled" else ""
    lines = [f"sparkscope: {summarize(jobs, now_ms)}{note}  [{tag}]"]
    lines.extend(f"  note: {n['message']}" for n in notices or [])
    for e in errors or []:
        lines.append(f"  error: {_short(e['message'], 200)}")
    for job in jobs:
        stage = root_cause(job, stages or []) if job["status"] == "FAILED" else None
        if stage is not None:
            f = stage["firstFailure"]
            lines.append(
                f"  error: job {job['jobId']}, stage {stage['stageId']}: "
                f"{_short(failure_text(f), 200)} (task {f['index']} attempt {f['attempt']} on "
                f"executor {f['executorId']}, {f['host']})"
            )
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
