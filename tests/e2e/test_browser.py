"""The widget in a real browser: JupyterLab from PyPI, driven by Playwright with Debian's Chromium,
runs tests/notebooks/browser_progress.ipynb (three stages of sleeping tasks, about ten seconds)
against a real Spark Connect server with the listener and the real agent. While the cell runs, the
widget must appear and its progress bars must advance; it must end `done` with Spark's own job ids,
statuses and task counts. Screenshots during and after the run are kept as artifacts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import secrets
import shutil
import time
from pathlib import Path

import harness
import pytest
from harness import browser, nbrun

NOTEBOOK = "browser_progress.ipynb"
SETUP_CELL, SLOW_CELL, STOP_CELL = 1, 3, 5
USER = "carol"
CELL_TAG_PREFIX = "sparkscope-cell-"

# One DOM snapshot of a cell, read in one go so counts and state are consistent.
SNAPSHOT_JS = """(index) => {
  const w = window.jupyterapp.shell.currentWidget;
  const cell = w.content.widgets[index];
  const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
  const num = (v) => (v === undefined ? null : Number(v));
  const out = {t: Date.now(), kernel: kernel ? kernel.status : null,
               count: cell.model.executionCount, widget: null};
  const root = cell.node.querySelector('.sparkscope-cell');
  if (!root) return out;
  const bar = (node) => {
    const b = node.querySelector('.sparkscope-bar');
    return b ? {completed: num(b.dataset.completed), running: num(b.dataset.running),
                failed: num(b.dataset.failed), skipped: num(b.dataset.skipped),
                total: num(b.dataset.total)} : null;
  };
  out.widget = {
    tag: root.dataset.tag, state: root.dataset.state, updatedAt: num(root.dataset.updatedAt),
    summary: (root.querySelector('.sparkscope-summary') || {}).textContent || null,
    jobs: [...root.querySelectorAll('.sparkscope-job')].map((j) => ({
      jobId: num(j.dataset.jobId), status: j.dataset.status, bar: bar(j),
      statusText: (j.querySelector('.sparkscope-job-status') || {}).textContent || null})),
    stages: [...root.querySelectorAll('.sparkscope-stage')].map((s) => ({
      stageId: num(s.dataset.stageId), attemptId: num(s.dataset.attemptId),
      status: s.dataset.status, bar: bar(s)})),
  };
  return out;
}"""


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def pieces(require_piece) -> Path:
    """Skip (or fail in CI) until every piece exists: listener, agent, kernel package,
    Playwright and Chromium."""
    require_piece(
        harness.listener_jar(),
        "listener jar (listener-jar/target/sparkscope-listener.jar)",
        "listener-jar/build.sh",
    )
    spec = importlib.util.find_spec("sparkscope")
    require_piece(
        Path(spec.origin) if spec and spec.origin else None,
        "the sparkscope kernel package",
        ".venv/bin/pip install -e kernel-comm",
    )
    require_piece(
        Path(browser.__file__) if browser.playwright_available() else None,
        "the playwright Python package",
        ".venv/bin/pip install playwright (never `playwright install`: Chromium is Debian's)",
    )
    require_piece(
        browser.chromium_path(), "Chromium (/usr/bin/chromium)", "apt-get install chromium"
    )
    return require_piece(
        harness.agent_binary(), "sparkscope binary (target/*/sparkscope)", "cargo build --release"
    )


@pytest.fixture(scope="module")
def agent(pieces: Path, artifacts_dir: Path, log_registry):
    log_registry(artifacts_dir / "sparkscope-agent.log", "sparkscope agent log")
    token = "br-" + secrets.token_hex(16)
    with harness.Agent(pieces, artifacts_dir, token=token) as agent:
        yield agent


@pytest.fixture(scope="module")
def server(artifacts_dir: Path, log_registry, agent: harness.Agent):
    log_registry(artifacts_dir / "spark-connect-server.log", "Spark Connect server log")
    with harness.SparkConnectServer(
        artifacts_dir,
        listener_jar=harness.listener_jar(),
        agent_addr=agent.ingest_addr,
        token=agent.token,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def lab(
    server: harness.SparkConnectServer, agent: harness.Agent, artifacts_dir: Path, log_registry
):
    root = artifacts_dir / "lab-root"
    root.mkdir(exist_ok=True)
    shutil.copy(nbrun.NOTEBOOKS_DIR / NOTEBOOK, root / NOTEBOOK)
    log_registry(artifacts_dir / "jupyterlab.log", "JupyterLab log")
    env = {
        "SPARK_REMOTE": server.remote_url(user_id=USER),
        "SPARKSCOPE_URL": agent.stream_url,
        "SPARKSCOPE_TOKEN": agent.subscriber_token,
    }
    with harness.JupyterLab(root, artifacts_dir, env=env) as lab:
        yield lab


# ---------------------------------------------------------------------------------------------
# the run


def _progress(sample: dict) -> int:
    """Completed tasks over the widget's job bars."""
    return sum((j["bar"] or {}).get("completed") or 0 for j in sample["widget"]["jobs"])


