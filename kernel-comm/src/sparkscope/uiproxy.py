"""Spark's web UI through the Jupyter server, at `<base>sparkscope/ui/<app>/`, behind the Jupyter
server's own login.

Built on jupyter-server-proxy's ProxyHandler: it forwards each request to the UI and tells the UI
where it is mounted (`X-Forwarded-Context: <base>sparkscope/ui/<app>`), which Spark's UI puts in
front of every link, asset and redirect it writes (`UIUtils.uiRoot`, the header Apache Knox
sends), so no `spark.ui.proxyBase` is needed and nothing is rewritten here.

Which UIs (`SPARKSCOPE_UI_PROXY`):

- `own` (the default): the user's own server's, started from the sidebar;
- `all`: also those of the applications the agent lists for this user's sessions. A shared
  Connect server's UI shows every user's jobs, so only an operator turns this on;
- `off`: none.

An application id the proxy does not resolve is a 404, whatever it names.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .ownserver import OwnServer

PREFIX = "sparkscope/ui"
MODES = ("own", "all", "off")
APP_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
ASK_TIMEOUT = 2.0  # seconds for a UI's /api/v1/applications
OWN_APP_TTL = 10.0  # seconds the own server's application id is trusted without asking again


def mode_of(value: str | None) -> str:
    """The proxy's mode from SPARKSCOPE_UI_PROXY; an unknown value turns it off (fails closed)."""
    mode = (value or "own").strip().lower()
    return mode if mode in MODES else "off"


def http_target(url: str) -> tuple[str, int] | None:
    """`(host, port)` of an http UI address; None for anything else (https UIs are not proxied:
    the proxy speaks http to its targets)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme != "http" or not parts.hostname:
        return None
    return parts.hostname, port or 80


def ask_app_id(port: int) -> str | None:
    """The application id a local Spark UI serves, from its REST API."""
    url = f"http://127.0.0.1:{port}/api/v1/applications"
    try:
        with urllib.request.urlopen(url, timeout=ASK_TIMEOUT) as resp:
            apps = json.loads(resp.read(1 << 20))
    except (OSError, ValueError, urllib.error.URLError):
        return None
    if isinstance(apps, list) and apps and isinstance(apps[0], dict):
        app = apps[0].get("id")
        return app if isinstance(app, str) and APP_ID.fullmatch(app) else None
    return None


class UiTargets:
    """Where the UI of an application id is, if the proxy may serve it."""

    def __init__(
        self,
        mode: str,
        own: OwnServer | None,
        work: Callable[[], dict[str, Any]],
        ask: Callable[[int], str | None] = ask_app_id,
    ) -> None:
        self.mode = mode
        self._own = own
        self._work = work
        self._ask = ask
        self._lock = threading.Lock()
        self._own_app: tuple[float, int, str] | None = None  # (when, UI port, app id)

    def own_app(self) -> tuple[str, int] | None:
        """`(app id, UI port)` of the user's own server while it runs."""
        if self._own is None or self.mode == "off":
            return None
        status = self._own.status()
        port = status.get("uiPort")
        if status.get("state") != "running" or not isinstance(port, int):
            return None
        with self._lock:
            cached = self._own_app
        if cached and cached[1] == port and time.monotonic() - cached[0] < OWN_APP_TTL:
            return cached[2], port
        app = self._ask(port)
        if app is None:
            return None
        with self._lock:
            self._own_app = (time.monotonic(), port, app)
        return app, port

    def shared(self, work: dict[str, Any] | None = None) -> dict[str, tuple[str, int]]:
        """The user's applications whose UI the operator lets the proxy serve (mode `all`)."""
        if self.mode != "all":
            return {}
        found = {}
        for a in (work if work is not None else self._work()).get("applications") or []:
            target = http_target(str(a.get("uiLink") or ""))
            app = str(a.get("id") or "")
            if target and APP_ID.fullmatch(app):
                found[app] = target
        return found

    def resolve(self, app: str) -> tuple[str, int] | None:
        if self.mode == "off" or not APP_ID.fullmatch(app):
            return None
        own = self.own_app()
        if own and own[0] == app:
            return "127.0.0.1", own[1]
        return self.shared().get(app)

    def annotate(self, work: dict[str, Any]) -> None:
        """Marks each application of a MyWork answer the proxy serves with `uiProxy`, its path
        under the Jupyter server's base URL."""
        if self.mode == "off":
            return
        own = self.own_app()
        served = set(self.shared(work))
        if own:
            served.add(own[0])
        for a in work.get("applications") or []:
            if a.get("id") in served:
                a["uiProxy"] = f"{PREFIX}/{a['id']}/"


