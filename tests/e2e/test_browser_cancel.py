"""Cancel from the notebook, in a real browser: JupyterLab from PyPI driven by Playwright with
Debian's Chromium, two notebooks of two users on one real Spark Connect server with the listener
and the real agent.

- The widget's Cancel stops the cell's job (Spark's REST API: no longer running, tasks killed)
  within 2 s while the kernel is busy in the cell's `collect()`; the cell ends with pyspark's
  error; the widget says cancelled; the other user's job, running at the same time, finishes.
- A job's own Cancel stops that job only: the cell's other job, running at the same time on
  another thread (both carry the cell's tag through `sparkscope.wrap`), completes.
- Jupyter's stop button still interrupts the cell (pyspark 4.3 interrupts its operation).
- With the agent gone the buttons say so, and a click says why nothing was cancelled.

The Spark Connect server runs `local[3]`: the first test keeps three one-core tasks running at
once (two of the cancelled cell, one of the bystander). Screenshots are kept as artifacts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import pytest
from harness import browser, nbrun

A, B = "cancel_a.ipynb", "cancel_b.ipynb"
USER_A, USER_B = "dora", "erin_b"
SLEEP = "reflect('java.lang.Thread', 'sleep', cast({ms} as bigint))"

SETUP = """%load_ext sparkscope
import time, threading, warnings
# pyspark 4.3 warns about pandas 3 on import; not what this test is about
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
import sparkscope
from pyspark.sql import SparkSession
spark = SparkSession.builder.remote({url!r}).create()
spark.range(1).collect()  # warm-up: class loading and codegen
"""
# cells of notebook A (index = cell index)
A_CELLS = [
    SETUP,
    # 1: one job of two 40 s tasks: the whole cell run is cancelled
    f'spark.range(0, 2, numPartitions=2).selectExpr("{SLEEP.format(ms=40_000)}").collect()',
    # 2: two jobs at once on two threads, both with the cell's tag; one is cancelled alone
    """results = {}
def one_task(name, ms):
    sleep = "reflect('java.lang.Thread', 'sleep', cast(%d as bigint))" % ms
    try:
        spark.range(0, 1, numPartitions=1).selectExpr(sleep).collect()
        results[name] = "ok"
    except Exception as e:
        results[name] = type(e).__name__ + ": " + str(e)[:300]
