"""Executing notebooks headless with nbclient (widget state kept) and reading back what the cells
and the sparkscope widgets left in them.

The notebooks live in tests/notebooks/. Each runs in a kernel of the venv with its own environment
(SPARK_REMOTE, SPARKSCOPE_URL, SPARKSCOPE_TOKEN, …), so two notebooks can be two users.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .util import REPO_ROOT, venv_bin

NOTEBOOKS_DIR = REPO_ROOT / "tests" / "notebooks"
# A notebook's first Spark lines: a Connect session of its own for the kernel's SPARK_REMOTE.
CONNECT = (
    "import os, warnings\n"
    'warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")\n'
    "from pyspark.sql import SparkSession\n"
    'spark = SparkSession.builder.remote(os.environ["SPARK_REMOTE"]).create()'
)
# The same after loading the extension, printing the session id (the cell's last line).
SETUP = "%load_ext sparkscope\n" + CONNECT + "\nprint(spark.client._session_id)"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def browser_setup(url: str) -> str:
    """A browser test notebook's first cell: the extension, a Connect session of its own for
    `url` (a server's remote URL with the user's id), and a warm-up query."""
    return (
        "%load_ext sparkscope\n"
        "import warnings\n"
        "# pyspark 4.3 warns about pandas 3 on import; not what these tests are about\n"
        'warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")\n'
        "from pyspark.sql import SparkSession\n"
        f"spark = SparkSession.builder.remote({url!r}).create()\n"
        "spark.range(1).collect()  # warm-up\n"
    )


WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def write_notebook(path: Path, cells: Sequence[str]) -> None:
    """A notebook of code cells for the venv's python3 kernel, as a browser test opens it."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        cells=[new_code_cell(c) for c in cells],
    )
    nbformat.write(nb, path)


def kernel_env(work_dir: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a notebook's kernel: ours, the venv first on PATH, an IPython dir of
    its own (no profile or startup files of the machine), plus `extra`."""
    env = dict(os.environ)
    # set by pyspark in this process once a test made a Connect session: not the kernel's mode
    env.pop("SPARK_CONNECT_MODE_ENABLED", None)
    env.update(
        PATH=f"{venv_bin()}{os.pathsep}{env.get('PATH', '')}",
        IPYTHONDIR=str(work_dir / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class NotebookRun:
    """One notebook to execute: its source, where the executed copy goes, its kernel's env."""

    name: str
    source: Path
    out_path: Path
    env: dict[str, str]
    # Where the kernel keeps its input history (IPython's SQLite file); nbclient's default is
    # none at all (":memory:"), a kernel in JupyterLab keeps one in its profile.
    history_file: Path | None = None
    nb: Any = None  # nbformat.NotebookNode once executed
    error: BaseException | None = None
    started: float = 0.0
    ended: float = 0.0

    @property
    def seconds(self) -> float:
        return self.ended - self.started


async def _execute(run: NotebookRun, timeout: float) -> None:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(run.source, as_version=4)
    run.out_path.parent.mkdir(parents=True, exist_ok=True)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        store_widget_state=True,
        ipython_hist_file=str(run.history_file) if run.history_file else ":memory:",
        resources={"metadata": {"path": str(run.out_path.parent)}},
    )
    run.started = time.monotonic()
    try:
        await client.async_execute(env=run.env)
    except (CellExecutionError, CellTimeoutError, DeadKernelError, RuntimeError, OSError) as exc:
        # keep what ran: the executed copy is the evidence
        run.error = exc
    finally:
        run.ended = time.monotonic()
        run.nb = nb
        nbformat.write(nb, run.out_path)


def execute_concurrently(runs: Sequence[NotebookRun], timeout: float = 300.0) -> None:
    """Execute the notebooks at the same time (one kernel each) and write the executed copies.
    A notebook that raised keeps its partial outputs; its exception is in `run.error`."""

    async def main() -> None:
        await asyncio.gather(*(_execute(r, timeout) for r in runs))

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------
# reading an executed notebook


def widget_states(nb: Any) -> dict[str, dict]:
    """model id -> {"model_name", "model_module", "state": {...}} from the notebook metadata."""
    return dict(nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {}))


def cell_widgets(nb: Any, index: int) -> list[tuple[str, str]]:
    """(model id, text/plain) of each widget view in cell `index`'s outputs."""
    found = []
    for out in nb.cells[index].get("outputs", []):
        data = out.get("data", {})
        if WIDGET_VIEW in data:
            found.append((data[WIDGET_VIEW]["model_id"], data.get("text/plain", "")))
    return found


def stdout(nb: Any, index: int) -> str:
    return "".join(
        out.get("text", "")
        for out in nb.cells[index].get("outputs", [])
        if out.get("output_type") == "stream" and out.get("name") == "stdout"
    )


def probes(nb: Any) -> list[dict]:
    """The JSON lines with a "probe" key the notebook cells printed, with their cell index."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for line in stdout(nb, index).splitlines():
            if line.startswith("{") and '"probe"' in line:
                found.append({**json.loads(line), "cell": index})
    return found


def errors(nb: Any) -> list[tuple[int, str, str]]:
    """(cell index, ename, evalue) of every error output."""
    return [
        (index, out.get("ename", ""), out.get("evalue", ""))
        for index, cell in enumerate(nb.cells)
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
