"""What a cell tells about its own jobs beyond progress, in a real browser: two users' notebooks
on one real Spark Connect server with the listener (its defaults forward the driver's WARN and
ERROR lines) and the real agent.

- Logs: each user runs a query that fails (division by zero under ANSI); Spark logs the task
  failures on its executor and scheduler threads, where no user is named. Each cell's Logs view
  shows the ERROR lines of its own failing job (the stages it names are that user's job's, as
  Spark's REST API says) and never a line of the other user's job.
- Advisor: 6,000 tiny tasks get the "too many small tasks" finding (DataFlint's rule: over
  5,000 tasks, median under 500 ms), and its "Insert fix" puts a cell with the fix below the
  cell, not run.
- "Is it stuck?": a stage with one sleeping task gets the button; its answer is the thread dump
  of that task, with `Thread.sleep` in its frames. Asked by another user (a user token of the
  agent's tokens file), for that stage, the agent refuses.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import pytest
import websocket
from harness import browser, nbrun

IVY, ZED = "ivy", "zed_z"
NOTEBOOKS = {IVY: "logs_ivy.ipynb", ZED: "logs_zed.ipynb"}

FAILING = 'spark.range(0, 4, 1, 2).selectExpr("1 / (id - id) AS x").collect()'
# four tasks, the last of which sleeps 40 s: a stage that looks stuck
SLEEPY = (
    "spark.range(0, 4, 1, 4).selectExpr(\"reflect('java.lang.Thread', 'sleep', "
    'cast(if(id = 3, 40000, 10) as bigint)) AS x").collect()'
)
# one stage of 6,000 tasks of a few milliseconds: the advisor's "too many small tasks"
TINY = 'spark.range(0, 6000, 1, 6000).selectExpr("id * 2 AS x").collect()'
# ivy's own token in the agent's tokens file (the notebooks use the shared one)
IVY_TOKEN = "ivy-" + secrets.token_hex(16)

# The Logs view of one cell's widget, unfolded and on its Logs tab.
LOGS_JS = """(index) => {
  const cell = window.jupyterapp.shell.currentWidget.content.widgets[index];
  const root = cell.node.querySelector('.sparkscope-cell');
  if (!root) return null;
  const tab = root.querySelector('.sparkscope-tab[data-view="logs"]');
  const view = root.querySelector('.sparkscope-logs-view');
  return {
    view: root.dataset.view,
    tab: tab ? {count: Number(tab.dataset.count), errors: Number(tab.dataset.errors)} : null,
    lines: view ? [...view.querySelectorAll('.sparkscope-log-line')].map((n) => ({
      level: n.dataset.level, seq: Number(n.dataset.seq),
      jobId: n.dataset.jobId === undefined ? null : Number(n.dataset.jobId),
      stageId: n.dataset.stageId === undefined ? null : Number(n.dataset.stageId),
      text: n.textContent})) : null,
  };
}"""


@pytest.fixture(scope="module")
def agent(notebook_agent, artifacts_dir: Path) -> Iterator[harness.Agent]:
    tokens = artifacts_dir / "users"
    tokens.write_text(f"{IVY} {IVY_TOKEN}\n")
    tokens.chmod(0o600)
    with notebook_agent(env={"SPARKSCOPE_SUBSCRIBER_TOKENS_FILE": str(tokens)}) as agent:
        yield agent


@pytest.fixture(scope="module")
def server(notebook_server, agent: harness.Agent):
    ansi = {"spark.sql.ansi.enabled": "true"}
    with notebook_server(agent, conf=ansi) as server:
        yield server


@pytest.fixture(scope="module")
def lab(server: harness.SparkConnectServer, agent: harness.Agent, notebook_lab):
    notebooks = {
        name: [nbrun.browser_setup(server.remote_url(user_id=user)), FAILING, SLEEPY, TINY]
        for user, name in NOTEBOOKS.items()
    }
    with notebook_lab(agent, notebooks) as lab:
        yield lab


def user_stages(server: harness.SparkConnectServer, user: str) -> tuple[set[int], set[int]]:
    """The failed jobs of `user`'s Connect operations and their stages, from Spark's REST API."""
    mark = f"_User_{user}_Session_"
    jobs = [
        j
        for j in server.jobs()
        if j["status"] == "FAILED" and any(mark in t for t in j.get("jobTags", []))
    ]
    return {j["jobId"] for j in jobs}, {s for j in jobs for s in j["stageIds"]}


def test_each_cell_shows_its_own_failing_jobs_error_lines_only(
    require_browser,
    artifacts_dir: Path,
    screenshots_dir: Path,
    lab: harness.JupyterLab,
    server: harness.SparkConnectServer,
) -> None:
    shots = browser.Screenshots(screenshots_dir, "cell-logs", [])
    with browser.chromium(artifacts_dir / "chromium-profile") as context:
        pages = {}
        pages[ZED] = browser.LabNotebook.open(context, lab, NOTEBOOKS[ZED])
        pages[IVY] = browser.open_beside(context, lab, NOTEBOOKS[IVY], workspace="ivy")
        try:
            seen: dict[str, Any] = {}
            # zed's job fails first: its lines are on the server before ivy's
            for user in (ZED, IVY):
                nb = pages[user]
                nb.run_cell(0)
                nb.wait_cell_done(0, 180)
                assert "Traceback" not in nb.cell_text_outputs(0), nb.cell_text_outputs(0)
                nb.run_cell(1)
                nb.wait_cell_done(1, 120)
                assert "DIVIDE_BY_ZERO" in nb.cell_text_outputs(1)
            for user in (ZED, IVY):
                nb = pages[user]
                nb.page.bring_to_front()
                browser.open_view(nb, 1, "logs")

                def shown(nb: browser.LabNotebook = nb) -> dict | None:
                    v = nb.page.evaluate(LOGS_JS, 1)
                    errors = [x for x in (v or {}).get("lines") or [] if x["level"] == "ERROR"]
                    return v if errors else None

                try:
                    seen[user] = harness.wait_until(shown, 60, 0.3, f"{user}'s ERROR lines")
                except TimeoutError as e:
                    raise AssertionError(f"{user}: {nb.page.evaluate(LOGS_JS, 1)}") from e
                shots.save(nb.page, user)
                widget = nb.cell_locator(1).locator(".sparkscope-cell").first
                path = shots.directory / f"cell-logs-{user}-widget.png"
                widget.screenshot(path=str(path))
                shots.saved.append(path)
        except BaseException:
            for user, nb in pages.items():
                with contextlib.suppress(Exception):
                    shots.save(nb.page, f"failure-{user}")
            raise

    for user, other in ((IVY, ZED), (ZED, IVY)):
        jobs, stages = user_stages(server, user)
        other_jobs, other_stages = user_stages(server, other)
        assert not jobs & other_jobs
        assert jobs and stages and other_stages, (user, jobs, stages)
        v = seen[user]
        assert v["view"] == "logs" and v["tab"]["errors"] > 0, v
        lines = v["lines"]
        named = [x for x in lines if x["stageId"] is not None]
        assert named, lines
        # its own failing job's stages, never the other user's
        assert {x["stageId"] for x in named} <= stages, (user, lines, stages)
        assert not {x["stageId"] for x in named} & other_stages, (user, lines, other_stages)
        assert {x["jobId"] for x in lines if x["jobId"] is not None} <= jobs, (user, lines)
        assert any("DIVIDE_BY_ZERO" in x["text"] or "stage" in x["text"] for x in lines), lines
        print(
            f"{user}: {len(lines)} line(s) in the cell's Logs view "
            f"({sum(x['level'] == 'ERROR' for x in lines)} ERROR), stages "
            f"{sorted({x['stageId'] for x in named})} of its job(s) {sorted(jobs)}; "
            f"the other user's stages {sorted(other_stages)}"
        )


# The "Is it stuck?" parts of one cell's widget: its button and its answer.
STUCK_JS = """(index) => {
  const cell = window.jupyterapp.shell.currentWidget.content.widgets[index];
  const root = cell.node.querySelector('.sparkscope-cell');
  if (!root) return null;
  const button = root.querySelector('.sparkscope-stuck');
  const dump = root.querySelector('.sparkscope-thread-dump');
  return {
    state: root.dataset.state,
    button: button ? {hidden: button.hidden, stuckAt: Number(button.dataset.stuckAt)} : null,
    dump: dump ? {status: dump.dataset.status, taskId: dump.dataset.taskId || null,
                  state: dump.dataset.state || null, error: dump.dataset.error || null,
                  text: dump.textContent} : null,
  };
}"""


def session_of(server: harness.SparkConnectServer, user: str) -> str:
    """`user`'s Connect session id, from the operation tag Spark put on its jobs."""
    mark = f"SparkConnect_OperationTag_User_{user}_Session_"
    for j in server.jobs():
        for t in j.get("jobTags", []):
            if t.startswith(mark):
                return t[len(mark) : len(mark) + 36]
    raise AssertionError(f"no job of {user}")