long = threading.Thread(target=sparkscope.wrap(lambda: one_task("long", 40_000)))
long.start()
time.sleep(2)  # the long job gets the lower id
short = threading.Thread(target=sparkscope.wrap(lambda: one_task("short", 10_000)))
short.start()
long.join(); short.join()
print(sorted(results.items()))
""",
    # 3: stopped with Jupyter's stop button
    f'spark.range(0, 2, numPartitions=2).selectExpr("{SLEEP.format(ms=40_000)}").collect()',
    # 4: the agent goes away while this runs
    f'spark.range(0, 1, numPartitions=1).selectExpr("{SLEEP.format(ms=40_000)}").collect()',
    "spark.stop()",
]
B_CELLS = [
    SETUP,
    # the bystander: another user's one-task job of 25 s
    f'spark.range(0, 1, numPartitions=1).selectExpr("{SLEEP.format(ms=25_000)}").collect()',
    "spark.stop()",
]

# The widget of one cell, read in one go.
WIDGET_JS = """(index) => {
  const w = window.jupyterapp.shell.currentWidget;
  const cell = w.content.widgets[index];
  const root = cell.node.querySelector('.sparkscope-cell');
  if (!root) return null;
  const result = root.querySelector('.sparkscope-cancel-result');
  const button = root.querySelector('.sparkscope-cancel');
  return {
    tag: root.dataset.tag, state: root.dataset.state,
    button: button ? {text: button.textContent, unavailable: button.dataset.unavailable || null,
                      title: button.title, disabled: button.disabled} : null,
    result: result ? {status: result.dataset.status, ok: result.dataset.ok || null,
                      code: result.dataset.code || null, target: result.dataset.target,
                      jobId: result.dataset.jobId || null, text: result.textContent} : null,
    jobs: [...root.querySelectorAll('.sparkscope-job')].map((j) => ({
      jobId: Number(j.dataset.jobId), status: j.dataset.status,
      cancelled: j.dataset.cancelled === 'true',
      running: Number((j.querySelector('.sparkscope-bar') || {dataset: {}}).dataset.running || 0),
      hasCancel: !!j.querySelector('.sparkscope-job-cancel')})),
  };
}"""


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def pieces(require_piece) -> Path:
    """Skip (or fail in CI) until every piece exists."""
    require_piece(harness.listener_jar(), "listener jar", "listener-jar/build.sh")
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
    return require_piece(harness.agent_binary(), "sparkscope binary", "cargo build --release")


@pytest.fixture(scope="module")
def agent(pieces: Path, artifacts_dir: Path, log_registry) -> Iterator[harness.Agent]:
    log_registry(artifacts_dir / "sparkscope-agent.log", "sparkscope agent log")
    with harness.Agent(pieces, artifacts_dir, token="bc-" + secrets.token_hex(16)) as agent:
        yield agent


@pytest.fixture(scope="module")
def server(artifacts_dir: Path, log_registry, agent: harness.Agent):
    log_registry(artifacts_dir / "spark-connect-server.log", "Spark Connect server log")
    with harness.SparkConnectServer(
        artifacts_dir,
        listener_jar=harness.listener_jar(),
        agent_addr=agent.ingest_addr,
        token=agent.token,
        master="local[3]",
    ) as server:
        yield server


@pytest.fixture(scope="module")
def lab(
    server: harness.SparkConnectServer, agent: harness.Agent, artifacts_dir: Path, log_registry
):
    root = artifacts_dir / "lab-root"
    root.mkdir(exist_ok=True)
    for name, cells, user in ((A, A_CELLS, USER_A), (B, B_CELLS, USER_B)):
        setup = cells[0].format(url=server.remote_url(user_id=user))
        nbrun.write_notebook(root / name, [setup, *cells[1:]])
    log_registry(artifacts_dir / "jupyterlab.log", "JupyterLab log")
    env = {"SPARKSCOPE_URL": agent.stream_url, "SPARKSCOPE_TOKEN": agent.subscriber_token}
    with harness.JupyterLab(root, artifacts_dir, env=env) as lab:
        yield lab


@pytest.fixture(scope="module")
def context(lab: harness.JupyterLab, artifacts_dir: Path) -> Iterator[Any]:
    with browser.chromium(artifacts_dir / "chromium-profile") as context:
        yield context


@pytest.fixture(scope="module")
def notebook_a(context: Any, lab: harness.JupyterLab) -> browser.LabNotebook:
    nb = browser.LabNotebook.open(context, lab, A)
    run_ok(nb, 0, 180)
    return nb


@pytest.fixture
def shots(screenshots_dir: Path, request: pytest.FixtureRequest) -> browser.Screenshots:
    return browser.Screenshots(screenshots_dir, request.node.name, [])


# ---------------------------------------------------------------------------------------------
# helpers


def run_ok(nb: browser.LabNotebook, index: int, timeout: float) -> str:
    nb.run_cell(index)
    nb.wait_cell_done(index, timeout)
    out = nb.cell_text_outputs(index)
    assert "Error" not in out and "Traceback" not in out, f"cell {index} failed:\n{out[-3000:]}"
    return out


def widget(nb: browser.LabNotebook, index: int) -> dict | None:
    return nb.page.evaluate(WIDGET_JS, index)


def wait_widget(nb: browser.LabNotebook, index: int, pred, timeout: float, desc: str) -> dict:
    def check() -> dict | None:
        w = widget(nb, index)
        return w if w is not None and pred(w) else None

    try:
        return harness.wait_until(check, timeout, 0.05, desc)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; widget now: {widget(nb, index)}") from None


def user_jobs(server: harness.SparkConnectServer, user: str) -> list[dict]:
    """Spark's own jobs (REST) run by `user`'s Connect operations, oldest first."""
    mark = f"_User_{user}_Session_"
    jobs = [j for j in server.jobs() if any(mark in t for t in j.get("jobTags", []))]
    return sorted(jobs, key=lambda j: j["jobId"])


def running_job(server: harness.SparkConnectServer, user: str, tasks: int, timeout=60) -> dict:
    """The user's job whose `tasks` tasks are all running."""
    return harness.wait_until(
        lambda: next(
            (
                j
                for j in user_jobs(server, user)
                if j["status"] == "RUNNING" and j["numActiveTasks"] == tasks
            ),
            None,
        ),
        timeout,
        0.1,
        f"a running job of {user} with {tasks} running task(s)",
    )


def counts(job: dict) -> str:
    return str({k: v for k, v in job.items() if k == "status" or k.startswith("num")})


@contextlib.contextmanager
def failure_shots(shots: browser.Screenshots, *pages: browser.LabNotebook) -> Iterator[None]:
    try:
        yield
    except BaseException:
        for i, nb in enumerate(pages):
            with contextlib.suppress(Exception):  # the page itself may be what broke
                shots.save(nb.page, f"failure-{i}")
        raise


