"""`sparkscope server`: a Spark Connect server with the listener and the agent beside it, started
the way a user starts them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Self

import requests

from .service import Service
from .util import LOOPBACK, free_ports


class SparkscopeServer(Service):
    """`sparkscope server`: a Spark Connect server with the listener and the agent beside it, as
    a user starts them, on free loopback ports, its credentials in `home` (SPARKSCOPE_HOME).
    Ready once it printed its banner; `stop()` is what Ctrl-C does (sparkscope stops Spark)."""

    what = "sparkscope server"
    poll_interval = 0.5

    def __init__(
        self,
        binary: Path,
        work_dir: Path,
        home: Path,
        *,
        master: str = "local[2]",
        conf: Mapping[str, str] | None = None,
        startup_timeout: float = 240.0,
        stop_timeout: float = 90.0,
    ) -> None:
        self.binary = Path(binary)
        self.work_dir = Path(work_dir)
        self.home = Path(home)
        self.master = master
        self.extra_conf = dict(conf or {})
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.log_path = self.work_dir / "sparkscope-server.log"
        self.connect_port = self.ui_port = self.http_port = self.ingest_port = 0
        self.grpc_port = 0
        self.banner = ""

    @property
    def remote(self) -> str:
        return f"sc://{LOOPBACK}:{self.connect_port}"

    def remote_url(self, **params: str) -> str:
        suffix = "".join(f";{k}={v}" for k, v in params.items())
        return f"{self.remote}/{suffix}" if suffix else self.remote

    @property
    def ui_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ui_port}"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def api_token(self) -> str:
        return (self.home / "api-token").read_text().strip()

    def start(self) -> Self:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.banner = self._start_service()
        return self

    def _pick_ports(self) -> None:
        ports = free_ports(5)
        self.connect_port, self.ui_port, self.http_port, self.ingest_port, self.grpc_port = ports

    def command(self) -> list[str]:
        cmd = [
            str(self.binary), "server", "--master", self.master,
            "--connect-port", str(self.connect_port),
            "--http", f"{LOOPBACK}:{self.http_port}",
            "--ingest", f"{LOOPBACK}:{self.ingest_port}",
            "--grpc", f"{LOOPBACK}:{self.grpc_port}",
        ]  # fmt: skip
        for key, value in {"spark.ui.port": str(self.ui_port), **self.extra_conf}.items():
            cmd += ["--conf", f"{key}={value}"]
        return cmd

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKSCOPE_")}
        env.update(SPARKSCOPE_HOME=str(self.home), NO_COLOR="1")
        return env

    def _ready(self) -> str | None:
        text = self.log_path.read_text(errors="replace")
        start = text.rfind("$ " + str(self.binary))
        text = text[start:]
        if "Ctrl-C stops both." not in text:
            return None
        log_line = re.compile(r"^(\$ |\d{4}-\d\d-\d\dT)")  # the command, the agent's logs
        return "\n".join(line for line in text.splitlines() if not log_line.match(line))

    def interrupt(self) -> int | None:
        """What a terminal's Ctrl-C does: SIGINT; sparkscope stops Spark, then itself."""
        if self.proc is not None and self.returncode is None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.returncode = self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                pass
        return self.stop()

    def applications(self) -> list[dict]:
        resp = requests.get(
            f"{self.url}/api/v1/applications",
            headers={"Authorization": f"Bearer {self.api_token}"},
            timeout=10,
        )
        resp.raise_for_status()
        return resp.json()["applications"]