def ask_tasks(agent: harness.Agent, token: str, request: dict) -> tuple[dict, list[dict]]:
    """Follow the request's session on the stream with `token` (when allowed), then one
    TaskListRequest for a thread dump: the agent's TaskList, and the errors it sent before."""
    ws = websocket.create_connection(
        agent.stream_url,
        suppress_origin=True,
        header=[f"Authorization: Bearer {token}"],
        timeout=20,
    )
    errors = []
    try:
        key = {"sessionId": request["sessionId"], "userId": request["userId"]}
        ws.send(json.dumps({"subscribe": {"sessions": [key]}}))
        rid = uuid.uuid4().hex
        ws.send(json.dumps({"tasks": {"requestId": rid, "threadDump": True, **request}}))
        while True:
            msg = json.loads(ws.recv())
            if "tasks" in msg and msg["tasks"].get("requestId") == rid:
                return msg["tasks"], errors
            if "error" in msg:
                errors.append(msg["error"])
    finally:
        ws.close()


def test_is_it_stuck_shows_where_the_sleeping_task_is_and_only_to_its_owner(
    require_browser,
    artifacts_dir: Path,
    screenshots_dir: Path,
    lab: harness.JupyterLab,
    server: harness.SparkConnectServer,
    agent: harness.Agent,
) -> None:
    shots = browser.Screenshots(screenshots_dir, "stuck", [])
    with browser.chromium(artifacts_dir / "chromium-profile-stuck") as context:
        # a workspace of its own: the default one reopens what earlier tests left open
        nb = browser.open_beside(context, lab, NOTEBOOKS[ZED], workspace="stuck")
        try:
            nb.run_cell(0)
            nb.wait_cell_done(0, 180)
            nb.run_cell(2)

            def sleeping() -> dict | None:
                mark = f"_User_{ZED}_Session_"
                return next(
                    (
                        j
                        for j in server.jobs()
                        if j["status"] == "RUNNING"
                        and j["numCompletedTasks"] >= 3
                        and any(mark in t for t in j.get("jobTags", []))
                    ),
                    None,
                )

            job = harness.wait_until(sleeping, 60, 0.2, "zed's job with its sleeping task")
            (stage_id,) = job["stageIds"]

            # another user, with a token of their own, is refused that stage: naming zed's
            # session, and naming their own
            zed_session = session_of(server, ZED)
            # ivy's own session, with a job of its own (the agent knows it as hers)
            ivy = harness.connect_session(server.remote_url(user_id=IVY))
            try:
                ivy.range(1).collect()
                ivy_session = ivy.client._session_id
                harness.wait_until(
                    lambda: any(
                        (j.get("connect") or {}).get("sessionId") == ivy_session
                        for j in agent.jobs(server.app_id)
                    ),
                    30,
                    0.2,
                    "ivy's job at the agent",
                )
            finally:
                ivy.stop()
            refusals = []
            for sid, uid in ((zed_session, ZED), (ivy_session, IVY)):
                request = {"appId": server.app_id, "stageId": stage_id, "attemptId": 0}
                request.update(sessionId=sid, userId=uid)
                refusals.append(ask_tasks(agent, IVY_TOKEN, request))
            (foreign, foreign_errors), (own, _) = refusals
            # zed's session: not ivy's to follow, nor to ask about
            assert foreign_errors, "subscribing to another user's session is refused"
            assert foreign.get("code") == "forbidden" and not foreign.get("ok"), foreign
            # her own session: zed's stage is not one of its jobs'
            assert own.get("code") == "not_found" and not own.get("ok"), own
            for r in (foreign, own):
                assert not r.get("threadDump") and "Thread.sleep" not in json.dumps(r), r

            # the owner's widget: the button shows once the stage has run 10 s; its answer
            node = nb.cell_locator(2).locator(".sparkscope-cell").first
            node.wait_for(timeout=60_000)
            if not node.locator(".sparkscope-job.sparkscope-expanded").count():
                node.locator(".sparkscope-expand").first.click()
            harness.wait_until(
                lambda: (
                    (w := nb.page.evaluate(STUCK_JS, 2))
                    and w["button"]
                    and not w["button"]["hidden"]
                ),
                40,
                0.3,
                "the Is it stuck? button",
            )
            node.locator(".sparkscope-stuck").click()
            w = harness.wait_until(
                lambda: (
                    (w := nb.page.evaluate(STUCK_JS, 2))
                    and w["dump"]
                    and w["dump"]["status"] == "done"
                    and w
                ),
                30,
                0.3,
                "the thread dump",
            )
            shots.save(nb.page, "zed")
            path = shots.directory / "stuck-widget.png"
            node.screenshot(path=str(path))
            shots.saved.append(path)
            nb.wait_cell_done(2, 60)
        except BaseException:
            with contextlib.suppress(Exception):
                shots.save(nb.page, "failure")
            raise
    d = w["dump"]
    assert d["error"] is None, d
    assert d["state"] == "TIMED_WAITING", d
    assert "java.lang.Thread.sleep" in d["text"], d["text"]
    # the task Spark says is the sleeping one (the only one still running)
    tasks = server.rest(f"stages/{stage_id}/0/taskList", {"status": "success"})
    sleeper = {t["taskId"] for t in server.rest(f"stages/{stage_id}/0/taskList")} - {
        t["taskId"] for t in tasks if t["duration"] < 20_000
    }
    assert int(d["taskId"]) in sleeper, (d, sleeper)
    print(
        f"Is it stuck? answered for task {d['taskId']} ({d['state']}): "
        f"{d['text'][:160]!r}; refusals for another user: "
        f"{foreign['code']} (zed's session), {own['code']} (her own session, zed's stage)"
    )


