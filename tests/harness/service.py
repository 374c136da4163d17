"""The life of a server process under test: launched in its own process group on free ports
(again on new ones when a port was taken meanwhile), waited for until it answers, stopped with
SIGTERM then SIGKILL, and whatever it left behind killed."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

from .util import tail, wait_until


def stop_process_group(proc: subprocess.Popen, grace: float) -> int | None:
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


def _raise_exit(what: str, code: int | None, log_path: Path, offset: int) -> None:
    with open(log_path, "rb") as f:
        f.seek(offset)
        output = f.read().decode("utf-8", errors="replace")
    msg = f"{what} exited with {code} at startup; log {log_path}:\n{tail(log_path)}"
    if "address already in use" in output.lower() or "BindException" in output:
        raise _PortTaken(msg)
    raise RuntimeError(msg)


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, from /proc/<pid>/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name is in parentheses and may contain spaces: split after the last ')'
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[19])


def descendants(pid: int) -> list[tuple[int, int]]:
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


def kill_survivors(procs: Iterable[tuple[int, int]]) -> None:
    """SIGKILL those of `procs` still alive; the start time guards against a reused pid."""
    for pid, started in procs:
        stat = _proc_stat(pid)
        if stat is not None and stat[1] == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Service:
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
            self.returncode = stop_process_group(self.proc, self.stop_timeout)
        return self.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
