"""The advisor's plan findings, in a real browser, against a real Spark Connect server with the
listener and the agent:

- a join Spark plans as sort-merge (broadcasts switched off in the session) whose one side is
  small gets the broadcast finding; its fix, inserted below and never run, has `broadcast()` on
  the small side and the plan's join keys; that fix with the notebook's DataFrames filled in
  runs faster than the sort-merge join did (both runs' times from Spark's SQL REST API);
- a write of many small files gets the small-files finding, with Spark's own figures;
- a read of every partition of a partitioned table with no filter on its partition column gets
  the full-scan finding, naming that column and as many partitions as Spark's SQL REST API says
  the scan read; the same read filtered on the column gets none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import harness
import pytest
from harness import browser, nbrun

JOIN = """spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
big = spark.range(0, 3_000_000, 1, 8).selectExpr("id % 1000 AS k", "id AS v")
small = spark.range(0, 1000, 1, 2).selectExpr("id AS k", "id % 7 AS c")
big.join(small, ["k"]).groupBy("c").count().collect()
"""
WRITE = "spark.range(0, 200_000, 1, 150).write.mode('overwrite').parquet({path!r})"
NOTEBOOK = "advisor.ipynb"
PARTITIONS = "partitions.ipynb"
PARTITIONED = """path = {path!r}
spark.range(0, 60_000, 1, 6).selectExpr("id", "id % 6 AS day", "id * 3 AS v").write.mode(
    "overwrite").partitionBy("day").parquet(path)