def mounted_location(location: str, mount: str, own_hosts: set[str]) -> str:
    """A redirect's Location under the proxy's mount point (`/<base>sparkscope/ui/<app>`): a
    path, or an absolute URL to one of `own_hosts`, becomes a path under it (unless it already
    is); a URL to any other host is left alone."""
    parts = urlsplit(location)
    if parts.scheme or parts.netloc:
        if parts.netloc not in own_hosts:
            return location
    elif not parts.path.startswith("/"):
        return location  # relative: the browser resolves it under the mount point already
    path = parts.path or "/"
    mount = mount.rstrip("/")
    if path != mount and not path.startswith(mount + "/"):
        path = mount + path
    return path + (f"?{parts.query}" if parts.query else "")


def handlers(targets: UiTargets) -> list[tuple[str, type, dict[str, Any]]]:
    """The proxy's route; needs jupyter-server-proxy (ImportError otherwise)."""
    from jupyter_server.utils import url_path_join
    from jupyter_server_proxy.handlers import AddSlashHandler, ProxyHandler
    from tornado import web

    class SparkUiHandler(ProxyHandler):
        """`<base>sparkscope/ui/<app>/<path>` → that application's UI at `/<path>`."""

        async def _target(self, app: str) -> tuple[str, int]:
            import asyncio

            found = await asyncio.get_running_loop().run_in_executor(None, targets.resolve, app)
            if found is None:
                raise web.HTTPError(404, f"no Spark UI of yours is served here as {app!r}")
            # what the UI is told it is mounted at (X-Forwarded-Context)
            self.proxy_base = f"{PREFIX}/{app}"
            return found

        async def _forward(self, app: str, path: str) -> None:
            host, port = await self._target(app)
            # jupyter-server-proxy checks the host against its allowlist; ours was resolved above
            self.host_allowlist = [host]
            await self.proxy(host, port, path or "/")

        def _rewrite_location_header(
            self, location: str, host: str, port: int, proxied_path: str
        ) -> str:
            # Spark's redirects (`/` → `/jobs/`) come back absolute, made by Jetty from the Host
            # header it was sent (ours), and sometimes already under the mount point: every
            # redirect to this server or to the UI itself stays under the mount point, once.
            return mounted_location(
                location,
                url_path_join(self.base_url, self.proxy_base),
                {self.request.host, f"{host}:{port}"},
            )

        async def http_get(self, app: str, path: str = "") -> None:
            await self._forward(app, path)

        async def post(self, app: str, path: str = "") -> None:
            await self._forward(app, path)

        async def head(self, app: str, path: str = "") -> None:
            await self._forward(app, path)

        async def put(self, app: str, path: str = "") -> None:
            raise web.HTTPError(405)

        async def delete(self, app: str, path: str = "") -> None:
            raise web.HTTPError(405)

        async def patch(self, app: str, path: str = "") -> None:
            raise web.HTTPError(405)

        async def options(self, app: str, path: str = "") -> None:
            raise web.HTTPError(405)

        async def open(self, app: str, path: str = "") -> None:
            raise web.HTTPError(404, "Spark's UI has no websockets")

    return [
        (rf"{PREFIX}/([A-Za-z0-9_.-]+)", AddSlashHandler, {}),
        (rf"{PREFIX}/([A-Za-z0-9_.-]+)(/.*)", SparkUiHandler, {}),
    ]
