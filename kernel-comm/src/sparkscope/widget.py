"""The per-cell widget: an anywidget whose synced traits hold a cell run's view (cellview): its
jobs and stage attempts, and everything already decided about them (findings, root causes,
summary, links), which the ESM in static/ only draws; and its buttons' messages to the kernel.

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
  `error`, and `label` (what the row shows: the operation's SQL
  text or plan outline, since Spark names every Connect job after its truncated request).
- `stages` (list of dict), one per stage attempt of those jobs, by stage and attempt: `appId,
  stageId, attemptId, name, status` (`PENDING|ACTIVE|COMPLETE|FAILED|SKIPPED|UNKNOWN`; UNKNOWN:
  over, how it ended is unknown), `numTasks, activeTasks, completedTasks, failedTasks,
  killedTasks, jobIds, submissionTimeMs, completionTimeMs, failureReason`, and `label` (the name worth showing: "" for Connect's).
- `server_time_ms` (int): the agent's clock at its last update (`sentAtMs`), so the browser can
  run durations on Spark's clock whatever its own clock says.
- `cancel` (dict): the outcome of the latest Cancel click, `{}` before any: `requestId, target`
  (`cell|job`), `jobId, status` (`pending|done`), `ok, code, message` (the agent's
  `CancelResult`, or the kernel's own codes `no_agent`, `unauthorized`, `no_answer`),
  `interruptedOperations` (how many), `cancelledJobIds`.
- `cancelled_jobs` (list of int): jobs Spark was asked to cancel one by one.
- `agent_error` (str): why a Cancel cannot reach the agent now, `""` when it can.
- `notices` (list of dict): gaps the cell's numbers went through since it started, newest last
  (at most 3): `kind` (`resync`: the listener reconnected and live state was restored from Spark;
  `dropped`: events were dropped on the way; `reconciled`: counts were corrected from Spark's
  REST API; `unreconciled`: Spark's REST API could not be asked; `listener_gone`: the driver
  went away without an application end, its running work ended as unknown), `atMs`,
  `message`.
- `context` (dict): the cell's application and session: `appId, appName, sparkVersion, master,
  connectAddress, live, uiLink` (Spark's UI for people, "" when unknown; http or https only).
- `cluster` (dict): `executors, cores, busy` (tasks running now on the application).
- `samples` (list of `[atMs, activeTasks, totalCores]`): the application's busy task slots over
  the cell's run (agent clock), each value holding until the next; at most 400.
- `errors` (list of dict): the cell's Connect operations that failed, `message`
  (an analysis error has no job to show it).
- `task_lists` (dict): per opened stage attempt, `"<appId>/<stageId>/<attemptId>"` →
  `{status: pending|done, ok, code, message, total, tasks: [TaskDetail as in
  docs/streaming-api.md], threadDump}`; `threadDump` (after "Is it stuck?", else null):
  `taskId, executorId, runningMs, threadName, threadState, frames` (innermost first),
  `moreFrames, blockedBy, takenAtMs, error` ("" when there is a dump).
- `logs` (list of dict): the driver's WARN and ERROR lines of the cell's jobs, stages and
  operations, oldest first (the newest 200): `appId, seq, timeMs, level` (`WARN|ERROR|FATAL`),
  `logger, message, thrown` (exception and first frames, "" without one), `jobId, stageId,
  stageAttemptId` (null when the line names none). Only lines the agent tied to the cell's own
  session by identity; whose they are stays kernel-side.
- `plans` (list of dict): the cell's SQL executions (queries, DataFrame actions), by start, the
  newest 20: `appId, executionId, label` (the operation's SQL text or plan outline, else Spark's
  description), `description` ("" for Connect's, which names its request), `status`
  (`running|succeeded|failed`), `error, startMs, endMs` (null while running), `jobIds`,
  `planVersion` (0: the plan it started with; each AQE re-plan adds one), `planLabel`
  ("re-planned by AQE 2×", "" without one), `shape` (its key in `plan_shapes`), `nodes` (the
  values of the physical plan's operators, in the shape's order: `m` [[`value` (null: not
  updated yet), `text` (as Spark's SQL tab writes it, "–" without a value)] per metric of the
  shape], `rows` (the "number of output rows", or null), `timeMs` (the node's own timing
  metrics), `share` (of the plan's time, 0..1; a WholeStageCodegen node's duration is its
  children's and no share of its own), `top` (the node with the largest share)), `nodeCount`,
  `nodesHidden` (over the 500), `nodesDropped` (left out by the listener), `moreNodes` (both),
  `totalTimeMs`. Updated live, at the throttle's pace, while queries run.
- `plan_shapes` (dict): the operators of each plan in `plans` by its `shape`
  (`<appId>/<executionId>/<planVersion>`), which change only with a new query or re-plan and so
  are sent once: in pre-order, at most 500, `parent` (-1 for the root), `depth, name, detail`
  (Spark's one-line description), `metrics` [[`name, type` (`sum|size|timing|nsTiming|
  average`)]], "number of output rows" first.
- `plans_dropped` (int): older SQL executions of the cell not in `plans`.
- `contention` (dict, empty before a job ran): the cell's share of the server over its jobs' run
  (`startMs`, `endMs`): `coresMs` (the cores' time), `ownMs` (its tasks' run time), `othersMs`
  (the rest of the busy slots' time), `ownShare`, `othersShare`, `otherSessions` (other
  sessions with tasks running at once, at most), `fullMs` (time every core was busy), `waitedMs`
  (its tasks' waiting for cores others held, summed over its tasks), `text`.
- `memory` (dict, empty before an executor's heartbeat named one of the cell's stages): the
  executors' memory while its stages ran (their heartbeats' peaks, as Spark's stage
  `peakExecutorMetrics`): `peakHeapBytes`, `maxHeapBytes` (the heap they may grow to; 0 when not
  known), `heapShare` (null without it), `peakOffHeapBytes`, `peakStorageBytes` (cached blocks
  and broadcasts), `gcTimeMs`, `runTimeMs`, `gcShare` (of its task time),
  `driverPeakHeapBytes`, `driverMaxHeapBytes` (the driver's heap since it started, when it is
  not the executor; 0 in local mode), `text`.
- `diff` (dict, empty before the cell's rerun ended): how this run differs from the cell's
  previous run (same notebook and cell id, kept by the agent across restarts): `text` ("3.1×
  slower than the previous run (1.0 s → 3.1 s): input +40% (…), BroadcastHashJoin became
  SortMergeJoin, new skew in stage 7"), `ratio` (duration over the previous one's),
  `inputRatio` (null without input before), `durationMs`, `previousDurationMs`, `inputBytes`,
  `previousInputBytes`, `previousTag`, `previousEndMs`, `previousExecutionCount`, `parts`.
- `view` (str): the view the user chose, `jobs|tasks|timeline|logs|plan`; set by the browser,
  saved with the notebook.
- `hidden` (bool): every sparkscope widget of the notebook is hidden (the widget's "Hide all",
  `%sparkscope off`).

- `overview` (dict): the summary line as the header shows it: `text` (jobs by status, tasks),
  `elapsed` (`{startMs, endMs, live}`: from the first job's submission to `endMs`, or to now
  while `live`; null without jobs), `jobCounts` {`running, succeeded, failed, unknown`},
  `details` (the details line: Spark version, master, application, Connect server, user,
  session) and `listenerGone` (the application has no listener connected).
- `findings` (list of dict): what is worth a look, the stage attempts' by stage attempt, then
  the SQL executions' operators' (by execution, node), then the whole cell run's: `scope`
  (`stage|plan|cell`), `kind` (stage: `skew|spill|small-tasks|partition-too-large|gc`; plan:
  `small-files|broadcast|broadcast-too-large|cross-join`; cell: `idle-cores`), `severity`
  (`warning`: highlighted; `info`: a GC share below 10%), `appId, stageId, attemptId` (-1 for
  plan and cell findings), `jobIds` (a plan finding's: its execution's; none for the cell's),
  `executionId, nodeIndex, nodeName` (a plan finding's operator, else null/""), `evidence`
  (skew: `minMs, medianMs, maxMs`; spill: `memoryBytes, diskBytes, bytes`; small-tasks:
  `numTasks, medianMs`; partition-too-large: `readBytes, numTasks, bytesPerTask`; gc:
  `gcTimeMs, executorRunTimeMs, share`; small-files: `filesRead, bytesRead, avgBytes` or
  `filesWritten, bytesWritten, avgBytes`; broadcast: `leftBytes, rightBytes, smallBytes`;
  broadcast-too-large: `bytes`; cross-join: `rows`; idle-cores: `busyShare, cores, runMs`),
  `label` (its badge), `jobLabel` (the job row's badge, "" when not shown there), `title` (what
  it means and what to do), `text` (the sentence of the static report) and `fix` (code the
  widget's "Insert fix" puts in a new cell below, never run; "" when none). The advisor's
  thresholds: cellview.ADVISOR_THRESHOLDS.
- `root_causes` (list of dict): per failed job with a failed task, its first task failure:
  `appId, jobId, stageId, attemptId, taskId, what` (exception class, else Spark's reason),
  `message, where` (stage, task, executor and host, for people), `stackTrace`.
- `links` (dict): Spark UI pages, {} of each without its address: `ui`, `jobs` and `sql` by
  `"<appId>/<jobId>"`, `stages` by `"<appId>/<stageId>/<attemptId>"`; and `executorLogs`, the
  live executors' logs as their workers serve them (`executorId, kind` (stdout, stderr), `url`;
  none in local mode).

Stages also carry `executorRunTimeMs, inputBytes, outputBytes, shuffleReadBytes,
shuffleWriteBytes, memorySpilledBytes, diskSpilledBytes, gcTimeMs`,
`taskDurations` {`minMs, medianMs, maxMs`} of their successful tasks, and `firstFailure` {`taskId,
index, attempt, executorId, host, reason, exceptionClass, message, stackTrace, timeMs`}.

Kernel-side traits, not sent to the browser (it draws from the jobs it has). Who ran the cell,
in which Connect sessions and operations, stays here and out of the synced traits, which the
notebook file saves:

- `operation_ids` (list of str): the Connect operations (ExecutePlan requests) of the cell.
- `session_ids` (list of str): the Connect sessions they ran in.
- `summary` (str): the one-line summary, the first line of the display's `text/plain`.

Cancel reaches the kernel as a custom comm message `{"kind": "cancel", "target": "cell"|"job",
"jobId", "appId", "requestId"}`; opening a stage's tasks as `{"kind": "tasks", "appId", "stageId",
"attemptId", "threadDump"}` (`threadDump`: "Is it stuck?", also where its longest-running task is
now); Hide all / Show as `{"kind": "hide_all"}` / `{"kind": "show_all"}`. JupyterLab (>= 4.4, `commsOverSubshells`) sends widget comm
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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from .cellview import CONNECT_NAME, details

if TYPE_CHECKING:
    from .cellview import CellView

log = logging.getLogger("sparkscope")

STATIC = Path(__file__).parent / "static"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


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
    logs = traitlets.List(traitlets.Dict()).tag(sync=True)
    plans = traitlets.List(traitlets.Dict()).tag(sync=True)
    plan_shapes = traitlets.Dict().tag(sync=True)
    plans_dropped = traitlets.Int(0).tag(sync=True)
    contention = traitlets.Dict().tag(sync=True)
    memory = traitlets.Dict().tag(sync=True)
    diff = traitlets.Dict().tag(sync=True)
    view = traitlets.Unicode("jobs").tag(sync=True)
    hidden = traitlets.Bool(False).tag(sync=True)
    overview = traitlets.Dict().tag(sync=True)
    findings = traitlets.List(traitlets.Dict()).tag(sync=True)
    root_causes = traitlets.List(traitlets.Dict()).tag(sync=True)
    links = traitlets.Dict().tag(sync=True)

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


# What the kernel knows of a cell run but never puts in the widget's synced state, which the
# notebook file keeps: who ran it and in which Connect session and operations.
PRIVATE_FIELDS = frozenset({"sessionId", "userId", "operationId"})


def public(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row of the view without the ids that stay in the kernel. Spark names Connect jobs and
    stages after their request, session id and user included: such a name is no name to show
    (rows have their `label`) and stays in the kernel too."""
    out = {k: v for k, v in row.items() if k not in PRIVATE_FIELDS}
    for k in ("name", "description"):
        if isinstance(out.get(k), str) and out[k].startswith(CONNECT_NAME):
            out[k] = ""
    return out


