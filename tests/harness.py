"""Process harness for whole-system tests: a real Spark Connect server, the sparkscope agent, and
the REST calls that read Spark's own view of an application.

Shared by the end-to-end tests, the demo script and the benchmarks, so it depends on the standard
library and `requests` only (pyspark is imported lazily by `connect_session`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Self, TypeVar

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
LISTENER_CLASS = "io.sparkscope.listener.SparkscopeListener"
CONNECT_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
LOOPBACK = "127.0.0.1"

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

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# small helpers


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago (bind to port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = LOOPBACK) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(
    pred: Callable[[], T],
    timeout: float,
    interval: float = 0.25,
    desc: str = "condition",
    retry_on: tuple[type[BaseException], ...] = (OSError, ValueError),
) -> T:
    """Call `pred` until it returns something truthy and return that; raise TimeoutError after
    `timeout` seconds. `retry_on` exceptions (connection refused, HTTP errors, a half-written JSON
    body) count as "not yet"; the last one is chained to the TimeoutError. Others propagate."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = pred()
            if value:
                return value
        except retry_on as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {desc}") from last_exc
        time.sleep(interval)


def tail(path: Path, lines: int = 60) -> str:
    """The last `lines` lines of a (log) file, or a note that it does not exist."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))
            data = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"<{path} does not exist>"
    return "\n".join(data.splitlines()[-lines:])


def spark_home() -> Path:
    env = os.environ.get("SPARK_HOME")
    if env:
        return Path(env)
    import pyspark  # lazy: only needed when SPARK_HOME is not set

    return Path(pyspark.__file__).resolve().parent


def _stop_process_group(proc: subprocess.Popen, grace: float) -> int | None:
    """SIGTERM the process group (so shutdown hooks run), then SIGKILL after `grace` seconds."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return proc.wait()
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return proc.wait(timeout=30)


PORT_ATTEMPTS = 3


class _PortTaken(RuntimeError):
    """A process exited at startup because one of its free ports was taken meanwhile."""


def _free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return list(ports)


def _raise_exit(what: str, code: int | None, log_path: Path, offset: int) -> None:
    with open(log_path, "rb") as f:
        f.seek(offset)
        output = f.read().decode("utf-8", errors="replace")
    msg = f"{what} exited with {code} at startup; log {log_path}:\n{tail(log_path)}"
    if "address already in use" in output.lower() or "BindException" in output:
        raise _PortTaken(msg)
    raise RuntimeError(msg)


