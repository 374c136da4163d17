"""JupyterLab's "Spark" sidebar and status bar item in Chromium, with a real Spark Connect server
and agent: one user (ivy, a user token from the agent's token file) runs a long cell in each of
two notebooks while another user (zed) runs a job of their own on the same server.

- the status bar follows the active notebook's running cell, then returns to idle;
- the sidebar lists ivy's running cell runs of both notebooks, named by notebook and cell, with
  progress, and never zed's;
- Cancel in the sidebar stops the other notebook's job (Spark's REST API says so) and the run
  moves to "Recently finished" with its outcome;
- the browser never holds the agent's token: the page's requests carry none;
- a cell whose Spark work ran over the threshold (30 s, the default) and ends while the tab is
  hidden raises a browser notification naming the cell and its outcome (the Notification API is
  replaced in the page only to record the call; the page's visibility is set by the test).
"""

from __future__ import annotations

import contextlib
import re
import secrets
import threading
from pathlib import Path
from typing import Any

import harness
import nbformat
import pytest
from harness import browser, nbrun

USERS = {"ivy": "ivy-" + secrets.token_hex(16), "zed": "zed-" + secrets.token_hex(16)}
SLEEP = "reflect('java.lang.Thread', 'sleep', cast({ms} as bigint))"
# two tasks of 20 s: long enough to be watched, cancelled and seen running side by side
LONG = f'spark.range(0, 2, 1, 2).selectExpr("{SLEEP.format(ms=20000)} AS x").collect()'
NOTEBOOKS = ("first.ipynb", "second.ipynb")
# one task of 33 s: over the 30 s after which an end is notified
OVER_THRESHOLD = f'spark.range(0, 1, 1, 1).selectExpr("{SLEEP.format(ms=33000)} AS x").collect()'
NOTIFIED = "third.ipynb"
# In the page before JupyterLab loads: a Notification that records its calls (permission
# granted), and a visibility the test sets.
RECORD_NOTIFICATIONS = """(() => {
  window.__notified = [];
  window.__asked = 0;
  window.__hidden = false;
  class Recorded {
    constructor(title, options) {
      window.__notified.push({title, body: (options || {}).body || ''});
    }
    close() {}
  }
  Recorded.permission = 'granted';
  Recorded.requestPermission = async () => { window.__asked += 1; return 'granted'; };
  window.Notification = Recorded;
  Object.defineProperty(document, 'visibilityState',
    {configurable: true, get: () => (window.__hidden ? 'hidden' : 'visible')});
  Object.defineProperty(document, 'hidden', {configurable: true, get: () => window.__hidden});
})();"""

SIDEBAR_JS = """() => {
  const root = document.getElementById('sparkscope-sidebar');
  if (!root) return null;
  const d = (n) => ({...n.dataset, text: n.textContent});
  return {
    apps: [...root.querySelectorAll('.sparkscope-sb-app')].map(d),
    runs: [...root.querySelectorAll('.sparkscope-sb-run')].map(d),
    error: (root.querySelector('.sparkscope-sb-error') || {}).textContent || '',
  };
}"""
STATUS_JS = """() => {
  const n = document.getElementById('sparkscope-status');
  return n ? {...n.dataset, text: n.textContent} : null;
}"""


def notebook(path: Path, cell: str = LONG) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(nbrun.SETUP), nbformat.v4.new_code_cell(cell)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def pieces(require_piece, require_browser) -> Path:
    return require_piece(harness.agent_binary(), "sparkscope binary", "make setup")


@pytest.fixture(scope="module")
def agent(pieces: Path, artifacts_dir: Path, log_registry):
    tokens = artifacts_dir / "users"
    tokens.write_text("".join(f"{u} {t}\n" for u, t in USERS.items()))
    tokens.chmod(0o600)
    env = {"SPARKSCOPE_SUBSCRIBER_TOKEN": "", "SPARKSCOPE_SUBSCRIBER_TOKENS_FILE": str(tokens)}
    log_registry(artifacts_dir / "sparkscope-agent.log", "sparkscope agent log")
    with harness.Agent(pieces, artifacts_dir, token=secrets.token_hex(16), env=env) as a:
        yield a


