"""Spark's History Server and `sparkscope replay`: two readers of the same event log."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Self

import requests

from .service import Service
from .util import LOOPBACK, free_port, spark_home, wait_until


class HistoryServer(Service):
    """Spark's History Server in the foreground on a free loopback port, reading `log_dir`,
    logging to `<work_dir>/history-server.log`."""

    def __init__(self, log_dir: Path, work_dir: Path, startup_timeout: float = 180.0) -> None:
        self.log_dir = Path(log_dir)
        self.work_dir = Path(work_dir)
        self.startup_timeout = startup_timeout
        self.port = 0
        self.log_path = self.work_dir / "history-server.log"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    what = "Spark History Server"

    def start(self) -> Self:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._start_service()
        return self

    def _pick_ports(self) -> None:
        self.port = free_port()
        (self.work_dir / "history-server.conf").write_text(
            f"spark.history.fs.logDirectory={self.log_dir.resolve().as_uri()}\n"
            f"spark.history.ui.port={self.port}\n"
            "spark.history.fs.update.interval=1s\n"
        )

    def command(self) -> list[str]:
        return [
            str(spark_home() / "bin" / "spark-class"),
            "org.apache.spark.deploy.history.HistoryServer",
            "--properties-file",
            str(self.work_dir / "history-server.conf"),
        ]

    def _environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "SPARK_HOME": str(spark_home()),
            "SPARK_LOCAL_IP": LOOPBACK,
            "SPARK_CONF_DIR": str(self.work_dir),
        }

    def _ready(self) -> bool:
        return requests.get(f"{self.url}/api/v1/applications", timeout=5).status_code == 200

    def get(self, path: str, timeout: float = 600) -> Any:
        """GET `/api/v1/<path>`; the first request for an application replays its whole log."""
        resp = requests.get(f"{self.url}/api/v1/{path.lstrip('/')}", timeout=timeout)
        resp.raise_for_status()
        return resp.json()

    def wait_listed(self, app_id: str) -> None:
        def listed() -> bool:
            return any(a["id"] == app_id for a in self.get("applications", timeout=10))

        wait_until(listed, self.startup_timeout, 0.2, f"history server to list {app_id}")


def replay(binary: Path, path: Path, timeout: float = 120.0) -> dict:
    """`sparkscope replay <path> --format json`, decoded. Raises with stderr on failure."""
    proc = subprocess.run(
        [str(binary), "replay", str(path), "--format", "json"],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"sparkscope replay {path} exited with {proc.returncode}:\n{proc.stderr[-4000:]}"
        )
    return json.loads(proc.stdout)
