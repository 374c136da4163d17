"""Small helpers of the harness: free loopback ports, waiting for a condition, log tails, and
where the pieces live (the repository, Spark, the venv, the agent binary, the listener jar)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago (bind to port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """`n` distinct ports from `free_port()`."""
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return list(ports)


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


def compile_listener(source: Path, work_dir: Path) -> Path:
    """A jar of one Java source file compiled against Spark's own jars (a test's extra listener:
    no build tool, no dependency but Spark)."""
    classes = work_dir / f"{source.stem}-classes"
    classes.mkdir(parents=True, exist_ok=True)
    jars = spark_home() / "jars" / "*"
    subprocess.run(
        ["javac", "--release", "17", "-cp", str(jars), "-d", str(classes), str(source)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    jar = work_dir / f"{source.stem}.jar"
    subprocess.run(
        ["jar", "--create", "--file", str(jar), "-C", str(classes), "."],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return jar


def venv_bin() -> Path:
    """The directory of the Python running the tests (the venv's bin/), where `jupyter` lives."""
    return Path(sys.executable).parent


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


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, in PEM, made with the system's openssl."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    key.chmod(0o600)
    return cert, key
