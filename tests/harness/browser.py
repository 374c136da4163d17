"""Playwright driving Debian's Chromium against a `harness.JupyterLab`: open a notebook, run its
cells, read the sparkscope widget's DOM, save screenshots.

Chromium is the system's (/usr/bin/chromium, `apt-get install chromium`); Playwright's own browser
downloads are never used. Imports Playwright lazily so harness users without it are unaffected.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .jupyterlab import JupyterLab
from .util import wait_until

CHROMIUM = Path(os.environ.get("SPARKSCOPE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT = {"width": 1400, "height": 1000}


def chromium_path() -> Path | None:
    return CHROMIUM if CHROMIUM.is_file() and shutil.which(str(CHROMIUM)) else None


def playwright_available() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def chromium(user_data_dir: Path) -> Iterator[Any]:  # -> playwright BrowserContext
    """A headless Chromium with a fresh profile in `user_data_dir`; closed (and its processes
    gone) on exit."""
    from playwright.sync_api import sync_playwright  # lazy: optional dependency

    user_data_dir = Path(user_data_dir)
    shutil.rmtree(user_data_dir, ignore_errors=True)
    user_data_dir.mkdir(parents=True)
    with sync_playwright() as pw:
        # headless=False keeps Playwright from adding its own --headless: ours (new headless) is
        # in CHROMIUM_ARGS
        context = pw.chromium.launch_persistent_context(
            str(user_data_dir),
            executable_path=str(CHROMIUM),
            headless=False,
            args=list(CHROMIUM_ARGS),
            viewport=VIEWPORT,
            env={**os.environ, "HOME": str(user_data_dir)},
        )
        try:
            yield context
        finally:
            context.close()


# JupyterLab's application object, exposed by JupyterLab(expose_app_in_browser)
_CURRENT_NOTEBOOK_JS = "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
_KERNEL_STATUS_JS = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = w && w.sessionContext && w.sessionContext.session
    && w.sessionContext.session.kernel;
  return kernel ? kernel.status + '/' + kernel.connectionStatus : null;
}"""
_CELL_STATES_JS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  return w.content.widgets.map(c => c.model.type === 'code'
    ? {type: 'code', count: c.model.executionCount,
       running: c.node.classList.contains('jp-mod-running') ||
         (c.promptNode && c.promptNode.textContent.includes('*'))}
    : {type: c.model.type});
}"""


@dataclass
class Screenshots:
    """Where one test's screenshots go; every saved path is printed and remembered."""

    directory: Path
    prefix: str
    saved: list[Path]

    def save(self, page: Any, name: str, full_page: bool = False) -> Path:
        """A screenshot of `page`, or of one element (a Playwright locator)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.prefix}-{name}.png"
        page.screenshot(path=str(path), **({"full_page": True} if full_page else {}))
        self.saved.append(path)
        print(f"screenshot: {path}")
        return path

    @contextlib.contextmanager
    def on_failure(self, page: Any) -> Iterator[None]:
        """Whatever fails inside leaves a screenshot of `page` ("<prefix>-failure.png")."""
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                self.save(page, "failure")
            raise


class LabNotebook:
    """One notebook open in JupyterLab in a Chromium page."""

    def __init__(self, page: Any, lab: JupyterLab, path: str) -> None:
        self.page = page
        self.lab = lab
        self.path = path

    @classmethod
    def open(cls, context: Any, lab: JupyterLab, path: str, timeout: float = 120.0) -> LabNotebook:
        """Open `path` (relative to the lab's root) and wait until its kernel is idle."""
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(timeout * 1000)
        page.goto(lab.notebook_url(path))
        page.wait_for_function(_CURRENT_NOTEBOOK_JS)
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
        nb = cls(page, lab, path)
        nb.wait_kernel_idle(timeout)
        return nb

    def kernel_status(self) -> str | None:
        return self.page.evaluate(_KERNEL_STATUS_JS)

    def wait_kernel_idle(self, timeout: float = 120.0) -> None:
        wait_until(
            lambda: self.kernel_status() == "idle/connected",
            timeout,
            0.25,
            f"the kernel of {self.path} to be idle (status {self.kernel_status()})",
        )

    def cells(self) -> list[dict]:
        return self.page.evaluate(_CELL_STATES_JS)

    def run_command(self, command: str) -> None:
        """Start a JupyterLab command; returns at once (the run commands' promises resolve only
        when the cells have finished)."""
        self.page.evaluate("c => { window.jupyterapp.commands.execute(c); }", command)

    def run_cell(self, index: int) -> None:
        """Select code cell `index` (0-based among all cells) and run it, staying on it."""
        self.page.evaluate(
            "i => { const w = window.jupyterapp.shell.currentWidget;"
            " w.content.activeCellIndex = i; w.content.mode = 'command'; }",
            index,
        )
        self.run_command("notebook:run-cell")

    def run_cells(self, *indexes: int, timeout: float = 300.0) -> None:
        """Run cells `indexes` one after the other, each to its end and without a traceback."""
        for index in indexes:
            self.run_cell(index)
            self.wait_cell_done(index, timeout)
            outputs = self.cell_text_outputs(index)
            assert "Traceback" not in outputs, outputs

    def run_all(self) -> None:
        self.run_command("notebook:run-all-cells")

    def wait_cell_done(self, index: int, timeout: float = 300.0) -> int:
        """Wait until cell `index` has an execution count and the kernel is idle again."""

        def done() -> int | None:
            cell = self.cells()[index]
            if (
                cell.get("count")
                and not cell.get("running")
                and self.kernel_status() == ("idle/connected")
            ):
                return cell["count"]
            return None

        return wait_until(done, timeout, 0.25, f"cell {index} of {self.path} to finish")

    def cell_locator(self, index: int) -> Any:
        return self.page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").nth(index)

    def cell_text_outputs(self, index: int) -> str:
        return self.cell_locator(index).locator(".jp-OutputArea").inner_text()

    def save_notebook(self) -> None:
        self.run_command("docmanager:save")


def open_beside(
    context: Any, lab: JupyterLab, path: str, workspace: str, timeout: float = 120.0
) -> LabNotebook:
    """Open `path` in a new page of `context`, in a JupyterLab workspace of its own, so two
    notebooks (two kernels, two users) can be driven side by side; the first page is left as it
    is. Waits until the notebook's kernel is idle."""
    page = context.new_page()
    page.set_default_timeout(timeout * 1000)
    page.goto(f"{lab.url}/lab/workspaces/{workspace}/tree/{path}?token={lab.token}")
    page.wait_for_function(_CURRENT_NOTEBOOK_JS)
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
    nb = LabNotebook(page, lab, path)
    nb.wait_kernel_idle(timeout)
    return nb


def open_view(nb: LabNotebook, index: int, view: str | None = None) -> Any:
    """The widget of cell `index`, unfolded, on `view` (jobs, tasks, timeline, logs, plan) when
    given; returns its locator."""
    node = nb.cell_locator(index).locator(".sparkscope-cell").first
    node.wait_for(timeout=60_000)
    if "sparkscope-collapsed" in (node.get_attribute("class") or ""):
        node.locator(".sparkscope-header").click()
    if view is not None:
        node.locator(f'.sparkscope-tab[data-view="{view}"]').click()
    return node
