"""The one WebSocket from this kernel to the sparkscope agent (docs/streaming-api.md), on a daemon
thread: it subscribes the sessions it is told to follow, hands every decoded `Update` to a
callback, sends cancel requests and hands back the agent's `CancelResult`s, and reconnects with
exponential backoff. Nothing here ever raises into the caller or waits on the network on the
caller's thread."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import random
import secrets
import select
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .sessions import SessionKey
from .state import CANCEL_RESULT, MY_WORK, TASK_LIST

log = logging.getLogger("sparkscope")

DEFAULT_URL = "ws://127.0.0.1:4740/api/v1/stream"
CANCEL_TIMEOUT = 20.0  # seconds to wait for the agent's CancelResult
MAX_LABELS = 64  # cell labels kept to send again on a new stream

# CancelResult codes the client gives itself when the agent could not answer (the agent's own are
# not_found, finished, forbidden, unavailable, refused, bad_request).
NO_AGENT = "no_agent"  # not connected to the agent
UNAUTHORIZED = "unauthorized"  # the agent refused this notebook's credential
NO_ANSWER = "no_answer"  # sent, but the connection was lost or the agent did not answer in time
UNTRUSTED = (
    "untrusted"  # the agent did not prove itself, or the way to it is not safe for the token
)


class Untrusted(ConnectionError):
    """The agent, or the way to it, is not one this notebook's credential may be given to: the
    connection is not made, or closed before anything secret is sent."""


def key_id(token: str) -> str:
    """A token's public name in the stream's handshake (docs/streaming-api.md): the agent finds
    the token by it, nobody can find the token from it."""
    return hashlib.sha256(b"sparkscope-key-id\n" + token.encode()).digest()[:16].hex()


def proof(token: str, *parts: str) -> str:
    """HMAC-SHA256 of the token over the parts, each followed by a newline, in hex."""
    data = b"".join(p.encode() + b"\n" for p in parts)
    return hmac.new(token.encode(), data, hashlib.sha256).hexdigest()


def is_hub_token(token: str | None) -> bool:
    """Whether the credential is the kernel's JupyterHub API token, which opens the user's own
    Jupyter server: it goes only to an agent whose certificate this kernel verified."""
    hub = os.environ.get("JUPYTERHUB_API_TOKEN")
    return bool(token) and token == hub


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refusal(url: str, token: str | None) -> str | None:
    """Why this kernel will not connect to `url` with `token` at all, or None. Plain ws:// goes to
    this machine only; a JupyterHub token only over wss://, whose certificate the connection
    then verifies (against SPARKSCOPE_CA_FILE, or the system's trust store)."""
    scheme = urlsplit(url).scheme
    if scheme == "ws" and not is_loopback(url):
        return (
            f"plain ws:// is for an agent on this machine only; {redact(url)} is another host: "
            "use wss:// (an agent with --tls-cert) and, for a private CA, SPARKSCOPE_CA_FILE"
        )
    if is_hub_token(token) and scheme != "wss":
        return (
            f"JupyterHub's API token goes only to an agent that proves itself with a certificate: "
            f"{redact(url)} is plain ws://. Point SPARKSCOPE_URL at the agent's wss:// address "
            "(and SPARKSCOPE_CA_FILE at its CA), or give the notebook one of the agent's own tokens "
            "(SPARKSCOPE_TOKEN_FILE)"
        )
    return None


@dataclass
class _PendingCancel:
    frame: str
    on_result: Callable[[dict[str, Any]], None]
    deadline: float
    sent: bool = False
    # "cancel" (answered with a CancelResult), "tasks" (a TaskList), "myWork" (a MyWork) or
    # "fingerprint" (a PreviousRun)
    kind: str = "cancel"


@dataclass
class AgentStatus:
    """What the client knows about its connection (read by the extension and `%sparkscope`)."""

    connected: bool = False
    ever_connected: bool = False
    attempts: int = 0
    failures: int = 0
    last_error: str | None = None
    unauthorized: bool = False
    # the agent could not prove itself, or the way to it is not safe for the credential
    untrusted: bool = False


class AgentClient:
    """Follow Connect sessions on the agent's stream.

    `on_update(update)` runs on the client's thread for every `{"update": …}` frame (the first one
    after each (re)subscription is a snapshot); `on_status()` after each connect or failure.
    `cancel(…)` sends a `CancelRequest` and calls back with the agent's `CancelResult`.
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        on_update: Callable[[Mapping[str, Any]], None],
        on_status: Callable[[], None] = lambda: None,
        *,
        connect_timeout: float = 5.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        ping_interval: float = 30.0,
    ) -> None:
        self.url = url
        self.token = token or None
        self._on_update = on_update
        self._on_status = on_status
        self.connect_timeout = connect_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.ping_interval = ping_interval
        self.status = AgentStatus()
        self._lock = threading.RLock()
        self._sessions: set[SessionKey] = set()
        self._apps: dict[SessionKey, str] = {}  # the Spark application of each, when known
        self._to_subscribe: set[SessionKey] = set()
        self._to_unsubscribe: set[SessionKey] = set()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread: threading.Thread | None = None
        self._ws: Any = None
        self._cancels: dict[str, _PendingCancel] = {}  # by requestId, in sending order
        self.cancel_timeout = CANCEL_TIMEOUT
        # which cell ran each recent tag: sent once, and again on every new stream (the agent
        # keeps them in memory only)
        self._labels: OrderedDict[tuple[SessionKey, str], dict[str, Any]] = OrderedDict()
        self._labels_unsent: list[dict[str, Any]] = []

    # -- called from any thread; never block

    def follow(
        self, keys: Iterable[SessionKey], apps: Mapping[SessionKey, str] | None = None
    ) -> None:
        """Follow these sessions; `apps` names the Spark application (the Connect server's
        `spark.app.id`) a session runs in, so that no other application's claim to the same
        session id is mixed in."""
        with self._lock:
            for k, app in (apps or {}).items():
                if app:
                    self._apps[k] = app
            new = set(keys) - self._sessions
            if not new:
                return
            self._sessions |= new
            self._to_subscribe |= new
            self._to_unsubscribe -= new
        self._start()
        self._wake()

    def pin(self, key: SessionKey, app: str) -> None:
        """The Spark application a followed session runs in, learnt after it was followed: it is
        subscribed again, naming it."""
        with self._lock:
            self._apps[key] = app
            if key not in self._sessions:
                return
            self._to_subscribe.add(key)
        self._wake()

    def label(self, key: SessionKey, tag: str, cell: Mapping[str, Any]) -> None:
        """Tell the agent which notebook cell ran `tag` in session `key`: `cell` holds
        `notebook`, `cellId`, `executionCount` (any may be missing). The newest MAX_LABELS are
        kept and sent again after a reconnect."""
        body: dict[str, Any] = {**key.to_json(), "tag": tag}
        body.update({k: v for k, v in cell.items() if v})
        with self._lock:
            app = self._apps.get(key)
            if app:
                body["appId"] = app
            self._labels[(key, tag)] = body
            self._labels.move_to_end((key, tag))
            while len(self._labels) > MAX_LABELS:
                self._labels.popitem(last=False)
            self._labels_unsent.append(body)
        self._start()
        self._wake()

    def my_work(self, on_result: Callable[[dict[str, Any]], None], max_finished: int = 0) -> str:
        """Ask the agent for this credential's work across all its sessions (`MyWork`):
        `on_result(work)` gets the agent's answer, or one this client makes with code
        `no_agent` or `no_answer`. Returns the request id."""
        body: dict[str, Any] = {"requestId": uuid.uuid4().hex}
        if max_finished:
            body["maxFinished"] = max_finished
        self._start()
        return self._request("myWork", body, on_result)

    def remember_run(
        self,
        key: SessionKey,
        fingerprint: Mapping[str, Any],
        on_result: Callable[[dict[str, Any]], None],
    ) -> str:
        """Give the agent a finished cell run's fingerprint (`rundiff.fingerprint`) of session
        `key`'s user: `on_result(answer)` gets the agent's `PreviousRun` (`previous`: the
        cell's run before, or None), or one this client makes with code `no_agent` or
        `no_answer`. Returns the request id."""
        body: dict[str, Any] = {"requestId": uuid.uuid4().hex, **key.to_json(), **fingerprint}
        self._start()
        return self._request("fingerprint", body, on_result)

    def unfollow(self, keys: Iterable[SessionKey]) -> None:
        with self._lock:
            gone = set(keys) & self._sessions
            if not gone:
                return
            self._sessions -= gone
            self._to_subscribe -= gone
            self._to_unsubscribe |= gone
        self._wake()

    @property
    def sessions(self) -> list[SessionKey]:
        with self._lock:
            return sorted(self._sessions)

    def unavailable(self) -> tuple[str, str] | None:
        """Why nothing can be sent to the agent now, as (code, message for people); None while
        connected."""
        with self._lock:
            s = self.status
            if s.connected and not self._stop.is_set():
                return None
            if self._stop.is_set():
                return NO_AGENT, "sparkscope's connection to the agent is stopped"
            if s.untrusted:
                return UNTRUSTED, s.last_error or f"the agent at {redact(self.url)} is not trusted"
            if s.unauthorized:
                message = (
                    f"the agent at {redact(self.url)} refused this notebook's credential "
                    "(SPARKSCOPE_TOKEN, SPARKSCOPE_TOKEN_FILE, or JupyterHub's API token)"
                )
                return UNAUTHORIZED, message
            why = s.last_error or ("connecting" if not s.ever_connected else "reconnecting")
            return NO_AGENT, f"not connected to the agent at {redact(self.url)} ({why})"

    def cancel(
        self,
        session: SessionKey,
        target: Mapping[str, Any],
        on_result: Callable[[dict[str, Any]], None],
        reason: str = "",
        request_id: str | None = None,
    ) -> str:
        """Ask the agent to stop work of a followed session: `target` is `{"tag": …}`,
        `{"operationId": …}` or `{"jobId": …}`. `on_result(result)` gets the agent's
        `CancelResult` (proto3 JSON defaults filled in) on the client's thread, or, when the
        request cannot be sent or answered, one this client makes with code `no_agent`,
        `unauthorized` or `no_answer` — at once on the caller's thread if not connected. Returns
        the request id."""
        body: dict[str, Any] = {
            "requestId": request_id or uuid.uuid4().hex,
            **session.to_json(),
            **target,
        }
        if reason:
            body["reason"] = reason
        return self._request("cancel", body, on_result)

    def request_tasks(
        self,
        session: SessionKey,
        app_id: str,
        stage_id: int,
        attempt_id: int,
        on_result: Callable[[dict[str, Any]], None],
        thread_dump: bool = False,
    ) -> str:
        """Ask the agent for the tasks of one stage attempt of a followed session (it reads them
        from Spark's REST API), and with `thread_dump` the thread dump of its longest-running
        task. `on_result(list)` gets the agent's `TaskList` (`normalize_task_list`), or one this
        client makes with code `no_agent` or `no_answer`. Returns the request id."""
        body = {
            "requestId": uuid.uuid4().hex,
            "appId": app_id,
            "stageId": stage_id,
            "attemptId": attempt_id,
            **session.to_json(),
        }
        if thread_dump:
            body["threadDump"] = True
        return self._request("tasks", body, on_result)

    def _request(
        self, kind: str, body: dict[str, Any], on_result: Callable[[dict[str, Any]], None]
    ) -> str:
        """Sends `{kind: body}` once connected and calls `on_result` with the answer to its
        requestId, or at once with this client's own failure when not connected."""
        rid = body["requestId"]
        with self._lock:  # one lock with the stream's end, so no request is left unanswered
            why = self.unavailable()
            if why is None:
                self._cancels[rid] = _PendingCancel(
                    json.dumps({kind: body}),
                    on_result,
                    time.monotonic() + self.cancel_timeout,
                    kind=kind,
                )
        if why is not None:
            _call(on_result, _failure(kind, rid, why[0], why[1]))
            return rid
        self._wake()
        return rid

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._fail_cancels("sparkscope stopped before the agent answered")
        for sock in (self._wake_r, self._wake_w):
            try:
                sock.close()
            except OSError:
                pass

    def start(self) -> None:
        """Connect now (following nothing yet), and keep the stream up."""
        self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="sparkscope-agent", daemon=True)
        self._thread.start()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:  # buffer full (already woken) or closed
            pass

    # -- the client's thread

    def _run(self) -> None:
        import websocket  # lazy: only once there is a session to follow

        # what a dead, refused or misbehaving agent raises; anything else is a bug and is logged
        network_errors = (OSError, ValueError, websocket.WebSocketException)
        delay = self.backoff_initial
        while not self._stop.is_set():
            self.status.attempts += 1
            try:
                ws = self._connect()
            except network_errors as exc:
                self._failed(exc)
                self._sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self.backoff_max)
                continue
            with self._lock:
                # a new stream knows nothing: subscribe everything, forget pending unsubscribes
                self._to_subscribe = set(self._sessions)
                self._to_unsubscribe.clear()
                self._labels_unsent = list(self._labels.values())
            with self._lock:
                self.status.connected = True
                self.status.ever_connected = True
                self.status.last_error = None
                self.status.unauthorized = False
                self.status.untrusted = False
            log.info("sparkscope: connected to %s", redact(self.url))
            self._notify_status()
            try:
                started = time.monotonic()
                self._serve(ws)
                reason = "connection closed"
            except network_errors as exc:
                reason = describe(exc)
            finally:
                with self._lock:
                    self.status.connected = False
                self._ws = None
                with contextlib.suppress(*network_errors):
                    ws.close(timeout=0.5)
                # never replayed on a new stream: a late cancel could stop newer work
                self._fail_cancels(
                    "the connection to the agent was lost before it answered; the work may or "
                    "may not have been stopped"
                )
            if self._stop.is_set():
                break
            self.status.last_error = reason
            log.info("sparkscope: stream to %s lost (%s); reconnecting", redact(self.url), reason)
            self._notify_status()
            # a stream that lived a while earns a fresh start of the backoff
            if time.monotonic() - started > 10:
                delay = self.backoff_initial
            self._sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.backoff_max)

    def _connect(self) -> Any:
        import websocket  # lazy: only once there is a session to follow

        why = refusal(self.url, self.token)
        if why is not None:
            raise Untrusted(why)
        # Only a JupyterHub token travels as a bearer token, and only over verified TLS. One of
        # the agent's own tokens is proven in the handshake below and never sent.
        headers = [f"Authorization: Bearer {self.token}"] if is_hub_token(self.token) else []
        # wss:// to an agent with TLS: its certificate, or the CA that signed it, may come from
        # SPARKSCOPE_CA_FILE; otherwise the system's trust store decides. Either way it is
        # verified, host name included.
        ca_file = os.environ.get("SPARKSCOPE_CA_FILE")
        sslopt = {"ca_certs": ca_file} if ca_file and self.url.startswith("wss:") else None
        ws = websocket.create_connection(
            self.url,
            timeout=self.connect_timeout,
            header=headers,
            enable_multithread=True,
            suppress_origin=True,
            sslopt=sslopt,
        )
        ws.settimeout(self.connect_timeout)  # for the rest of a frame once one started
        if self.token and not is_hub_token(self.token):
            try:
                self._handshake(ws, self.token)
            except BaseException:
                with contextlib.suppress(Exception):
                    ws.close(timeout=0.5)
                raise
        self._ws = ws
        return ws

    def _handshake(self, ws: Any, token: str) -> None:
        """Proves `token` without sending it: the agent must prove it first (docs/streaming-api.md).
        An agent that cannot is left before anything else is said."""
        kid, nonce = key_id(token), secrets.token_hex(16)
        ws.send(json.dumps({"hello": {"keyId": kid, "nonce": nonce}}))
        challenge = self._expect(ws, "challenge")
        agent_nonce = str(challenge.get("nonce", ""))
        expected = proof(token, "sparkscope-agent-stream-1", agent_nonce, nonce, kid)
        if len(agent_nonce) != 32 or not hmac.compare_digest(
            expected, str(challenge.get("proof", ""))
        ):
            raise Untrusted(
                f"the agent at {redact(self.url)} could not prove it knows this notebook's "
                "token: not an agent of ours; nothing was sent to it"
            )
        mine = proof(token, "sparkscope-notebook-1", agent_nonce, nonce, kid)
        ws.send(json.dumps({"proof": {"proof": mine}}))
        self._expect(ws, "welcome")

    def _expect(self, ws: Any, kind: str) -> dict[str, Any]:
        """The next frame, which must be `{kind: …}`; the agent's refusal raises as one."""
        import websocket

        text = ws.recv()
        try:
            msg = json.loads(text)
        except (TypeError, ValueError):
            msg = None
        if isinstance(msg, dict) and isinstance(msg.get(kind), dict):
            return msg[kind]
        if isinstance(msg, dict) and isinstance(msg.get("error"), dict):
            err = msg["error"]
            exc = websocket.WebSocketBadStatusException(
                f"the agent refused: {err.get('message', '')}", 401
            )
            raise exc
        raise ConnectionError(f"the agent's answer is not a {kind}")

    def _serve(self, ws: Any) -> None:
        import websocket

        last_traffic = time.monotonic()
        while not self._stop.is_set():
            self._send_pending(ws)
            sock = ws.sock
            if sock is None:
                return
            pending = getattr(sock, "pending", None)  # bytes already decrypted by TLS
            if pending is not None and pending():
                readable = [sock]
            else:
                wait = min(self.ping_interval, self._expire_cancels())
                readable, _, _ = select.select([sock, self._wake_r], [], [], wait)
            if self._wake_r in readable:
                self._drain_wake()
            if sock in readable:
                # control frames too, so a pong never leaves us blocked inside recv
                opcode, data = ws.recv_data(control_frame=True)
                last_traffic = time.monotonic()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    raise ConnectionError(close_reason(data))
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    self._handle(data.decode("utf-8", errors="replace"))
            elif time.monotonic() - last_traffic >= self.ping_interval:
                ws.ping()
                last_traffic = time.monotonic()

    def _send_pending(self, ws: Any) -> None:
        with self._lock:
            sub, unsub = sorted(self._to_subscribe), sorted(self._to_unsubscribe)
            self._to_subscribe.clear()
            self._to_unsubscribe.clear()
            cancels = [c for c in self._cancels.values() if not c.sent]
            for c in cancels:
                c.sent = True
            labels, self._labels_unsent = self._labels_unsent, []
        if unsub:
            ws.send(json.dumps({"unsubscribe": {"sessions": [k.to_json() for k in unsub]}}))
        if sub:
            with self._lock:
                keys = [_with_app(k.to_json(), self._apps.get(k)) for k in sub]
            ws.send(json.dumps({"subscribe": {"sessions": keys}}))
        for c in cancels:
            ws.send(c.frame)
        for body in labels:
            ws.send(json.dumps({"label": body}))

    def _expire_cancels(self) -> float:
        """Answer the requests the agent left unanswered too long; returns the seconds until the
        next deadline (inf if none)."""
        now = time.monotonic()
        with self._lock:
            late = [rid for rid, c in self._cancels.items() if c.deadline <= now]
            expired = [(rid, self._cancels.pop(rid)) for rid in late]
            nearest = min((c.deadline for c in self._cancels.values()), default=None)
        for rid, c in expired:
            message = f"the agent did not answer within {self.cancel_timeout:.0f} s"
            _call(c.on_result, _failure(c.kind, rid, NO_ANSWER, message))
        return float("inf") if nearest is None else max(nearest - now, 0.0)

    def _fail_cancels(self, message: str) -> None:
        with self._lock:
            failed = list(self._cancels.items())
            self._cancels.clear()
        for rid, c in failed:
            _call(c.on_result, _failure(c.kind, rid, NO_ANSWER, message))

    def _handle(self, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            log.warning("sparkscope: agent sent a frame that is not JSON (%d bytes)", len(text))
            return
        if not isinstance(msg, dict):
            return
        if isinstance(msg.get("update"), dict):
            try:
                self._on_update(msg["update"])
            except Exception:
                log.exception("sparkscope: handling an update failed")
        elif isinstance(msg.get("cancelResult"), dict):
            result = normalize_cancel_result(msg["cancelResult"])
            with self._lock:
                pending = self._cancels.pop(result["requestId"], None)
            if pending is None:
                log.info("sparkscope: an answer to no pending cancel (%s)", result["requestId"])
            else:
                _call(pending.on_result, result)
        elif isinstance(msg.get("myWork"), dict):
            work = normalize_my_work(msg["myWork"])
            with self._lock:
                pending = self._cancels.pop(work["requestId"], None)
            if pending is not None:
                _call(pending.on_result, work)
        elif isinstance(msg.get("previousRun"), dict):
            answer = normalize_previous_run(msg["previousRun"])
            with self._lock:
                pending = self._cancels.pop(answer["requestId"], None)
            if pending is not None:
                _call(pending.on_result, answer)
        elif isinstance(msg.get("tasks"), dict):
            answer = normalize_task_list(msg["tasks"])
            with self._lock:
                pending = self._cancels.pop(answer["requestId"], None)
            if pending is not None:
                _call(pending.on_result, answer)
        elif isinstance(msg.get("error"), dict):
            err = msg["error"]
            log.warning("sparkscope: agent error %s: %s", err.get("code"), err.get("message"))

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self.status.failures += 1
            self.status.last_error = describe(exc)
            self.status.unauthorized = getattr(exc, "status_code", None) in (401, 403)
            self.status.untrusted = isinstance(exc, Untrusted)
        log.info("sparkscope: cannot reach %s: %s", redact(self.url), self.status.last_error)
        self._notify_status()

    def _notify_status(self) -> None:
        try:
            self._on_status()
        except Exception:
            log.exception("sparkscope: status callback failed")

    def _sleep(self, seconds: float) -> None:
        """Sleep, but return at once on stop()."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                select.select([self._wake_r], [], [], remaining)
            except (OSError, ValueError):
                return
            self._drain_wake()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(512):
                pass
        except (BlockingIOError, OSError):
            pass


def _with_app(key: dict[str, str], app: str | None) -> dict[str, str]:
    return {**key, "appId": app} if app else key


def cancel_result(request_id: str, **fields: Any) -> dict[str, Any]:
    """A `CancelResult` with every field present (what `normalize_cancel_result` returns)."""
    return normalize_cancel_result({"requestId": request_id, **fields})


def normalize_cancel_result(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The agent's `CancelResult` (proto3 JSON leaves defaults out) with every field present."""
    return CANCEL_RESULT.read(raw)


def task_list(request_id: str, **fields: Any) -> dict[str, Any]:
    """A `TaskList` with every field present (what `normalize_task_list` returns)."""
    return normalize_task_list({"requestId": request_id, **fields})


def normalize_my_work(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The agent's `MyWork` with every field present, and `ok` (this client's failures carry
    `ok: False`, a `code` and a `message`)."""
    return {"ok": True, "code": "", "message": "", **MY_WORK.read(raw)}


def normalize_task_list(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The agent's `TaskList` (proto3 JSON leaves defaults out) with every field present."""
    return TASK_LIST.read(raw)


def normalize_previous_run(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The agent's `PreviousRun`: `requestId`, `code`, `message` and `previous` (a dict, or
    None for a cell's first run)."""
    previous = raw.get("previous")
    return {
        "requestId": str(raw.get("requestId") or ""),
        "code": str(raw.get("code") or ""),
        "message": str(raw.get("message") or ""),
        "previous": dict(previous) if isinstance(previous, Mapping) else None,
    }


def _failure(kind: str, rid: str, code: str, message: str) -> dict[str, Any]:
    if kind == "fingerprint":
        return {"requestId": rid, "code": code, "message": message, "previous": None}
    if kind == "myWork":
        return {"requestId": rid, "ok": False, "code": code, "message": message, "runs": []}
    if kind == "tasks":
        return task_list(rid, code=code, message=message)
    return cancel_result(rid, code=code, message=message)


def _call(callback: Callable[[dict[str, Any]], None], result: dict[str, Any]) -> None:
    try:
        callback(result)
    except Exception:
        log.exception("sparkscope: handling a cancel result failed")


def close_reason(data: bytes) -> str:
    """`closed by the agent (1008 slow consumer)` from a close frame's payload."""
    if len(data) < 2:
        return "closed by the agent"
    code = int.from_bytes(data[:2], "big")
    reason = data[2:].decode("utf-8", errors="replace")
    return f"closed by the agent ({code}{' ' + reason if reason else ''})"


def describe(exc: BaseException) -> str:
    if isinstance(exc, Untrusted):
        return str(exc)
    code = getattr(exc, "status_code", None)
    if code in (401, 403):
        return f"HTTP {code}: the agent refused this notebook's credential"
    if code is not None:
        return f"HTTP {code} on the WebSocket upgrade"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


def redact(url: str) -> str:
    """The URL without a `token=` query value, for messages."""
    if "token=" not in url:
        return url
    head, _, query = url.partition("?")
    parts = [p if not p.startswith("token=") else "token=…" for p in query.split("&")]
    return head + "?" + "&".join(parts)
