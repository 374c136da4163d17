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
  the agent's `CancelResult`.

The agent is found as kernels find it without a Connect session to ask: SPARKSCOPE_URL, else the
address `sparkscope server` left in the user's sparkscope directory, else the default.
"""

from __future__ import annotations

import asyncio
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
from .sessions import SessionKey

API = "sparkscope/api"
ANSWER_TIMEOUT = 5.0  # seconds for the agent's answer
CONNECT_WAIT = 3.0  # seconds a first request waits for the stream to come up
FRESH = 0.5  # seconds a MyWork answer is served again to the next poll
MAX_BODY = 4096  # bytes of a cancel request


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


def _handlers(link: AgentLink) -> list[tuple[str, type, dict[str, Any]]]:
    from jupyter_server.base.handlers import APIHandler
    from tornado import web

    class WorkHandler(APIHandler):
        @web.authenticated
        async def get(self) -> None:
            try:
                n = int(self.get_query_argument("maxFinished", "0"))
            except ValueError:
                n = 0
            work = await asyncio.get_running_loop().run_in_executor(None, link.work, n)
            self.finish(json.dumps(work))

    class CancelHandler(APIHandler):
        @web.authenticated
        async def post(self) -> None:
            if len(self.request.body) > MAX_BODY:
                raise web.HTTPError(413, "a cancel request is at most 4 KiB")
            try:
                body = json.loads(self.request.body or b"{}")
            except ValueError as e:
                raise web.HTTPError(400, f"not JSON: {e}") from e
            if not isinstance(body, dict):
                raise web.HTTPError(400, "expected a JSON object")
            result = await asyncio.get_running_loop().run_in_executor(None, link.cancel, body)
            if not result.get("ok") and result.get("code") == "bad_request":
                self.set_status(400)
            self.finish(json.dumps(result))

    return [(f"{API}/work", WorkHandler, {}), (f"{API}/cancel", CancelHandler, {})]


def load(serverapp: Any) -> None:
    """Adds the endpoints to a Jupyter server."""
    from jupyter_server.utils import url_path_join

    root = getattr(serverapp, "root_dir", "") or ""
    link = AgentLink(agent_url(), default_token(), root)
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(
        ".*$",
        [(url_path_join(base, path), handler, kw) for path, handler, kw in _handlers(link)],
    )
    serverapp.log.info("sparkscope: Spark sidebar endpoints at %s%s/", base, API)
