"""sparkscope for notebooks: live per-cell Spark progress for notebooks attached to a shared Spark
Connect server, fed by the sparkscope agent's stream.

    %load_ext sparkscope

Every cell run gets a Spark tag on the kernel's Connect sessions; the agent attributes jobs to it
and the cell shows a widget as soon as its first job starts. Importing this package is cheap; the
extension, pyspark hooks, websocket client and widget load only when they are needed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from .extension import Config, Monitor

__all__ = [
    "cell_tag",
    "configure",
    "current_tag",
    "load_ipython_extension",
    "unload_ipython_extension",
    "wait",
    "wrap",
]
__version__ = "0.1.0"

F = TypeVar("F", bound=Callable[..., Any])

_monitor: Monitor | None = None


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """`%load_ext sparkscope`, or `c.InteractiveShellApp.extensions = ['sparkscope']`."""
    global _monitor
    from IPython.core.error import UsageError

    try:
        from IPython.core.interactiveshell import InteractiveShell
    except ImportError as exc:  # pragma: no cover - IPython calls us, so it is there
        raise UsageError("sparkscope is an IPython extension; IPython is not importable") from exc
    if not isinstance(ipython, InteractiveShell):
        raise UsageError(
            "sparkscope is an IPython extension: load it in a Jupyter (IPython) kernel with "
            "`%load_ext sparkscope`, not from a plain Python interpreter."
        )
    missing = [m for m in ("websocket", "anywidget") if not _importable(m)]
    if missing and getattr(ipython, "kernel", None) is not None:
        names = {"websocket": "websocket-client", "anywidget": "anywidget"}
        raise UsageError(
            "sparkscope needs " + ", ".join(names[m] for m in missing) + " in the kernel's "
            "environment: pip install sparkscope (or pip install "
            + " ".join(names[m] for m in missing)
            + ")"
        )
    if _monitor is not None:
        return
    from .extension import Monitor
    from .magic import register_magic

    monitor = Monitor(ipython)
    monitor.start()
    register_magic(ipython, monitor)
    _monitor = monitor


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    global _monitor
    if _monitor is not None:
        _monitor.stop()
        _monitor = None


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def current_tag() -> str | None:
    """The Spark tag of the cell running now (None between cells or when not loaded)."""
    return _monitor.current_tag() if _monitor is not None else None


@contextmanager
def cell_tag(tag: str | None = None) -> Iterator[str | None]:
    """Put a cell's tag on every Connect session for the calling thread while the block runs.

    pyspark keeps tags per thread, so queries a cell starts on other threads are not attributed
    to it unless they run inside this block (`tag` defaults to the cell running now; pass
    `current_tag()` captured in the cell when the thread may outlive it, or use `wrap`)::

        tag = sparkscope.current_tag()
        def work():
            with sparkscope.cell_tag(tag):
                spark.range(10**8).count()
        threading.Thread(target=work).start()
    """
    monitor = _monitor
    tag = tag or (monitor.current_tag() if monitor is not None else None)
    if monitor is None or not tag:
        yield tag
        return
    with monitor.tracker.tagged(tag):
        yield tag


def wrap(fn: F) -> F:
    """`fn` bound to the running cell's tag, for threads and pools::

    pool.submit(sparkscope.wrap(lambda: df.count()))
    """
    tag = current_tag()

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with cell_tag(tag):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def configure(**settings: Any) -> Config:
    """Change settings of the loaded extension: `url`, `token`, `throttle_ms`, `settle_ms`,
    `enabled`. Returns the settings in force."""
    if _monitor is None:
        from IPython.core.error import UsageError

        raise UsageError("sparkscope is not loaded: run `%load_ext sparkscope` first")
    _monitor.reconfigure(**settings)
    return _monitor.config


def wait(timeout: float = 10.0) -> bool:
    """Block until the widgets of the cells that ran before this one show their final state
    (for batch runs: nbconvert keeps only output that arrives while some cell runs). Returns
    False on timeout."""
    return _monitor.wait(timeout) if _monitor is not None else True


# ---- JupyterLab: the server extension (the user's work across notebooks, for the sidebar and
# status bar) and the prebuilt Lab extension that shows it


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "sparkscope"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from .labserver import load

    load(serverapp)
