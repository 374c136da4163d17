"""A user's own Spark Connect server, started from JupyterLab's sidebar (seed 001).

The Jupyter server extension runs at most one `sparkscope server` per Jupyter server — that is,
per user — on the user's behalf. What it starts is a named configuration bundle (master, memory,
confs, Maven packages), stored as JSON in the user's Jupyter config directory
(`<jupyter_config_dir>/sparkscope/bundles/<name>.json`). Notebooks attach to it with no
configuration, as to one started from a terminal: `sparkscope server` leaves the stream's URL and
token in the user's sparkscope directory, where kernels and the sidebar look.

Bundles come from the browser, so every field is checked before it reaches a command line, and
the confs the server sets itself, or that look like secrets (bundles are plain text), are refused.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import install

READY = "Spark Connect server  sc://"  # the line `sparkscope server` prints once it listens
MAX_FILE = 64 * 1024  # bytes of a stored bundle, and of the output read to find READY
MAX_BUNDLES = 100
TAIL_LINES = 40  # of the server's output, kept as the message when it fails
FLAG_ENV = ("SPARKSCOPE_SPARK_MASTER", "SPARKSCOPE_CONNECT_PORT")  # the bundle's flags win

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HOSTPORT = r"(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}"
_MASTER = re.compile(
    r"local|yarn|k8s://[!-~]+"
    r"|local\[(?:\*|[1-9][0-9]{0,3})(?:,[0-9]{1,4})?\]"
    r"|local-cluster\[[1-9][0-9]{0,3},[1-9][0-9]{0,3},[1-9][0-9]{0,6}\]"
    rf"|spark://{_HOSTPORT}(?:,{_HOSTPORT})*"
)
_MEMORY = re.compile(r"[1-9][0-9]{0,5}[kKmMgGtT]?")
_CONF_KEY = re.compile(r"spark\.[A-Za-z0-9_.\-]{1,200}")
_PACKAGE = re.compile(r"[A-Za-z0-9_.\-]+:[A-Za-z0-9_.\-]+:[A-Za-z0-9_.\-+]+")
_SECRET = re.compile(r"password|secret|token", re.IGNORECASE)
# confs `sparkscope server` sets (the listener, loopback binding) and those with a field of their
# own; `spark.jars` too, because spark-submit's `--jars` (the listener) would silently drop it
_RESERVED = {
    "spark.master": "use the master field",
    "spark.jars.packages": "use the packages field",
    "spark.driver.memory": "use the driverMemory field",
    "spark.executor.memory": "use the executorMemory field",
    "spark.jars": "the server sets it to its listener jar; use the packages field",
    "spark.extraListeners": "the server sets it to its listener",
    "spark.driver.host": "the server binds Spark to 127.0.0.1",
    "spark.driver.bindAddress": "the server binds Spark to 127.0.0.1",
}
_RESERVED_PREFIXES = ("spark.connect.grpc.binding.", "spark.sparkscope.")
_FIELDS = ("name", "master", "driverMemory", "executorMemory", "connectPort", "confs", "packages")


def _show(value: object) -> str:
    """A value for a message, bounded: bad input can be large."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class BundleError(ValueError):
    """A bundle that cannot be stored or started; `problems` names every bad field at once."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class OwnServerError(RuntimeError):
    """The server cannot do what was asked; `code` is for the sidebar, the text for the user."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _name_problem(name: object) -> str | None:
    if isinstance(name, str) and _NAME.fullmatch(name):
        return None
    return (
        "a bundle's name is 1–64 letters, digits, '.', '_' or '-', starting with a letter or "
        f"digit; got {_show(name)}"
    )


def _conf_problems(confs: object) -> list[str]:
    if not isinstance(confs, dict):
        return ["confs must be an object of Spark conf names to string values"]
    if len(confs) > 100:
        return [f"confs holds {len(confs)} entries; at most 100"]
    problems = []
    for key, value in confs.items():
        if not isinstance(key, str) or not _CONF_KEY.fullmatch(key):
            problems.append(f"conf {_show(key)} is not a Spark conf name (spark.…)")
        elif key in _RESERVED or key.startswith(_RESERVED_PREFIXES):
            why = _RESERVED.get(key, "the server sets it itself")
            problems.append(f"conf {key!r} is set by the server: {why}")
        elif _SECRET.search(key) and not key.lower().endswith("file"):
            # a key naming a file (spark.authenticate.secret.file) holds a path, not the secret
            problems.append(
                f"conf {key!r} looks like a secret; bundles are stored in plain text — put "
                "secrets in the server's environment or spark-defaults.conf instead"
            )
        elif not isinstance(value, str):
            problems.append(f"conf {key!r} must have a string value; got {_show(value)}")
        elif len(value) > 4096 or any(c in value for c in "\n\r\0"):
            problems.append(f"conf {key!r} has a value over 4096 characters or with a line break")
    return problems