"""
FULL = 'spark.read.parquet(path).groupBy("v").count().collect()'
PRUNED = 'spark.read.parquet(path).where("day = 2").groupBy("v").count().collect()'

FINDINGS_JS = """(index) => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  const root = nb.widgets[index].node.querySelector('.sparkscope-cell');
  return {
    state: root ? root.dataset.state : null,
    findings: root ? [...root.querySelectorAll('.sparkscope-advisor .sparkscope-finding')].map(
      (n) => ({id: n.dataset.finding, title: n.title, fix: n.dataset.fix || null,
               text: n.textContent})) : [],
    cells: nb.widgets.map((c) => ({type: c.model.type, source: c.model.sharedModel.getSource(),
      count: c.model.type === 'code' ? c.model.executionCount : null})),
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
def lab(
    server: harness.SparkConnectServer, agent: harness.Agent, notebook_lab, artifacts_dir: Path
):
    setup = nbrun.browser_setup(server.remote_url(user_id="ana"))
    write = WRITE.format(path=str(artifacts_dir / "small-files"))
    parts = PARTITIONED.format(path=str(artifacts_dir / "partitioned"))
    notebooks = {NOTEBOOK: [setup, JOIN, write], PARTITIONS: [setup, parts, FULL, PRUNED]}
    with notebook_lab(agent, notebooks) as lab:
        yield lab


def finding(nb: browser.LabNotebook, index: int, kind: str) -> dict:
    def found() -> dict | None:
        w = nb.page.evaluate(FINDINGS_JS, index)
        return next((f for f in w["findings"] if f["id"] == kind), None)

    try:
        return harness.wait_until(found, 60, 0.3, f"the {kind} finding")
    except TimeoutError as e:
        raise AssertionError(nb.page.evaluate(FINDINGS_JS, index)) from e


def sql_duration(server: harness.SparkConnectServer, marker: str) -> int:
    """The duration (ms) of the newest completed SQL execution whose plan has `marker`."""
    runs = [
        x
        for x in server.rest("sql", {"details": "true", "planDescription": "false"})
        if x["status"] == "COMPLETED" and any(marker in n["nodeName"] for n in x["nodes"])
    ]
    assert runs, marker
    return max(runs, key=lambda x: x["id"])["duration"]


def test_a_sort_merge_join_with_a_small_side_gets_the_broadcast_fix_which_runs_faster(
    require_browser,
    artifacts_dir: Path,
    screenshots_dir: Path,
    lab: harness.JupyterLab,
    server: harness.SparkConnectServer,
) -> None:
    shots = browser.Screenshots(screenshots_dir, "advisor-broadcast", [])
    with browser.chromium(artifacts_dir / "chromium-profile") as context:
        nb = browser.LabNotebook.open(context, lab, NOTEBOOK)
        try:
            nb.run_cell(0)
            nb.wait_cell_done(0, 180)
            nb.run_cell(1)
            nb.wait_cell_done(1, 300)
            assert "Traceback" not in nb.cell_text_outputs(1), nb.cell_text_outputs(1)
            f = finding(nb, 1, "broadcast")
            smj_ms = sql_duration(server, "SortMergeJoin")
            node = nb.cell_locator(1).locator(".sparkscope-cell").first
            if "sparkscope-collapsed" in (node.get_attribute("class") or ""):
                node.locator(".sparkscope-header").click()
            before = len(nb.page.evaluate(FINDINGS_JS, 1)["cells"])
            node.locator(
                '.sparkscope-advisor .sparkscope-finding[data-finding="broadcast"] '
                ".sparkscope-insert-fix"
            ).click()
            after = harness.wait_until(
                lambda: (
                    (w := nb.page.evaluate(FINDINGS_JS, 1)) and len(w["cells"]) == before + 1 and w
                ),
                10,
                0.2,
                "the fix's cell",
            )
            shots.save(nb.page, "ana")
            path = shots.directory / "advisor-broadcast-widget.png"
            node.screenshot(path=str(path))
            shots.saved.append(path)
            inserted = after["cells"][2]
            assert inserted["type"] == "code" and inserted["count"] is None, inserted
            fix = inserted["source"]
            assert "broadcast(small_df)" in fix and '["k"]' in fix, fix
            # the user fills in their DataFrames and runs it: the same query, broadcast
            line = next(x for x in fix.splitlines() if "broadcast(small_df)" in x)
            code = line.lstrip("# ").replace("large_df", "big").replace("small_df", "small")
            code = code.replace("result = ", "") + '.groupBy("c").count().collect()'
            run = "from pyspark.sql.functions import broadcast\n" + code
            nb.page.evaluate(
                "([i, src]) => window.jupyterapp.shell.currentWidget.content.widgets[i]"
                ".model.sharedModel.setSource(src)",
                [2, run],
            )
            nb.run_cell(2)
            nb.wait_cell_done(2, 300)
            assert "Traceback" not in nb.cell_text_outputs(2), (run, nb.cell_text_outputs(2))
        except BaseException:
            with contextlib.suppress(Exception):
                shots.save(nb.page, "failure")
            raise
    bhj_ms = sql_duration(server, "BroadcastHashJoin")
    print(
        f"broadcast finding: {f['title']!r}; inserted fix: {fix!r}; the sort-merge join ran "
        f"{smj_ms} ms, the fix with broadcast() {bhj_ms} ms ({smj_ms / max(bhj_ms, 1):.1f}x)"
    )
    assert "SortMergeJoin" in f["title"] or "sort-merge" in f["title"].lower(), f
    assert bhj_ms < smj_ms, (smj_ms, bhj_ms)


def test_a_write_of_many_small_files_gets_the_small_files_finding(
    require_browser,
    artifacts_dir: Path,
    lab: harness.JupyterLab,
    server: harness.SparkConnectServer,
) -> None:
    with browser.chromium(artifacts_dir / "chromium-profile-write") as context:
        nb = browser.open_beside(context, lab, NOTEBOOK, workspace="write")
        nb.run_cell(0)
        nb.wait_cell_done(0, 180)
        index = 3 if len(nb.page.evaluate(FINDINGS_JS, 0)["cells"]) > 3 else 2
        nb.run_cell(index)
        nb.wait_cell_done(index, 300)
        assert "Traceback" not in nb.cell_text_outputs(index), nb.cell_text_outputs(index)
        f = finding(nb, index, "small-files")
    files = sorted((artifacts_dir / "small-files").glob("part-*.parquet"))
    sizes = [p.stat().st_size for p in files]
    print(
        f"small-files finding: {f['title']!r}; on disk {len(files)} files, "
        f"{sum(sizes) / len(sizes) / 1024:.1f} KiB on average"
    )
    assert len(files) == 150 and max(sizes) < 3 * 1024 * 1024, (len(files), max(sizes))
    assert "150 files" in f["title"], f
    assert f["fix"] and "coalesce(" in f["fix"], f


def scan_partitions_read(server: harness.SparkConnectServer, marker: str) -> int:
    """'number of partitions read' of the newest completed SQL execution whose plan has a scan
    node, from Spark's SQL REST API."""
    runs = [
        x
        for x in server.rest("sql", {"details": "true", "planDescription": "false"})
        if x["status"] == "COMPLETED" and any(marker in n["nodeName"] for n in x["nodes"])
    ]
    assert runs, marker
    newest = max(runs, key=lambda x: x["id"])
    (scan,) = [n for n in newest["nodes"] if marker in n["nodeName"]]
    (value,) = [m["value"] for m in scan["metrics"] if m["name"] == "number of partitions read"]
    return int(str(value).replace(",", ""))


def test_a_read_of_every_partition_without_a_partition_filter_gets_the_full_scan_finding(
    require_browser,
    artifacts_dir: Path,
    lab: harness.JupyterLab,
    server: harness.SparkConnectServer,
) -> None:
    with browser.chromium(artifacts_dir / "chromium-profile-partitions") as context:
        nb = browser.open_beside(context, lab, PARTITIONS, workspace="partitions")
        nb.run_cells(0, 1, 2)
        f = finding(nb, 2, "full-scan")
        full = scan_partitions_read(server, "Scan parquet")
        nb.run_cell(3)
        nb.wait_cell_done(3, 300)
        assert "Traceback" not in nb.cell_text_outputs(3), nb.cell_text_outputs(3)
        pruned = scan_partitions_read(server, "Scan parquet")
        harness.wait_until(
            lambda: nb.page.evaluate(FINDINGS_JS, 3)["state"] == "done", 60, 0.3, "cell 3 done"
        )
        later = nb.page.evaluate(FINDINGS_JS, 3)["findings"]
    days = sorted(p.name for p in (artifacts_dir / "partitioned").glob("day=*"))
    print(f"full-scan finding: {f['title']!r}; Spark read {full} then {pruned} partition(s)")
    assert len(days) == 6 and full == 6 and pruned == 1, (days, full, pruned)
    assert f"all {full} partitions" in f["title"] and "no filter on day" in f["title"], f
    assert f["fix"] and 'col("day")' in f["fix"], f
    assert not [x for x in later if x["id"] == "full-scan"], later
