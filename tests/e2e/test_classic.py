"""Classic SparkSessions, the SparkMonitor case: a notebook whose kernel builds its own
SparkSession (classic pyspark, local mode) after `%load_ext sparkscope`, with no SPARKSCOPE_* or
SPARK_HOME in its environment. The extension starts a private agent for the kernel, attaches the
listener before the JVM starts and tags every cell run with a Spark job tag; each Spark cell's
widget must hold exactly its jobs with the task counts of Spark's own REST API (read by the
notebook itself, since its Spark UI lives as long as its kernel), a cancel of a running cell
stops its job through the listener, and the private agent ends with the kernel. A session built
before the extension was loaded gets a clear message instead.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import harness
import nbformat
import pytest
from harness import nbrun

BUILD = """\
import json, os, warnings
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
from pyspark.sql import SparkSession
spark = (
    SparkSession.builder.master("local[2]").appName("classic notebook")
    .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
    .config("spark.ui.showConsoleProgress", "false").getOrCreate()
)
sc = spark.sparkContext
print(json.dumps({"probe": "context", "app": sc.applicationId, "ui": sc.uiWebUrl,
                  "user": sc.sparkUser()}))
"""

CELLS = [
    "%load_ext sparkscope",
    BUILD,
    # two jobs (a shuffle): the widget must show both
    'spark.range(0, 200_000, 1, 4).selectExpr("id % 7 AS k").groupBy("k").count().collect()',
    "spark.range(0, 50_000, 1, 3).count()",
    # a cell cancelled from sparkscope while its job runs (as the widget's Cancel does)
    """\
import threading, time, sparkscope
tag = sparkscope.current_tag()
def press_cancel():
    time.sleep(4)
    sparkscope._monitor.cancel(tag)
threading.Thread(target=press_cancel, daemon=True).start()
try:
    spark.range(0, 4, 1, 2).selectExpr("reflect('java.lang.Thread', 'sleep', 60000L)").collect()
    print(json.dumps({"probe": "cancel", "stopped": False}))
except Exception as e:
    print(json.dumps({"probe": "cancel", "stopped": True, "error": type(e).__name__}))
""",
    # Spark's own view, and the private agent's pid (it must end with the kernel)
    """\
import urllib.request, sparkscope
url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/jobs"
jobs = json.loads(urllib.request.urlopen(url, timeout=10).read())
sparkscope.wait(10)
print(json.dumps({"probe": "spark", "jobs": jobs, "agent_pid": sparkscope._monitor.connection.private.proc.pid}))
""",
]


def _kernel_env(work: Path) -> dict[str, str]:
    env = nbrun.kernel_env(work, {})
    for name in [k for k in env if k.startswith("SPARKSCOPE_") or k == "SPARK_HOME"]:
        env.pop(name)
    for name in ("SPARK_REMOTE", "JUPYTERHUB_API_TOKEN"):
        env.pop(name, None)
    return env


def _execute(work: Path, name: str, cells: list[str], timeout: float):
    """Run `cells` as a notebook through nbclient in a plain classic kernel; the executed nb."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    source = work / f"{name}.ipynb"
    nbformat.write(nb, source)
    (work / "kernel").mkdir()
    run = nbrun.NotebookRun(name, source, work / f"{name}.out.ipynb", _kernel_env(work / "kernel"))
    nbrun.execute_concurrently([run], timeout=timeout)
    assert run.error is None, run.error
    return run.nb


@pytest.fixture(scope="module")
def executed(tmp_path_factory, require_piece):
    require_piece(harness.agent_binary(), "sparkscope binary", "make setup")
    return _execute(tmp_path_factory.mktemp("classic"), "classic", CELLS, 400)


def _probe(nb, name: str) -> dict:
    (found,) = [p for p in nbrun.probes(nb) if p["probe"] == name]
    return found


def _widget(nb, index: int) -> dict:
    widgets = nbrun.cell_widgets(nb, index)
    assert len(widgets) == 1, nb.cells[index].get("outputs")
    return nbrun.widget_states(nb)[widgets[0][0]]["state"]


def test_each_cell_shows_its_own_jobs_with_sparks_counts(executed) -> None:
    spark = {j["jobId"]: j for j in _probe(executed, "spark")["jobs"]}
    seen: set[int] = set()
    for index in (2, 3):
        state = _widget(executed, index)
        assert state["state"] == "done", state
        jobs = {j["jobId"]: j for j in state["jobs"]}
        assert jobs, state
        assert not seen & jobs.keys(), "a job shown under two cells"
        seen |= jobs.keys()
        for job_id, job in jobs.items():
            assert job["status"] == spark[job_id]["status"] == "SUCCEEDED"
            # who ran it stays in the kernel, out of the saved widget state
            assert "userId" not in job and "sessionId" not in job, job
            for key, field in (("total", "numTasks"), ("completed", "numCompletedTasks")):
                assert job["tasks"][key] == spark[job_id][field], (key, job, spark[job_id])
        # Spark's own record of the job carries the cell's tag
        tags = {t for j in jobs for t in spark[j].get("jobTags", [])}
        assert any(t.startswith("sparkscope-cell-") for t in tags), tags
    # the shuffle cell ran two jobs, the count cell at least one
    assert len(_widget(executed, 2)["jobs"]) >= 2