@dataclass
class Bundle:
    """A named configuration for `sparkscope server`; memory sizes left empty are Spark's."""

    name: str
    master: str = "local[*]"
    driver_memory: str = ""
    executor_memory: str = ""
    connect_port: int = 15002
    confs: dict[str, str] = field(default_factory=dict)
    packages: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "master": self.master,
            "driverMemory": self.driver_memory,
            "executorMemory": self.executor_memory,
            "connectPort": self.connect_port,
            "confs": dict(self.confs),
            "packages": list(self.packages),
        }

    @classmethod
    def from_json(cls, name: str, obj: object) -> Bundle:
        """A checked bundle; BundleError lists every problem found."""
        problems = []
        if (p := _name_problem(name)) is not None:
            problems.append(p)
        if not isinstance(obj, dict):
            raise BundleError([*problems, "a bundle is a JSON object"])
        for key in obj:
            if key not in _FIELDS:
                problems.append(f"unknown field {_show(key)}; known: {', '.join(_FIELDS)}")
        if "name" in obj and obj["name"] != name:
            problems.append(f"name {_show(obj['name'])} differs from the bundle's {_show(name)}")
        master = obj.get("master", "local[*]")
        if not isinstance(master, str) or not master or len(master) > 200:
            problems.append("master must be a non-empty string of at most 200 characters")
        elif not _MASTER.fullmatch(master):
            problems.append(
                f"master {_show(master)} is not a Spark master (local[*], local[4], "
                "local-cluster[2,1,1024], spark://host:7077, yarn, k8s://…)"
            )
        memory = {}
        for key in ("driverMemory", "executorMemory"):
            memory[key] = value = obj.get(key, "")
            if not isinstance(value, str) or (value and not _MEMORY.fullmatch(value)):
                problems.append(f"{key} {_show(value)} is not a JVM size such as 2g or 512m")
        port = obj.get("connectPort", 15002)
        if isinstance(port, bool) or not isinstance(port, int) or not 1024 <= port <= 65535:
            problems.append(
                f"connectPort must be a whole number from 1024 to 65535; got {_show(port)}"
            )
        confs = obj.get("confs", {})
        problems += _conf_problems(confs)
        packages = obj.get("packages", [])
        if not isinstance(packages, list) or len(packages) > 50:
            problems.append("packages must be a list of at most 50 Maven coordinates")
        else:
            for package in packages:
                if not isinstance(package, str) or not _PACKAGE.fullmatch(package):
                    problems.append(
                        f"package {_show(package)} is not a Maven coordinate group:artifact:version"
                    )
        if problems:
            raise BundleError(problems)
        return cls(
            name, master, memory["driverMemory"], memory["executorMemory"], port, dict(confs),
            list(packages),
        )  # fmt: skip

    def args(self) -> list[str]:
        """The arguments of `sparkscope server` for this bundle."""
        args = ["server", "--master", self.master, "--connect-port", str(self.connect_port)]
        confs = []
        if self.driver_memory:
            confs.append(f"spark.driver.memory={self.driver_memory}")
        if self.executor_memory:
            confs.append(f"spark.executor.memory={self.executor_memory}")
        if self.packages:
            confs.append(f"spark.jars.packages={','.join(self.packages)}")
        confs += [f"{k}={v}" for k, v in sorted(self.confs.items())]
        for conf in confs:
            args += ["--conf", conf]
        return args


