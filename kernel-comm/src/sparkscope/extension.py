"""The IPython side: a tag per cell run on every Connect session the kernel uses, the agent
subscription for those sessions, and one widget per cell that ran Spark jobs, published into that
cell's output from a background thread.

Threads: the shell thread runs the hooks; `sparkscope-agent` reads the stream and merges it into
the cell runs; `sparkscope-ui` pushes widget state, throttled. A widget's Cancel button arrives as
a comm message on a kernel subshell's thread (see widget.py) while the cell is still running. One
condition variable guards the cell runs; nothing slow happens while it is held.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from .agent import DEFAULT_URL, NO_AGENT, AgentClient, redact, task_list
from .classic import ClassicClient, ClassicSessions, NotInstalled, PrivateAgent
from .install import user_dir
from .sessions import SessionKey, SessionTracker, session_key
from .state import JOB_TERMINAL, JobKey, OperationKey, StageKey, StreamState, operation_finished

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from .widget import CellWidget

log = logging.getLogger("sparkscope")

TAG_PREFIX = "sparkscope-cell-"
STREAM_URL_CONF = "spark.sparkscope.streamUrl"  # where a Connect server says its agent streams
CANCEL_REASON = "cancelled from the notebook (sparkscope widget)"  # Spark shows it as the reason
MAX_CELL_RUNS = 200  # cell runs whose widgets still get updates
MAX_TASK_LISTS = 8  # opened stages' task lists kept per cell run
SETTLE_GIVE_UP = 3  # settle timeouts in a row before settling is switched off


def new_tag() -> str:
    """A Spark tag for one cell run: no ',' (Spark's tag separator), unique per kernel."""
    return TAG_PREFIX + secrets.token_hex(6)


def read_token_file(path: str) -> str | None:
    """The token in a file (first line, trimmed); None when it cannot be read."""
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as f:
            return f.readline().strip() or None
    except OSError as e:
        log.warning("sparkscope: cannot read the token file %s: %s", path, e)
        return None


def default_token() -> str | None:
    """The credential for the agent, found without configuration: SPARKSCOPE_TOKEN, else the
    file SPARKSCOPE_TOKEN_FILE names, else (inside JupyterHub) the kernel's own
    JUPYTERHUB_API_TOKEN, which tells the agent which Hub user this notebook belongs to, else the
    token `sparkscope server` left for this user (~/.sparkscope/token). Never from a notebook
    cell: a token there ends up in the notebook file and its history."""
    token = os.environ.get("SPARKSCOPE_TOKEN")
    if token:
        return token
    path = os.environ.get("SPARKSCOPE_TOKEN_FILE")
    if path:
        return read_token_file(path)
    hub = os.environ.get("JUPYTERHUB_API_TOKEN")
    if hub:
        return hub
    local = user_dir() / "token"
    return read_token_file(str(local)) if local.is_file() else None


def announced_url(client: Any) -> str | None:
    """The stream URL a Connect server announces in `spark.sparkscope.streamUrl` (a non-secret
    conf, readable by its clients); None when it announces none or cannot be asked."""
    get = getattr(client, "get_config_with_defaults", None)
    if get is None:
        return None
    try:
        (value,) = get((STREAM_URL_CONF, ""))
    except Exception:  # the server is unreachable, or refuses: the default stays
        log.debug(
            "sparkscope: cannot read %s from the Connect server", STREAM_URL_CONF, exc_info=True
        )
        return None
    value = (value or "").strip()
    if value.startswith(("ws://", "wss://")):
        return value
    if value:
        log.warning(
            "sparkscope: ignoring %s=%r (not a ws:// or wss:// URL)", STREAM_URL_CONF, value
        )
    return None


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return default


@dataclass
class Config:
    """Where the agent is and how the widget behaves. Defaults come from the environment:
    `SPARKSCOPE_URL`, `SPARKSCOPE_TOKEN`, `SPARKSCOPE_THROTTLE_MS`, `SPARKSCOPE_SETTLE_MS`. An
    empty `url` is found: the Connect server's `spark.sparkscope.streamUrl`, else DEFAULT_URL."""

    url: str = field(default_factory=lambda: os.environ.get("SPARKSCOPE_URL") or "")
    token: str | None = field(default_factory=lambda: default_token())
    # at most one widget update per cell per this many ms (the agent itself sends <= 10/s)
    throttle_ms: int = field(default_factory=lambda: _env_int("SPARKSCOPE_THROTTLE_MS", 100))
    # after a cell that ran Spark operations, wait at most this long for the agent to report
    # them finished, so the cell's final state is published inside the cell (0: never wait)
    settle_ms: int = field(default_factory=lambda: _env_int("SPARKSCOPE_SETTLE_MS", 1000))
    enabled: bool = True


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
    own_operations: set[str] = field(default_factory=set)  # from pyspark, on the cell's thread
    labels: dict[str, str] = field(default_factory=dict)  # operation id → plan_label
    widget: CellWidget | None = None
    display_id: str = field(default_factory=lambda: "sparkscope-" + secrets.token_hex(8))
    dirty: bool = False
    # a job or stage changed status: shown at once, not held back by the throttle
    urgent: bool = False
    last_flush: float = 0.0
    final_sent: bool = False
    # the text/plain summary last published: a job the agent reports after the cell ended
    # changes it, and frontends without widgets must see that too
    final_text: str = ""
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
    # the cluster and busy-slot samples last shown (a change redraws)
    shown_samples: int = 0

    def app_ids(self) -> set[str]:
        return {app for app, _ in self.jobs} | {app for app, _ in self.operations}

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


class Publisher(Protocol):
    """Puts a display into a cell's output and updates it."""

    def display(
        self, parent: dict[str, Any] | None, display_id: str, data: dict, metadata: dict
    ) -> None: ...
    def update(self, display_id: str, data: dict, metadata: dict) -> None: ...


class KernelPublisher:
    """display_data into the cell run's own output (its execute_request as parent header), from
    any thread; update_display_data with the kernel's current parent.

    JupyterLab keeps a cell's request future until the cell runs again, so a display whose parent
    is that request lands in that cell even after it finished; updates are routed by display id
    to wherever that display is. nbclient only reads messages of the cell it is running, which is
    why later updates carry the current cell's parent.
    """

    def __init__(self, shell: InteractiveShell) -> None:
        self.shell = shell

    def display(
        self, parent: dict[str, Any] | None, display_id: str, data: dict, metadata: dict
    ) -> None:
        pub = self.shell.display_pub
        transient = {"display_id": display_id}
        set_thread_parent = getattr(self.shell, "set_thread_parent", None)
        if parent is None or set_thread_parent is None:
            pub.publish(data, metadata, transient=transient)
            return
        tokens = set_thread_parent(parent)
        try:
            pub.publish(data, metadata, transient=transient)
        finally:
            self.shell.reset_thread_parent(tokens)  # type: ignore[attr-defined]

    def update(self, display_id: str, data: dict, metadata: dict) -> None:
        self.shell.display_pub.publish(
            data, metadata, transient={"display_id": display_id}, update=True
        )


class Monitor:
    """sparkscope in one IPython shell."""

    def __init__(
        self,
        shell: InteractiveShell,
        config: Config | None = None,
        publisher: Publisher | None = None,
    ) -> None:
        self.shell = shell
        self.config = config or Config()
        if publisher is None and getattr(shell, "kernel", None) is not None:
            publisher = KernelPublisher(shell)
        # without a publisher (terminal IPython) cells are still tagged; nothing is shown
        self.publisher = publisher
        self.tracker = SessionTracker(self._on_new_session, self._on_operation)
        # a SparkContext of this kernel's own (classic pyspark) gets a private agent
        self.classic = ClassicSessions(self._before_launch, self._on_classic_context)
        self._private: PrivateAgent | None = None
        self._private_failed = False
        self.state = StreamState()
        self._cond = threading.Condition(threading.RLock())
        self._runs: OrderedDict[str, CellRun] = OrderedDict()
        self._current: dict[int, CellRun] = {}  # thread id → its running cell
        self._agent: AgentClient | None = None
        # the stream URL the first Connect session's server announced ("" once asked: none)
        self._announced: str | None = None
        self._ui_thread: threading.Thread | None = None
        self._stopped = False
        self._warned = False
        self._clock_offset_ms = 0.0  # agent clock minus ours, from sentAtMs
        self._settle_timeouts = 0
        self._hidden = False  # every widget hidden (Hide all, %sparkscope off)

    # -- lifecycle

    def start(self) -> None:
        self.shell.events.register("pre_run_cell", self.pre_run_cell)
        self.shell.events.register("post_run_cell", self.post_run_cell)
        self.tracker.install()
        too_late = self.classic.install()
        if too_late:
            print(too_late, file=sys.stderr)

    def stop(self) -> None:
        for name, cb in (
            ("pre_run_cell", self.pre_run_cell),
            ("post_run_cell", self.post_run_cell),
        ):
            try:
                self.shell.events.unregister(name, cb)
            except ValueError:
                pass
        with self._cond:
            self._stopped = True
            running = list(self._current.values())
            self._cond.notify_all()
        for run in running:
            self.tracker.pop(run.tag)
        self.tracker.uninstall()
        self.classic.uninstall()
        if self._agent is not None:
            self._agent.stop()
        if self._private is not None:
            self._private.stop()
        if self._ui_thread is not None:
            self._ui_thread.join(2.0)

    def reconfigure(self, **changes: Any) -> None:
        """New settings; a new URL or token reconnects, `enabled=False` disconnects."""
        old = self.config
        self.config = new = replace(old, **changes)
        moved = (old.url, old.token) != (new.url, new.token)
        if moved:
            self._warned = False
        if self._agent is not None and (moved or not new.enabled):
            self._agent.stop()
            with self._cond:
                self._agent = None
            self._on_agent_status()
        if new.enabled and self._agent is None and self.publisher is not None:
            keys = self.tracker.keys()
            if keys:
                self._ensure_agent().follow(keys)

    # -- shell hooks (the shell's thread); nothing raises out of them

    def pre_run_cell(self, info: Any = None) -> None:
        if not self.config.enabled:
            return
        try:
            self._pre_run_cell()
        except Exception:
            log.exception("sparkscope: pre_run_cell failed")

    def _pre_run_cell(self) -> None:
        run = CellRun(new_tag(), self._parent(), threading.get_ident())
        with self._cond:
            run.started_ms = int(time.time() * 1000 + self._clock_offset_ms)
            self._runs[run.tag] = run
            self._current[run.thread] = run
            self._evict()
        self.tracker.discover()
        closed = self.tracker.drop_closed()
        if closed and self._agent is not None:
            self._agent.unfollow(closed)
        self.tracker.push(run.tag)

    def post_run_cell(self, result: Any = None) -> None:
        try:
            self._post_run_cell()
        except Exception:
            log.exception("sparkscope: post_run_cell failed")

    def _post_run_cell(self) -> None:
        with self._cond:
            run = self._current.pop(threading.get_ident(), None)
        if run is None:
            return
        self.tracker.pop(run.tag)
        # a session made in this cell before sparkscope hooked pyspark (or by other means)
        self.tracker.discover()
        with self._cond:
            run.finished = True
            self._mark(run)
        self._settle(run)
        self._warn_once()

    def _parent(self) -> dict[str, Any] | None:
        get_parent = getattr(self.shell, "get_parent", None)
        if get_parent is None:
            return None
        msg = get_parent()
        header = msg.get("header") if isinstance(msg, Mapping) else None
        return {"header": dict(header)} if header else None

    def _settle(self, run: CellRun) -> None:
        """Give the agent a moment to report the end of what this cell ran, and publish the
        final state while the cell is still the one running (nbconvert/nbclient only keep output
        that arrives then). Only when the agent is connected and knows these sessions."""
        agent = self._agent
        if (
            self.config.settle_ms <= 0
            or self.publisher is None
            or agent is None
            or not agent.status.connected
            or self._settle_timeouts >= SETTLE_GIVE_UP
        ):
            return
        try:
            self._settle_wait(run, agent)
        except KeyboardInterrupt:  # meant for a cell that already ended: stop waiting, quietly
            log.info("sparkscope: settling %s interrupted", run.tag)

    def _settle_wait(self, run: CellRun, agent: AgentClient) -> None:
        deadline = time.monotonic() + self.config.settle_ms / 1000
        with self._cond:
            if not run.own_operations and not run.jobs:
                return
            if not any(self.state.knows_session(k.session_id) for k in agent.sessions):
                return
            while not run.settled():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopped:
                    self._settle_timeouts += 1
                    log.info("sparkscope: %s not settled in %d ms", run.tag, self.config.settle_ms)
                    return
                self._cond.wait(remaining)
            self._settle_timeouts = 0
            if run.dirty:
                self._flush(run)
        log.debug(
            "sparkscope: %s settled in %.0f ms",
            run.tag,
            self.config.settle_ms - (deadline - time.monotonic()) * 1000,
        )

    def _warn_once(self) -> None:
        agent = self._agent
        if self._warned or agent is None or agent.status.ever_connected:
            return
        if agent.status.failures == 0:
            return  # still trying for the first time
        self._warned = True
        print(
            f"sparkscope: cannot reach the agent at {redact(self.url)} "
            f"({agent.status.last_error}). Spark progress will not be shown; cells run as "
            "usual and sparkscope keeps retrying in the background. Set SPARKSCOPE_URL and "
            "SPARKSCOPE_TOKEN (or SPARKSCOPE_TOKEN_FILE) in the kernel's environment, or run "
            "`%sparkscope --url … --token-file …`. (shown once)",
            file=sys.stderr,
        )

    # -- classic sessions (the thread that builds the SparkContext)

    def _before_launch(self) -> PrivateAgent | None:
        """A SparkContext's JVM is about to start in this kernel: the private agent its listener
        reports to, started once; the widgets then follow that agent."""
        if not self.config.enabled or self._private_failed:
            return None
        if self._private is None:
            try:
                self._private = PrivateAgent()
            except (NotInstalled, OSError, RuntimeError) as e:
                self._private_failed = True
                print(f"sparkscope: no progress for this SparkContext: {e}", file=sys.stderr)
                return None
            log.info("sparkscope: private agent at %s", self._private.stream_url)
            self.reconfigure(url=self._private.stream_url, token=self._private.subscriber_token)
        return self._private

    def _on_classic_context(self, client: ClassicClient) -> None:
        # tagged with the running cell's tag, and followed, like a new Connect session
        self.tracker.track(client)

    # -- callbacks from the session tracker (any thread)

    def _on_new_session(self, key: SessionKey) -> None:
        if not self.config.enabled or self.publisher is None:
            return
        if not self.config.url and self._announced is None and self._agent is None:
            client = next((c for c in self.tracker.clients() if session_key(c) == key), None)
            self._announced = (announced_url(client) if client is not None else None) or ""
        self._ensure_agent().follow([key])

    @property
    def url(self) -> str:
        """The stream's URL: configured, else announced by the Connect server, else the default."""
        return self.config.url or self._announced or DEFAULT_URL

    def _on_operation(self, op_id: str) -> None:
        with self._cond:
            run = self._current.get(threading.get_ident())
            if run is not None:
                run.own_operations.add(op_id)

    def _ensure_agent(self) -> AgentClient:
        with self._cond:
            if self._agent is None:
                self._agent = AgentClient(
                    self.url, self.config.token, self._on_update, self._on_agent_status
                )
            if self._ui_thread is None:
                self._ui_thread = threading.Thread(
                    target=self._ui_loop, name="sparkscope-ui", daemon=True
                )
                self._ui_thread.start()
            return self._agent

    # -- the agent's thread

    def _on_update(self, update: Mapping[str, Any]) -> None:
        with self._cond:
            touched = self.state.apply(update)
            if self.state.sent_at_ms:
                self._clock_offset_ms = self.state.sent_at_ms - time.time() * 1000
            tags = self._runs.keys() if touched is None else touched & self._runs.keys()
            # a notice (a reconnect, drops, corrections) concerns every run of its application
            if any(_list_of(a.get("notices")) for a in _list_of(update.get("applications"))):
                tags = self._runs.keys()
            # busy slots and the cluster: every run still shown live, at the throttle's pace
            apps = {a.get("id") for a in _list_of(update.get("applications"))}
            for run in self._runs.values():
                if run.widget is not None and not run.final_sent and apps & run.app_ids():
                    self._mark(run)
            for tag in list(tags):
                run = self._runs[tag]
                view = self.state.view(tag)
                changed = urgent = False
                for mine, theirs in (
                    (run.jobs, view.jobs),
                    (run.stages, view.stages),
                    (run.operations, view.operations),
                ):
                    for key, value in theirs.items():
                        old = mine.get(key)
                        if old != value:
                            # a new job or stage, or a status change, is what a reader waits
                            # for; task counts alone may wait for the throttle
                            urgent |= old is None or old.get("status") != value.get("status")
                            mine[key] = value
                            changed = True
                notices = self._notices_of(run)
                if notices != run.notices:
                    run.notices = notices
                    changed = urgent = True
                if changed:
                    run.urgent |= urgent
                    self._mark(run)
            self.state.prune()
            self._cond.notify_all()

    def _notices_of(self, run: CellRun, keep: int = 3) -> list[dict[str, Any]]:
        """The newest notices of the run's applications since it started."""
        apps = {app for app, _ in run.jobs} | {app for app, _ in run.operations}
        found = [
            n
            for app in sorted(apps)
            for n in self.state.applications.get(app, {}).get("notices", [])
            if n["atMs"] >= run.started_ms
        ]
        found.sort(key=lambda n: n["atMs"])
        return found[-keep:]

    def _on_agent_status(self) -> None:
        """Connected or not: the Cancel buttons of live widgets say so."""
        with self._cond:
            for run in self._runs.values():
                if run.widget is not None and not run.final_sent:
                    run.urgent = True
                    self._mark(run)

    # -- cancel, from a widget's buttons: on the thread of the kernel subshell that received
    # the comm message (or the shell's, with frontends that do not use subshells); never blocks

    def cancel(
        self,
        tag: str,
        job_id: int | None = None,
        app_id: str | None = None,
        request_id: str | None = None,
    ) -> str | None:
        """Stop a cell run's work: every operation carrying its tag (in each Connect session its
        operations ran in), or one of its jobs. The outcome goes to the widget's `cancel` trait,
        pending at once, then the agent's answer. Returns the request id (None: unknown run)."""
        rid = request_id or secrets.token_hex(8)
        with self._cond:
            run = self._runs.get(tag)
            if run is None:
                log.info("sparkscope: cancel for a cell run no longer followed (%s)", tag)
                return None
            if job_id is None:
                targets = [(key, {"tag": tag}) for key in run.sessions()]
                missing = "the agent has reported no Spark Connect session for this cell"
            else:
                job = next(
                    (
                        j
                        for (app, jid), j in run.jobs.items()
                        if jid == job_id and app_id in (None, app)
                    ),
                    None,
                )
                targets = [(key, {"jobId": job_id}) for key in run.sessions(job)] if job else []
                missing = f"job {job_id} is not one of this cell's jobs"
            run.cancel = {
                "requestId": rid,
                "target": "cell" if job_id is None else "job",
                "jobId": job_id,
                "status": "pending",
                "ok": False,
                "code": "",
                "message": "asking the agent to cancel…",
            }
            run.urgent = True
            self._mark(run)
            agent = self._agent
        if not targets:
            self._cancel_answered(tag, rid, [_failure("not_found", missing)])
            return rid
        if agent is None:
            why = "sparkscope is off (%sparkscope --on)" if not self.config.enabled else None
            self._cancel_answered(
                tag, rid, [_failure(NO_AGENT, why or "not connected to the sparkscope agent")]
            )
            return rid
        results: dict[int, dict[str, Any]] = {}
        lock = threading.Lock()

        def collect(i: int, result: dict[str, Any]) -> None:
            with lock:
                results[i] = result
                if len(results) < len(targets):
                    return
            self._cancel_answered(tag, rid, [results[n] for n in range(len(targets))])

        for i, (key, target) in enumerate(targets):
            agent.cancel(
                key,
                target,
                lambda result, i=i: collect(i, result),
                reason=CANCEL_REASON,
                request_id=rid if len(targets) == 1 else f"{rid}-{i}",
            )
        return rid

    def _cancel_answered(self, tag: str, rid: str, results: list[dict[str, Any]]) -> None:
        """All the answers for one widget request are in: one outcome for the widget."""
        ok = any(r["ok"] for r in results)
        failed = [r for r in results if not r["ok"]]
        # one request per session the cell ran in: every answer counts
        message = "; ".join(dict.fromkeys(r["message"] for r in results if r["message"]))
        with self._cond:
            run = self._runs.get(tag)
            if run is None:
                return
            current = run.cancel or {}
            outcome = {
                **current,
                "status": "done",
                "ok": ok,
                "code": "" if ok else failed[0]["code"],
                "message": message or ("done" if ok else "failed"),
                "interruptedOperationIds": [
                    op for r in results for op in r.get("interruptedOperationIds", [])
                ],
                "cancelledJobIds": [j for r in results for j in r.get("cancelledJobIds", [])],
            }
            if ok and current.get("requestId") == rid:
                if current.get("target") == "cell":
                    run.cancel_ok = True
                else:
                    run.cancelled_jobs.update(outcome["cancelledJobIds"])
            if current.get("requestId") == rid:  # a newer request's outcome is not replaced
                run.cancel = outcome
                run.urgent = True
                self._mark(run)
        log.info("sparkscope: cancel %s of %s: %s", rid, tag, message)

    # -- the ui thread

    def _mark(self, run: CellRun) -> None:
        run.dirty = True
        self._cond.notify_all()

    def _ui_loop(self) -> None:
        try:
            from . import widget  # noqa: F401  import before the first widget, outside the lock
        except Exception:
            log.exception("sparkscope: the widget cannot be loaded")
            return
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                throttle = self.config.throttle_ms / 1000
                wait: float | None = None
                for run in list(self._runs.values()):
                    if not run.dirty:
                        continue
                    due = run.last_flush + throttle
                    # the first job, status changes and the final state go out at once; task
                    # counts alone are throttled
                    if run.widget is None or run.urgent or run.done() or now >= due:
                        self._flush(run)
                    else:
                        wait = due - now if wait is None else min(wait, due - now)
                self._cond.wait(wait)

    def _flush(self, run: CellRun) -> None:
        """Bring the cell's widget (creating and displaying it on its first job) up to date.
        Called with the lock held, on the ui thread or the shell thread."""
        from . import view
        from .widget import (
            CellWidget,
            plan_label,
            summarize,
            text_report,
            widget_job,
            widget_stage,
        )

        run.dirty = run.urgent = False
        run.last_flush = time.monotonic()
        # a cell shows a widget once it has a job, or a Connect operation that failed (an
        # analysis error has no job)
        if self.publisher is None or (
            not run.jobs
            and run.widget is None
            and not view.operation_errors(run.operations.values())
        ):
            return
        try:
            for (_, op_id), op in run.operations.items():
                if op_id not in run.labels:
                    run.labels[op_id] = plan_label(op["statement"])
            ordered = sorted(run.jobs.values(), key=lambda j: (j["submissionTimeMs"], j["jobId"]))
            jobs = [
                widget_job(j, run.labels.get((j["connect"] or {}).get("operationId", ""), ""))
                for j in ordered
            ]
            stages = [widget_stage(s) for _, s in sorted(run.stages.items())]
            now_ms = int(time.time() * 1000 + self._clock_offset_ms)
            done = run.done()
            if run.cancel_ok and run.jobs_done():  # the cell's pyspark error may still be printing
                state = "cancelled"
            else:
                state = ("cancelled" if run.cancelled() else "done") if done else "running"
            app_id = next(iter(sorted(run.app_ids())), "")
            app = self.state.applications.get(app_id)
            sessions = run.sessions()
            session = sessions[0] if sessions else None
            context = view.context(
                app,
                app_id,
                session.session_id if session else "",
                session.user_id if session else "",
            )
            end_ms = now_ms
            if done:
                ends = [j["completionTimeMs"] for j in jobs if j["completionTimeMs"]]
                end_ms = max(ends, default=now_ms)
            samples = view.window(self.state.samples.get(app_id, []), run.started_ms, end_ms)
            errors = view.operation_errors(run.operations.values())
            traits = {
                "jobs": jobs,
                "stages": stages,
                "operation_ids": sorted({op_id for _, op_id in run.operations}),
                "session_ids": sorted({j["sessionId"] for j in jobs if j["sessionId"]}),
                "cell_done": run.finished,
                "state": state,
                "server_time_ms": now_ms,
                "summary": summarize(jobs, now_ms),
                "cancel": dict(run.cancel or {}),
                "cancelled_jobs": sorted(run.cancelled_jobs),
                "agent_error": self._agent_error(),
                "notices": [dict(n) for n in run.notices],
                "context": context,
                "cluster": view.cluster(app),
                "samples": samples,
                "errors": errors,
                "task_lists": {k: dict(v) for k, v in run.task_lists.items()},
                "hidden": self._hidden,
            }

            def final_bundle() -> tuple[dict, dict, str]:
                text = text_report(
                    run.tag,
                    jobs,
                    now_ms,
                    state=state,
                    notices=run.notices,
                    stages=stages,
                    errors=errors,
                )
                data, metadata = self._bundle(run.widget, text)
                if done:
                    from .report import html_report

                    data["text/html"] = html_report(
                        run.tag,
                        jobs,
                        stages,
                        now_ms,
                        context=context,
                        errors=errors,
                        state=state,
                        notices=run.notices,
                    )
                return data, metadata, text

            if run.widget is None:
                run.widget = CellWidget(tag=run.tag, **traits)
                run.widget.on_cancel(partial(self.cancel, run.tag))
                run.widget.on_tasks(partial(self.request_tasks, run.tag))
                run.widget.on_hide_all(self.set_hidden)
                data, metadata, text = final_bundle()
                self.publisher.display(run.parent, run.display_id, data, metadata)
                run.final_sent = done
                run.final_text = text if done else ""
                return
            with run.widget.hold_sync():
                for name, value in traits.items():
                    if getattr(run.widget, name) != value:
                        setattr(run.widget, name, value)
            if done:
                data, metadata, text = final_bundle()
                if text != run.final_text:
                    self.publisher.update(run.display_id, data, metadata)
                    run.final_text = text
            run.final_sent = done
        except Exception:
            log.exception("sparkscope: updating the widget of %s failed", run.tag)

    # -- tasks and hiding, from a widget (a kernel subshell's thread); never block

    def request_tasks(self, tag: str, app_id: str, stage_id: int, attempt_id: int) -> None:
        """Ask the agent for a stage attempt's tasks (Spark's REST API); the answer goes to the
        widget's `task_lists`."""
        key = f"{app_id}/{stage_id}/{attempt_id}"
        with self._cond:
            run = self._runs.get(tag)
            if run is None:
                return
            stage = run.stages.get((app_id, stage_id, attempt_id))
            job = next(
                (
                    j
                    for (app, _), j in run.jobs.items()
                    if app == app_id and stage is not None and stage_id in j["stageIds"]
                ),
                None,
            )
            sessions = run.sessions(job) if job is not None else []
            run.task_lists[key] = {"status": "pending", "ok": False, "code": "", "message": ""}
            run.urgent = True
            self._mark(run)
            agent = self._agent

        def answered(result: dict[str, Any]) -> None:
            with self._cond:
                r = self._runs.get(tag)
                if r is None:
                    return
                r.task_lists[key] = {"status": "done", **result}
                # only the newest few lists are kept: a long timeline is opened a few at a time
                while len(r.task_lists) > MAX_TASK_LISTS:
                    del r.task_lists[next(iter(r.task_lists))]
                r.urgent = True
                self._mark(r)

        if not sessions:
            answered(task_list(key, code="not_found", message="not a stage of this cell's jobs"))
        elif agent is None:
            answered(task_list(key, code=NO_AGENT, message="not connected to the sparkscope agent"))
        else:
            agent.request_tasks(sessions[0], app_id, stage_id, attempt_id, answered)

    def set_hidden(self, hidden: bool) -> None:
        """Hide (or show again) every sparkscope widget of this kernel."""
        with self._cond:
            self._hidden = hidden
            for run in self._runs.values():
                if run.widget is not None:
                    run.urgent = True
                    self._mark(run)

    def _agent_error(self) -> str:
        """Why a Cancel button cannot reach the agent now ("" when it can)."""
        agent = self._agent
        if agent is None:
            return "sparkscope is off (%sparkscope --on)" if not self.config.enabled else ""
        why = agent.unavailable()
        return why[1] if why else ""

    @staticmethod
    def _bundle(widget: Any, text: str) -> tuple[dict, dict]:
        bundle = widget._repr_mimebundle_()
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        return {**data, "text/plain": text}, dict(metadata or {})

    def _evict(self) -> None:
        while len(self._runs) > MAX_CELL_RUNS:
            tag, run = next(iter(self._runs.items()))
            if not run.finished:
                break
            del self._runs[tag]

    # -- for the public helpers and %sparkscope

    def current_tag(self) -> str | None:
        with self._cond:
            run = self._current.get(threading.get_ident())
            if run is None and self._current:
                run = next(reversed(self._current.values()))
            return run.tag if run is not None else None

    def wait(self, timeout: float) -> bool:
        """Until every cell run with jobs is done and its final state published."""
        deadline = time.monotonic() + timeout
        with self._cond:
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
                self._cond.wait(remaining)

    def status(self) -> str:
        agent = self._agent
        lines = [f"sparkscope: agent {redact(self.url)}"]
        if agent is None:
            lines.append("  not connected: no Spark Connect session seen yet")
        else:
            s = agent.status
            state = "connected" if s.connected else f"not connected ({s.last_error or 'trying'})"
            lines.append(f"  {state}; {s.attempts} connection attempts")
        keys = self.tracker.keys()
        lines.append(f"  sessions followed: {len(keys)}")
        for key in keys:
            lines.append(f"    {key.session_id} (user {key.user_id or '<none>'})")
        with self._cond:
            shown = sum(1 for r in self._runs.values() if r.widget is not None)
        lines.append(f"  cells with Spark jobs (recent): {shown}")
        if self.publisher is None:
            lines.append(
                "  no widgets: this shell is not a Jupyter kernel (cells are still tagged)"
            )
        return "\n".join(lines)


def _list_of(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _failure(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "code": code, "message": message}
