"""A real Prometheus scraping what the tests point it at, its query API, and where promtool is."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Self

import requests

from .service import Service
from .util import LOOPBACK, free_port, wait_until


def prometheus_binary() -> Path | None:
    """PROMETHEUS_BIN if set, else `prometheus` on PATH (Debian's `prometheus` package)."""
    import shutil

    env = os.environ.get("PROMETHEUS_BIN")
    found = env if env else shutil.which("prometheus")
    return Path(found) if found and Path(found).is_file() else None


def promtool_binary() -> Path | None:
    """PROMTOOL_BIN if set, else `promtool` on PATH (shipped with Debian's `prometheus`)."""
    import shutil

    env = os.environ.get("PROMTOOL_BIN")
    found = env if env else shutil.which("promtool")
    return Path(found) if found and Path(found).is_file() else None


class PromQLError(RuntimeError):
    """Prometheus answered a query with an error (bad expression, bad parameter)."""


class Prometheus(Service):
    """A Prometheus server on a free loopback port with its TSDB under `<work_dir>/data`,
    logging to `<work_dir>/prometheus.log`, scraping `scrape_configs` (Prometheus's own
    `scrape_configs` entries; see `scrape_job`). The config is written as JSON, which is YAML."""

    def __init__(
        self,
        binary: Path,
        work_dir: Path,
        scrape_configs: Iterable[Mapping[str, Any]],
        *,
        scrape_interval: str = "1s",
        startup_timeout: float = 60.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self.binary = Path(binary)
        self.work_dir = Path(work_dir)
        self.scrape_configs = [dict(c) for c in scrape_configs]
        self.scrape_interval = scrape_interval
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.port = 0
        self.config_path = self.work_dir / "prometheus.yml"
        self.log_path = self.work_dir / "prometheus.log"
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    @staticmethod
    def scrape_job(job: str, target: str, metrics_path: str = "/metrics") -> dict[str, Any]:
        return {
            "job_name": job,
            "metrics_path": metrics_path,
            "static_configs": [{"targets": [target]}],
        }

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        return [
            str(self.binary),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.work_dir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--storage.tsdb.retention.time=1d",
        ]

    def start(self) -> Self:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        interval = self.scrape_interval
        config = {
            "global": {
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "evaluation_interval": interval,
            },
            "scrape_configs": self.scrape_configs,
        }
        self.config_path.write_text(json.dumps(config, indent=1) + "\n")
        self._start_service()
        return self

    what = "prometheus"

    def _pick_ports(self) -> None:
        self.port = free_port()

    def _ready(self) -> bool:
        return requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200

    def api(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET `/api/v1/<path>` and return its `data`; raises PromQLError with Prometheus's
        own message when it answers with an error."""
        resp = requests.get(f"{self.url}/api/v1/{path.lstrip('/')}", params=params, timeout=30)
        try:
            body = resp.json()
        except ValueError:
            resp.raise_for_status()
            raise
        if body.get("status") != "success":
            raise PromQLError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """An instant query at `at` (Unix seconds; now if None): the vector's samples, each
        `{"metric": {...}, "value": [t, "v"]}` (a scalar or string comes back as one sample)."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def label_values(
        self, label: str, match: str, start: float | None = None, end: float | None = None
    ) -> list[str]:
        """The values of `label` on series matching `match` (what Grafana's label_values()
        variable asks for)."""
        params: dict[str, Any] = {"match[]": match}
        if start is not None:
            params["start"] = f"{start:.3f}"
        if end is not None:
            params["end"] = f"{end:.3f}"
        return self.api(f"label/{label}/values", params)

    def targets(self) -> list[dict]:
        return self.api("targets")["activeTargets"]

    def wait_target_up(self, job: str, timeout: float = 60.0) -> dict:
        """Wait until the job's target has been scraped successfully; return the target."""

        def up() -> dict | None:
            for t in self.targets():
                if t.get("labels", {}).get("job") == job and t.get("health") == "up":
                    return t
            return None

        try:
            return wait_until(up, timeout, 0.3, f"prometheus to scrape job {job}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; targets: {self.targets()}") from exc
