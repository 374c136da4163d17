"""The cell runs of one kernel: what each run is (its tag, where its output goes), what the agent
reported for its tag (jobs, stages, operations, notices), whether it is done or cancelled, and
waiting for the agent to report the end of what a cell ran. One condition variable guards them
and the stream state they are merged from; nothing slow happens while it is held."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .cellview import plan_label, plan_row
from .sessions import SessionKey
from .state import (
    JOB_TERMINAL,
    MAX_CELL_LOG_LINES,
    JobKey,
    LogKey,
    OperationKey,
    SqlKey,
    StageKey,
    StreamState,
    operation_finished,
)

if TYPE_CHECKING:
    from .widget import CellWidget

MAX_CELL_RUNS = 200  # cell runs whose widgets still get updates
MAX_NOTICES = 3  # the newest notices a run shows
MAX_CELL_PLANS = 20  # the newest SQL executions (plans) a run keeps
MAX_SLOT_POINTS = 4000  # points of a run's running and waiting tasks over time


@dataclass
class CellRun:
    """One execution of one cell, and everything the agent said about its tag."""

    tag: str
    parent: dict[str, Any] | None  # {"header": execute_request header}: where its output goes
    thread: int
    finished: bool = False
    jobs: dict[JobKey, dict[str, Any]] = field(default_factory=dict)
    stages: dict[StageKey, dict[str, Any]] = field(default_factory=dict)
    operations: dict[OperationKey, dict[str, Any]] = field(default_factory=dict)
    # the driver's WARN and ERROR lines of its jobs, stages and operations, the newest kept
    logs: dict[LogKey, dict[str, Any]] = field(default_factory=dict)
    # its SQL executions (plans with live metrics) as the stream state keeps them, the newest
    # MAX_CELL_PLANS by start; how many older ones it let go
    plans: dict[SqlKey, dict[str, Any]] = field(default_factory=dict)
    plans_dropped: int = 0
    own_operations: set[str] = field(default_factory=set)  # from pyspark, on the cell's thread
    labels: dict[str, str] = field(default_factory=dict)  # operation id → plan_label
    # cancels from the widget: the latest request's outcome as shown, whether a cancel of the
    # whole cell run succeeded, and the jobs Spark was asked to cancel one by one
    cancel: dict[str, Any] | None = None
    cancel_ok: bool = False
    cancelled_jobs: set[int] = field(default_factory=set)
    # when the run started, on the agent's clock: its applications' notices from then on are
    # the gaps (reconnects, drops, corrections) its numbers went through
    started_ms: int = 0
    notices: list[dict[str, Any]] = field(default_factory=list)
    # stages whose tasks the user opened: "<app>/<stage>/<attempt>" → the agent's TaskList
    task_lists: dict[str, dict[str, Any]] = field(default_factory=dict)
    # which cell this is, for the agent (JupyterLab's sidebar): notebook, cellId, executionCount
    cell: dict[str, Any] = field(default_factory=dict)
    # run-to-run diff: its fingerprint went to the agent once it was done, and how it differs
    # from the cell's previous run the agent kept (rundiff.diff), when there was one
    fingerprint_sent: bool = False
    # times its fingerprint was given to the agent (again after one was lost on the way)
    fingerprint_tries: int = 0
    diff: dict[str, Any] | None = None
    # its tasks over time, on the agent's clock, each value holding until the next: (ms,
    # running, waiting for a slot: of its running stages' tasks not yet launched); with the
    # application's busy slots they say how long its tasks waited for cores others held
    slot_points: list[tuple[int, int, int]] = field(default_factory=list)

    # where it is shown: its widget, and what was last published
    widget: CellWidget | None = None
    display_id: str = field(default_factory=lambda: "sparkscope-" + secrets.token_hex(8))
    dirty: bool = False
    # a job or stage changed status: shown at once, not held back by the throttle
    urgent: bool = False
    last_flush: float = 0.0
    # when the Plan view's operator metrics last went to the widget, and the plans' shape then
    plans_sent: float = 0.0
    plans_shape: tuple = ()
    final_sent: bool = False
    # the text/plain summary last published: a job the agent reports after the cell ended
    # changes it, and frontends without widgets must see that too
    final_text: str = ""

    # plan_row()s by execution, with the record and label they were made from: a running
    # cell's view is rebuilt at the throttle's pace, its finished plans need not be
    _plan_rows: dict[SqlKey, tuple[dict[str, Any], str, dict[str, Any]]] = field(
        default_factory=dict, repr=False
    )

    def plan_rows(self) -> list[dict[str, Any]]:
        """Its SQL executions as the Plan view shows them (cellview.plan_row), by start."""
        out = []
        cache: dict[SqlKey, tuple[dict[str, Any], str, dict[str, Any]]] = {}
        for key, ex in sorted(self.plans.items(), key=lambda kv: (kv[1]["startMs"], kv[0])):
            label = self.labels.get(ex["operationId"], "") if ex["operationId"] else ""
            kept = self._plan_rows.get(key)
            row = kept[2] if kept and kept[0] is ex and kept[1] == label else plan_row(ex, label)
            cache[key] = (ex, label, row)
            out.append(row)
        self._plan_rows = cache
        return out

    def add_plan(self, key: SqlKey, ex: dict[str, Any]) -> bool | None:
        """Keep the stream state's latest record of one of its SQL executions. None: nothing
        changed; True: something a reader waits for (a new execution or plan, its end)."""
        old = self.plans.get(key)
        if old is ex:
            return None
        if old is None and len(self.plans) >= MAX_CELL_PLANS:
            oldest = min(self.plans, key=lambda k: (self.plans[k]["startMs"], k))
            if (ex["startMs"], key) < (self.plans[oldest]["startMs"], oldest):
                return None  # older than all it keeps: one it let go
            del self.plans[oldest]
            self.plans_dropped += 1
        self.plans[key] = ex
        return old is None or any(old[k] != ex[k] for k in ("endMs", "planVersion", "error"))

    def note_slots(self, at_ms: int) -> None:
        """Its running and waiting tasks now (`at_ms`, the agent's clock), when they changed.
        At most MAX_SLOT_POINTS: past it every other point goes, so the whole run stays
        covered at half the detail."""
        running = waiting = 0
        for st in self.stages.values():
            if st.get("status") != "ACTIVE":
                continue
            active = int(st.get("activeTasks", 0) or 0)
            running += active
            done = int(st.get("completedTasks", 0) or 0)
            waiting += max(0, int(st.get("numTasks", 0) or 0) - done - active)
        points = self.slot_points
        if points and points[-1][1:] == (running, waiting):
            return
        if points and at_ms < points[-1][0]:
            at_ms = points[-1][0]  # an update sent before the last one's time: keep the order
        points.append((at_ms, running, waiting))
        if len(points) > MAX_SLOT_POINTS:
            del points[1:-1:2]

    def app_ids(self) -> set[str]:
        return {app for app, _ in self.jobs} | {app for app, _ in self.operations}

    def label_of(self, job: Mapping[str, Any]) -> str:
        """What the job's row is named by: its operation's SQL text or plan outline."""
        return self.labels.get((job["connect"] or {}).get("operationId", ""), "")

    def jobs_done(self) -> bool:
        # A failed or cancelled job ends before its last tasks do (Spark keeps their stage live
        # until they end); the cell's final state waits for those task counts too.
        return all(
            j["status"] in JOB_TERMINAL and not j.get("tasks", {}).get("active")
            for j in self.jobs.values()
        )

    def done(self) -> bool:
        return self.finished and self.jobs_done()

    def cancelled(self) -> bool:
        """Stopped on request: a cancel of the whole cell run from its widget succeeded, or one
        of its operations ended CANCELED (Jupyter's stop button: pyspark interrupts the
        operation it is waiting for)."""
        return self.cancel_ok or any(
            "CANCELED" in (op["state"], op["finalState"]) for op in self.operations.values()
        )

    def state(self) -> str:
        """`running`, `done` or `cancelled` (see the widget's `state` trait)."""
        if self.cancel_ok and self.jobs_done():  # the cell's pyspark error may still be printing
            return "cancelled"
        if not self.done():
            return "running"
        return "cancelled" if self.cancelled() else "done"

    def sessions(self, job: Mapping[str, Any] | None = None) -> list[SessionKey]:
        """The Connect sessions (id and user id, as the agent reported them) of this run's
        operations and jobs, or of one job: what a cancel request must name."""
        keys: dict[SessionKey, None] = {}
        jobs = [job] if job is not None else list(self.jobs.values())
        if job is None:
            for op in self.operations.values():
                keys[SessionKey(op["sessionId"], op["userId"])] = None
        for j in jobs:
            connect = j.get("connect") or {}
            keys[SessionKey(connect.get("sessionId", ""), connect.get("userId", ""))] = None
        return [k for k in keys if k.session_id]

    def settled(self) -> bool:
        """The agent reported every operation this cell ran (as far as pyspark told us) as
        finished, and all the cell's jobs as ended."""
        seen = {op_id: op for (_, op_id), op in self.operations.items()}
        return (
            all(op_id in seen and operation_finished(seen[op_id]) for op_id in self.own_operations)
            and self.jobs_done()
        )


class CellRuns:
    """The recent cell runs, by tag, and the one running on each thread. Every method takes
    `cond` itself (it is reentrant); callers hold it to read runs consistently."""

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.RLock())
        self._runs: OrderedDict[str, CellRun] = OrderedDict()
        self._current: dict[int, CellRun] = {}  # thread id → its running cell
        self.closed = False

    def __iter__(self) -> Iterator[CellRun]:
        with self.cond:
            return iter(list(self._runs.values()))

    def get(self, tag: str) -> CellRun | None:
        with self.cond:
            return self._runs.get(tag)

    def start(self, run: CellRun) -> None:
        with self.cond:
            self._runs[run.tag] = run
            self._current[run.thread] = run
            while len(self._runs) > MAX_CELL_RUNS:
                tag, oldest = next(iter(self._runs.items()))
                if not oldest.finished:
                    break
                del self._runs[tag]

    def pop_current(self, thread: int) -> CellRun | None:
        """The run of the cell that ran on `thread`, no longer its current one."""
        with self.cond:
            return self._current.pop(thread, None)

    def finished(self, run: CellRun) -> None:
        """The run's cell has finished its code (its jobs may go on)."""
        with self.cond:
            run.finished = True
            self.mark(run)

    def current(self, thread: int | None = None) -> CellRun | None:
        """The run of the cell running on `thread` (default: the caller's), or None."""
        with self.cond:
            return self._current.get(threading.get_ident() if thread is None else thread)

    def current_tag(self) -> str | None:
        """The tag of the calling thread's cell, else of the cell that started last."""
        with self.cond:
            run = self._current.get(threading.get_ident())
            if run is None and self._current:
                run = next(reversed(self._current.values()))
            return run.tag if run is not None else None

    def running(self) -> list[CellRun]:
        with self.cond:
            return list(self._current.values())

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def mark(self, run: CellRun, urgent: bool = False) -> None:
        """The run's view must be redrawn (`urgent`: at once, not at the throttle's pace)."""
        with self.cond:
            run.dirty = True
            run.urgent |= urgent
            self.cond.notify_all()

    def mark_shown(self, urgent: bool = True, live_only: bool = True) -> None:
        """Every run with a widget (that is not final yet, with `live_only`) must be redrawn."""
        with self.cond:
            for run in self._runs.values():
                if run.widget is not None and not (live_only and run.final_sent):
                    self.mark(run, urgent)

    # -- the agent's thread

    def merge(
        self, state: StreamState, update: Mapping[str, Any], touched: set[str] | None
    ) -> None:
        """Bring the runs up to date with an `Update` just applied to `state` (`touched`: what
        `StreamState.apply` said may have changed)."""
        with self.cond:
            tags = self._runs.keys() if touched is None else touched & self._runs.keys()
            apps = _list_of(update.get("applications"))
            # a notice (a reconnect, drops, corrections) concerns every run of its application
            if any(_list_of(a.get("notices")) for a in apps):
                tags = self._runs.keys()
            # busy slots and the cluster: every run still shown live, at the throttle's pace
            app_ids = {a.get("id") for a in apps}
            for run in self._runs.values():
                if run.widget is not None and not run.final_sent and app_ids & run.app_ids():
                    self.mark(run)
            if touched is None:
                # a (re)connect's snapshot: fingerprints lost on the way go again
                for run in self._runs.values():
                    if run.fingerprint_tries and not run.fingerprint_sent:
                        self.mark(run)
            at_ms = _int(update.get("sentAtMs"))
            for tag in list(tags):
                self._merge_run(self._runs[tag], state, at_ms)
            self.cond.notify_all()

    def _merge_run(self, run: CellRun, state: StreamState, at_ms: int) -> None:
        view = state.view(run.tag)
        changed = urgent = False
        for mine, theirs in (
            (run.jobs, view.jobs),
            (run.stages, view.stages),
            (run.operations, view.operations),
        ):
            for key, value in theirs.items():
                old = mine.get(key)
                if old != value:
                    # a new job or stage, or a status change, is what a reader waits for; task
                    # counts alone may wait for the throttle
                    urgent |= old is None or old.get("status") != value.get("status")
                    mine[key] = value
                    changed = True
        new_lines = [k for k in view.logs if k not in run.logs]
        if new_lines:
            for key in new_lines:
                run.logs[key] = view.logs[key]
                urgent |= run.logs[key]["level"] != "WARN"
            if len(run.logs) > MAX_CELL_LOG_LINES:
                for key in sorted(run.logs)[: len(run.logs) - MAX_CELL_LOG_LINES]:
                    del run.logs[key]
            changed = True
        for key, ex in view.sql_executions.items():
            news = run.add_plan(key, ex)
            if news is not None:
                changed = True
                urgent |= news
        for (_, op_id), op in run.operations.items():
            if op_id not in run.labels:
                run.labels[op_id] = plan_label(op["statement"])
        if changed:
            run.note_slots(at_ms)
        notices = notices_of(run, state)
        if notices != run.notices:
            run.notices = notices
            changed = urgent = True
        if changed:
            self.mark(run, urgent)

    # -- waiting

    def wait_settled(self, run: CellRun, timeout: float) -> bool:
        """Until the agent reported the end of what `run` ran (see `CellRun.settled`); False when
        `timeout` seconds passed first, or the runs were closed."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not run.settled():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed:
                    return False
                self.cond.wait(remaining)
            return True

    def wait_shown(self, timeout: float) -> bool:
        """Until every finished cell run with jobs is done and its final state published."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                running = {id(r) for r in self._current.values()}
                pending = [
                    r
                    for r in self._runs.values()
                    if r.jobs
                    and id(r) not in running
                    and (not r.done() or r.dirty or not r.final_sent)
                ]
                if not pending:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(remaining)

    def add_operation(self, op_id: str) -> None:
        """pyspark ran an operation on the calling thread: its cell waits for the agent to
        report it finished."""
        with self.cond:
            run = self._current.get(threading.get_ident())
            if run is not None:
                run.own_operations.add(op_id)


def notices_of(run: CellRun, state: StreamState, keep: int = MAX_NOTICES) -> list[dict[str, Any]]:
    """The newest notices of the run's applications since it started."""
    found = [
        n
        for app in sorted(run.app_ids())
        for n in state.applications.get(app, {}).get("notices", [])
        if n["atMs"] >= run.started_ms
    ]
    found.sort(key=lambda n: n["atMs"])
    return found[-keep:]


def _int(value: Any) -> int:
    """An int64 of the proto3 JSON mapping (a number or a string); 0 when it is neither."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _list_of(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
