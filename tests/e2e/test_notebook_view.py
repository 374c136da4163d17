"""The notebook view, every part of it, in a real browser on real work: JupyterLab (and Notebook 7)
from PyPI in Debian's Chromium, a real Spark Connect server with the listener, the real agent.

One notebook runs, cell by cell: a stage with one slow partition (skew), an even stage, a query
that fails in its tasks (division by zero under ANSI), one that fails at analysis, and the
magic that hides and shows all monitoring. Every figure the widget shows is checked against
Spark's own REST API: executors and cores, job and stage start and end times, the tasks of an
opened stage, the exception of the failed task; every Spark UI link must answer 200 from the
real UI. The busy-slot series must rise above 0 while the cell runs and fall back to 0 after;
the saved notebook's HTML snapshot must show the jobs with no kernel; the widget must work in
Notebook 7 and in JupyterLab's dark theme, with every control reachable by keyboard and named.
Screenshots of each view are kept as artifacts.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import subprocess
import time
from datetime import UTC
from pathlib import Path
from typing import Any

import harness
import nbformat
import pytest
import requests
from harness import browser, nbrun

USER = "erin"
NOTEBOOK = "notebook_view.ipynb"
SLEEP = "reflect('java.lang.Thread', 'sleep', cast({ms} as bigint))"
CELLS = {
    "setup": nbrun.SETUP,
    # one partition sleeps 8 s, the seven others 150 ms: the stage is skewed (the widget shows
    # when the job starts, ~3 s after the run on an idle machine, so its Tasks view has ~5 s)
    "skew": (
        f'spark.range(0, 8, 1, 8).selectExpr("{SLEEP.format(ms="if(id = 0, 8000, 150)")} AS x")'
        ".collect()"
    ),
    "even": f'spark.range(0, 8, 1, 8).selectExpr("{SLEEP.format(ms=400)} AS x").collect()',
    "fail": (
        "try:\n"
        '    spark.range(0, 4, 1, 4).selectExpr("1 / (id - id) AS x").collect()\n'
        "except Exception as e:\n"
        "    print('failed as expected:', type(e).__name__)"
    ),
    "analysis": (
        "try:\n"
        '    spark.sql("SELECT no_such_column FROM range(3)").collect()\n'
        "except Exception as e:\n"
        "    print('failed as expected:', type(e).__name__)"
    ),
    "off": "%sparkscope off",
    "on": "%sparkscope on",
}
INDEX = {name: i for i, name in enumerate(CELLS)}

# The widget of a cell, read in one go.
WIDGET_JS = """(index) => {
  const w = window.jupyterapp.shell.currentWidget;
  const root = w.content.widgets[index].node.querySelector('.sparkscope-cell');
  if (!root) return null;
  const d = (n) => n ? {...n.dataset} : null;
  const all = (sel) => [...root.querySelectorAll(sel)];
  return {
    ...root.dataset,
    pills: Object.fromEntries(all('.sparkscope-pill').map(
      (p) => [p.className.split(' ').find((c) => c.startsWith('sparkscope-pill-')).slice(16),
              Number(p.dataset.value)])),
    details: (root.querySelector('.sparkscope-details') || {}).textContent || '',
    jobs: all('.sparkscope-job').map(d),
    stages: all('.sparkscope-stage').map((s) => ({...s.dataset,
      hints: d(s.querySelector('.sparkscope-stage-hints')),
      skew: !!s.querySelector('.sparkscope-hint-skew')})),
    tasks: d(root.querySelector('.sparkscope-tasks-view')),
    markers: all('.sparkscope-job-marker').map(d),
    tlJobs: all('.sparkscope-tl-job').map((r) => ({...r.dataset,
      bar: d(r.querySelector('.sparkscope-tl-bar'))})),
    tlStages: all('.sparkscope-tl-stage').map((r) => ({...r.dataset,
      bar: d(r.querySelector('.sparkscope-tl-bar'))})),
    taskLists: all('.sparkscope-tl-tasks').map((t) => ({...t.dataset,
      tasks: [...t.querySelectorAll('.sparkscope-tl-task')].map(d),
      lanes: [...t.querySelectorAll('.sparkscope-tl-lane')].map(d)})),
    popup: d(root.querySelector('.sparkscope-task-popup')),
    rootCause: root.querySelector('.sparkscope-root-cause') ? {
      cls: root.querySelector('.sparkscope-exception-class').textContent,
      message: (root.querySelector('.sparkscope-exception-message') || {}).textContent || '',
      where: root.querySelector('.sparkscope-failure-where').textContent,
      trace: (root.querySelector('.sparkscope-trace-text') || {}).textContent || '',
      traceOpen: !!(root.querySelector('details.sparkscope-trace') || {}).open} : null,
    opErrors: all('.sparkscope-op-error').map((e) => e.textContent),
    links: all('a').map((a) => ({cls: a.className, href: a.href})),
  };
}"""

# Every control of every widget: its accessible name and whether Tab reaches it.
CONTROLS_JS = """() => [...document.querySelectorAll('.sparkscope-cell button, .sparkscope-cell a')]
  .map((c) => ({cls: c.className, name: (c.getAttribute('aria-label') || c.textContent || '').trim(),
                tab: c.tabIndex}))"""


def spark_ms(date: str | None) -> int | None:
    """Spark's REST date (`2026-11-30T04:02:13.425GMT`) in epoch ms."""
    if not date:
        return None
    from datetime import datetime

    t = datetime.strptime(date.removesuffix("GMT"), "%Y-%m-%dT%H:%M:%S.%f")
    return int(t.replace(tzinfo=UTC).timestamp() * 1000)


def notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS.values()]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def pieces(require_piece, require_browser) -> Path:
    require_piece(harness.listener_jar(), "listener jar", "listener-jar/build.sh")
    return require_piece(harness.agent_binary(), "sparkscope binary", "cargo build --release")


@pytest.fixture(scope="module")
def agent(pieces: Path, artifacts_dir: Path, log_registry):
    log_registry(artifacts_dir / "sparkscope-agent.log", "sparkscope agent log")
    with harness.Agent(pieces, artifacts_dir, token=secrets.token_hex(16)) as a:
        yield a


@pytest.fixture(scope="module")
def server(artifacts_dir: Path, agent: harness.Agent, reporting_to, log_registry):
    log_registry(artifacts_dir / "spark-connect-server.log", "Spark Connect server log")
    with reporting_to(artifacts_dir, agent) as s:
        yield s


@pytest.fixture(scope="module")
def lab(server, agent, artifacts_dir: Path, log_registry):
    root = artifacts_dir / "lab-root"
    root.mkdir(exist_ok=True)
    notebook(root / NOTEBOOK)
    log_registry(artifacts_dir / "jupyterlab.log", "JupyterLab log")
    env = {
        "SPARK_REMOTE": server.remote_url(user_id=USER),
        "SPARKSCOPE_URL": agent.stream_url,
        "SPARKSCOPE_TOKEN": agent.subscriber_token,
    }
    with harness.JupyterLab(root, artifacts_dir, env=env) as lab:
        yield lab


@pytest.fixture(scope="module")
def context(artifacts_dir: Path):
    with browser.chromium(artifacts_dir / "chromium-profile") as ctx:
        yield ctx


@pytest.fixture(scope="module")
def shots(screenshots_dir: Path) -> browser.Screenshots:
    return browser.Screenshots(screenshots_dir, "notebook-view", [])


@pytest.fixture(scope="module")
def run(lab, context, server, shots) -> dict[str, Any]:
    """The notebook, run cell by cell in JupyterLab; what the skewed cell's Tasks view showed
    while it ran."""
    nb = browser.LabNotebook.open(context, lab, NOTEBOOK)
    out: dict[str, Any] = {"nb": nb, "during": []}
    try:
        nb.run_cell(INDEX["setup"])
        nb.wait_cell_done(INDEX["setup"], 180)
        out["session"] = nb.cell_text_outputs(INDEX["setup"]).strip().splitlines()[-1]
        # the skewed cell, watched through its Tasks view while it runs
        cell = INDEX["skew"]
        t0 = time.monotonic()
        nb.run_cell(cell)
        widget = nb.cell_locator(cell).locator(".sparkscope-cell")
        widget.wait_for(timeout=60_000)
        out["widget_shown_s"] = round(time.monotonic() - t0, 2)
        widget.locator(".sparkscope-tab[data-view=tasks]").click()
        out["clicked_s"] = round(time.monotonic() - t0, 2)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            w = nb.page.evaluate(WIDGET_JS, cell)
            if w:
                w["at_s"] = round(time.monotonic() - t0, 2)
            out["during"].append(w)
            if w and w["state"] != "running":
                break
            if w and w.get("tasks") and int(w["tasks"]["maxActive"]) > 0 and "tasks" not in out:
                shots.save(nb.page, "tasks-view-running")
                out["tasks"] = True
            time.sleep(0.3)
        nb.wait_cell_done(cell, 60)
        for name in ("even", "fail", "analysis"):
            nb.run_cell(INDEX[name])
            nb.wait_cell_done(INDEX[name], 120)
        harness.wait_until(
            lambda: all(
                (w := nb.page.evaluate(WIDGET_JS, INDEX[n])) and w["state"] != "running"
                for n in ("skew", "even", "fail")
            ),
            30,
            0.3,
            "the widgets to end",
        )
        out["fail_output"] = nb.cell_text_outputs(INDEX["fail"])
        yield out
    except BaseException:
        with contextlib.suppress(Exception):
            shots.save(nb.page, "failure")
        raise


