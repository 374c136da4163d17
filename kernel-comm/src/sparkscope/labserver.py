"""sparkscope in the Jupyter server: the user's Spark work across all their notebooks, for
JupyterLab's sidebar and status bar.

The server holds the user's credential for the agent — the kernels' own (SPARKSCOPE_TOKEN,
SPARKSCOPE_TOKEN_FILE, JupyterHub's API token, or the token `sparkscope server` left) — and speaks
to the agent over the stream, whose handshake makes the agent prove itself before any credential
leaves; the browser never sees the token. The endpoints sit behind the Jupyter server's own
authentication:

- `GET <base>sparkscope/api/work`: the agent's `MyWork` (the applications of the user's sessions,
  running cell runs, the newest finished ones), notebook paths relative to the server's root;
- `POST <base>sparkscope/api/cancel` with `{"appId", "sessionId", "userId", "tag" | "operationId"}`:
  the agent's `CancelResult`;
- the user's own server (ownserver.py), unless `SPARKSCOPE_OWN_SERVER=off`:
  `GET <base>sparkscope/api/server` (its state and the configuration bundles),
  `POST <base>sparkscope/api/server` with `{"action": "start" | "stop" | "restart", "bundle"}`,
  `PUT`/`DELETE <base>sparkscope/api/bundles/<name>` (a bundle's JSON; its problems, all at once,
  in a 400), and `GET <base>sparkscope/api/server/log?offset=N` (the driver's log from byte N:
  a live tail for Lab's log panel).

The agent is found as kernels find it without a Connect session to ask: SPARKSCOPE_URL, else the
address `sparkscope server` left in the user's sparkscope directory, else the default; asked again
at each request, so that a server started or stopped from the sidebar is followed.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .agent import AgentClient, cancel_result
from .connection import DEFAULT_URL
from .extension import default_token
from .install import user_dir
from .ownserver import BundleError, Bundles, OwnServer, OwnServerError
from .sessions import SessionKey
from .uiproxy import UiTargets, mode_of

API = "sparkscope/api"
ANSWER_TIMEOUT = 5.0  # seconds for the agent's answer
CONNECT_WAIT = 3.0  # seconds a first request waits for the stream to come up
FRESH = 0.5  # seconds a MyWork answer is served again to the next poll
MAX_BODY = 4096  # bytes of a cancel request
MAX_BUNDLE_BODY = 65536  # bytes of a bundle
LOG_TAIL = 65536  # bytes of the driver's log a first log request gets
LOG_CHUNK = 262144  # bytes of the driver's log one answer carries at most


def agent_url() -> str:
    """Where the agent streams: SPARKSCOPE_URL, else `<sparkscope dir>/stream-url`, else the
    default."""
    url = os.environ.get("SPARKSCOPE_URL")
    if url:
        return url
    try:
        left = (user_dir() / "stream-url").read_text(encoding="utf-8").strip()
    except OSError:
        left = ""
    return left or DEFAULT_URL


def relative_notebook(path: str, root: str) -> str:
    """A kernel's notebook (JPY_SESSION_NAME: the server makes it absolute) as the path Lab uses,
    relative to the server's root; unchanged when it is not under it."""
    if not path or not os.path.isabs(path) or not root:
        return path
    try:
        rel = Path(path).resolve().relative_to(Path(root).resolve())
    except ValueError:
        return path
    return rel.as_posix()


