"""Where the pieces installed with this package are: the `sparkscope` agent binary (the wheel
puts it in the environment's scripts directory, as ruff and uv ship theirs) and the listener jar
(in this package's `jars/`)."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

JAR_NAME = "sparkscope-listener.jar"
LISTENER_CLASS = "io.sparkscope.listener.SparkscopeListener"


class NotInstalled(RuntimeError):
    """A piece of sparkscope is missing from this environment."""


def binary() -> Path:
    """The agent binary: SPARKSCOPE_BIN, else the one installed with this package, else on PATH."""
    env = os.environ.get("SPARKSCOPE_BIN")
    if env:
        if Path(env).is_file():
            return Path(env)
        raise NotInstalled(f"SPARKSCOPE_BIN names {env}, which is not a file")
    exe = "sparkscope" + (sysconfig.get_config_var("EXE") or "")
    dirs = [Path(sysconfig.get_path("scripts"))]
    user = sysconfig.get_path("scripts", f"{os.name}_user") if os.name == "posix" else None
    if user:
        dirs.append(Path(user))
    dirs.append(Path(sys.executable).parent)
    for d in dirs:
        if (d / exe).is_file():
            return d / exe
    found = shutil.which("sparkscope")
    if found:
        return Path(found)
    raise NotInstalled(
        "the sparkscope agent binary is not installed in this environment: pip install "
        "sparkscope (the wheel carries it), or set SPARKSCOPE_BIN"
    )


def listener_jar() -> Path:
    """The listener jar shipped in this package (SPARKSCOPE_LISTENER_JAR overrides)."""
    env = os.environ.get("SPARKSCOPE_LISTENER_JAR")
    if env:
        if Path(env).is_file():
            return Path(env)
        raise NotInstalled(f"SPARKSCOPE_LISTENER_JAR names {env}, which is not a file")
    path = Path(__file__).resolve().parent / "jars" / JAR_NAME
    if path.is_file():
        return path
    raise NotInstalled(
        f"no listener jar in {path.parent}: this sparkscope was installed from a source tree "
        "without one. Build it with listener-jar/build.sh and set SPARKSCOPE_LISTENER_JAR, or "
        "install sparkscope's wheel"
    )


def user_dir() -> Path:
    """SPARKSCOPE_HOME, else ~/.sparkscope: where `sparkscope server` leaves the stream's token."""
    env = os.environ.get("SPARKSCOPE_HOME")
    return Path(env) if env else Path.home() / ".sparkscope"
