"""JupyterLab from the venv, isolated from the machine's own Jupyter set-up, with its kernels
shut down and swept when it stops."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import requests

from .service import Service, descendants, kill_survivors, stop_process_group
from .util import LOOPBACK, free_port, venv_bin


class JupyterLab(Service):
    """`jupyter lab` from the venv on a free loopback port with a known token, serving `root_dir`,
    logging to `<work_dir>/jupyterlab.log`.

    Config, runtime, settings, workspace and IPython dirs live under `<work_dir>/jupyter-home`, so
    nothing of the machine's own Jupyter set-up (or an earlier run's open tabs) leaks in. `env` is
    added to the server's environment, which its kernels inherit: that is where SPARK_REMOTE,
    SPARKSCOPE_URL and SPARKSCOPE_TOKEN go. The window object exposes the app
    (`window.jupyterapp`) so browser tests can run JupyterLab commands instead of clicking.

    Kernels run in their own process groups (jupyter_client starts them with a new session), so
    leaving the context shuts them down through the REST API first, then stops the server's
    process group, then kills whatever descendant of the server is still alive.
    """

    def __init__(
        self,
        root_dir: Path,
        work_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        token: str | None = None,
        startup_timeout: float = 120.0,
        stop_timeout: float = 20.0,
    ) -> None:
        import secrets  # lazy like the rest of the optional pieces

        self.root_dir = Path(root_dir)
        self.work_dir = Path(work_dir)
        self.extra_env = dict(env or {})
        self.token = token or secrets.token_hex(16)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.port = 0
        self.log_path = self.work_dir / "jupyterlab.log"
        self.home = self.work_dir / "jupyter-home"
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def notebook_url(self, path: str) -> str:
        """The JupyterLab page that opens `path` (relative to root_dir), token included."""
        return f"{self.url}/lab/tree/{path}?token={self.token}"

    def notebook7_url(self, path: str) -> str:
        """The same notebook in Notebook 7's page."""
        return f"{self.url}/notebooks/{path}?token={self.token}"

    def command(self) -> list[str]:
        cmd = [
            str(venv_bin() / "jupyter"),
            "lab",
            "--no-browser",
            f"--ServerApp.ip={LOOPBACK}",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            f"--LabApp.user_settings_dir={self.home / 'lab-settings'}",
            f"--LabApp.workspaces_dir={self.home / 'lab-workspaces'}",
            "--LabApp.expose_app_in_browser=True",
            # Notebook 7 (the `notebook` package, served by the same server under /tree and
            # /notebooks) exposes its app the same way
            "--JupyterNotebookApp.expose_app_in_browser=True",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            # no PyPI queries from the extension manager, no shell in the browser
            "--LabApp.extension_manager=readonly",
            "--ServerApp.terminals_enabled=False",
        ]
        if os.geteuid() == 0:  # CI containers run as root; Jupyter refuses that by default
            cmd.append("--allow-root")
        return cmd

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # pyspark sets this in the process of the tests once they made a Connect session; a
        # kernel picks its own mode (classic unless its notebook asks for a remote)
        env.pop("SPARK_CONNECT_MODE_ENABLED", None)
        env.update(
            PATH=f"{venv_bin()}{os.pathsep}{env.get('PATH', '')}",
            JUPYTER_CONFIG_DIR=str(self.home / "config"),
            JUPYTER_RUNTIME_DIR=str(self.home / "runtime"),
            JUPYTER_DATA_DIR=str(self.home / "data"),
            IPYTHONDIR=str(self.home / "ipython"),
            JUPYTER_PLATFORM_DIRS="1",
        )
        env.update(self.extra_env)
        return env

    def start(self) -> Self:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.root_dir.mkdir(parents=True, exist_ok=True)
        # the "receive official Jupyter news?" toast would cover part of the page in screenshots
        labconfig = self.home / "config" / "labconfig"
        labconfig.mkdir(parents=True, exist_ok=True)
        (labconfig / "page_config.json").write_text(
            json.dumps(
                {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}
            )
        )
        self._start_service()
        return self

    what = "jupyter lab"
    poll_interval = 0.3

    def _pick_ports(self) -> None:
        self.port = free_port()

    def _environment(self) -> dict[str, str]:
        return self.environment()

    def _cwd(self) -> Path:
        return self.root_dir

    def _shown_command(self, cmd: list[str]) -> str:
        return " ".join(cmd).replace(self.token, "<token>")

    def _ready(self) -> bool:
        return self.get("api/status").get("started") is not None

    def get(self, path: str) -> Any:
        resp = requests.get(
            f"{self.url}/{path.lstrip('/')}",
            headers={"Authorization": f"token {self.token}"},
            timeout=10,
        )
        resp.raise_for_status()
        return resp.json()

    def kernels(self) -> list[dict]:
        return self.get("api/kernels")

    def stop(self) -> int | None:
        """Shut down the kernels, then the server (idempotent); return the server's exit code."""
        if self.proc is None or self.returncode is not None:
            return self.returncode
        survivors = descendants(self.proc.pid)
        if self.proc.poll() is None:
            headers = {"Authorization": f"token {self.token}"}
            try:
                for kernel in self.kernels():
                    requests.delete(
                        f"{self.url}/api/kernels/{kernel['id']}", headers=headers, timeout=30
                    )
            except (OSError, ValueError):
                pass  # the server is going down anyway; the sweep below catches the kernels
        self.returncode = stop_process_group(self.proc, self.stop_timeout)
        kill_survivors(survivors)
        return self.returncode