class _Service:
    """A server process of the tests, in its own process group (so stop() signals all of it),
    its output appended to `log_path`. `_start_service()` picks free ports, launches, and waits
    until `_ready()` answers; when a port was taken between our probe and the server's bind it
    tries again on new ports. `stop()` is idempotent: SIGTERM to the group, then SIGKILL."""

    what = "server"
    poll_interval = 0.2
    log_path: Path
    work_dir: Path
    startup_timeout: float
    stop_timeout: float = 15.0
    proc: subprocess.Popen | None = None
    returncode: int | None = None

    def _pick_ports(self) -> None:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> Any:
        """Something truthy once the server serves; exceptions count as "not yet"."""
        raise NotImplementedError

    def _environment(self) -> dict[str, str] | None:
        return None  # the test's own

    def _cwd(self) -> Path:
        return self.work_dir

    def _shown_command(self, cmd: list[str]) -> str:
        return " ".join(cmd)

    def start(self) -> Self:
        raise NotImplementedError

    def _start_service(self) -> Any:
        """Launches and waits until ready; returns what `_ready()` answered."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                return self._launch()
            except _PortTaken:
                if attempt == PORT_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _launch(self) -> Any:
        self._pick_ports()
        cmd = self.command()
        self.returncode = None
        with open(self.log_path, "ab") as log:
            log.write(("$ " + self._shown_command(cmd) + "\n").encode())
            log.flush()
            log_offset = log.tell()
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._environment(),
                cwd=self._cwd(),
                start_new_session=True,  # own process group: stop() signals all of it
            )

        def probe() -> Any:
            assert self.proc is not None
            if self.proc.poll() is not None:
                _raise_exit(self.what, self.proc.returncode, self.log_path, log_offset)
            return self._ready()

        try:
            return wait_until(probe, self.startup_timeout, self.poll_interval, self.what)
        except TimeoutError as exc:
            self.stop()
            raise TimeoutError(f"{exc}; log {self.log_path}:\n{tail(self.log_path)}") from exc
        except BaseException:
            self.stop()
            raise

    def stop(self) -> int | None:
        """Stops the process group (idempotent) and returns its exit code."""
        if self.proc is not None and self.returncode is None:
            self.returncode = _stop_process_group(self.proc, self.stop_timeout)
        return self.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# where the pieces under test live


def listener_jar() -> Path | None:
    """The listener jar: SPARKSCOPE_LISTENER_JAR, else the one installed with the agent binary
    (`sparkscope listener-jar`: the wheel's, what users get), else listener-jar/build.sh's."""
    env = os.environ.get("SPARKSCOPE_LISTENER_JAR")
    if env:
        return Path(env) if Path(env).is_file() else None
    binary = agent_binary()
    if binary is not None:
        out = subprocess.run(
            [str(binary), "listener-jar"], check=False, capture_output=True, text=True, timeout=30
        )
        if out.returncode == 0 and Path(out.stdout.strip()).is_file():
            return Path(out.stdout.strip())
    path = REPO_ROOT / "listener-jar" / "target" / "sparkscope-listener.jar"
    return path if path.is_file() else None


def agent_binary() -> Path | None:
    """SPARKSCOPE_BIN if set, else the `sparkscope` the wheel installed in .venv (what users
    get), else a cargo build's target/release or target/debug."""
    env = os.environ.get("SPARKSCOPE_BIN")
    if env:
        return Path(env) if Path(env).is_file() else None
    installed = REPO_ROOT / ".venv" / "bin" / "sparkscope"
    if installed.is_file():
        return installed
    for profile in ("release", "debug"):
        path = REPO_ROOT / "target" / profile / "sparkscope"
        if path.is_file():
            return path
    return None


# ---------------------------------------------------------------------------------------------
# Spark's monitoring REST API


def rest_get(base_url: str, path: str, params: Mapping[str, Any] | None = None) -> Any:
    """GET `<base_url>/api/v1/<path>` and decode the JSON body; raises on a non-2xx answer."""
    resp = requests.get(f"{base_url}/api/v1/{path.lstrip('/')}", params=params, timeout=10)
    resp.raise_for_status()
    return resp.json()


def spark_jobs(ui_url: str, app_id: str, status: str | None = None) -> list[dict]:
    """`/applications/{app}/jobs` (JobData list, newest first), optionally filtered by status."""
    params = {"status": status} if status else None
    return rest_get(ui_url, f"applications/{app_id}/jobs", params)


def connect_operations(ui_url: str, app_id: str, page: int = 500) -> list[dict]:
    """`/applications/{app}/connect/operations` (Spark 4.3+), all pages."""
    ops: list[dict] = []
    while True:
        batch = rest_get(
            ui_url,
            f"applications/{app_id}/connect/operations",
            {"offset": len(ops), "length": page},
        )
        ops.extend(batch)
        if len(batch) < page:
            return ops


def connect_sessions(ui_url: str, app_id: str, page: int = 500) -> list[dict]:
    """`/applications/{app}/connect/sessions` (Spark 4.3+), all pages."""
    sessions: list[dict] = []
    while True:
        batch = rest_get(
            ui_url,
            f"applications/{app_id}/connect/sessions",
            {"offset": len(sessions), "length": page},
        )
        sessions.extend(batch)
        if len(batch) < page:
            return sessions


# ---------------------------------------------------------------------------------------------
# Spark Connect server


class SparkConnectServer(_Service):
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
        self.grpc_port, self.ui_port = _free_ports(2)

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

    return SparkSession.builder.remote(url).create()


# ---------------------------------------------------------------------------------------------
# sparkscope agent


class Agent(_Service):
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
        return cmd + self.extra_args

    what = "sparkscope agent"

    def start(self) -> Self:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._start_service()
        return self

    def _pick_ports(self) -> None:
        # A restart keeps the addresses: the listener's spark.sparkscope.agent names them.
        if not self.ingest_port:
            self.ingest_port, self.http_port, self.grpc_port = _free_ports(3)

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


# ---------------------------------------------------------------------------------------------
# Spark's History Server


class SparkscopeServer(_Service):
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
        ports = _free_ports(5)
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


class HistoryServer(_Service):
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


# ---------------------------------------------------------------------------------------------
# JupyterLab


def venv_bin() -> Path:
    """The directory of the Python running the tests (the venv's bin/), where `jupyter` lives."""
    import sys

    return Path(sys.executable).parent


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, from /proc/<pid>/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name is in parentheses and may contain spaces: split after the last ')'
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[19])


def _descendants(pid: int) -> list[tuple[int, int]]:
    """(pid, start time) of every live process below `pid` (children, grandchildren, …)."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append((int(entry.name), stat[1]))
    found: list[tuple[int, int]] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def _kill_survivors(procs: Iterable[tuple[int, int]]) -> None:
    """SIGKILL those of `procs` still alive; the start time guards against a reused pid."""
    for pid, started in procs:
        stat = _proc_stat(pid)
        if stat is not None and stat[1] == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class JupyterLab(_Service):
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
        survivors = _descendants(self.proc.pid)
        if self.proc.poll() is None:
            headers = {"Authorization": f"token {self.token}"}
            try:
                for kernel in self.kernels():
                    requests.delete(
                        f"{self.url}/api/kernels/{kernel['id']}", headers=headers, timeout=30
                    )
            except (OSError, ValueError):
                pass  # the server is going down anyway; the sweep below catches the kernels
        self.returncode = _stop_process_group(self.proc, self.stop_timeout)
        _kill_survivors(survivors)
        return self.returncode


# ---------------------------------------------------------------------------------------------
# Prometheus


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


class Prometheus(_Service):
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


# ---------------------------------------------------------------------------------------------
# JupyterHub


def configurable_http_proxy() -> Path | None:
    """JupyterHub's proxy, installed from the npm registry by scripts/setup.sh."""
    path = REPO_ROOT / ".venv" / "chp" / "node_modules" / ".bin" / "configurable-http-proxy"
    return path if path.exists() else None


class JupyterHub(_Service):
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
        self.proxy_port, self.hub_port, self.proxy_api_port = _free_ports(3)
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