def public_cancel(outcome: Mapping[str, Any]) -> dict[str, Any]:
    """A cancel's outcome as the widget shows it: how many operations were interrupted, not
    which."""
    out = {k: v for k, v in outcome.items() if k != "interruptedOperationIds"}
    if "interruptedOperationIds" in outcome:
        out["interruptedOperations"] = len(outcome["interruptedOperationIds"])
    return out


def plan_key(p: Mapping[str, Any]) -> str:
    return f"{p['appId']}/{p['executionId']}/{p['planVersion']}"


def split_plans(plans: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The plans as the widget gets them: each plan's operators (its shape: what they are,
    the same for as long as the plan is) apart from their values (which change as the query
    runs), so that a running query's updates carry only the values; a large plan's names and
    descriptions are most of its bytes. The browser joins them again."""
    rows, shapes = [], {}
    for p in plans:
        key = plan_key(p)
        nodes = p.get("nodes", [])
        shapes[key] = [
            {
                "parent": n["parent"],
                "depth": n["depth"],
                "name": n["name"],
                "detail": n["detail"],
                "metrics": [[m["name"], m["type"]] for m in n.get("metrics", [])],
            }
            for n in nodes
        ]
        values = [
            {
                "m": [[m.get("value"), m.get("text", "")] for m in n.get("metrics", [])],
                "rows": n.get("rows"),
                "timeMs": n.get("timeMs", 0),
                "share": n.get("share", 0),
                "top": n.get("top", False),
            }
            for n in nodes
        ]
        rows.append({**p, "shape": key, "nodes": values})
    return rows, shapes


def traits(view: CellView, *, agent_error: str = "", hidden: bool = False) -> dict[str, Any]:
    """A cell run's view as the widget's traits (but `view`, which the browser sets). Session,
    user and operation ids stay kernel-side: the synced traits are saved with the notebook."""
    ctx = public(view.context)
    return {
        "tag": view.tag,
        "jobs": [public(j) for j in view.jobs],
        "stages": [public(st) for st in view.stages],
        "operation_ids": view.operation_ids,
        "session_ids": view.session_ids,
        "cell_done": view.cell_done,
        "state": view.state,
        "server_time_ms": view.now_ms,
        "summary": view.summary_text,
        "cancel": public_cancel(view.cancel),
        "cancelled_jobs": view.cancelled_jobs,
        "agent_error": agent_error,
        "notices": view.notices,
        "context": ctx,
        "cluster": view.cluster,
        "samples": view.samples,
        "errors": [public(e) for e in view.errors],
        "task_lists": view.task_lists,
        "logs": view.logs,
        **dict(zip(("plans", "plan_shapes"), split_plans(view.plans), strict=True)),
        "plans_dropped": view.plans_dropped,
        "contention": view.contention or {},
        "memory": view.memory or {},
        "diff": view.diff or {},
        "hidden": hidden,
        "overview": {
            **view.summary.to_json(),
            "details": " · ".join(text for _, text in details(ctx)),
            "listenerGone": bool(ctx.get("appId")) and ctx.get("live") is False,
        },
        "findings": [f.to_json() for f in view.findings],
        "root_causes": [c.to_json() for c in view.root_causes],
        "links": view.links,
    }


def parse_cancel(content: Any) -> dict[str, Any] | None:
    """The keyword arguments for `Requests.cancel` from a widget's message, or None if it is not
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
    """The keyword arguments for `Requests.request_tasks` from a widget's message, or None."""
    app_id, stage_id, attempt_id = (content.get(k) for k in ("appId", "stageId", "attemptId"))
    ints = [v for v in (stage_id, attempt_id) if isinstance(v, int) and not isinstance(v, bool)]
    if not isinstance(app_id, str) or len(ints) != 2 or min(ints) < 0:
        return None
    return {
        "app_id": app_id,
        "stage_id": stage_id,
        "attempt_id": attempt_id,
        "thread_dump": content.get("threadDump") is True,
    }


def _route_to_sender(comm: Any) -> None:
    """Handle this comm's messages on the kernel subshell the frontend sent them to (ipykernel
    7.4 would send them to the subshell the comm last published from: the busy main shell, since
    the widget publishes from a background thread). The widget never waits for a frontend reply,
    which is what ipykernel's re-routing is for. No-op on kernels without it."""
    if comm is not None and hasattr(comm, "_reply_subshell_for"):
        comm._reply_subshell_for = lambda _data, subshell_id: subshell_id
