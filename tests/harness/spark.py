"""A real Spark Connect server, and the calls that read Spark's own view of an application: its
monitoring REST API (jobs, Connect operations and sessions) and Connect sessions from pyspark."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Self

import requests

from .service import Service
from .util import LOOPBACK, free_ports, port_open, spark_home

LISTENER_CLASS = "io.sparkscope.listener.SparkscopeListener"
CONNECT_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"

# The fields of Spark's REST JobData that sparkscope reports with the same names and meaning.
JOB_FIELDS = (
    "jobId",
    "status",
    "stageIds",
    "numTasks",
    "numActiveTasks",
    "numCompletedTasks",
    "numSkippedTasks",
    "numFailedTasks",
    "numKilledTasks",
    "numActiveStages",
    "numCompletedStages",
    "numSkippedStages",
    "numFailedStages",
    "jobTags",
    "submissionTime",
    "completionTime",
)


def rest_get(base_url: str, path: str, params: Mapping[str, Any] | None = None) -> Any:
    """GET `<base_url>/api/v1/<path>` and decode the JSON body; raises on a non-2xx answer."""
    resp = requests.get(f"{base_url}/api/v1/{path.lstrip('/')}", params=params, timeout=10)
    resp.raise_for_status()
    return resp.json()


def spark_jobs(ui_url: str, app_id: str, status: str | None = None) -> list[dict]:
    """`/applications/{app}/jobs` (JobData list, newest first), optionally filtered by status."""
    params = {"status": status} if status else None
    return rest_get(ui_url, f"applications/{app_id}/jobs", params)


def _all_pages(ui_url: str, path: str, page: int) -> list[dict]:
    """Every item of a paged Spark REST list (`offset`/`length`)."""
    items: list[dict] = []
    while True:
        batch = rest_get(ui_url, path, {"offset": len(items), "length": page})
        items.extend(batch)
        if len(batch) < page:
            return items


def connect_operations(ui_url: str, app_id: str, page: int = 500) -> list[dict]:
    """`/applications/{app}/connect/operations` (Spark 4.3+), all pages."""
    return _all_pages(ui_url, f"applications/{app_id}/connect/operations", page)


def connect_sessions(ui_url: str, app_id: str, page: int = 500) -> list[dict]:
    """`/applications/{app}/connect/sessions` (Spark 4.3+), all pages."""
    return _all_pages(ui_url, f"applications/{app_id}/connect/sessions", page)


class SparkConnectServer(Service):
    """A Spark Connect server (`spark-submit --class …SparkConnectServer`, `local[N]`) on
    loopback, on free ports, logging to `<work_dir>/spark-connect-server.log`.

    With `listener_jar` the sparkscope listener is loaded through --jars and spark.extraListeners
    and pointed at `agent_addr` with `token`. With `event_log_dir` event logging is on; rolling and
    compression keep Spark's defaults unless `event_log_rolling` / `event_log_compress` say
    otherwise. Leaving the context stops the process group with SIGTERM first, so the shutdown hook
    stops the SparkContext and the event log is finalized.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        listener_jar: Path | None = None,
        agent_addr: str | None = None,
        token: str | None = None,
        event_log_dir: Path | None = None,
        event_log_rolling: bool | None = None,
        event_log_compress: bool | None = None,
        master: str = "local[2]",
        conf: Mapping[str, str] | None = None,
        startup_timeout: float = 180.0,
        stop_timeout: float = 60.0,
        app_id_of: Callable[[], str | None] | None = None,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.listener_jar = listener_jar
        self.agent_addr = agent_addr
        self.token = token
        self.event_log_dir = Path(event_log_dir) if event_log_dir else None
        self.event_log_rolling = event_log_rolling
        self.event_log_compress = event_log_compress
        self.master = master
        self.extra_conf = dict(conf or {})
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        # How to learn the application's id when Spark's UI is off (spark.ui.enabled=false):
        # e.g. from the agent its listener reports to.
        self.app_id_of = app_id_of
        self.grpc_port = 0
        self.ui_port = 0
        self.app_id = ""
        self.log_path = self.work_dir / "spark-connect-server.log"
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    # -- addresses

    @property
    def grpc_url(self) -> str:
        """The `sc://` URL for pyspark; append `;user_id=…` etc. as needed."""
        return f"sc://{LOOPBACK}:{self.grpc_port}"

    @property
    def ui_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ui_port}"

    def remote_url(self, **params: str) -> str:
        """`sc://127.0.0.1:<port>/;k=v;…` for SparkSession.builder.remote()."""
        suffix = "".join(f";{k}={v}" for k, v in params.items())
        return f"{self.grpc_url}/{suffix}" if suffix else self.grpc_url

    # -- lifecycle

    def command(self) -> list[str]:
        conf: dict[str, str] = {
            "spark.connect.grpc.binding.address": LOOPBACK,
            "spark.connect.grpc.binding.port": str(self.grpc_port),
            "spark.connect.grpc.port.maxRetries": "0",
            "spark.driver.host": LOOPBACK,
            "spark.driver.bindAddress": LOOPBACK,
            "spark.ui.port": str(self.ui_port),
            "spark.port.maxRetries": "0",
            "spark.ui.showConsoleProgress": "false",
        }
        if self.event_log_dir is not None:
            conf["spark.eventLog.enabled"] = "true"
            conf["spark.eventLog.dir"] = self.event_log_dir.resolve().as_uri()
            if self.event_log_rolling is not None:
                conf["spark.eventLog.rolling.enabled"] = str(self.event_log_rolling).lower()
            if self.event_log_compress is not None:
                conf["spark.eventLog.compress"] = str(self.event_log_compress).lower()
        if self.listener_jar is not None:
            conf["spark.extraListeners"] = LISTENER_CLASS
            if self.agent_addr:
                conf["spark.sparkscope.agent"] = self.agent_addr

        conf.update(self.extra_conf)
        cmd = [
            str(spark_home() / "bin" / "spark-submit"),
            "--class",
            CONNECT_SERVER_CLASS,
            "--name",
            "Spark Connect server",
            "--master",
            self.master,
        ]
        if self.listener_jar is not None:
            cmd += ["--jars", str(self.listener_jar)]
        for key, value in conf.items():
            cmd += ["--conf", f"{key}={value}"]
        return cmd

    what = "Spark Connect server"
    poll_interval = 0.5

    def start(self) -> Self:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self.event_log_dir is not None:
            self.event_log_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "spark-conf").mkdir(exist_ok=True)
        self.app_id = self._start_service()
        return self

    def _pick_ports(self) -> None:
        self.grpc_port, self.ui_port = free_ports(2)

    def _environment(self) -> dict[str, str]:
        env = {
            **os.environ,
            "SPARK_HOME": str(spark_home()),
            "SPARK_LOCAL_IP": LOOPBACK,
            # isolates us from any conf in SPARK_HOME
            "SPARK_CONF_DIR": str(self.work_dir / "spark-conf"),
            "SPARK_LOG_DIR": str(self.work_dir),
        }
        env.pop("SPARKSCOPE_LISTENER_TOKEN", None)
        if self.listener_jar is not None and self.token:
            # The driver's environment, never its command line (which `ps` shows to anyone).
            env["SPARKSCOPE_LISTENER_TOKEN"] = self.token
        return env

    def _ready(self) -> str | None:
        if not port_open(self.grpc_port):
            return None
        if self.app_id_of is not None:
            return self.app_id_of()
        apps = rest_get(self.ui_url, "applications")
        return apps[0]["id"] if apps else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- what it produced

    def event_log_path(self) -> Path:
        """The application's event log: a rolling `eventlog_v2_<appId>/` directory or a single
        `<appId>[.<codec>]` file. Before stop() it may still carry `.inprogress`."""
        if self.event_log_dir is None:
            raise RuntimeError("event logging is off for this server")
        matches = sorted(p for p in self.event_log_dir.iterdir() if self.app_id in p.name)
        if len(matches) != 1:
            raise RuntimeError(f"expected one event log for {self.app_id}, found {matches}")
        return matches[0]

    # -- REST shortcuts

    def jobs(self, status: str | None = None) -> list[dict]:
        return spark_jobs(self.ui_url, self.app_id, status)

    def connect_operations(self) -> list[dict]:
        return connect_operations(self.ui_url, self.app_id)

    def connect_sessions(self) -> list[dict]:
        return connect_sessions(self.ui_url, self.app_id)

    def rest(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET `/api/v1/applications/<app>/<path>`."""
        return rest_get(self.ui_url, f"applications/{self.app_id}/{path.lstrip('/')}", params)


def connect_session(url: str):  # -> pyspark.sql.connect.session.SparkSession
    """A new Spark Connect session for `url` (`sc://…/;user_id=…`).

    `SparkSession.builder.remote(url).getOrCreate()` returns the process's default session once
    one exists, whatever the URL says (so a second user would silently reuse the first user's
    session); `create()` always opens a new one.
    """
    from pyspark.sql import SparkSession  # lazy: heavy import, only for callers that need it

    session = SparkSession.builder.remote(url).create()
    _opened.append(session)
    return session


_opened: list = []


def close_connect_sessions() -> None:
    """Closes the channel of every session `connect_session` opened, without a request: pyspark's
    exit handler would otherwise ask each server to clean up, and retry for minutes against one
    a test killed."""
    import contextlib

    while _opened:
        session = _opened.pop()
        with contextlib.suppress(Exception):
            if not session.client.is_closed:
                session.client.close()