def test_widget_shows_live_progress_in_jupyterlab(
    lab: harness.JupyterLab,
    server: harness.SparkConnectServer,
    artifacts_dir: Path,
    screenshots_dir: Path,
    request: pytest.FixtureRequest,
) -> None:
    shots = browser.Screenshots(screenshots_dir, request.node.name, [])
    samples: list[dict] = []
    with browser.chromium(artifacts_dir / "chromium-profile") as context:
        nb = browser.LabNotebook.open(context, lab, NOTEBOOK)
        try:
            nb.run_cell(SETUP_CELL)
            nb.wait_cell_done(SETUP_CELL, 180)
            setup_out = nb.cell_text_outputs(SETUP_CELL)
            assert "Error" not in setup_out, f"setup cell failed: {setup_out[-2000:]}"

            nb.run_cell(SLOW_CELL)
            during_saved = False
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                sample = nb.page.evaluate(SNAPSHOT_JS, SLOW_CELL)
                samples.append(sample)
                widget = sample["widget"]
                if (
                    not during_saved
                    and widget
                    and widget["state"] == "running"
                    and _progress(sample) > 0
                ):
                    shots.save(nb.page, "during")
                    during_saved = True
                if widget and widget["state"] == "done" and sample["count"]:
                    break
                time.sleep(0.25)
            nb.wait_cell_done(SLOW_CELL, 60)
            shots.save(nb.page, "after")
            final = nb.page.evaluate(SNAPSHOT_JS, SLOW_CELL)
            # a finished widget folds to its summary; unfold it (and its jobs) for the picture
            widget_node = nb.cell_locator(SLOW_CELL).locator(".sparkscope-cell").first
            if final["widget"]:
                widget_node.locator(".sparkscope-header").click()
                for expand in widget_node.locator(".sparkscope-expand").all():
                    expand.click()
                path = shots.directory / f"{shots.prefix}-after-expanded.png"
                widget_node.screenshot(path=str(path))
                shots.saved.append(path)
                print(f"screenshot: {path}")
            slow_out = nb.cell_text_outputs(SLOW_CELL)
            spark_jobs, spark_ops = _spark_view(server)
            nb.run_cell(STOP_CELL)
            nb.wait_cell_done(STOP_CELL, 60)
        except BaseException:
            with contextlib.suppress(Exception):  # the page itself may be what broke
                shots.save(nb.page, "failure")
            raise
        finally:
            (artifacts_dir / "browser-samples.json").write_text(json.dumps(samples, indent=1))

    seen = [s for s in samples if s["widget"]]
    assert seen, (
        f"no .sparkscope-cell appeared in cell {SLOW_CELL} within 240 s; cell output:\n{slow_out}"
    )
    first = seen[0]
    assert first["count"] is None or first["kernel"] == "busy", (
        f"the widget first appeared after the cell had finished: {first}"
    )
    assert first["widget"]["tag"].startswith(CELL_TAG_PREFIX), first["widget"]
    assert first["widget"]["state"] == "running" and any(
        j["status"] == "RUNNING" for j in first["widget"]["jobs"]
    ), f"the widget's first appearance shows no running job: {first['widget']}"

    running = [s for s in seen if s["widget"]["state"] == "running"]
    values = [_progress(s) for s in running]
    assert values == sorted(values), f"progress went backwards while running: {values}"
    distinct = sorted(set(values))
    assert len(distinct) >= 2 and distinct[-1] > distinct[0], (
        f"completed tasks while data-state=running took {distinct} over {len(running)} samples: "
        "the widget did not advance during the run"
    )
    stage_values = [
        sum((st["bar"] or {}).get("completed") or 0 for st in s["widget"]["stages"])
        for s in running
    ]
    assert len(set(stage_values)) >= 2, (
        f"stage rows' completed tasks while running: {sorted(set(stage_values))}"
    )

    widget = final["widget"]
    assert widget is not None and widget["state"] == "done", f"final widget: {widget}"
    ops = [op for op in spark_ops if widget["tag"] in op["sparkSessionTags"]]
    want_ids = sorted({int(j) for op in ops for j in op["jobIds"]})
    got = {j["jobId"]: j for j in widget["jobs"]}
    assert sorted(got) == want_ids, (
        f"widget job rows {sorted(got)}, Spark's jobs of operations tagged {widget['tag']}: "
        f"{want_ids}"
    )
    problems = []
    for jid in want_ids:
        spark, mine = spark_jobs[jid], got[jid]
        want = {
            "status": spark["status"],
            "completed": spark["numCompletedTasks"],
            "skipped": spark["numSkippedTasks"],
            "failed": spark["numFailedTasks"],
            "running": spark["numActiveTasks"],
            "total": spark["numTasks"],
        }
        have = {"status": mine["status"], **(mine["bar"] or {})}
        if have != want or mine["statusText"] != spark["status"]:
            problems.append(f"job {jid}: widget {have} text {mine['statusText']!r}, Spark {want}")
    assert not problems, "\n".join(problems)
    assert sum(len(op["jobIds"]) for op in ops) >= 2, f"expected several jobs (AQE): {ops}"
    assert widget["summary"], "the widget shows no summary"
    print(f"samples: {len(samples)}, progress while running: {distinct}")
    print("screenshots:\n" + "\n".join(str(p) for p in shots.saved))


def _spark_view(server: harness.SparkConnectServer) -> tuple[dict[int, dict], list[dict]]:
    """Spark's jobs (by id) and Connect operations once no job runs."""

    def quiet() -> tuple[dict[int, dict], list[dict]] | None:
        if server.jobs("running"):
            return None
        return {j["jobId"]: j for j in server.jobs()}, server.connect_operations()

    return harness.wait_until(quiet, 60, 0.5, "Spark's jobs to finish")