class Bundles:
    """The user's bundles, one JSON file each in `directory`; without any, a built-in `default`.
    `errors` holds, after `list()`, the files it skipped and why."""

    def __init__(self, directory: Path | None = None) -> None:
        if directory is None:
            from jupyter_core.paths import jupyter_config_dir

            directory = Path(jupyter_config_dir()) / "sparkscope" / "bundles"
        self.directory = directory
        self.errors: dict[str, str] = {}

    def _path(self, name: str) -> Path:
        if (p := _name_problem(name)) is not None:
            raise BundleError([p])
        return self.directory / f"{name}.json"

    def _read(self, path: Path) -> Bundle:
        try:
            with path.open("rb") as f:
                body = f.read(MAX_FILE + 1)
        except OSError as e:
            raise BundleError([f"cannot read {path}: {e.strerror}"]) from e
        if len(body) > MAX_FILE:
            raise BundleError([f"{path} is over {MAX_FILE // 1024} KiB"])
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError) as e:
            raise BundleError([f"{path} is not JSON: {e}"]) from e
        return Bundle.from_json(path.stem, obj)

    def _names(self) -> builtins.list[str]:
        try:
            return sorted(p.stem for p in self.directory.glob("*.json") if p.is_file())
        except OSError:
            return []

    def get(self, name: str) -> Bundle:
        path = self._path(name)
        if path.exists():
            return self._read(path)
        if name == "default":
            return Bundle("default")
        raise BundleError([f"no bundle named {name!r}"])

    def save(self, name: str, obj: object) -> Bundle:
        """Checks and stores a bundle, replacing the file at once (readers never see half)."""
        bundle = Bundle.from_json(name, obj)
        body = json.dumps(bundle.to_json(), indent=2).encode()
        if len(body) > MAX_FILE:
            raise BundleError([f"a bundle is at most {MAX_FILE // 1024} KiB as JSON"])
        path = self._path(name)
        if not path.exists() and len(self._names()) >= MAX_BUNDLES:
            raise BundleError([f"at most {MAX_BUNDLES} bundles; delete one first"])
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:  # mkstemp made it 0o600
                f.write(body)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return bundle

    def delete(self, name: str) -> None:
        try:
            self._path(name).unlink()
        except FileNotFoundError:
            raise BundleError([f"no bundle named {name!r}"]) from None

    def list(self) -> builtins.list[Bundle]:
        """The bundles by name; a file that does not parse is skipped and named in `errors`."""
        bundles, errors = [], {}
        for name in self._names():
            try:
                bundles.append(self._read(self.directory / f"{name}.json"))
            except BundleError as e:
                errors[name] = str(e)
        self.errors = errors
        return bundles or [Bundle("default")]


def _procs() -> Iterator[tuple[int, str, int, int]]:
    """(pid, state, parent, group) of every process, from Linux's /proc; nothing elsewhere."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
            state, ppid, pgrp = stat[stat.rfind(")") + 2 :].split()[:3]
            yield int(entry), state, int(ppid), int(pgrp)
        except (OSError, ValueError):
            continue


def _child_groups(pid: int) -> set[int]:
    """The process groups of `pid`'s children other than its own: where Spark runs."""
    ours = {os.getpgrp(), pid, 0, 1}
    return {g for _, _, ppid, g in _procs() if ppid == pid and g not in ours}


def _live_groups(groups: set[int]) -> set[int]:
    return {g for _, state, _, g in _procs() if g in groups and state != "Z"}