def expanded_shot(nb: browser.LabNotebook, index: int, shots: browser.Screenshots, name: str):
    """The cell's widget unfolded (a finished widget folds to its summary)."""
    node = nb.cell_locator(index).locator(".sparkscope-cell").first
    if "sparkscope-collapsed" in (node.get_attribute("class") or ""):
        node.locator(".sparkscope-header").click()
    path = shots.directory / f"{shots.prefix}-{name}.png"
    node.screenshot(path=str(path))
    shots.saved.append(path)


# ---------------------------------------------------------------------------------------------
# the tests, in this order (the last one stops the agent)


def test_cancel_button_stops_the_cell_and_only_its_work(
    context: Any,
    lab: harness.JupyterLab,
    server: harness.SparkConnectServer,
    notebook_a: browser.LabNotebook,
    shots: browser.Screenshots,
) -> None:
    a = notebook_a
    b = browser.open_beside(context, lab, B, workspace="bystander")
    with failure_shots(shots, a, b):
        run_ok(b, 0, 180)
        b.run_cell(1)
        bystander = running_job(server, USER_B, tasks=1)

        a.run_cell(1)
        job = running_job(server, USER_A, tasks=2)
        w = wait_widget(
            a,
            1,
            lambda w: w["button"] and any(j["running"] == 2 for j in w["jobs"]),
            30,
            "the widget to show the running job and its Cancel button",
        )
        assert w["state"] == "running" and w["button"]["unavailable"] is None, w
        assert a.cells()[1]["running"], "the cell must still be running"
        shots.save(a.page, "before")

        clicked = time.monotonic()
        a.cell_locator(1).locator(".sparkscope-cancel").click()
        stopped_at = widget_at = None
        spark_job = w = {}
        while time.monotonic() - clicked < 15 and (stopped_at is None or widget_at is None):
            if stopped_at is None:
                spark_job = server.rest(f"jobs/{job['jobId']}")
                if spark_job["status"] != "RUNNING":
                    stopped_at = time.monotonic()
                    # at the moment A's job stopped, B's is still running
                    assert server.rest(f"jobs/{bystander['jobId']}")["status"] == "RUNNING"
            if widget_at is None:
                w = widget(a, 1) or {}
                if w.get("state") == "cancelled":
                    widget_at = time.monotonic()
            time.sleep(0.02)
        assert stopped_at is not None, f"Spark still runs the job 15 s after the click: {spark_job}"
        assert widget_at is not None, f"the widget never said cancelled: {w}"
        print(
            f"click -> Spark job not RUNNING {1000 * (stopped_at - clicked):.0f} ms, "
            f"-> widget cancelled {1000 * (widget_at - clicked):.0f} ms"
        )
        assert stopped_at - clicked <= 2.0, f"job stopped {stopped_at - clicked:.2f} s after"
        assert widget_at - clicked <= 2.0, (
            f"widget said cancelled {widget_at - clicked:.2f} s after"
        )
        # the tasks are killed, not left sleeping
        ended = harness.wait_until(
            lambda: (j := server.rest(f"jobs/{job['jobId']}"))["numActiveTasks"] == 0 and j,
            10,
            0.05,
            "the cancelled job's tasks to end",
        )
        assert ended["status"] == "FAILED" and ended["numKilledTasks"] == 2, counts(ended)

        # the cell ends with pyspark's error, as with Jupyter's stop button
        a.wait_cell_done(1, 30)
        out = a.cell_text_outputs(1)
        assert "OPERATION_CANCELED" in out, out[-2000:]
        w = widget(a, 1)
        assert w["result"]["status"] == "done" and w["result"]["ok"] == "true", w
        assert w["result"]["target"] == "cell" and "interrupted 1 operation" in w["result"]["text"]
        assert [(j["jobId"], j["status"]) for j in w["jobs"]] == [(job["jobId"], "FAILED")], w
        assert w["button"] is None, "no Cancel once the cell run has ended"
        shots.save(a.page, "after")
        expanded_shot(a, 1, shots, "after-widget")

        # the other user's job was not touched and finishes
        b.wait_cell_done(1, 40)
        assert "Error" not in b.cell_text_outputs(1)
        final = server.rest(f"jobs/{bystander['jobId']}")
        assert final["status"] == "SUCCEEDED" and final["numKilledTasks"] == 0, counts(final)
        wb = wait_widget(b, 1, lambda w: w["state"] == "done", 10, "the bystander's widget")
        assert [j["status"] for j in wb["jobs"]] == ["SUCCEEDED"] and wb["result"] is None
        shots.save(b.page, "bystander")
        run_ok(b, 2, 60)
    b.page.close()


