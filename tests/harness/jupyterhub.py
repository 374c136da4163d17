"""A real JupyterHub with its proxy (configurable-http-proxy), as the source of users' identities."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import requests

from .service import Service
from .util import LOOPBACK, REPO_ROOT, free_ports, venv_bin


def configurable_http_proxy() -> Path | None:
    """JupyterHub's proxy, installed from the npm registry by scripts/setup.sh."""
    path = REPO_ROOT / ".venv" / "chp" / "node_modules" / ".bin" / "configurable-http-proxy"
    return path if path.exists() else None


class JupyterHub(Service):
    """A real JupyterHub (from PyPI) with its proxy (configurable-http-proxy, from npm) on free
    loopback ports, its database and secrets under `work_dir`. Users log in with the dummy
    authenticator; a `tests` service holds `service_token` with the scopes to create users and
    tokens. `api_url` is what the agent's --jupyterhub-api-url takes."""

    def __init__(self, work_dir: Path, startup_timeout: float = 90.0) -> None:
        import secrets

        self.work_dir = Path(work_dir)
        self.startup_timeout = startup_timeout
        self.service_token = secrets.token_hex(24)
        self.proxy_port = self.hub_port = self.proxy_api_port = 0
        self.log_path = self.work_dir / "jupyterhub.log"
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    @property
    def api_url(self) -> str:
        return f"http://{LOOPBACK}:{self.hub_port}/hub/api"

    what = "JupyterHub"

    def start(self) -> Self:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._start_service()
        return self

    def _pick_ports(self) -> None:
        self.proxy_port, self.hub_port, self.proxy_api_port = free_ports(3)
        chp = configurable_http_proxy()
        if chp is None:
            raise RuntimeError("configurable-http-proxy is not installed (make setup)")
        w = self.work_dir
        (w / "jupyterhub_config.py").write_text(
            "c = get_config()  # noqa: F821\n"
            f"c.JupyterHub.ip = {LOOPBACK!r}\n"
            f"c.JupyterHub.port = {self.proxy_port}\n"
            f"c.JupyterHub.hub_ip = {LOOPBACK!r}\n"
            f"c.JupyterHub.hub_port = {self.hub_port}\n"
            f"c.ConfigurableHTTPProxy.command = [{str(chp)!r}]\n"
            f"c.ConfigurableHTTPProxy.api_url = 'http://{LOOPBACK}:{self.proxy_api_port}'\n"
            "c.JupyterHub.authenticator_class = 'dummy'\n"
            "c.Authenticator.allow_all = True\n"
            "c.JupyterHub.spawner_class = 'simple'\n"
            f"c.JupyterHub.db_url = 'sqlite:///{w / 'jupyterhub.sqlite'}'\n"
            f"c.JupyterHub.cookie_secret_file = {str(w / 'cookie_secret')!r}\n"
            f"c.JupyterHub.pid_file = {str(w / 'jupyterhub.pid')!r}\n"
            "c.JupyterHub.services = [{'name': 'tests', 'api_token': "
            f"{self.service_token!r}}}]\n"
            "c.JupyterHub.load_roles = [{'name': 'tests', 'scopes': "
            "['admin:users', 'tokens', 'read:users'], 'services': ['tests']}]\n"
        )

    def command(self) -> list[str]:
        return [str(venv_bin() / "jupyterhub"), "-f", str(self.work_dir / "jupyterhub_config.py")]

    def _environment(self) -> dict[str, str]:
        # the proxy's auth token, in the environment as JupyterHub wants it
        return {**os.environ, "CONFIGPROXY_AUTH_TOKEN": self.service_token[:32]}

    def _ready(self) -> bool:
        return requests.get(f"{self.api_url}/", timeout=2).status_code == 200

    def api(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        resp = requests.request(
            method,
            f"{self.api_url}/{path.lstrip('/')}",
            json=body,
            headers={"Authorization": f"token {self.service_token}"},
            timeout=10,
        )
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def user_token(self, user: str, expires_in: int | None = None) -> str:
        """A new API token owned by `user`, like the one JupyterHub gives its kernels."""
        if not self._has_user(user):
            self.api("POST", f"users/{user}")
        body: dict[str, Any] = {"note": "sparkscope tests"}
        if expires_in is not None:
            body["expires_in"] = expires_in
        return self.api("POST", f"users/{user}/tokens", body)["token"]

    def _has_user(self, user: str) -> bool:
        resp = requests.get(
            f"{self.api_url}/users/{user}",
            headers={"Authorization": f"token {self.service_token}"},
            timeout=10,
        )
        return resp.status_code == 200