class AgentLink:
    """One stream to the agent for this Jupyter server (its user), asked on behalf of the
    browser. Calls block; the handlers run them off the event loop."""

    def __init__(
        self,
        url: str,
        token: str | None,
        root_dir: str = "",
        client: Callable[..., AgentClient] = AgentClient,
    ) -> None:
        self.url = url
        self.root_dir = root_dir
        self.client = client(url, token, on_update=lambda _u: None)
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None

    def _ask(self, send: Callable[[Callable[[dict[str, Any]], None]], Any]) -> dict[str, Any]:
        """One request and its answer; a first request waits for the stream to come up."""
        box: dict[str, Any] = {}
        done = threading.Event()

        def answer(result: dict[str, Any]) -> None:
            box.update(result)
            done.set()

        deadline = time.monotonic() + CONNECT_WAIT
        while True:
            self.client.start()
            if self.client.status.connected or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        send(answer)
        if not done.wait(ANSWER_TIMEOUT + 1):
            return {"ok": False, "code": "no_answer", "message": "the agent did not answer"}
        return box

    def work(self, max_finished: int = 0) -> dict[str, Any]:
        with self._lock:
            cached = self._cached
            if cached is not None and time.monotonic() - cached[0] < FRESH:
                return cached[1]
        work = self._ask(lambda answer: self.client.my_work(answer, max_finished))
        for run in work.get("runs", []):
            run["notebook"] = relative_notebook(run.get("notebook", ""), self.root_dir)
        with self._lock:
            self._cached = (time.monotonic(), work)
        return work

    def cancel(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Stop a cell run (`tag`) or one operation of one of the user's sessions; the agent
        refuses another user's."""
        session = SessionKey(str(body.get("sessionId", "")), str(body.get("userId", "")))
        target: dict[str, Any] = {}
        for name in ("tag", "operationId"):
            if isinstance(body.get(name), str) and body[name]:
                target[name] = body[name]
        if not session.session_id or len(target) != 1:
            return cancel_result(
                "",
                code="bad_request",
                message="name a sessionId, its userId and one of tag or operationId",
            )
        if isinstance(body.get("appId"), str) and body["appId"]:
            target["appId"] = body["appId"]
        with self._lock:
            self._cached = None  # the next poll shows what the cancel did
        # the agent stops only sessions the stream follows: followed for the cancel, then left
        app = target.get("appId", "")
        self.client.follow([session], {session: app} if app else None)
        try:
            return self._ask(
                lambda answer: self.client.cancel(
                    session, target, answer, reason="cancelled from JupyterLab's Spark sidebar"
                )
            )
        finally:
            self.client.unfollow([session])

    def stop(self) -> None:
        self.client.stop()


class Link:
    """The stream for where the agent is now: the address and credential are looked up at each
    request (two small files at most), and the stream is replaced when they change — when the
    user's own server starts, restarts with new tokens or stops."""

    def __init__(self, root_dir: str = "", make: Callable[..., AgentLink] = AgentLink) -> None:
        self.root_dir = root_dir
        self._make = make
        self._lock = threading.Lock()
        self._key: tuple[str, str | None] | None = None
        self._link: AgentLink | None = None

    def get(self) -> AgentLink:
        key = (agent_url(), default_token())
        with self._lock:
            old = None
            if self._link is None or key != self._key:
                old, self._link, self._key = self._link, self._make(*key, self.root_dir), key
            link = self._link
        if old is not None:
            old.stop()
        return link

    def stop(self) -> None:
        with self._lock:
            link, self._link = self._link, None
        if link is not None:
            link.stop()


def read_log(path: Path, offset: int) -> dict[str, Any]:
    """The driver's log from byte `offset`, whole lines only, at most LOG_CHUNK bytes. A negative
    offset asks for its last LOG_TAIL bytes (from a line's start); an offset past the end means a
    new server's log, read from its start (`reset`)."""
    try:
        size = path.stat().st_size
    except OSError:
        return {"exists": False, "offset": 0, "size": 0, "lines": [], "reset": offset > 0}
    reset = offset > size
    tail = offset < 0 and size > LOG_TAIL
    start = 0 if reset or offset < 0 else offset
    if tail:
        start = size - LOG_TAIL - 1  # from the byte before, to tell whether a line starts there
    with path.open("rb") as f:
        f.seek(start)
        chunk = f.read(min(LOG_CHUNK, size - start))
    skip = chunk.find(b"\n") + 1 if tail else 0
    end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next request
    lines = chunk[skip:end].decode("utf-8", "replace").splitlines() if end > skip else []
    return {
        "exists": True,
        "offset": start + max(end, skip),
        "size": size,
        "lines": lines,
        "reset": reset,
    }


def _handlers(
    link: Link, own: OwnServer | None = None, targets: UiTargets | None = None
) -> list[tuple[str, type, dict[str, Any]]]:
    from jupyter_server.base.handlers import APIHandler
    from tornado import web

    def json_body(handler: APIHandler, limit: int) -> dict[str, Any]:
        if len(handler.request.body) > limit:
            raise web.HTTPError(413, f"a request body is at most {limit} bytes")
        try:
            body = json.loads(handler.request.body or b"{}")
        except ValueError as e:
            raise web.HTTPError(400, f"not JSON: {e}") from e
        if not isinstance(body, dict):
            raise web.HTTPError(400, "expected a JSON object")
        return body

    class WorkHandler(APIHandler):
        @web.authenticated
        async def get(self) -> None:
            try:
                n = int(self.get_query_argument("maxFinished", "0"))
            except ValueError:
                n = 0

            def ask() -> dict[str, Any]:
                work = link.get().work(n)
                if targets is not None:
                    targets.annotate(work)
                return work

            work = await asyncio.get_running_loop().run_in_executor(None, ask)
            self.finish(json.dumps(work))

    class CancelHandler(APIHandler):
        @web.authenticated
        async def post(self) -> None:
            body = json_body(self, MAX_BODY)
            result = await asyncio.get_running_loop().run_in_executor(
                None, lambda: link.get().cancel(body)
            )
            if not result.get("ok") and result.get("code") == "bad_request":
                self.set_status(400)
            self.finish(json.dumps(result))

    handlers: list[tuple[str, type, dict[str, Any]]] = [
        (f"{API}/work", WorkHandler, {}),
        (f"{API}/cancel", CancelHandler, {}),
    ]
    if own is None:
        return handlers

    def refused(handler: APIHandler, status: int, code: str, message: str) -> None:
        handler.set_status(status)
        handler.finish(json.dumps({"ok": False, "code": code, "message": message}))

    def answer(handler: APIHandler) -> None:
        bundles = own.bundles.list()
        handler.finish(
            json.dumps(
                {
                    "ok": True,
                    "server": own.status(),
                    "bundles": [b.to_json() for b in bundles],
                    "bundleErrors": dict(own.bundles.errors),
                }
            )
        )

    class ServerHandler(APIHandler):
        @web.authenticated
        def get(self) -> None:
            answer(self)

        @web.authenticated
        async def post(self) -> None:
            body = json_body(self, MAX_BODY)
            action, name = body.get("action"), body.get("bundle")
            if name is not None and not isinstance(name, str):
                raise web.HTTPError(400, "bundle is a name")
            run = {
                "start": lambda: own.start(name or "default"),
                "stop": lambda: own.stop(),
                "restart": lambda: own.restart(name),
            }.get(action if isinstance(action, str) else "")
            if run is None:
                raise web.HTTPError(400, "action is one of start, stop, restart")
            try:
                await asyncio.get_running_loop().run_in_executor(None, run)
            except BundleError as e:
                return refused(self, 400, "bad_bundle", str(e))
            except OwnServerError as e:
                return refused(self, 409, e.code, str(e))
            answer(self)

    class BundleHandler(APIHandler):
        @web.authenticated
        def put(self, name: str) -> None:
            body = json_body(self, MAX_BUNDLE_BODY)
            try:
                own.bundles.save(name, body)
            except BundleError as e:
                return refused(self, 400, "bad_bundle", str(e))
            answer(self)

        @web.authenticated
        def delete(self, name: str) -> None:
            try:
                own.bundles.delete(name)
            except BundleError as e:
                return refused(self, 404, "no_bundle", str(e))
            answer(self)

    class LogHandler(APIHandler):
        @web.authenticated
        async def get(self) -> None:
            try:
                offset = int(self.get_query_argument("offset", "-1"))
            except ValueError as e:
                raise web.HTTPError(400, "offset is a byte offset") from e
            path = Path(own.status()["driverLog"])
            tail = await asyncio.get_running_loop().run_in_executor(None, read_log, path, offset)
            self.finish(json.dumps({"ok": True, "path": str(path), **tail}))

    return [
        *handlers,
        (f"{API}/server", ServerHandler, {}),
        (f"{API}/server/log", LogHandler, {}),
        (f"{API}/bundles/([^/]+)", BundleHandler, {}),
    ]


def load(serverapp: Any) -> None:
    """Adds the endpoints to a Jupyter server."""
    from jupyter_server.utils import url_path_join

    root = getattr(serverapp, "root_dir", "") or ""
    link = Link(root)
    own = None
    if os.environ.get("SPARKSCOPE_OWN_SERVER", "on").strip().lower() not in ("off", "0", "no"):
        own = OwnServer(Bundles())
        # a server started from the sidebar does not outlive the Jupyter server
        atexit.register(own.close)
    base = serverapp.web_app.settings["base_url"]
    targets = UiTargets(
        mode_of(os.environ.get("SPARKSCOPE_UI_PROXY")), own, lambda: link.get().work()
    )
    routes = _handlers(link, own, targets)
    if targets.mode != "off":
        try:
            from . import uiproxy

            routes += uiproxy.handlers(targets)
            serverapp.log.info(
                "sparkscope: Spark's UI (%s) through %s%s/<app>/",
                targets.mode,
                base,
                uiproxy.PREFIX,
            )
        except ImportError:
            targets.mode = "off"
            serverapp.log.warning(
                "sparkscope: no Spark UI proxy: jupyter-server-proxy is not installed "
                "(pip install 'sparkscope[lab]')"
            )
    serverapp.web_app.add_handlers(
        ".*$", [(url_path_join(base, path), handler, kw) for path, handler, kw in routes]
    )
    serverapp.log.info("sparkscope: Spark sidebar endpoints at %s%s/", base, API)
