"""Executors' memory, in a real browser, against a real Spark Connect server (heartbeats every
second) with the listener and the agent: a cell caches a dataset and then runs a stage long
enough for several heartbeats.

- The widget's memory line shows the peak heap of the cell's stages, equal to the highest
  `peakExecutorMetrics.JVMHeapMemory` Spark's REST API gives for those stages, against the
  driver's heap (local mode: the driver is the executor).
- The agent's /metrics has each executor's peak heap since it started, between two readings of
  Spark's `/executors` peakMemoryMetrics taken around it, and its GC time.
- With the user's threshold for "heap nearly full" set low (`%sparkscope advisor`), the cell gets
  the executor-memory finding with a fix naming spark.executor.memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import harness
import pytest
import requests
from harness import browser, nbrun

NOTEBOOK = "memory.ipynb"
ADVISOR = "%sparkscope advisor memory_high_share=0.01"
WORK = """df = spark.range(0, 1_000_000, 1, 4).selectExpr("id", "repeat('x', 64) AS s").cache()
df.count()
spark.range(0, 2, 1, 2).selectExpr("reflect('java.lang.Thread', 'sleep', 4000L)").collect()
"""
HEARTBEAT = "1s"

MEMORY_JS = """(index) => {
  const root = window.jupyterapp.shell.currentWidget.content.widgets[index].node
    .querySelector('.sparkscope-cell');
  const line = root && root.querySelector('.sparkscope-memory');
  return {
    state: root ? root.dataset.state : null,
    memory: line ? {...line.dataset, text: line.textContent} : null,
    findings: root ? [...root.querySelectorAll('.sparkscope-advisor .sparkscope-finding')].map(
      (n) => ({id: n.dataset.finding, title: n.title, fix: n.dataset.fix || null})) : [],
  };
}"""


@pytest.fixture(scope="module")
def agent(notebook_agent) -> Iterator[harness.Agent]:
    with notebook_agent() as agent:
        yield agent


@pytest.fixture(scope="module")
def server(notebook_server, agent: harness.Agent):
    conf = {"spark.executor.heartbeatInterval": HEARTBEAT}
    with notebook_server(agent, conf=conf) as server:
        yield server


@pytest.fixture(scope="module")
def lab(
    server: harness.SparkConnectServer, agent: harness.Agent, notebook_lab, artifacts_dir: Path
):
    setup = nbrun.browser_setup(server.remote_url(user_id="mo"))
    with notebook_lab(agent, {NOTEBOOK: [setup, ADVISOR, WORK]}) as lab:
        yield lab


def stage_peaks(server: harness.SparkConnectServer, keys) -> dict[tuple[int, int], int]:
    """Spark's peak heap of each stage attempt (its status store's peakExecutorMetrics)."""
    out = {}
    for sid, att in keys:
        s = server.rest(f"stages/{sid}/{att}")
        out[(sid, att)] = int((s.get("peakExecutorMetrics") or {}).get("JVMHeapMemory", 0))
    return out


def driver_peaks(server: harness.SparkConnectServer) -> dict:
    (driver,) = [e for e in server.rest("allexecutors") if e["id"] == "driver"]
    return driver.get("peakMemoryMetrics") or {}


def exposition(agent: harness.Agent, name: str, **labels: str) -> float | None:
    """The value of the agent's series `name` with these labels, or None."""
    text = requests.get(f"{agent.url}/metrics", timeout=10).text
    for line in text.splitlines():
        m = re.match(rf"{name}\{{(.*)\}} (\S+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            return float(m.group(2))
    return None


def test_the_memory_line_and_metrics_equal_sparks_peaks(
    require_browser,
    artifacts_dir: Path,
    screenshots_dir: Path,
    lab: harness.JupyterLab,
    server: harness.SparkConnectServer,
    agent: harness.Agent,
) -> None:
    shots = browser.Screenshots(screenshots_dir, "memory", [])
    with browser.chromium(artifacts_dir / "chromium-profile") as context:
        nb = browser.LabNotebook.open(context, lab, NOTEBOOK)
        with shots.on_failure(nb.page):
            nb.run_cells(0, 1)
            before = {(s["stageId"], s["attemptId"]) for s in server.rest("stages")}
            nb.run_cell(2)
            nb.wait_cell_done(2, 300)
            assert "Traceback" not in nb.cell_text_outputs(2), nb.cell_text_outputs(2)
            mine = {(s["stageId"], s["attemptId"]) for s in server.rest("stages")} - before
            spark = stage_peaks(server, mine)
            assert max(spark.values()) > 0, f"no heartbeat named the cell's stages: {spark}"
            node = browser.open_view(nb, 2)  # the memory line shows unfolded

            def settled() -> dict | None:
                w = nb.page.evaluate(MEMORY_JS, 2)
                m = w["memory"]
                if w["state"] != "done" or not m:
                    return None
                return w if int(m["peakHeapBytes"]) == max(spark.values()) else None

            try:
                w = harness.wait_until(settled, 60, 0.3, "the memory line at Spark's peak")
            except TimeoutError as e:
                raise AssertionError((nb.page.evaluate(MEMORY_JS, 2), spark)) from e
            shots.save(node, "widget")
            shots.save(nb.page, "mo")
    m = w["memory"]
    print(f"memory line: {m['text']!r}; Spark's stage peaks {spark}")
    # local mode: the driver's JVM runs the tasks; its heap is spark.driver.memory (1g) less a
    # survivor space
    assert 0.8 * 2**30 < int(m["maxHeapBytes"]) <= 2**30, m
    assert f"{round(float(m['heapShare']) * 100)}%" in m["text"], m
    (f,) = [f for f in w["findings"] if f["id"] == "memory-high"]
    assert "spark.executor.memory=" in f["fix"], f

    # The agent's executor series, between two readings of Spark's own (heartbeats go on).
    def sandwiched(metric: str, spark_name: str, scale: float, **labels: str):
        def check() -> tuple[float, int, int] | None:
            low = int(driver_peaks(server).get(spark_name, 0))
            ours = exposition(agent, metric, executor="driver", **labels)
            high = int(driver_peaks(server).get(spark_name, 0))
            if ours is None or not low <= round(ours * scale) <= high:
                return None
            return ours * scale, low, high

        try:
            return harness.wait_until(check, 30, 0.2, f"{metric} as Spark's {spark_name}")
        except TimeoutError as e:
            raise AssertionError((driver_peaks(server), exposition(agent, metric))) from e

    heap = sandwiched("sparkscope_executor_memory_peak_bytes", "JVMHeapMemory", 1, kind="jvm_heap")
    gc = sandwiched("sparkscope_executor_gc_seconds_total", "TotalGCTime", 1000)
    print(f"driver peak heap (agent, Spark before, after): {heap}; GC time ms: {gc}")
    assert heap[0] > 0
    assert exposition(agent, "sparkscope_executor_max_heap_bytes", executor="driver") == int(
        m["maxHeapBytes"]
    )
