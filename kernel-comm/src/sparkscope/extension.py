"""The IPython side: the shell's hooks (a tag per cell run on every Connect session the kernel
uses), and the thread that shows each cell run that ran Spark jobs: its view (cellview) drawn by
one widget published into that cell's output, with its text/plain and text/html.

Threads: the shell thread runs the hooks; `sparkscope-agent` reads the stream and merges it into
the cell runs (cellrun, connection); `sparkscope-ui` pushes widget state, throttled. A widget's
Cancel button arrives as a comm message on a kernel subshell's thread (see widget.py) while the
cell is still running (requests). One condition variable guards the cell runs and the stream
state; nothing slow happens while it is held.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from . import cellview, rundiff
from .agent import NO_AGENT, NO_ANSWER
from .cellrun import CellRun, CellRuns
from .classic import ClassicClient, ClassicSessions, PrivateAgent
from .connection import AgentConnection
from .install import user_dir
from .requests import CANCEL_REASON, Requests
from .sessions import SessionKey, SessionTracker, session_key

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

log = logging.getLogger("sparkscope")

__all__ = ["CANCEL_REASON", "Config", "Monitor", "default_token", "read_token_file"]

TAG_PREFIX = "sparkscope-cell-"
SETTLE_GIVE_UP = 3  # settle timeouts in a row before settling is switched off
FINGERPRINT_TRIES = 3  # a cell run's fingerprint goes to the agent at most this often
# a running query's operator metrics go to the widget at most this often (seconds)
PLAN_INTERVAL_S = 2.0


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
    """sparkscope in one IPython shell: the hooks, and the thread that shows the cell runs."""

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
        self.runs = CellRuns()
        self.connection = AgentConnection(
            self.config, self.runs.cond, self._on_change, self.runs.mark_shown
        )
        self.state = self.connection.state
        self.requests = Requests(self.runs, self.connection)
        self._ui_thread: threading.Thread | None = None
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
        running = self.runs.running()
        self.runs.close()
        for run in running:
            self.tracker.pop(run.tag)
        self.tracker.uninstall()
        self.classic.uninstall()
        self.connection.stop()
        if self._ui_thread is not None:
            self._ui_thread.join(2.0)

    def reconfigure(self, **changes: Any) -> None:
        """New settings; a new URL or token reconnects, `enabled=False` disconnects."""
        self.config = new = replace(self.config, **changes)
        self.connection.configure(new)
        if new.enabled and self.connection.client is None and self.publisher is not None:
            keys = self.tracker.keys()
            if keys:
                self._follow(keys)

    # -- shell hooks (the shell's thread); nothing raises out of them

    def pre_run_cell(self, info: Any = None) -> None:
        if not self.config.enabled:
            return
        try:
            self._pre_run_cell(info)
        except Exception:
            log.exception("sparkscope: pre_run_cell failed")

    def _pre_run_cell(self, info: Any = None) -> None:
        run = CellRun(new_tag(), self._parent(), threading.get_ident())
        run.started_ms = self.connection.now_ms()
        run.cell = self._cell(info, run.parent)
        self.runs.start(run)
        self.tracker.discover()
        closed = self.tracker.drop_closed()
        if closed:
            self.connection.unfollow(closed)
        self.tracker.push(run.tag)
        self.connection.label(self.tracker.keys(), run.tag, run.cell)

    def _cell(self, info: Any, parent: dict[str, Any] | None) -> dict[str, Any]:
        """Which cell runs: the notebook (Jupyter server ≥ 2 names it in the kernel's
        JPY_SESSION_NAME), the cell's id (IPython's ExecutionInfo, else JupyterLab's request
        metadata) and the execution count it will show."""
        cell_id = getattr(info, "cell_id", None)
        if not cell_id and self.shell is not None:
            get_parent = getattr(self.shell, "get_parent", None)
            msg = get_parent() if get_parent is not None else None
            meta = msg.get("metadata") if isinstance(msg, Mapping) else None
            cell_id = meta.get("cellId") if isinstance(meta, Mapping) else None
        # IPython counts a cell that goes into the history before pre_run_cell: it shows one less
        count = getattr(self.shell, "execution_count", 0) - 1
        if not getattr(info, "store_history", False) or not isinstance(count, int):
            count = 0
        return {
            "notebook": os.environ.get("JPY_SESSION_NAME", ""),
            "cellId": cell_id if isinstance(cell_id, str) else "",
            "executionCount": count,
        }

    def post_run_cell(self, result: Any = None) -> None:
        try:
            self._post_run_cell()
        except Exception:
            log.exception("sparkscope: post_run_cell failed")

    def _post_run_cell(self) -> None:
        run = self.runs.pop_current(threading.get_ident())
        if run is None:
            return
        self.tracker.pop(run.tag)
        # a session made in this cell before sparkscope hooked pyspark (or by other means)
        self.tracker.discover()
        self.runs.finished(run)
        self._settle(run)
        self.connection.warn_once()

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
        if (
            self.config.settle_ms <= 0
            or self.publisher is None
            or self._settle_timeouts >= SETTLE_GIVE_UP
            or not (run.own_operations or run.jobs)
            or not self.connection.connected()
        ):
            return
        started = time.monotonic()
        try:
            settled = self.runs.wait_settled(run, self.config.settle_ms / 1000)
        except KeyboardInterrupt:  # meant for a cell that already ended: stop waiting, quietly
            log.info("sparkscope: settling %s interrupted", run.tag)
            return
        if not settled:
            self._settle_timeouts += 1
            log.info("sparkscope: %s not settled in %d ms", run.tag, self.config.settle_ms)
            return
        self._settle_timeouts = 0
        with self.runs.cond:
            if run.dirty:
                self._flush(run)
        log.debug("sparkscope: %s settled in %.0f ms", run.tag, (time.monotonic() - started) * 1000)

    # -- classic sessions (the thread that builds the SparkContext)

    def _before_launch(self) -> PrivateAgent | None:
        """A SparkContext's JVM is about to start in this kernel: the private agent its listener
        reports to, started once; the widgets then follow that agent."""
        if not self.config.enabled:
            return None
        private, started = self.connection.private_agent()
        if private is not None and started:
            self.reconfigure(url=private.stream_url, token=private.subscriber_token)
        return private

    def _on_classic_context(self, client: ClassicClient) -> None:
        # tagged with the running cell's tag, and followed, like a new Connect session
        self.tracker.track(client)

    # -- callbacks from the session tracker (any thread)

    def _on_new_session(self, key: SessionKey) -> None:
        if not self.config.enabled or self.publisher is None:
            return
        client = next((c for c in self.tracker.clients() if session_key(c) == key), None)
        self.connection.announce(client)
        self.connection.learn_application(key, client)
        self._follow([key])
        tag = self.runs.current_tag()
        run = self.runs.get(tag) if tag else None
        if run is not None:  # the session was made by the running cell: label its tag there too
            self.connection.label([key], run.tag, run.cell)

    def _on_operation(self, op_id: str) -> None:
        self.runs.add_operation(op_id)

    def _follow(self, keys: list[SessionKey]) -> None:
        self.connection.follow(keys)
        with self.runs.cond:
            if self._ui_thread is None:
                self._ui_thread = threading.Thread(
                    target=self._ui_loop, name="sparkscope-ui", daemon=True
                )
                self._ui_thread.start()

    @property
    def url(self) -> str:
        return self.connection.url

    # -- the agent's thread, with the lock held

    def _on_change(self, update: Mapping[str, Any], touched: set[str] | None) -> None:
        self.runs.merge(self.state, update, touched)

    # -- the ui thread

    def _ui_loop(self) -> None:
        try:
            from . import report, widget  # noqa: F401  import before the first widget, unlocked
        except Exception:
            log.exception("sparkscope: the widget cannot be loaded")
            return
        with self.runs.cond:
            while not self.runs.closed:
                now = time.monotonic()
                throttle = self.config.throttle_ms / 1000
                wait: float | None = None
                for run in self.runs:
                    if not run.dirty:
                        continue
                    due = run.last_flush + throttle
                    # the first job, status changes and the final state go out at once; task
                    # counts alone are throttled
                    if run.widget is None or run.urgent or run.done() or now >= due:
                        self._flush(run)
                    else:
                        wait = due - now if wait is None else min(wait, due - now)
                self.runs.cond.wait(wait)

    def _flush(self, run: CellRun) -> None:
        """Bring the cell's widget (creating and displaying it on its first job) up to date.
        Called with the lock held, on the ui thread or the shell thread."""
        run.dirty = run.urgent = False
        run.last_flush = time.monotonic()
        # a cell shows a widget once it has a job, or a Connect operation that failed (an
        # analysis error has no job)
        if self.publisher is None or (
            not run.jobs
            and run.widget is None
            and not cellview.operation_errors(run.operations.values())
        ):
            return
        try:
            view = cellview.build(run, self.state, self.connection.now_ms())
            self._show(run, view)
            if not run.fingerprint_sent and run.done():
                self._remember(run, view)
        except Exception:
            log.exception("sparkscope: updating the widget of %s failed", run.tag)

    def _remember(self, run: CellRun, view: cellview.CellView) -> None:
        """A done cell run's fingerprint goes to the agent; the agent answers with the cell's
        previous run, and the widget shows how this one differs. Lost on the way (no agent, the
        connection cut before the answer), it goes again after the next (re)connect's snapshot,
        FINGERPRINT_TRIES times at most. Lock held."""
        run.fingerprint_sent = True
        fp = rundiff.fingerprint(view, run.cell)
        sessions = run.sessions()
        if fp is None or not sessions:
            return
        run.fingerprint_tries += 1

        def answered(answer: dict[str, Any]) -> None:
            code = answer.get("code")
            if code in (NO_AGENT, NO_ANSWER):
                with self.runs.cond:
                    again = run.fingerprint_tries < FINGERPRINT_TRIES
                    if again:
                        run.fingerprint_sent = False
                log.info(
                    "sparkscope: fingerprint of %s not taken (%s)%s",
                    run.tag,
                    answer.get("message", code),
                    ", sent again after a reconnect" if again else "",
                )
                return
            if code:
                log.info("sparkscope: previous run of %s: %s", run.tag, answer.get("message"))
            previous = answer.get("previous")
            # a try again whose first did reach the agent: the "previous" run is this one
            if not previous or previous.get("tag") == fp["tag"]:
                return
            with self.runs.cond:
                run.diff = rundiff.diff(rundiff.normalize(previous), fp)
                self.runs.mark(run, urgent=True)

        if not self.connection.remember_run(sessions[0], fp, answered):
            answered({"code": NO_AGENT, "message": "no agent"})

    def _show(self, run: CellRun, view: cellview.CellView) -> None:
        """The view as the widget's traits, and as the display's text/plain and (once the cell
        run is done) text/html."""
        from .report import html_report, text_report
        from .widget import CellWidget, traits

        assert self.publisher is not None
        done = run.done()
        values = traits(view, agent_error=self.connection.unavailable(), hidden=self._hidden)

        def bundle() -> tuple[dict, dict, str]:
            text = text_report(view)
            data, metadata = self._bundle(run.widget, text)
            if done:
                data["text/html"] = html_report(view)
            return data, metadata, text

        if run.widget is None:
            run.widget = CellWidget(**values)
            run.widget.on_cancel(partial(self.requests.cancel, run.tag))
            run.widget.on_tasks(partial(self.requests.request_tasks, run.tag))
            run.widget.on_hide_all(self.set_hidden)
            data, metadata, text = bundle()
            self.publisher.display(run.parent, run.display_id, data, metadata)
            run.final_sent = done
            run.final_text = text if done else ""
            return
        self._throttle_plans(run, values, done)
        with run.widget.hold_sync():
            for name, value in values.items():
                if getattr(run.widget, name) != value:
                    setattr(run.widget, name, value)
        if done:
            data, metadata, text = bundle()
            if text != run.final_text:
                self.publisher.update(run.display_id, data, metadata)
                run.final_text = text
        run.final_sent = done

    @staticmethod
    def _throttle_plans(run: CellRun, values: dict[str, Any], done: bool) -> None:
        """A plan's operator metrics change with nearly every update while its query runs, and
        a large plan is tens of KiB: they go to the browser every PLAN_INTERVAL_S at most. A new
        query, a re-plan, a status change and the final state go at once."""
        plans = values.get("plans") or []
        shape = tuple(
            (p.get("executionId"), p.get("status"), p.get("planVersion"), p.get("nodeCount"))
            for p in plans
        )
        now = time.monotonic()
        if not done and shape == run.plans_shape and now - run.plans_sent < PLAN_INTERVAL_S:
            values.pop("plans", None)
            values.pop("plan_shapes", None)
            return
        run.plans_shape = shape
        run.plans_sent = now

    @staticmethod
    def _bundle(widget: Any, text: str) -> tuple[dict, dict]:
        bundle = widget._repr_mimebundle_()
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        return {**data, "text/plain": text}, dict(metadata or {})

    def cancel(self, tag: str, **target: Any) -> str | None:
        """What a Cancel click on the cell run's widget does (see `Requests.cancel`)."""
        return self.requests.cancel(tag, **target)

    # -- hiding, from a widget (a kernel subshell's thread) or %sparkscope; never blocks

    def set_hidden(self, hidden: bool) -> None:
        """Hide (or show again) every sparkscope widget of this kernel."""
        with self.runs.cond:
            self._hidden = hidden
            self.runs.mark_shown(urgent=True, live_only=False)

    # -- for the public helpers and %sparkscope

    def current_tag(self) -> str | None:
        return self.runs.current_tag()

    def wait(self, timeout: float) -> bool:
        """Until every cell run with jobs is done and its final state published."""
        return self.runs.wait_shown(timeout)

    def status(self) -> str:
        lines = self.connection.status_lines()
        keys = self.tracker.keys()
        lines.append(f"  sessions followed: {len(keys)}")
        for key in keys:
            lines.append(f"    {key.session_id} (user {key.user_id or '<none>'})")
        shown = sum(1 for r in self.runs if r.widget is not None)
        lines.append(f"  cells with Spark jobs (recent): {shown}")
        if self.publisher is None:
            lines.append(
                "  no widgets: this shell is not a Jupyter kernel (cells are still tagged)"
            )
        return "\n".join(lines)
