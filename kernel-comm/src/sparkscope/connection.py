"""The kernel's side of the agent: which agent (configured, announced by the Connect server, or a
private one for a SparkContext of the kernel's own), the one `AgentClient` to it and the sessions
it follows, the stream state it delivers and the agent's clock, and what people are told when it
cannot be reached."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .agent import DEFAULT_URL, AgentClient, redact
from .classic import NotInstalled, PrivateAgent
from .sessions import SessionKey
from .state import StreamState

if TYPE_CHECKING:
    from .extension import Config

log = logging.getLogger("sparkscope")

STREAM_URL_CONF = "spark.sparkscope.streamUrl"  # where a Connect server says its agent streams
APP_ID_CONF = "spark.app.id"  # the Spark application a Connect session runs in
OFF = "sparkscope is off (%sparkscope --on)"


def server_conf(client: Any, key: str) -> str:
    """A non-secret conf of a Connect client's server (its clients may read those); "" when it
    has none or cannot be asked."""
    get = getattr(client, "get_config_with_defaults", None)
    if get is None:
        return ""
    try:
        (value,) = get((key, ""))
    except Exception:  # the server is unreachable, or refuses
        log.debug("sparkscope: cannot read %s from the Connect server", key, exc_info=True)
        return ""
    return (value or "").strip()


def application_of(client: Any) -> str:
    """The Spark application a session runs in: a classic SparkContext is its own; a Connect
    server says its `spark.app.id`. The agent then never mixes in another application that
    claims the same session id."""
    if getattr(client, "is_classic", False):
        return str(getattr(client, "_session_id", ""))
    return server_conf(client, APP_ID_CONF)


def announced_url(client: Any) -> str | None:
    """The stream URL a Connect server announces in `spark.sparkscope.streamUrl` (a non-secret
    conf, readable by its clients); None when it announces none or cannot be asked."""
    value = server_conf(client, STREAM_URL_CONF)
    if value.startswith(("ws://", "wss://")):
        return value
    if value:
        log.warning(
            "sparkscope: ignoring %s=%r (not a ws:// or wss:// URL)", STREAM_URL_CONF, value
        )
    return None


class AgentConnection:
    """Owns the `AgentClient` (made on the first session to follow, remade when the URL or token
    changes) and the `StreamState` it fills. Updates are applied under `lock` (the cell runs'
    condition), then handed to `on_change(update, touched)` still under it; `on_status()` runs
    after each connect or failure."""

    def __init__(
        self,
        config: Config,
        lock: threading.Condition,
        on_change: Callable[[Mapping[str, Any], set[str] | None], None],
        on_status: Callable[[], None],
    ) -> None:
        self.config = config
        self.state = StreamState()
        self.client: AgentClient | None = None
        self._lock = lock
        self._on_change = on_change
        self._on_status = on_status
        # the stream URL the first Connect session's server announced ("" once asked: none)
        self._announced: str | None = None
        self._clock_offset_ms = 0.0  # agent clock minus ours, from sentAtMs
        self._warned = False
        self.private: PrivateAgent | None = None  # for a SparkContext of the kernel's own
        self._apps: dict[SessionKey, str] = {}  # each followed session's Spark application
        self._private_failed = False

    @property
    def url(self) -> str:
        """The stream's URL: configured, else announced by the Connect server, else the default."""
        return self.config.url or self._announced or DEFAULT_URL

    def now_ms(self) -> int:
        """Now on the agent's clock (as far as its last update tells)."""
        return int(time.time() * 1000 + self._clock_offset_ms)

    def configure(self, config: Config) -> None:
        """New settings: a new URL or token drops the client (the next `follow` makes a new
        one), and so does switching sparkscope off."""
        old, self.config = self.config, config
        moved = (old.url, old.token) != (config.url, config.token)
        if moved:
            self._warned = False
        client = self.client
        if client is not None and (moved or not config.enabled):
            client.stop()
            with self._lock:
                self.client = None
            self._on_status()

    def announce(self, client: Any) -> None:
        """Ask the first Connect session's server where its agent streams, unless configured."""
        if not self.config.url and self._announced is None and self.client is None:
            self._announced = (announced_url(client) if client is not None else None) or ""

    def learn_application(self, key: SessionKey, client: Any) -> None:
        """Asks, once and off the caller's thread (the server may be slow or away), which Spark
        application session `key` runs in; the followed session is then pinned to it."""
        if client is None or key in self._apps:
            return
        self._apps[key] = ""  # asked

        def ask() -> None:
            app = application_of(client)
            if not app:
                return
            with self._lock:
                self._apps[key] = app
                agent = self.client
            if agent is not None:
                agent.pin(key, app)

        threading.Thread(target=ask, name="sparkscope-app-id", daemon=True).start()

    def follow(self, keys: Iterable[SessionKey]) -> None:
        keys = list(keys)
        with self._lock:
            if self.client is None:
                self.client = AgentClient(
                    self.url, self.config.token, self._on_update, self._on_status
                )
            client = self.client
        client.follow(keys, {k: self._apps[k] for k in keys if self._apps.get(k)})

    def label(self, keys: Iterable[SessionKey], tag: str, cell: Mapping[str, Any]) -> None:
        """Tell the agent which cell runs `tag` in each of these sessions (for the user's own
        views across notebooks: JupyterLab's sidebar)."""
        client = self.client
        if client is None:
            return
        for key in keys:
            client.label(key, tag, cell)

    def remember_run(
        self,
        key: SessionKey,
        fingerprint: Mapping[str, Any],
        on_result: Callable[[dict[str, Any]], None],
    ) -> bool:
        """Give the agent a finished cell run's fingerprint; the answer (the cell's previous
        run) goes to `on_result`. False when there is no agent to give it to."""
        client = self.client
        if client is None:
            return False
        client.remember_run(key, fingerprint, on_result)
        return True

    def unfollow(self, keys: Iterable[SessionKey]) -> None:
        if self.client is not None:
            self.client.unfollow(keys)

    def stop(self) -> None:
        if self.client is not None:
            self.client.stop()
        if self.private is not None:
            self.private.stop()

    def private_agent(self) -> tuple[PrivateAgent | None, bool]:
        """The private agent a SparkContext of this kernel reports to, started once; and
        whether it was started just now (the caller then points the connection at it)."""
        if self.private is not None or self._private_failed:
            return self.private, False
        try:
            self.private = PrivateAgent()
        except (NotInstalled, OSError, RuntimeError) as e:
            self._private_failed = True
            print(f"sparkscope: no progress for this SparkContext: {e}", file=sys.stderr)
            return None, False
        log.info("sparkscope: private agent at %s", self.private.stream_url)
        return self.private, True

    # -- the client's thread

    def _on_update(self, update: Mapping[str, Any]) -> None:
        with self._lock:
            touched = self.state.apply(update)
            if self.state.sent_at_ms:
                self._clock_offset_ms = self.state.sent_at_ms - time.time() * 1000
            self._on_change(update, touched)
            self.state.prune()

    # -- what people are told

    def connected(self) -> bool:
        """Connected, and the agent knows one of the followed sessions: worth waiting for."""
        client = self.client
        if client is None or not client.status.connected:
            return False
        with self._lock:
            return any(self.state.knows_session(k.session_id) for k in client.sessions)

    def unavailable(self) -> str:
        """Why a request cannot reach the agent now ("" when it can)."""
        client = self.client
        if client is None:
            return OFF if not self.config.enabled else ""
        why = client.unavailable()
        return why[1] if why else ""

    def warn_once(self) -> None:
        """After a cell, once: the agent cannot be reached, and how to point at it."""
        client = self.client
        if self._warned or client is None or client.status.ever_connected:
            return
        if client.status.failures == 0:
            return  # still trying for the first time
        self._warned = True
        print(
            f"sparkscope: cannot reach the agent at {redact(self.url)} "
            f"({client.status.last_error}). Spark progress will not be shown; cells run as "
            "usual and sparkscope keeps retrying in the background. Set SPARKSCOPE_URL and "
            "SPARKSCOPE_TOKEN (or SPARKSCOPE_TOKEN_FILE) in the kernel's environment, or run "
            "`%sparkscope --url … --token-file …`. (shown once)",
            file=sys.stderr,
        )

    def status_lines(self) -> list[str]:
        lines = [f"sparkscope: agent {redact(self.url)}"]
        client = self.client
        if client is None:
            lines.append("  not connected: no Spark Connect session seen yet")
        else:
            s = client.status
            state = "connected" if s.connected else f"not connected ({s.last_error or 'trying'})"
            lines.append(f"  {state}; {s.attempts} connection attempts")
        return lines