def widget(run: dict, name: str) -> dict:
    w = run["nb"].page.evaluate(WIDGET_JS, INDEX[name])
    assert w is not None, f"no widget in the {name!r} cell"
    return w


def expand(run: dict, name: str) -> Any:
    """The cell's widget unfolded (a finished widget folds to its summary)."""
    node = run["nb"].cell_locator(INDEX[name]).locator(".sparkscope-cell")
    toggle = node.locator(".sparkscope-toggle")
    if toggle.get_attribute("aria-expanded") != "true":
        toggle.click()
    return node


def spark_jobs_of(server, session: str) -> dict[int, dict]:
    """Spark's jobs of the notebook's session."""
    return {j["jobId"]: j for j in server.jobs() if any(session in t for t in j.get("jobTags", []))}


# ---------------------------------------------------------------------------------------------
# the views


def test_header_badges_and_details_equal_sparks(run, server) -> None:
    expand(run, "skew")
    w = widget(run, "skew")
    executors = server.rest("executors")
    assert w["pills"]["executors"] == len(executors), (w["pills"], executors)
    assert w["pills"]["cores"] == sum(e["totalCores"] for e in executors)
    jobs = spark_jobs_of(server, run["session"])
    mine = [j for j in w["jobs"]]
    assert (
        w["pills"]["succeeded"]
        == len(mine)
        == sum(1 for j in mine if jobs[int(j["jobId"])]["status"] == "SUCCEEDED")
    )
    details = w["details"]
    for part in ("Spark 4.3.0", "local[2]", server.app_id):
        assert part in details, (part, details)
    # who ran it and in which session stays in the kernel: the line is saved with the notebook
    for part in (f"user {USER}", run["session"]):
        assert part not in details, (part, details)
    f = widget(run, "fail")
    assert f["pills"]["failed"] == 1, f["pills"]


def test_tasks_view_follows_the_job(run, server, shots) -> None:
    during = [w for w in run["during"] if w and w.get("tasks")]
    seen = [(w["at_s"], w["state"], w["view"], bool(w.get("tasks"))) for w in run["during"] if w]
    assert during, (
        f"the Tasks view never showed while the cell ran: widget shown after "
        f"{run.get('widget_shown_s')} s, tab clicked after {run.get('clicked_s')} s; "
        f"(s, state, view, tasks view drawn): {seen}"
    )
    print(
        f"Tasks view: widget shown {run.get('widget_shown_s')} s after the cell started, tab "
        f"clicked at {run.get('clicked_s')} s, drawn at {during[0]['at_s']} s, "
        f"{sum(1 for w in during if w['state'] == 'running')} samples while running"
    )
    peaks = [int(w["tasks"]["maxActive"]) for w in during if w["state"] == "running"]
    assert peaks and max(peaks) > 0, f"busy slots never rose above 0 while running: {peaks}"
    # (Spark's scheduler may start a task on a freed core before the previous task's end is
    # posted, so the count may briefly exceed the cores: it is what Spark's bus says)
    cores = sum(e["totalCores"] for e in server.rest("executors"))
    expand(run, "skew")
    end = widget(run, "skew")
    assert end["view"] == "tasks", "the chosen view is kept"
    assert int(end["tasks"]["samples"]) >= 2
    assert end["tasks"]["lastActive"] == "0", end["tasks"]
    assert int(end["tasks"]["cores"]) == cores
    starts = {m["jobId"] for m in end["markers"] if m["kind"] == "start"}
    ends = {m["jobId"] for m in end["markers"] if m["kind"] == "end"}
    assert starts == ends == {j["jobId"] for j in end["jobs"]}
    shots.save(run["nb"].page, "tasks-view-done")