def test_job_cancel_stops_that_job_and_the_other_completes(
    server: harness.SparkConnectServer,
    notebook_a: browser.LabNotebook,
    shots: browser.Screenshots,
) -> None:
    a = notebook_a
    with failure_shots(shots, a):
        before = {j["jobId"] for j in user_jobs(server, USER_A)}
        a.run_cell(2)
        w = wait_widget(
            a,
            2,
            lambda w: sum(j["running"] == 1 and j["hasCancel"] for j in w["jobs"]) == 2,
            60,
            "two running jobs, each with its Cancel button",
        )
        spark = [j for j in user_jobs(server, USER_A) if j["jobId"] not in before]
        assert [j["status"] for j in spark] == ["RUNNING", "RUNNING"], [counts(j) for j in spark]
        long_id, short_id = (j["jobId"] for j in spark)
        assert [j["jobId"] for j in w["jobs"]] == [long_id, short_id], w
        shots.save(a.page, "before")

        row = a.cell_locator(2).locator(f'.sparkscope-job[data-job-id="{long_id}"]')
        row.locator(".sparkscope-job-cancel").click()
        w = wait_widget(
            a, 2, lambda w: (w["result"] or {}).get("status") == "done", 10, "the job cancel result"
        )
        assert w["result"]["ok"] == "true" and w["result"]["target"] == "job", w
        assert w["result"]["jobId"] == str(long_id) and f"job {long_id}" in w["result"]["text"]
        harness.wait_until(
            lambda: server.rest(f"jobs/{long_id}")["status"] == "FAILED",
            10,
            0.05,
            "the job to stop",
        )
        assert server.rest(f"jobs/{short_id}")["status"] == "RUNNING"

        a.wait_cell_done(2, 60)
        out = a.cell_text_outputs(2)
        assert "('short', 'ok')" in out, out
        assert "('long', " in out and "CANCELLED" in out.upper(), out
        assert server.rest(f"jobs/{short_id}")["status"] == "SUCCEEDED"
        w = wait_widget(a, 2, lambda w: w["state"] != "running", 10, "the cell's widget to end")
        by_id = {j["jobId"]: j for j in w["jobs"]}
        assert (by_id[long_id]["status"], by_id[long_id]["cancelled"]) == ("FAILED", True), w
        assert (by_id[short_id]["status"], by_id[short_id]["cancelled"]) == ("SUCCEEDED", False)
        assert w["state"] == "done", "one cancelled job does not make the cell run cancelled"
        shots.save(a.page, "after")
        expanded_shot(a, 2, shots, "after-widget")


def test_jupyter_stop_button_still_interrupts(
    server: harness.SparkConnectServer,
    notebook_a: browser.LabNotebook,
    shots: browser.Screenshots,
) -> None:
    a = notebook_a
    with failure_shots(shots, a):
        a.run_cell(3)
        job = running_job(server, USER_A, tasks=2)
        wait_widget(a, 3, lambda w: w["button"] is not None, 30, "the widget")
        a.run_command("notebook:interrupt-kernel")  # the toolbar's ■
        harness.wait_until(
            lambda: server.rest(f"jobs/{job['jobId']}")["status"] != "RUNNING",
            15,
            0.05,
            "pyspark to interrupt its operation",
        )
        a.wait_cell_done(3, 30)
        out = a.cell_text_outputs(3)
        assert "KeyboardInterrupt" in out, out[-2000:]
        w = wait_widget(a, 3, lambda w: w["state"] != "running", 10, "the widget to end")
        assert w["state"] == "cancelled" and w["result"] is None, w
        assert [j["status"] for j in w["jobs"]] == ["FAILED"], w
        shots.save(a.page, "after")


def test_without_the_agent_the_buttons_say_so(
    agent: harness.Agent,
    server: harness.SparkConnectServer,
    notebook_a: browser.LabNotebook,
    shots: browser.Screenshots,
) -> None:
    a = notebook_a
    with failure_shots(shots, a):
        a.run_cell(4)
        job = running_job(server, USER_A, tasks=1)
        wait_widget(a, 4, lambda w: w["button"] is not None, 30, "the widget")
        agent.stop()
        w = wait_widget(
            a,
            4,
            lambda w: (w["button"] or {}).get("unavailable") == "true",
            15,
            "the Cancel button to say there is no agent",
        )
        assert "no agent" in w["button"]["text"], w
        assert "not connected to the agent" in w["button"]["title"], w
        a.cell_locator(4).locator(".sparkscope-cancel").click()
        w = wait_widget(
            a, 4, lambda w: (w["result"] or {}).get("status") == "done", 10, "the answer"
        )
        assert (w["result"]["ok"], w["result"]["code"]) == ("false", "no_agent"), w
        assert "not connected to the agent" in w["result"]["text"], w
        shots.save(a.page, "no-agent")
        assert server.rest(f"jobs/{job['jobId']}")["status"] == "RUNNING"
        a.run_command("notebook:interrupt-kernel")
        a.wait_cell_done(4, 30)
        run_ok(a, 5, 60)
