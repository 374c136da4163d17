"""Classic SparkSessions, whose driver runs in this kernel (local mode, YARN or Kubernetes client
mode): a private agent for the kernel, the listener added to the context's conf just before its
JVM starts, and each cell run's tag put on the context as a Spark job tag.

The private agent listens on loopback, on ports the system picks, with tokens made for it; it
stops with the kernel (it watches its parent). The listener comes from this package's jar,
through `spark.driver.extraClassPath` (the driver JVM's own class path: a `spark.jars` set by the
notebook cannot drop it) and `spark.extraListeners`; its token goes through the driver's
environment, never its command line. The agent then serves the application as one session,
(application id, Spark user), whose jobs carry the cells' job tags (Spark >= 3.5).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from .install import LISTENER_CLASS, NotInstalled, binary, listener_jar
from .sessions import _ClientImportWatcher, wrap_init

log = logging.getLogger("sparkscope")

# where pyspark defines SparkContext: 4.x, then 3.x
CONTEXT_MODULES = ("pyspark.core.context", "pyspark.context")
CLASSIC_CONF = "spark.sparkscope.classicSession"
STARTUP_TIMEOUT = 15.0

TOO_LATE = (
    "sparkscope: this kernel's SparkContext started before `%load_ext sparkscope`, so its "
    "listener is not attached and its jobs cannot be shown. Restart the kernel and load "
    "sparkscope before building the SparkSession (or load it for every kernel through "
    "c.InteractiveShellApp.extensions = ['sparkscope'])."
)


class PrivateAgent:
    """`sparkscope serve` for this kernel only: loopback, free ports, fresh tokens."""

    def __init__(self) -> None:
        self.listener_token = secrets.token_hex(16)
        self.subscriber_token = secrets.token_hex(16)
        self.dir = Path(tempfile.mkdtemp(prefix="sparkscope-agent-"))
        addresses = self.dir / "addresses.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKSCOPE_")}
        env.update(
            SPARKSCOPE_LISTENER_TOKEN=self.listener_token,
            SPARKSCOPE_SUBSCRIBER_TOKEN=self.subscriber_token,
            SPARKSCOPE_API_TOKEN=secrets.token_hex(16),
            NO_COLOR="1",
        )
        cmd = [
            str(binary()), "serve",
            "--ingest", "127.0.0.1:0", "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0",
            "--addresses-file", str(addresses), "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        self.log_path = self.dir / "agent.log"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, close_fds=True
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not addresses.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the private sparkscope agent did not start:\n{tail}")
            time.sleep(0.02)
        addrs = json.loads(addresses.read_text())
        self.ingest: str = addrs["ingest"]
        self.stream_url = f"ws://{addrs['http']}/api/v1/stream"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class ClassicClient:
    """A classic SparkContext as the session tracker sees a Connect client: a session key
    (application id, Spark user) and tags, which are the context's job tags."""

    # its session is its application
    is_classic = True

    def __init__(self, sc: Any) -> None:
        self._sc = sc
        self._session_id: str = str(sc.applicationId)
        self._user_id: str = str(sc.sparkUser())

    def add_tag(self, tag: str) -> None:
        self._sc.addJobTag(tag)

    def remove_tag(self, tag: str) -> None:
        self._sc.removeJobTag(tag)

    @property
    def is_closed(self) -> bool:
        return getattr(self._sc, "_jsc", None) is None  # SparkContext.stop() clears it


class ClassicSessions:
    """Hooks pyspark's SparkContext: `before_launch()` (on the thread starting the JVM) returns
    the private agent whose listener the JVM gets; `on_context(client)` follows a new context."""

    def __init__(
        self,
        before_launch: Callable[[], PrivateAgent | None],
        on_context: Callable[[ClassicClient], None],
    ) -> None:
        self._before_launch = before_launch
        self._on_context = on_context
        self._patched: list[tuple[Any, str, Any]] = []
        self._finder: Any = None
        self.clients: list[ClassicClient] = []  # strong refs: the tracker holds them weakly
        self._lock = threading.Lock()

    def install(self) -> str | None:
        """Hooks pyspark now or when it is imported; returns a message when a context already
        runs without the listener."""
        for name in CONTEXT_MODULES:
            module = sys.modules.get(name)
            if module is not None and hasattr(module, "SparkContext"):
                self._patch(module)
                sc = module.SparkContext._active_spark_context
                if sc is not None and not _has_listener(sc):
                    return TOO_LATE
                if sc is not None:
                    self._context_started(sc)
                return None
        self._finder = _ClientImportWatcher(self._patch, CONTEXT_MODULES)
        sys.meta_path.insert(0, self._finder)
        return None

    def uninstall(self) -> None:
        if self._finder is not None:
            self._finder.detach()
            self._finder = None
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)
        self._patched.clear()

    def _patch(self, module: ModuleType) -> None:
        cls = getattr(module, "SparkContext", None)
        launch = getattr(module, "launch_gateway", None)
        if cls is None or launch is None or self._patched:
            return
        hooks = self

        def launch_gateway(conf: Any = None, popen_kwargs: Any = None) -> Any:
            agent = None
            try:
                agent = hooks._before_launch()
                if agent is not None:
                    if conf is None:
                        from pyspark.conf import SparkConf

                        conf = SparkConf()
                    _add_listener(conf, agent)
            except Exception:
                log.warning("sparkscope: cannot attach the listener", exc_info=True)
                agent = None
            if agent is None:
                return launch(conf, popen_kwargs)
            # The token in the driver's environment only, for the moment it starts.
            before = os.environ.get("SPARKSCOPE_LISTENER_TOKEN")
            os.environ["SPARKSCOPE_LISTENER_TOKEN"] = agent.listener_token
            try:
                return launch(conf, popen_kwargs)
            finally:
                if before is None:
                    os.environ.pop("SPARKSCOPE_LISTENER_TOKEN", None)
                else:
                    os.environ["SPARKSCOPE_LISTENER_TOKEN"] = before

        module.launch_gateway = launch_gateway
        original_init = wrap_init(cls, self._context_started, "following a new SparkContext")
        self._patched += [(module, "launch_gateway", launch), (cls, "__init__", original_init)]

    def _context_started(self, sc: Any) -> None:
        if not _has_listener(sc):
            return
        client = ClassicClient(sc)
        with self._lock:
            self.clients = [c for c in self.clients if not c.is_closed] + [client]
        self._on_context(client)


def _has_listener(sc: Any) -> bool:
    try:
        return sc.getConf().get(CLASSIC_CONF, "false") == "true"
    except Exception:  # a stopped or broken context
        log.debug("reading the SparkContext's conf failed", exc_info=True)
        return False


def _add_listener(conf: Any, agent: PrivateAgent) -> None:
    """The listener on the driver's class path and in its listeners, pointed at `agent`; what the
    notebook set stays (lists are extended)."""
    jar = str(listener_jar())

    def extend(key: str, value: str, sep: str) -> None:
        old = conf.get(key, "") or ""
        parts = [p for p in old.split(sep) if p]
        if value not in parts:
            parts.append(value)
        conf.set(key, sep.join(parts))

    extend("spark.driver.extraClassPath", jar, os.pathsep)
    extend("spark.extraListeners", LISTENER_CLASS, ",")
    conf.set("spark.sparkscope.agent", agent.ingest)
    conf.set(CLASSIC_CONF, "true")


__all__ = ["TOO_LATE", "ClassicClient", "ClassicSessions", "NotInstalled", "PrivateAgent"]
