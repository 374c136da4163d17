"""The Plan view of a cell, in a real browser, against a real Spark Connect server with the
listener and the real agent: each SQL query a cell ran, as Spark's physical plan with its
operators' live metrics.

- A join and aggregation: once it ended, every operator's row count in the widget equals the
  node's "number of output rows" in Spark's SQL REST API (`/sql/<id>?details=true`), for the
  plan adaptive execution ended with.
- A query whose one task sleeps: its plan is in the widget while it still runs.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import harness
import pytest
from harness import browser, nbrun

JOIN = """big = spark.range(0, 400000, 1, 4).selectExpr("id % 5000 AS k", "id AS v")
small = spark.range(0, 5000, 1, 2).selectExpr("id AS k", "id % 7 AS c")
big.join(small, "k").where("v % 3 = 0").groupBy("c").count().orderBy("c").collect()
"""
# one of four tasks sleeps 12 s: the query runs long enough to be seen running
SLOW = (
    "spark.range(0, 4, 1, 4).selectExpr(\"reflect('java.lang.Thread', 'sleep', "
    'cast(if(id = 3, 12000, 10) as bigint)) AS x").groupBy("x").count().collect()'
)
NOTEBOOK = "plan.ipynb"

# The Plan view of one cell's widget.
PLAN_JS = """(index) => {
  const cell = window.jupyterapp.shell.currentWidget.content.widgets[index];
  const root = cell.node.querySelector('.sparkscope-cell');
  if (!root) return null;
  const tab = root.querySelector('.sparkscope-tab[data-view="plan"]');
  const view = root.querySelector('.sparkscope-plan-view');
  return {
    view: root.dataset.view,
    count: tab ? Number(tab.dataset.count) : null,
    executions: view ? [...view.querySelectorAll('.sparkscope-plan-execution')].map((x) => ({
      id: Number(x.dataset.executionId), status: x.dataset.status,
      version: Number(x.dataset.planVersion),
      nodes: [...x.querySelectorAll('.sparkscope-plan-node')].map((n) => ({
        name: n.dataset.nodeName,
        rows: n.dataset.rows === undefined ? null : Number(n.dataset.rows),
        share: Number(n.dataset.share), top: n.dataset.top === 'true'})),
    })) : null,
  };
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
def lab(server: harness.SparkConnectServer, agent: harness.Agent, notebook_lab):
    setup = nbrun.browser_setup(server.remote_url(user_id="ana"))
    with notebook_lab(agent, {NOTEBOOK: [setup, JOIN, SLOW]}) as lab:
        yield lab


def spark_rows(server: harness.SparkConnectServer, execution_id: int) -> Counter:
    """(node name, number of output rows) of each node that has the metric, per Spark's SQL
    REST API."""
    sql = server.rest(f"sql/{execution_id}", {"details": "true", "planDescription": "false"})
    assert sql["status"] == "COMPLETED", sql["status"]
    rows: Counter = Counter()
    for n in sql["nodes"]:
        for m in n.get("metrics", []):
            if m["name"] == "number of output rows":
                rows[(n["nodeName"], int(m["value"].replace(",", "")))] += 1
    return rows


def test_operator_rows_equal_sparks_sql_rest_api_and_the_plan_is_live(
    require_browser,
    artifacts_dir: Path,
    screenshots_dir: Path,
    lab: harness.JupyterLab,
    server: harness.SparkConnectServer,
) -> None:
    shots = browser.Screenshots(screenshots_dir, "plan", [])
    with browser.chromium(artifacts_dir / "chromium-profile") as context:
        nb = browser.LabNotebook.open(context, lab, NOTEBOOK)
        try:
            nb.run_cell(0)
            nb.wait_cell_done(0, 180)
            assert "Traceback" not in nb.cell_text_outputs(0), nb.cell_text_outputs(0)
            nb.run_cell(1)
            nb.wait_cell_done(1, 180)
            assert "Traceback" not in nb.cell_text_outputs(1), nb.cell_text_outputs(1)
            browser.open_view(nb, 1, "plan")

            def ended() -> dict | None:
                v = nb.page.evaluate(PLAN_JS, 1)
                xs = (v or {}).get("executions") or []
                done = [x for x in xs if x["status"] == "succeeded" and x["nodes"]]
                if not done:
                    return None
                # the final metrics come with the end; wait until Spark's REST API agrees
                for x in done:
                    ours = Counter(
                        (n["name"], n["rows"]) for n in x["nodes"] if n["rows"] is not None
                    )
                    if ours != spark_rows(server, x["id"]):
                        return None
                return v

            try:
                plan = harness.wait_until(ended, 60, 0.5, "the plan's row counts")
            except TimeoutError as e:
                v = nb.page.evaluate(PLAN_JS, 1)
                theirs = {x["id"]: spark_rows(server, x["id"]) for x in v["executions"]}
                raise AssertionError(f"widget {v}; Spark's {theirs}") from e
            shots.save(nb.page, "join")
            path = shots.directory / "plan-widget.png"
            nb.cell_locator(1).locator(".sparkscope-cell").first.screenshot(path=str(path))
            shots.saved.append(path)

            # a running query: its plan is there before it ends
            nb.run_cell(2)
            browser.open_view(nb, 2, "plan")

            def running() -> dict | None:
                v = nb.page.evaluate(PLAN_JS, 2)
                xs = (v or {}).get("executions") or []
                return next((x for x in xs if x["status"] == "running" and x["nodes"]), None)

            live = harness.wait_until(running, 60, 0.3, "the running query's plan")
            nb.wait_cell_done(2, 120)
        except BaseException:
            with contextlib.suppress(Exception):
                shots.save(nb.page, "failure")
            raise

    executions = plan["executions"]
    named = [n for x in executions for n in x["nodes"] if n["rows"] is not None]
    assert len(named) >= 3, executions
    # the scan of 400,000 ids is there with its rows, and the join's output is a third of it
    assert ("Range", 400000) in {(n["name"], n["rows"]) for n in named}, named
    assert any(n["share"] > 0 for x in executions for n in x["nodes"]), executions
    tops = sum(n["top"] for x in executions for n in x["nodes"])
    assert 1 <= tops <= len(executions), executions
    versions = {x["id"]: x["version"] for x in executions}
    print(
        f"Plan view: {len(executions)} query(ies) {versions} (AQE versions), "
        f"{len(named)} operators with rows, all equal to Spark's /sql/<id> node metrics: "
        + ", ".join(f"{n['name']}={n['rows']}" for n in named)
        + f"; the running query showed {len(live['nodes'])} operators before it ended"
    )
