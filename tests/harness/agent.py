"""The sparkscope agent (`sparkscope serve`) and its JSON API as an operator reads it."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Self

import requests

from .service import Service
from .util import LOOPBACK, free_ports


class Agent(Service):
    """`sparkscope serve` on free loopback ports, logging to `<work_dir>/sparkscope-agent.log`."""

    def __init__(
        self,
        binary: Path,
        work_dir: Path,
        *,
        token: str | None = None,
        subscriber_token: str | None = None,
        admin_token: str | None = None,
        extra_args: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        tls: tuple[Path, Path] | None = None,
        startup_timeout: float = 60.0,
        stop_timeout: float = 15.0,
    ) -> None:
        import secrets

        # (certificate, key) in PEM: every socket of the agent speaks TLS with them.
        self.tls = tls
        self.binary = Path(binary)
        self.work_dir = Path(work_dir)
        self.token = token
        # What notebooks present on the stream (their SPARKSCOPE_TOKEN), when no other way of
        # identifying users is configured through `env` or `extra_args`.
        self.subscriber_token = subscriber_token or secrets.token_hex(16)
        # The JSON API's bearer token (an operator's view), and the operators' cancel token.
        self.api_token = secrets.token_hex(16)
        self.admin_token = admin_token
        self.grpc_port = 0
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.ingest_port = 0
        self.http_port = 0
        self.log_path = self.work_dir / "sparkscope-agent.log"
        self.run_history = self.work_dir / "run-history.jsonl"
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    @property
    def ingest_addr(self) -> str:
        """What the listener's `spark.sparkscope.agent` should be."""
        return f"{LOOPBACK}:{self.ingest_port}"

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{LOOPBACK}:{self.http_port}"

    @property
    def stream_url(self) -> str:
        """The WebSocket stream (a notebook's SPARKSCOPE_URL)."""
        scheme = "wss" if self.tls else "ws"
        return f"{scheme}://{LOOPBACK}:{self.http_port}/api/v1/stream"

    @property
    def verify(self) -> str | bool:
        """What `requests` should trust: the agent's own certificate when it has one."""
        return str(self.tls[0]) if self.tls else True

    @property
    def grpc_addr(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}"

    def command(self) -> list[str]:
        cmd = [
            str(self.binary),
            "serve",
            "--ingest",
            self.ingest_addr,
            "--http",
            f"{LOOPBACK}:{self.http_port}",
            "--grpc",
            self.grpc_addr,
        ]
        if self.tls:
            cmd += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        if "--run-history-file" not in self.extra_args:
            # the test's own, kept across its restarts; never the user's
            cmd += ["--run-history-file", str(self.run_history)]
        return cmd + self.extra_args

    what = "sparkscope agent"

    def start(self) -> Self:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._start_service()
        return self

    def _pick_ports(self) -> None:
        # A restart keeps the addresses: the listener's spark.sparkscope.agent names them.
        if not self.ingest_port:
            self.ingest_port, self.http_port, self.grpc_port = free_ports(3)

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM killer would: no shutdown, no goodbye to anyone."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.returncode = self.proc.wait(timeout=30)

    def restart(self) -> Self:
        """A new agent process on the same addresses (after `kill()` or `stop()`)."""
        self.stop()
        self._start_service()
        return self

    def _environment(self) -> dict[str, str]:
        # Secrets go in the environment, never on the command line (which `ps` shows to anyone).
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKSCOPE_")}
        env.update(
            NO_COLOR="1",
            SPARKSCOPE_SUBSCRIBER_TOKEN=self.subscriber_token,
            SPARKSCOPE_API_TOKEN=self.api_token,
        )
        if self.token:
            env["SPARKSCOPE_LISTENER_TOKEN"] = self.token
        if self.admin_token:
            env["SPARKSCOPE_ADMIN_TOKEN"] = self.admin_token
        env.update(self.extra_env)
        return env

    def _ready(self) -> bool:
        return requests.get(f"{self.url}/healthz", timeout=2, verify=self.verify).status_code == 200

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET a JSON path of the agent with the API token (an operator's view)."""
        resp = requests.get(
            f"{self.url}/{path.lstrip('/')}",
            params=params,
            timeout=10,
            headers={"Authorization": f"Bearer {self.api_token}"},
            verify=self.verify,
        )
        resp.raise_for_status()
        return resp.json()

    def applications(self) -> list[dict]:
        return self.get("api/v1/applications")["applications"]

    def application(self, app_id: str) -> dict | None:
        return next((a for a in self.applications() if a.get("id") == app_id), None)

    def jobs(self, app_id: str) -> list[dict]:
        app = self.application(app_id)
        return list(app.get("jobs", [])) if app else []