def test_timeline_shows_sparks_times_and_a_stages_tasks(run, server, shots) -> None:
    node = expand(run, "skew")
    node.locator(".sparkscope-tab[data-view=timeline]").click()
    w = widget(run, "skew")
    assert w["view"] == "timeline"
    spark = spark_jobs_of(server, run["session"])
    assert {int(r["jobId"]) for r in w["tlJobs"]} == {int(j["jobId"]) for j in w["jobs"]}
    for row in w["tlJobs"]:
        sj = spark[int(row["jobId"])]
        assert int(row["bar"]["start"]) == spark_ms(sj["submissionTime"]), (row, sj)
        assert int(row["bar"]["end"]) == spark_ms(sj["completionTime"]), (row, sj)
        assert row["status"] == sj["status"]
    assert w["tlStages"], "no stage rows in the timeline"
    for row in w["tlStages"]:
        ss = server.rest(f"stages/{row['stageId']}/{row['attemptId']}")
        assert int(row["bar"]["start"]) == spark_ms(ss["submissionTime"]), (row, ss)
        assert int(row["bar"]["end"]) == spark_ms(ss["completionTime"]), (row, ss)
    # open the skewed stage's tasks: they come from Spark's REST API through the agent
    stage = max(w["tlStages"], key=lambda r: int(r["bar"]["end"]) - int(r["bar"]["start"]))
    sel = f".sparkscope-tl-stage[data-stage-id='{stage['stageId']}'] .sparkscope-tl-open"
    node.locator(sel).click()
    harness.wait_until(
        lambda: any(t["status"] == "done" for t in widget(run, "skew")["taskLists"]),
        30,
        0.2,
        "the stage's tasks",
    )
    (lst,) = widget(run, "skew")["taskLists"]
    path = f"stages/{stage['stageId']}/{stage['attemptId']}/taskList"
    spark_tasks = server.rest(path, {"length": 1000})
    assert {int(t["taskId"]) for t in lst["tasks"]} == {t["taskId"] for t in spark_tasks}
    by_id = {t["taskId"]: t for t in spark_tasks}
    for t in lst["tasks"]:
        assert t["status"] == by_id[int(t["taskId"])]["status"]
    assert {lane["executor"] for lane in lst["lanes"]} == {t["executorId"] for t in spark_tasks}
    # a task's details
    slowest = max(spark_tasks, key=lambda t: t["duration"])
    bar = node.locator(f".sparkscope-tl-task[data-task-id='{slowest['taskId']}']")
    # the shorter tasks of the executor's other core share its lane and may lie over the
    # middle of the slowest one's bar: click its end, which is its own
    box = bar.bounding_box()
    assert box is not None
    bar.click(position={"x": max(box["width"] - 3, 1), "y": box["height"] / 2})
    popup = widget(run, "skew")["popup"]
    assert popup and int(popup["taskId"]) == slowest["taskId"]
    shots.save(run["nb"].page, "timeline-tasks")


def test_skew_badge_only_on_the_skewed_stage(run, server) -> None:
    expand(run, "even")
    skew, even = widget(run, "skew"), widget(run, "even")
    assert any(s["skew"] for s in skew["stages"]), skew["stages"]
    assert not any(s["skew"] for s in even["stages"]), even["stages"]
    # the summary is Spark's: the slowest task's run time against the median
    s = next(s for s in skew["stages"] if s["skew"])
    summary = server.rest(
        f"stages/{s['stageId']}/{s['attemptId']}/taskSummary", {"quantiles": "0,0.5,1"}
    )
    lo, median, hi = summary["executorRunTime"]
    assert int(s["hints"]["minMs"]) == lo and int(s["hints"]["maxMs"]) == hi
    assert abs(int(s["hints"]["medianMs"]) - median) <= max(median / 8, 2), (s, median)


