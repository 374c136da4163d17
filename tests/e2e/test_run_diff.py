"""Run-to-run diffs, in a real browser, against a real Spark Connect server with the listener and
the agent: a cell that reads a CSV dataset runs; the agent restarts (its run history is
written at shutdown and read at start); the notebook points the same cell at a dataset four
times as large and runs it again. The rerun's widget says how it differs from the previous run,
and its input ratio equals the ratio of the bytes Spark's REST API says the two runs' stages read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import harness
import pytest
from harness import browser, nbrun

NOTEBOOK = "rerun.ipynb"
WRITE = """small, large = {small!r}, {large!r}
spark.range(0, 1_000_000, 1, 4).selectExpr("id", "rand(7) AS x").write.mode("overwrite").csv(small)
spark.range(0, 4_000_000, 1, 4).selectExpr("id", "rand(7) AS x").write.mode("overwrite").csv(large)
path = small
spark.read.csv(small, schema="id LONG, x DOUBLE").groupBy("id").count().collect()  # warm-up
"""
# CSV: Spark counts every byte it reads (of Parquet on local files, Spark 4.3 reports little
# more than the footers as input bytes)
READ = (
    'spark.read.csv(path, schema="id LONG, x DOUBLE")'
    '.groupBy((col("id") % 10).alias("k")).agg(avg("x")).collect()'
)
LARGER = "path = large"

DIFF_JS = """(index) => {
  const cell = window.jupyterapp.shell.currentWidget.content.widgets[index];
  const root = cell.node.querySelector('.sparkscope-cell');
  const line = root && root.querySelector('.sparkscope-diff');
  return {state: root ? root.dataset.state : null, tag: root ? root.dataset.tag : null,
          diff: line ? {...line.dataset, text: line.textContent} : null};
}"""


@pytest.fixture(scope="module")
def agent(notebook_agent) -> Iterator[harness.Agent]:
    with notebook_agent() as agent:
        yield agent


@pytest.fixture(scope="module")
def server(notebook_server, agent: harness.Agent):
    with notebook_server(agent) as server:
        yield server


@pytest.fixture(scope="module")
def lab(
    server: harness.SparkConnectServer, agent: harness.Agent, notebook_lab, artifacts_dir: Path
):
    setup = nbrun.browser_setup(server.remote_url(user_id="rae"))
    setup += "from pyspark.sql.functions import col, avg\n"
    write = WRITE.format(
        small=str(artifacts_dir / "rows-small"), large=str(artifacts_dir / "rows-large")
    )
    with notebook_lab(agent, {NOTEBOOK: [setup, write, READ, LARGER]}) as lab:
        yield lab


def stage_input(server: harness.SparkConnectServer) -> dict[tuple[int, int], int]:
    """Every stage attempt's input bytes, by (stage id, attempt), from Spark's REST API."""
    return {(s["stageId"], s["attemptId"]): s["inputBytes"] for s in server.rest("stages")}


def history(agent: harness.Agent) -> list[dict]:
    if not agent.run_history.exists():
        return []
    return [json.loads(x) for x in agent.run_history.read_text().splitlines() if x.strip()]


def test_a_rerun_on_four_times_the_input_shows_the_diff_with_sparks_input_ratio(
    require_browser,
    artifacts_dir: Path,
    screenshots_dir: Path,
    lab: harness.JupyterLab,
    server: harness.SparkConnectServer,
    agent: harness.Agent,
) -> None:
    shots = browser.Screenshots(screenshots_dir, "run-diff", [])
    with browser.chromium(artifacts_dir / "chromium-profile") as context:
        nb = browser.LabNotebook.open(context, lab, NOTEBOOK)
        with shots.on_failure(nb.page):
            nb.run_cells(0, 1)
            before = stage_input(server)
            nb.run_cell(2)
            nb.wait_cell_done(2, 300)
            first = harness.wait_until(
                lambda: (w := nb.page.evaluate(DIFF_JS, 2)) and w["state"] == "done" and w,
                60,
                0.3,
                "the first run's widget, done",
            )
            # the agent kept the first run (its file is written a moment after a change)
            kept = harness.wait_until(
                lambda: [f for f in history(agent) if f.get("tag") == first["tag"]],
                30,
                0.3,
                "the first run in the agent's run history",
            )
            assert kept[0]["notebook"].endswith(NOTEBOOK) and kept[0]["cellId"], kept
            assert first["diff"] is None, f"a cell's first run has nothing to compare: {first}"
            run1 = {k: v for k, v in stage_input(server).items() if k not in before}
            assert sum(run1.values()) > 0, run1

            agent.restart()  # the run history goes through the agent's file
            nb.run_cell(3)
            nb.wait_cell_done(3, 120)
            before = stage_input(server)
            nb.run_cell(2)
            nb.wait_cell_done(2, 300)

            def diffed() -> dict | None:
                w = nb.page.evaluate(DIFF_JS, 2)
                return w if w["diff"] and w["tag"] != first["tag"] else None

            try:
                second = harness.wait_until(diffed, 90, 0.3, "the rerun's diff line")
            except TimeoutError as e:
                raise AssertionError(nb.page.evaluate(DIFF_JS, 2)) from e
            node = browser.open_view(nb, 2)
            shots.save(node, "widget")
            shots.save(nb.page, "rae")
    run2 = {k: v for k, v in stage_input(server).items() if k not in before}
    d = second["diff"]
    spark_ratio = sum(run2.values()) / sum(run1.values())
    print(
        f"rerun diff: {d['text']!r}; input {d['previousInputBytes']} -> {d['inputBytes']} bytes "
        f"(Spark's stages: {sum(run1.values())} -> {sum(run2.values())}, ratio {spark_ratio:.3f})"
    )
    assert d["previousTag"] == first["tag"], d
    assert int(d["previousInputBytes"]) == sum(run1.values()), (d, run1)
    assert int(d["inputBytes"]) == sum(run2.values()), (d, run2)
    assert abs(float(d["inputRatio"]) - spark_ratio) < 0.001, (d, spark_ratio)
    assert 3.0 < spark_ratio < 5.0, f"four times the rows: {spark_ratio}"
    assert f"input +{round((spark_ratio - 1) * 100)}%" in d["text"], d["text"]