@pytest.fixture(scope="module")
def server(artifacts_dir: Path, agent: harness.Agent, reporting_to, log_registry):
    log_registry(artifacts_dir / "spark-connect-server.log", "Spark Connect server log")
    # six task slots: the three users' jobs run side by side (their tasks only sleep)
    with reporting_to(artifacts_dir, agent, master="local[6]") as s:
        yield s


@pytest.fixture(scope="module")
def lab(server, agent, artifacts_dir: Path, log_registry):
    root = artifacts_dir / "lab-root"
    root.mkdir(exist_ok=True)
    for name in NOTEBOOKS:
        notebook(root / name)
    notebook(root / NOTIFIED, OVER_THRESHOLD)
    log_registry(artifacts_dir / "jupyterlab.log", "JupyterLab log")
    # ivy's Jupyter server: its kernels and its sparkscope server extension find the agent and
    # ivy's token in the environment, as on a shared server's single-user Jupyter
    env = {
        "SPARK_REMOTE": server.remote_url(user_id="ivy"),
        "SPARKSCOPE_URL": agent.stream_url,
        "SPARKSCOPE_TOKEN": USERS["ivy"],
    }
    with harness.JupyterLab(root, artifacts_dir, env=env) as lab:
        yield lab


@pytest.fixture(scope="module")
def context(artifacts_dir: Path):
    with browser.chromium(artifacts_dir / "chromium-profile") as ctx:
        yield ctx


def sidebar(page: Any) -> dict:
    return page.evaluate(SIDEBAR_JS) or {"apps": [], "runs": [], "error": "no sidebar"}


def test_sidebar_and_status_bar_follow_my_cells_and_cancel_one(
    lab, server, agent, context, screenshots_dir: Path
) -> None:
    shots = browser.Screenshots(screenshots_dir, "lab-sidebar", [])
    sent_auth: list[str] = []
    first = browser.LabNotebook.open(context, lab, NOTEBOOKS[0])
    loaded_ms = first.page.evaluate(
        "async () => { while (!document.getElementById('sparkscope-status'))"
        " await new Promise(r => setTimeout(r, 20)); return performance.now(); }"
    )
    first.page.on(
        "request",
        lambda r: (
            "sparkscope/api" in r.url and sent_auth.append(r.headers.get("authorization", ""))
        ),
    )
    second = browser.open_beside(context, lab, NOTEBOOKS[1], "second")
    for nb in (first, second):
        nb.run_cell(0)
        nb.wait_cell_done(0, 180)

    # zed, on the same server, runs a job of their own meanwhile
    zed = harness.connect_session(server.remote_url(user_id="zed"))
    zed_done = threading.Event()

    def zed_job() -> None:
        with contextlib.suppress(Exception):
            zed.range(0, 2, 1, 2).selectExpr(SLEEP.format(ms=15000) + " AS x").collect()
        zed_done.set()

    threading.Thread(target=zed_job, name="zed", daemon=True).start()
    try:
        first.run_cell(1)
        second.run_cell(1)
        page = first.page
        page.bring_to_front()
        assert page.evaluate(STATUS_JS)["state"] in ("idle", "running")
        page.evaluate("() => window.jupyterapp.shell.activateById('sparkscope-sidebar')")

        def both_running() -> dict | None:
            s = sidebar(page)
            running = {r["notebook"] for r in s["runs"] if r["state"] == "running"}
            return s if set(NOTEBOOKS) <= running else None

        seen = harness.wait_until(both_running, 60, 0.3, "both notebooks' cells in the sidebar")
        status = harness.wait_until(
            lambda: (st := page.evaluate(STATUS_JS)) and int(st["tasksTotal"]) > 0 and st,
            30,
            0.2,
            "the status bar to show the running cell",
        )
        shots.save(page, "running")
        assert int(status["jobs"]) == 1 and int(status["tasksTotal"]) == 2, status
        assert "Spark: 1 job" in status["text"], status
        # ivy's runs only: every run is hers, none of zed's session, and one server listed
        assert {r["user"] for r in seen["runs"]} == {"ivy"}, seen["runs"]
        assert [a["appId"] for a in seen["apps"]] == [server.app_id], seen["apps"]
        assert "live" in seen["apps"][0]["state"], seen["apps"]
        named = [r for r in seen["runs"] if r["state"] == "running"]
        assert all(r["cellId"] and "cell [" in r["text"] for r in named), named

        # Cancel the second notebook's cell from the first notebook's sidebar
        (row,) = [r for r in seen["runs"] if r["notebook"] == NOTEBOOKS[1]]
        tag = row["tag"]
        page.locator(f".sparkscope-sb-run[data-tag='{tag}'] .sparkscope-sb-cancel").click()

        def spark_says_stopped() -> list | None:
            mine = [j for j in server.rest("jobs") if any(t.endswith(tag) for t in j["jobTags"])]
            return mine if mine and all(j["status"] == "FAILED" for j in mine) else None

        stopped = harness.wait_until(spark_says_stopped, 30, 0.3, "Spark to stop the job")
        harness.wait_until(
            lambda: any(
                r["tag"] == tag and r["state"] in ("cancelled", "failed")
                for r in sidebar(page)["runs"]
            ),
            15,
            0.3,
            "the cancelled run among the finished ones",
        )
        second.wait_cell_done(1, 60)
        first.wait_cell_done(1, 90)
        harness.wait_until(
            lambda: page.evaluate(STATUS_JS)["state"] == "idle", 15, 0.2, "the status bar idle"
        )
        end = sidebar(page)
        shots.save(page, "finished")
        (a_run,) = [r for r in end["runs"] if r["notebook"] == NOTEBOOKS[0]]
        assert a_run["state"] == "succeeded" and a_run["tasksCompleted"] == "2", a_run
        assert {r["user"] for r in end["runs"]} == {"ivy"}
    finally:
        zed_done.wait(60)
        zed.stop()
    # no credential of the agent's ever reached the page's requests
    assert sent_auth and not any(USERS["ivy"] in h for h in sent_auth), sent_auth
    print(
        f"sidebar: {len(seen['runs'])} run(s) of ivy listed across 2 notebooks, none of zed's; "
        f"status bar '{status['text']}'; cancel from the sidebar: Spark says "
        f"{[j['status'] for j in stopped]}; extension up {loaded_ms:.0f} ms after navigation"
    )