def test_a_failed_task_shows_its_root_cause(run, server, shots) -> None:
    assert "failed as expected" in run["fail_output"]
    node = expand(run, "fail")
    w = widget(run, "fail")
    cause = w["rootCause"]
    assert cause, "no root cause shown for the failed job"
    failed = [s for s in server.rest("stages") if s["status"] == "FAILED"]
    assert failed, "Spark reports no failed stage"
    st = failed[0]
    tasks = server.rest(
        f"stages/{st['stageId']}/{st['attemptId']}/taskList", {"status": "failed", "length": 100}
    )
    first = tasks[0]["errorMessage"].splitlines()[0]
    assert first.startswith(f"{cause['cls']}{cause['message'].splitlines()[0]}"), (first, cause)
    assert cause["cls"] == "org.apache.spark.SparkArithmeticException"
    assert "DIVIDE_BY_ZERO" in cause["message"]
    assert "executor driver on localhost" in cause["where"], cause["where"]
    assert not cause["traceOpen"] and "QueryExecutionErrors" in cause["trace"]
    node.locator("summary.sparkscope-trace-summary").click()
    assert widget(run, "fail")["rootCause"]["traceOpen"]
    shots.save(run["nb"].page, "root-cause")
    # the same, shortened, in the text/plain fallback
    text = run["nb"].page.evaluate(
        """(i) => { const w = window.jupyterapp.shell.currentWidget;
          const o = w.content.widgets[i].model.outputs;
          for (let k = 0; k < o.length; k++) {
            const d = o.get(k).data; if (d['application/vnd.jupyter.widget-view+json'])
              return d['text/plain']; } return null; }""",
        INDEX["fail"],
    )
    assert text and "error: job" in text and "SparkArithmeticException" in text, text


def test_an_analysis_error_shows_the_operations_error(run, server) -> None:
    expand(run, "analysis")
    w = widget(run, "analysis")
    assert w["jobs"] == [], "an analysis error runs no job"
    (shown,) = w["opErrors"]
    assert "UNRESOLVED_COLUMN" in shown, shown
    # Spark's own record of the operation says the same (its state is CLOSED once closed)
    ops = [o for o in server.connect_operations() if "no_such_column" in (o.get("statement") or "")]
    assert ops and all("UNRESOLVED_COLUMN" in (o.get("detail") or "") for o in ops), ops


def test_every_spark_ui_link_answers(run, server) -> None:
    links = []
    for name in ("skew", "even", "fail"):
        expand(run, name)
        links += [link for link in widget(run, name)["links"] if "sparkscope" in link["cls"]]
    kinds = {re.sub(r"sparkscope-|-link", "", c) for link in links for c in link["cls"].split()}
    assert {"job", "stage", "sql", "ui"} <= kinds, kinds
    for link in links:
        assert link["href"].startswith(server.ui_url), link
        resp = requests.get(link["href"], timeout=10)
        assert resp.status_code == 200, (link, resp.status_code)


def test_hide_all_and_show_again(run, shots) -> None:
    nb = run["nb"]
    expand(run, "even").locator(".sparkscope-hide-all").click()
    cells = [INDEX[n] for n in ("skew", "even", "fail", "analysis")]
    harness.wait_until(
        lambda: all(
            widget(run, n).get("hidden") == "true" for n in ("skew", "even", "fail", "analysis")
        ),
        10,
        0.1,
        "every widget to hide",
    )
    shots.save(nb.page, "hidden")
    nb.cell_locator(cells[0]).locator(".sparkscope-show-all").click()
    harness.wait_until(
        lambda: not any(widget(run, n).get("hidden") for n in ("skew", "even")),
        10,
        0.1,
        "every widget to show",
    )
    # and from the notebook: %sparkscope off / on
    nb.run_cell(INDEX["off"])
    nb.wait_cell_done(INDEX["off"], 30)
    harness.wait_until(
        lambda: widget(run, "skew").get("hidden") == "true", 10, 0.1, "%sparkscope off to hide"
    )
    nb.run_cell(INDEX["on"])
    nb.wait_cell_done(INDEX["on"], 30)
    harness.wait_until(
        lambda: not widget(run, "skew").get("hidden"), 10, 0.1, "%sparkscope on to show"
    )


def test_controls_are_named_and_keyboard_reachable(run) -> None:
    expand(run, "skew")
    controls = run["nb"].page.evaluate(CONTROLS_JS)
    assert controls
    unnamed = [c for c in controls if not c["name"]]
    assert not unnamed, unnamed
    assert all(c["tab"] >= 0 for c in controls), [c for c in controls if c["tab"] < 0]
    # a view changes from the keyboard alone
    node = run["nb"].cell_locator(INDEX["skew"]).locator(".sparkscope-cell")
    node.locator(".sparkscope-tab[data-view=jobs]").focus()
    run["nb"].page.keyboard.press("Enter")
    assert widget(run, "skew")["view"] == "jobs"


