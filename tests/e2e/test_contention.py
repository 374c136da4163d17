"""The contention line of a cell on a shared server, in a real browser: ivy's notebook and zed's
Connect session compete for the two cores of one real Spark Connect server (local[2]) with the
listener and the agent. Ivy's cell says what share of the cores it held over its run, how many
other sessions held how much, how long every core was busy and how long its tasks waited for
cores the other session held; each equals what Spark's task start and end times and its stages'
submission times (its REST API) say for the same window, within one sample period (the stream
interval) per change.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import harness
import pytest
from harness import browser, nbrun

# eight tasks of 1.5 s each: 6 s on two free cores
SLEEPY = (
    "spark.range(0, 8, 1, 8).selectExpr(\"reflect('java.lang.Thread', 'sleep', "
    'cast(1500 as bigint)) AS x").collect()'
)
NOTEBOOK = "contention.ipynb"
INTERVAL_MS = 100  # the agent's stream interval: one busy-slots sample per interval at most

CONTENTION_JS = """(index) => {
  const cell = window.jupyterapp.shell.currentWidget.content.widgets[index];
  const root = cell.node.querySelector('.sparkscope-cell');
  const line = root && root.querySelector('.sparkscope-contention');
  return line ? {...line.dataset, text: line.textContent, state: root.dataset.state} : null;
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
    setup = nbrun.browser_setup(server.remote_url(user_id="ivy"))
    with notebook_lab(agent, {NOTEBOOK: [setup, SLEEPY]}) as lab:
        yield lab


def tasks_of(server: harness.SparkConnectServer, user: str, theirs: bool = True) -> list[dict]:
    """Every task of the stages of `user`'s jobs (theirs=False: of everybody else's), from
    Spark's REST API."""
    mark = f"_User_{user}_Session_"
    stages: set[int] = set()
    for j in server.jobs():
        if any(mark in t for t in j.get("jobTags", [])) == theirs:
            stages.update(j["stageIds"])
    out = []
    for st in server.rest("stages"):
        if st["stageId"] in stages:
            path = f"stages/{st['stageId']}/{st['attemptId']}/taskList"
            out.extend(server.rest(path, {"length": 10_000}))
    return out


def epoch_ms(text: str) -> int:
    """Spark's REST time ("2026-12-06T21:40:15.123GMT") as epoch ms."""
    t = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%Z")
    return int(t.replace(tzinfo=UTC).timestamp() * 1000)


def overlap_ms(task: dict, start: int, end: int) -> int:
    """How long a task ran within [start, end], from Spark's launch time and duration."""
    t0 = epoch_ms(task["launchTime"])
    t1 = t0 + int(task.get("duration", 0))
    return max(0, min(t1, end) - max(t0, start))


def waited_ms(server: harness.SparkConnectServer, user: str, start: int, end: int) -> int:
    """Spark's figure for how long `user`'s tasks waited for cores others held within
    [start, end]: while every core ran a task, `user`'s tasks submitted and not yet launched,
    up to the tasks of others running, summed over time (from stage submission and task launch
    times and durations)."""
    cores = 2
    mark = f"_User_{user}_Session_"
    mine: set[int] = set()
    for j in server.jobs():
        if any(mark in t for t in j.get("jobTags", [])):
            mine.update(j["stageIds"])
    waiting, running, others = [], [], []
    for st in server.rest("stages"):
        tasks = server.rest(
            f"stages/{st['stageId']}/{st['attemptId']}/taskList", {"length": 10_000}
        )
        for t in tasks:
            launch = epoch_ms(t["launchTime"])
            span = (launch, launch + int(t.get("duration", 0)))
            if st["stageId"] in mine:
                waiting.append((epoch_ms(st["submissionTime"]), launch))
                running.append(span)
            else:
                others.append(span)
    edges = sorted({start, end} | {x for a, b in waiting + running + others for x in (a, b)})
    edges = [x for x in edges if start <= x <= end]

    def count(spans: list[tuple[int, int]], at: int) -> int:
        return sum(1 for a, b in spans if a <= at < b)

    total = 0
    for lo, hi in pairwise(edges):
        w, r, o = count(waiting, lo), count(running, lo), count(others, lo)
        if r + o >= cores:
            total += min(w, o) * (hi - lo)
    return total


def test_the_contention_line_equals_sparks_task_times(
    require_browser,
    artifacts_dir: Path,
    screenshots_dir: Path,
    lab: harness.JupyterLab,
    server: harness.SparkConnectServer,
) -> None:
    shots = browser.Screenshots(screenshots_dir, "contention", [])
    zed = harness.connect_session(server.remote_url(user_id="zed"))
    try:
        zed.range(1).collect()
        with browser.chromium(artifacts_dir / "chromium-profile") as context:
            nb = browser.LabNotebook.open(context, lab, NOTEBOOK)
            with shots.on_failure(nb.page):
                nb.run_cell(0)
                nb.wait_cell_done(0, 180)
                # zed's job takes the cores first; ivy's cell waits for them, then shares
                competing = threading.Thread(
                    target=lambda: (
                        zed.range(0, 8, 1, 8)
                        .selectExpr("reflect('java.lang.Thread', 'sleep', cast(1500 as bigint))")
                        .collect()
                    ),
                    daemon=True,
                )
                competing.start()
                harness.wait_until(lambda: server.jobs("running"), 30, 0.1, "zed's job to start")
                nb.run_cell(1)
                nb.wait_cell_done(1, 120)
                competing.join(60)
                node = nb.cell_locator(1).locator(".sparkscope-cell").first
                if "sparkscope-collapsed" in (node.get_attribute("class") or ""):
                    node.locator(".sparkscope-header").click()
                line = harness.wait_until(
                    lambda: (
                        (v := nb.page.evaluate(CONTENTION_JS, 1))
                        and v.get("state") != "running"
                        and v
                    ),
                    30,
                    0.3,
                    "the contention line",
                )
                shots.save(nb.page, "ivy")
                shots.save(node, "widget")
    finally:
        zed.stop()

    start, end = int(line["startMs"]), int(line["endMs"])
    cores = 2
    cores_ms = cores * (end - start)
    # the cell's tasks, not the warm-up's of the cell before
    own_spark = sum(
        t["taskMetrics"]["executorRunTime"]
        for t in tasks_of(server, "ivy")
        if overlap_ms(t, start, end) > 0
    )
    others_spark = sum(overlap_ms(t, start, end) for t in tasks_of(server, "ivy", theirs=False))
    own, others = int(line["ownMs"]), int(line["othersMs"])
    waited, waited_spark = int(line["waitedMs"]), waited_ms(server, "ivy", start, end)
    # one sample period per core for every change of the busy slots a task start or end makes
    changes = 2 * 16
    tolerance = INTERVAL_MS * changes
    print(
        f"contention line: {line['text']!r}; window {end - start} ms on {cores} cores; "
        f"own {own} ms (Spark {own_spark} ms), others {others} ms (Spark {others_spark} ms), "
        f"waited {waited} ms (Spark {waited_spark} ms), tolerance {tolerance} ms"
    )
    assert int(line["coresMs"]) == cores_ms, line
    assert abs(own - own_spark) <= tolerance, (own, own_spark)
    assert abs(others - others_spark) <= tolerance, (others, others_spark)
    assert int(line["otherSessions"]) == 1, line
    assert abs(waited - waited_spark) <= tolerance, (waited, waited_spark)
    assert own_spark > 5_000 and others_spark > 2_000, (own_spark, others_spark)
    assert waited_spark > 2_000, f"ivy's tasks hardly waited: {waited_spark} ms"
    assert f"its tasks waited {waited / 1000:.1f} s for cores others held" in line["text"], line