def test_a_long_cell_that_ends_while_the_tab_is_hidden_is_notified(
    lab, context, screenshots_dir: Path
) -> None:
    context.add_init_script(RECORD_NOTIFICATIONS)
    # a page and workspace of its own: the first page's workspace would reopen the first
    # test's notebooks, one of them current
    nb = browser.open_beside(context, lab, NOTIFIED, "notified")
    page = nb.page
    assert page.evaluate("() => window.jupyterapp.shell.currentWidget.context.path") == NOTIFIED
    nb.run_cell(0)
    nb.wait_cell_done(0, 180)
    nb.run_cell(1)
    page.evaluate("() => window.jupyterapp.shell.activateById('sparkscope-sidebar')")
    harness.wait_until(
        lambda: any(
            r["notebook"] == NOTIFIED and r["state"] == "running" for r in sidebar(page)["runs"]
        ),
        60,
        0.3,
        "the cell's run in the sidebar",
    )
    # the user switches to another tab while it runs
    page.evaluate(
        "() => { window.__hidden = true; document.dispatchEvent(new Event('visibilitychange')); }"
    )
    nb.wait_cell_done(1, 120)
    notified = harness.wait_until(
        lambda: page.evaluate("() => window.__notified").copy() or None,
        30,
        0.5,
        "a browser notification",
    )
    page.evaluate(
        "() => { window.__hidden = false; document.dispatchEvent(new Event('visibilitychange')); }"
    )
    browser.Screenshots(screenshots_dir, "lab-notification", []).save(page, "after")
    assert len(notified) == 1, notified
    (note,) = notified
    assert note["title"] == NOTIFIED, note
    assert re.fullmatch(r"cell \d+ · 1 job succeeded in 3\d s", note["body"]), note
    # granted already: the page never asked again
    assert page.evaluate("() => window.__asked") == 0
    print(f"notification while hidden: {note}")