def test_dark_theme(run, shots) -> None:
    nb = run["nb"]
    nb.page.evaluate(
        "() => window.jupyterapp.commands.execute('apputils:change-theme', "
        "{theme: 'JupyterLab Dark'})"
    )
    harness.wait_until(
        lambda: nb.page.evaluate(
            "() => document.body.dataset.jpThemeLight === 'false'"
            " && !document.querySelector('#jupyterlab-splash')"
        ),
        30,
        0.2,
        "the dark theme",
    )
    expand(run, "skew")
    color = nb.page.evaluate(
        "(i) => getComputedStyle(window.jupyterapp.shell.currentWidget.content.widgets[i]"
        ".node.querySelector('.sparkscope-summary')).color",
        INDEX["skew"],
    )
    rgb = [int(v) for v in re.findall(r"\d+", color)[:3]]
    assert sum(rgb) / 3 > 128, f"the summary's text is dark on a dark theme: {color}"
    shots.save(nb.page, "dark")
    nb.page.evaluate(
        "() => window.jupyterapp.commands.execute('apputils:change-theme', "
        "{theme: 'JupyterLab Light'})"
    )


def test_saved_notebook_shows_the_jobs_without_a_kernel(
    run, server, lab, artifacts_dir, context
) -> None:
    nb = run["nb"]
    nb.save_notebook()
    path = lab.root_dir / NOTEBOOK
    harness.wait_until(
        lambda: "text/html" in path.read_text(), 30, 0.5, "the saved notebook's HTML snapshot"
    )
    saved = nbformat.read(path, as_version=4)
    saved.metadata.pop("widgets", None)  # no widget state: as GitHub or a reader without it
    static = artifacts_dir / "static.ipynb"
    nbformat.write(saved, static)
    html = artifacts_dir / "static.html"
    subprocess.run(
        [str(harness.venv_bin() / "jupyter"), "nbconvert", "--to", "html", str(static),
         "--output", html.stem, "--output-dir", str(artifacts_dir)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    page = context.new_page()
    try:
        page.goto(html.as_uri())
        rows = page.evaluate(
            "() => [...document.querySelectorAll('.sparkscope-static-job')]"
            ".map((r) => ({...r.dataset, text: r.textContent}))"
        )
        spark = spark_jobs_of(server, run["session"])
        assert rows, "the HTML snapshot shows no job"
        for r in rows:
            assert r["status"] == spark[int(r["jobId"])]["status"], (r, spark[int(r["jobId"])])
        shown = {int(r["jobId"]) for r in rows}
        assert shown == set(spark), (shown, set(spark))
        shot = artifacts_dir / "screenshots" / "notebook-view-static-html.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
    finally:
        page.close()


def test_notebook_7(lab, context, server, shots) -> None:
    src = lab.root_dir / NOTEBOOK
    nb7 = lab.root_dir / "notebook7.ipynb"
    saved = nbformat.read(src, as_version=4)
    saved.cells = [
        nbformat.v4.new_code_cell(CELLS["setup"]),
        nbformat.v4.new_code_cell(CELLS["even"]),
    ]
    saved.metadata.pop("widgets", None)
    nbformat.write(saved, nb7)
    page = context.new_page()
    page.set_default_timeout(120_000)
    try:
        page.goto(lab.notebook7_url(nb7.name))
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget")
        page.wait_for_selector(".jp-Notebook .jp-Cell")
        harness.wait_until(
            lambda: page.evaluate(
                "() => { const w = window.jupyterapp.shell.currentWidget;"
                " const k = w.sessionContext.session && w.sessionContext.session.kernel;"
                " return k && k.status === 'idle'; }"
            ),
            120,
            0.3,
            "Notebook 7's kernel",
        )
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_selector(".jp-Cell .sparkscope-cell[data-state=done]", timeout=120_000)
        state = page.evaluate(
            "() => [...document.querySelectorAll('.sparkscope-cell')].map((r) => ({...r.dataset,"
            " jobs: r.querySelectorAll('.sparkscope-job').length}))"
        )
        assert state and state[0]["jobs"] >= 1, state
        shots.save(page, "notebook7")
    finally:
        page.close()