def _await_groups(groups: set[int], deadline: float) -> set[int]:
    """The groups with a live process at `deadline`, or sooner once there are none."""
    while (groups := _live_groups(groups)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return groups


def _killpg(group: int, sig: signal.Signals) -> None:
    try:
        os.killpg(group, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - MAX_FILE))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _ui_port(bundle: Bundle) -> int | None:
    """The port of the server's Spark UI: the bundle's `spark.ui.port`, else a free one; None
    when the bundle turns the UI off or names no usable port."""
    if bundle.confs.get("spark.ui.enabled", "true").strip().lower() == "false":
        return None
    given = bundle.confs.get("spark.ui.port")
    if given is not None:
        return int(given) if given.strip().isdigit() and 0 < int(given) < 65536 else None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OwnServer:
    """At most one `sparkscope server` child: started with a bundle, stopped with SIGTERM (it
    stops Spark, then drains its agent), killed only when it has not exited in `stop_timeout`
    (longer than the server's own 60 s for Spark). No call blocks for long but `stop(wait=True)`.
    """

    def __init__(
        self,
        bundles: Bundles,
        *,
        binary: Callable[[], Path] = install.binary,
        state_dir: Callable[[], Path] = install.user_dir,
        stop_timeout: float = 90.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.bundles = bundles
        self._binary = binary
        self._state_dir = state_dir
        self.stop_timeout = stop_timeout
        self._env = env
        self._lock = threading.Lock()
        self._state = "stopped"
        self._bundle: Bundle | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self._done = threading.Event()
        self._started_at_ms = 0
        self._message = ""
        self._ui_port: int | None = None

    def _out(self) -> Path:
        return self._state_dir() / "own-server.out"

    def start(self, name: str) -> dict[str, Any]:
        """Spawns the server with bundle `name` and returns at once, `starting`."""
        bundle = self.bundles.get(name)
        with self._lock:
            if self._proc is not None:
                raise OwnServerError(
                    "already_running",
                    f"the server is {self._state} with bundle {self._bundle and self._bundle.name!r}"
                    "; stop it first",
                )
            try:
                exe = self._binary()
                out_path = self._out()
                out_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            except (install.NotInstalled, OSError) as e:
                raise OwnServerError("cannot_start", f"cannot start sparkscope server: {e}") from e
            env = dict(os.environ if self._env is None else self._env)
            for key in FLAG_ENV:
                env.pop(key, None)
            # Spark's UI on a port known here, for the proxy at <base>sparkscope/ui/<app>/ (a
            # busy 4040 would move it)
            args, ui_port = bundle.args(), _ui_port(bundle)
            if ui_port is not None and "spark.ui.port" not in bundle.confs:
                args += ["--conf", f"spark.ui.port={ui_port}"]
            try:
                proc = subprocess.Popen(
                    [str(exe), *args],
                    stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
                    start_new_session=True, env=env,
                )  # fmt: skip
            except OSError as e:
                raise OwnServerError("cannot_start", f"cannot start {exe}: {e}") from e
            finally:
                os.close(fd)
            self._proc, self._bundle, self._state = proc, bundle, "starting"
            self._ui_port = ui_port
            self._stopping, self._done = False, threading.Event()
            self._started_at_ms, self._message = int(time.time() * 1000), ""
            threading.Thread(
                target=self._watch, args=(proc,), name="sparkscope-own-server-watch", daemon=True
            ).start()
            return self._status()

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        """Notes an exit nobody asked for; a requested one is finished by `_stop_in_background`."""
        code = proc.wait()
        with self._lock:
            if self._proc is not proc or self._stopping:
                return
            how = f"with code {code}" if code >= 0 else f"on signal {-code}"
            self._proc, self._state = None, "failed"
            self._message = f"sparkscope server exited {how}:\n{_tail(self._out())}"
            self._done.set()

    def _ready(self) -> bool:
        try:
            with self._out().open("rb") as f:
                head = f.read(MAX_FILE).decode(errors="replace")
        except OSError:
            return False
        return any(line.startswith(READY) for line in head.splitlines())

    def _status(self) -> dict[str, Any]:
        bundle = self._bundle
        return {
            "state": self._state,
            "bundle": bundle.name if bundle else "",
            "pid": self._proc.pid if self._proc else None,
            "connectUrl": (
                f"sc://127.0.0.1:{bundle.connect_port}"
                if bundle and self._state == "running"
                else ""
            ),
            "startedAtMs": self._started_at_ms,
            "message": self._message,
            "driverLog": str(self._state_dir() / "spark-connect-server.log"),
            "uiPort": self._ui_port if self._state == "running" else None,
        }

    def status(self) -> dict[str, Any]:
        """`state`: stopped → starting → running (the ready line is in the server's output) →
        stopping → stopped; or failed, when it exited unasked (`message`: its output's end)."""
        with self._lock:
            if self._state == "starting" and self._ready():
                self._state = "running"
            return self._status()

    def stop(self, wait: bool = False) -> dict[str, Any]:
        """SIGTERM to the server (not its group: it stops Spark itself, and must outlive it);
        with `wait`, returns once it and its Spark are gone."""
        with self._lock:
            proc, done = self._proc, self._done
            if proc is not None and not self._stopping:
                self._stopping, self._state = True, "stopping"
                # Spark's group, in case the server dies before it stops Spark (a signal during
                # its start-up)
                groups = _child_groups(proc.pid)
                proc.send_signal(signal.SIGTERM)
                threading.Thread(
                    target=self._stop_in_background,
                    args=(proc, groups),
                    name="sparkscope-own-server-stop",
                    daemon=True,
                ).start()
        if wait and proc is not None:
            done.wait()
        return self.status()

    def _stop_in_background(self, proc: subprocess.Popen[bytes], groups: set[int]) -> None:
        deadline = time.monotonic() + self.stop_timeout
        message = ""
        try:
            proc.wait(timeout=self.stop_timeout)
            for g in (left := _live_groups(groups)):
                _killpg(g, signal.SIGTERM)
            if left := _await_groups(left, deadline):
                message = f"Spark did not stop within {self.stop_timeout:g} s; killed"
        except subprocess.TimeoutExpired:
            left = groups | _child_groups(proc.pid) | {proc.pid}
            message = f"sparkscope server did not stop within {self.stop_timeout:g} s; killed"
        for g in left:
            _killpg(g, signal.SIGKILL)
        proc.wait()
        _await_groups(left, time.monotonic() + 5.0)  # SIGKILL is delivered, not yet done
        with self._lock:
            if self._proc is proc:
                self._proc, self._state, self._message = None, "stopped", message
                self._done.set()

    def restart(self, name: str | None = None) -> dict[str, Any]:
        """Stops the server and starts it with `name`, else the bundle it ran."""
        with self._lock:
            name = name or (self._bundle.name if self._bundle else "default")
        self.bundles.get(name)  # a bad name leaves the running server alone
        self.stop(wait=True)
        return self.start(name)

    def close(self) -> None:
        """At the Jupyter server's shutdown."""
        self.stop(wait=True)