# The advisor's parts of one cell's widget, and the notebook's cells.
ADVISOR_JS = """(index) => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  const root = nb.widgets[index].node.querySelector('.sparkscope-cell');
  return {
    state: root ? root.dataset.state : null,
    badges: root ? [...root.querySelectorAll('.sparkscope-hint-small-tasks')].map(
      (n) => ({text: n.textContent, title: n.title})) : [],
    fix: root && root.querySelector('.sparkscope-insert-fix')
      ? root.querySelector('.sparkscope-insert-fix').dataset : null,
    cells: nb.widgets.map((c) => ({type: c.model.type, source: c.model.sharedModel.getSource(),
      count: c.model.type === 'code' ? c.model.executionCount : null})),
  };
}"""


def test_many_tiny_tasks_get_the_advisors_finding_and_its_fix_is_inserted_not_run(
    require_browser,
    artifacts_dir: Path,
    screenshots_dir: Path,
    lab: harness.JupyterLab,
    server: harness.SparkConnectServer,
) -> None:
    shots = browser.Screenshots(screenshots_dir, "advisor", [])
    with browser.chromium(artifacts_dir / "chromium-profile-advisor") as context:
        nb = browser.open_beside(context, lab, NOTEBOOKS[IVY], workspace="advisor")
        try:
            nb.run_cell(0)
            nb.wait_cell_done(0, 180)
            nb.run_cell(3)
            nb.wait_cell_done(3, 300)
            assert "Traceback" not in nb.cell_text_outputs(3)
            node = nb.cell_locator(3).locator(".sparkscope-cell").first
            found = harness.wait_until(
                lambda: (w := nb.page.evaluate(ADVISOR_JS, 3))["badges"] and w,
                60,
                0.3,
                "the small-tasks finding",
            )
            if "sparkscope-collapsed" in (node.get_attribute("class") or ""):
                node.locator(".sparkscope-header").click()
            if not node.locator(".sparkscope-job.sparkscope-expanded").count():
                node.locator(".sparkscope-expand").first.click()
            before = len(nb.page.evaluate(ADVISOR_JS, 3)["cells"])
            node.locator(".sparkscope-insert-fix").first.click()
            after = harness.wait_until(
                lambda: (
                    (w := nb.page.evaluate(ADVISOR_JS, 3))
                    and len(w["cells"]) == before + 1
                    # the button is marked just after the cell goes in
                    and (w["fix"] or {}).get("inserted") == "true"
                    and w
                ),
                10,
                0.2,
                "the fix's cell",
            )
            path = shots.directory / "advisor-widget.png"
            node.screenshot(path=str(path))
            shots.saved.append(path)
            shots.save(nb.page, "ivy")
        except BaseException:
            with contextlib.suppress(Exception):
                shots.save(nb.page, "failure")
            raise
    # Spark's own numbers behind the finding: one stage of 6,000 tasks, a median under 500 ms
    stages = [s for s in server.rest("stages") if s["numTasks"] == 6000]
    assert stages, [(s["stageId"], s["numTasks"]) for s in server.rest("stages")]
    quantiles = server.rest(
        f"stages/{stages[0]['stageId']}/{stages[0]['attemptId']}/taskSummary",
        {"quantiles": "0.5"},
    )
    assert quantiles["executorRunTime"][0] < 500, quantiles
    badge = found["badges"][0]
    assert "6,000 small tasks" in badge["text"], found
    inserted = after["cells"][4]
    assert inserted["type"] == "code" and "df.coalesce(" in inserted["source"], inserted
    assert inserted["count"] is None, "inserted, never run"
    assert after["fix"]["inserted"] == "true", after["fix"]
    print(f"advisor: {badge['text']!r}; inserted below: {inserted['source']!r}")