def test_cancel_stops_the_running_cell_through_the_listener(executed) -> None:
    assert _probe(executed, "cancel")["stopped"] is True
    state = _widget(executed, 4)
    assert state["cancel"].get("ok") is True, state["cancel"]
    spark = {j["jobId"]: j for j in _probe(executed, "spark")["jobs"]}
    (job,) = state["jobs"]
    assert spark[job["jobId"]]["status"] == "FAILED"
    assert job["status"] == "FAILED"


def test_the_private_agent_ends_with_the_kernel(executed) -> None:
    pid = _probe(executed, "spark")["agent_pid"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    pytest.fail(f"the private agent {pid} outlived its kernel")


def test_a_session_built_before_loading_gets_told_what_to_do(tmp_path: Path) -> None:
    nb = _execute(tmp_path, "late", [BUILD, "%load_ext sparkscope"], 300)
    stderr = "".join(
        o.get("text", "") for o in nb.cells[1].get("outputs", []) if o.get("name") == "stderr"
    )
    assert "started before `%load_ext sparkscope`" in stderr and "Restart the kernel" in stderr


def test_in_jupyterlab_the_cancel_button_stops_a_classic_cell(
    tmp_path: Path, require_piece, screenshots_dir: Path
) -> None:
    """The same in JupyterLab in Chromium: the widget of a cell running a classic job shows the
    running job, and its Cancel button stops it through the private agent and the listener."""
    from harness import browser
    from test_browser_cancel import SLEEP, run_ok, wait_widget

    require_piece(
        browser.chromium_path(), "Chromium (/usr/bin/chromium)", "apt-get install chromium"
    )
    (ui_port,) = harness.free_ports(1)
    root = tmp_path / "root"
    root.mkdir()
    build = BUILD.replace(
        '.config("spark.ui.showConsoleProgress"',
        f'.config("spark.ui.port", "{ui_port}")\n    .config("spark.ui.showConsoleProgress"',
    )
    nbrun.write_notebook(
        root / "classic.ipynb",
        [
            "%load_ext sparkscope\n" + build + "spark.range(1).collect()",
            f'spark.range(0, 2, numPartitions=2).selectExpr("{SLEEP.format(ms=40_000)}").collect()',
            "spark.stop()",
        ],
    )
    ui = f"http://127.0.0.1:{ui_port}"
    with (
        harness.JupyterLab(root, tmp_path / "lab") as lab,
        browser.chromium(tmp_path / "chromium-profile") as context,
    ):
        nb = browser.LabNotebook.open(context, lab, "classic.ipynb")
        shots = browser.Screenshots(screenshots_dir, "classic-cancel", [])
        try:
            out = run_ok(nb, 0, 180)
            (app,) = [json.loads(x) for x in out.splitlines() if x.startswith('{"probe"')]
            nb.run_cell(1)
            w = wait_widget(
                nb,
                1,
                lambda w: w["button"] and any(j["running"] == 2 for j in w["jobs"]),
                60,
                "the widget to show the running job and its Cancel button",
            )
            (job_id,) = [j["jobId"] for j in w["jobs"]]
            # Spark's own view first (its REST API's first answer takes a second or two)
            running = harness.rest_get(ui, f"applications/{app['app']}/jobs/{job_id}")
            assert running["status"] == "RUNNING", running
            shots.save(nb.page, "before")
            clicked = time.monotonic()
            nb.cell_locator(1).locator(".sparkscope-cancel").click()
            job = harness.wait_until(
                lambda: (
                    (j := harness.rest_get(ui, f"applications/{app['app']}/jobs/{job_id}"))[
                        "status"
                    ]
                    != "RUNNING"
                    and j
                ),
                15,
                0.05,
                "Spark to stop the job",
            )
            print(f"click -> Spark job not RUNNING {1000 * (time.monotonic() - clicked):.0f} ms")
            assert job["status"] == "FAILED", job
            w = wait_widget(nb, 1, lambda w: w["state"] == "cancelled", 10, "the widget to say so")
            assert w["result"]["ok"] == "true" and w["result"]["target"] == "cell", w
            nb.wait_cell_done(1, 30)
            shots.save(nb.page, "after")
            run_ok(nb, 2, 60)
        except BaseException:
            shots.save(nb.page, "failure")
            raise
