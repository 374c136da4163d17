"""Notebooks, end to end: two notebooks of two users, executed headless with nbclient at the same
time against one real Spark Connect server (with the sparkscope listener) and the real agent, with
the sparkscope kernel extension loaded. Each cell's widget, as the executed notebook saved it
(`store_widget_state=True`), must hold exactly that cell's jobs with Spark's own task counts, and
nothing of the other notebook.

Ground truth is Spark's REST API: every Spark cell of tests/notebooks/notebook_{a,b}.ipynb also
tags its queries `test-<label>` (on the cell's thread), so `/connect/operations` names the cell's
operations and their job ids without trusting sparkscope's tag; `/jobs` and `/stages` give the
counts. Notebook A's "untagged" cell also runs a query on a worker thread: pyspark keeps tags per
thread, so that query carries no client tag at all and belongs to no cell's widget.
"""

from __future__ import annotations

import importlib.util
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import pytest
from harness import nbrun

CELL_TAG_PREFIX = "sparkscope-cell-"
NOTEBOOKS = {
    # name: (notebook file, Connect user id, the labels of its Spark cells)
    "a": ("notebook_a.ipynb", "alice_nb", ("multi-job", "failing", "untagged")),
    "b": ("notebook_b.ipynb", "bob", ("agg", "slow")),
}
EXPECTED_ERRORS = {("a", "failing")}  # cells meant to fail, with 'sparkscope-boom'
RUNNING_STATES = {"STARTED", "COMPILED", "READY"}
# widget job `tasks` key -> Spark REST JobData field
TASK_FIELDS = {
    "total": "numTasks",
    "active": "numActiveTasks",
    "completed": "numCompletedTasks",
    "skipped": "numSkippedTasks",
    "failed": "numFailedTasks",
    "killed": "numKilledTasks",
}
STAGE_COUNT_FIELDS = {
    "active": "numActiveStages",
    "completed": "numCompletedStages",
    "skipped": "numSkippedStages",
    "failed": "numFailedStages",
}
# widget stage field -> Spark REST StageData field
STAGE_FIELDS = {
    "status": "status",
    "numTasks": "numTasks",
    "activeTasks": "numActiveTasks",
    "completedTasks": "numCompleteTasks",
    "failedTasks": "numFailedTasks",
    "killedTasks": "numKilledTasks",
}


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def pieces(require_piece) -> Path:
    """Skip (or fail in CI) until the listener jar, the agent and the kernel package exist."""
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
    return require_piece(
        harness.agent_binary(), "sparkscope binary (target/*/sparkscope)", "cargo build --release"
    )


@pytest.fixture(scope="module")
def tokens() -> dict[str, str]:
    return {
        "listener": "nb-" + secrets.token_hex(16),
        "subscriber": "nb-sub-" + secrets.token_hex(16),
    }


@pytest.fixture(scope="module")
def agent(pieces: Path, artifacts_dir: Path, log_registry, tokens):
    log_registry(artifacts_dir / "sparkscope-agent.log", "sparkscope agent log")
    with harness.Agent(
        pieces, artifacts_dir, token=tokens["listener"], subscriber_token=tokens["subscriber"]
    ) as agent:
        yield agent


@pytest.fixture(scope="module")
def server(artifacts_dir: Path, log_registry, agent: harness.Agent, tokens):
    log_registry(artifacts_dir / "spark-connect-server.log", "Spark Connect server log")
    with harness.SparkConnectServer(
        artifacts_dir,
        listener_jar=harness.listener_jar(),
        agent_addr=agent.ingest_addr,
        token=tokens["listener"],
    ) as server:
        yield server


@dataclass
class Cell:
    notebook: str
    label: str
    index: int  # in the notebook
    operations: list[dict]  # Spark's, found by the test label
    job_ids: set[int]
    cell_tags: set[str]  # sparkscope tags on those operations (one expected)
    widgets: list[tuple[str, str]]  # (model id, text/plain) of the cell's widget outputs


@dataclass
class Executed:
    runs: dict[str, nbrun.NotebookRun]
    session_ids: dict[str, str]
    spark_jobs: dict[int, dict]
    spark_stages: list[dict]
    operations: list[dict]
    cells: dict[tuple[str, str], Cell]

    def widget_state(self, name: str, model_id: str) -> dict | None:
        entry = nbrun.widget_states(self.runs[name].nb).get(model_id)
        return entry.get("state") if entry else None

    def session_operations(self, name: str) -> list[dict]:
        return [op for op in self.operations if op["sessionId"] == self.session_ids[name]]

    def session_job_ids(self, name: str) -> set[int]:
        return {int(j) for op in self.session_operations(name) for j in op["jobIds"]}


def _settled(server: harness.SparkConnectServer) -> tuple[list, list, list]:
    """Spark's jobs, stages and Connect operations once nothing runs and two reads agree."""
    previous: list[Any] = [None]
    why = ["not read yet"]

    def settled() -> Any:
        running = server.jobs("running")
        if running:
            why[0] = f"running jobs {[j['jobId'] for j in running]}"
            return None
        ops = server.connect_operations()
        busy = [
            {k: op.get(k) for k in ("operationId", "state", "sparkSessionTags", "statement")}
            for op in ops
            if op["state"] in RUNNING_STATES
        ]
        if busy:
            why[0] = f"operations still running {busy}"
            return None
        current = (server.jobs(), server.rest("stages"), ops)
        same = current == previous[0]
        previous[0] = current
        why[0] = "two reads differ"
        return current if same else None

    try:
        return harness.wait_until(settled, 120, 0.5, "Spark's REST view to settle")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}: {why[0]}") from exc


@pytest.fixture(scope="module")
def executed(server: harness.SparkConnectServer, agent, tokens, artifacts_dir: Path) -> Executed:
    runs: dict[str, nbrun.NotebookRun] = {}
    for name, (file, user, _) in NOTEBOOKS.items():
        work = artifacts_dir / f"notebook-{name}"
        env = nbrun.kernel_env(
            work,
            {
                "SPARK_REMOTE": server.remote_url(user_id=user),
                "SPARKSCOPE_URL": agent.stream_url,
                "SPARKSCOPE_TOKEN": agent.subscriber_token,
            },
        )
        runs[name] = nbrun.NotebookRun(name, nbrun.NOTEBOOKS_DIR / file, work / file, env)
    nbrun.execute_concurrently(list(runs.values()), timeout=300)
    for run in runs.values():
        print(f"executed {run.source.name} in {run.seconds:.1f} s -> {run.out_path}")

    session_ids = {}
    for name, run in runs.items():
        found = [p["sessionId"] for p in nbrun.probes(run.nb) if p["probe"] == "session"]
        assert len(found) == 1, f"notebook {name}: session probes {found}; error {run.error!r}"
        session_ids[name] = found[0]
    jobs, stages, operations = _settled(server)
    (artifacts_dir / "spark-rest-snapshot.json").write_text(
        json.dumps(
            {"sessionIds": session_ids, "jobs": jobs, "stages": stages, "operations": operations},
            indent=1,
        )
    )
    cells: dict[tuple[str, str], Cell] = {}
    for name, (_, _, labels) in NOTEBOOKS.items():
        nb = runs[name].nb
        label_cells = {p["label"]: p["cell"] for p in nbrun.probes(nb) if p["probe"] == "tags"}
        for label in labels:
            ops = [
                op
                for op in operations
                if op["sessionId"] == session_ids[name]
                and f"test-{label}" in op["sparkSessionTags"]
            ]
            index = label_cells.get(label, -1)
            cells[(name, label)] = Cell(
                name,
                label,
                index,
                ops,
                {int(j) for op in ops for j in op["jobIds"]},
                {t for op in ops for t in op["sparkSessionTags"] if t.startswith(CELL_TAG_PREFIX)},
                nbrun.cell_widgets(nb, index) if index >= 0 else [],
            )
    return Executed(runs, session_ids, {j["jobId"]: j for j in jobs}, stages, operations, cells)


# ---------------------------------------------------------------------------------------------
# helpers


def _fail_on(problems: list[str], what: str) -> None:
    if problems:
        pytest.fail(f"{what}: {len(problems)} problem(s)\n" + "\n".join(problems), pytrace=False)


OPERATION_TAG = re.compile(
    r"^SparkConnect_OperationTag_User_(.*)_Session_([0-9a-f-]{36})_Operation_([0-9a-f-]{36})$"
)


def _operation_tag(job: dict) -> re.Match | None:
    """Spark's operation tag of a Connect job (docs: user, session and operation ids)."""
    return next(filter(None, (OPERATION_TAG.match(t) for t in job.get("jobTags", []))), None)


def _owner(job: dict) -> tuple[str, str] | None:
    """(session id, user id) of a Connect job, as Spark tagged it."""
    m = _operation_tag(job)
    return (m.group(2), m.group(1)) if m else None


def _operation(job: dict) -> str | None:
    m = _operation_tag(job)
    return m.group(3) if m else None


def _brief_job(job: dict) -> str:
    keep = ("jobId", "status", "stageIds", *TASK_FIELDS.values(), *STAGE_COUNT_FIELDS.values())
    return json.dumps({k: job.get(k) for k in keep})


def _the_widget(ex: Executed, cell: Cell, problems: list[str]) -> dict | None:
    """The cell's one widget's synced state, or None with the reason added to `problems`."""
    where = f"{cell.notebook}/{cell.label} (cell {cell.index})"
    if len(cell.widgets) != 1:
        problems.append(f"{where}: {len(cell.widgets)} widget outputs, want 1: {cell.widgets}")
        return None
    model_id, _ = cell.widgets[0]
    state = ex.widget_state(cell.notebook, model_id)
    if state is None:
        problems.append(f"{where}: widget {model_id} has no saved state in the notebook metadata")
    return state


# ---------------------------------------------------------------------------------------------
# tests


def test_notebooks_ran_as_spark_reports_it(executed: Executed) -> None:
    """The workload did what the other tests rely on, according to the notebooks and Spark."""
    ex = executed
    problems: list[str] = []
    for name, run in ex.runs.items():
        if run.error is not None:
            problems.append(f"notebook {name}: nbclient raised {run.error!r}")
        for index, ename, evalue in nbrun.errors(run.nb):
            label = next((c.label for c in ex.cells.values() if c.index == index), None)
            if (name, label) not in EXPECTED_ERRORS or "sparkscope-boom" not in evalue:
                problems.append(f"notebook {name} cell {index}: unexpected {ename}: {evalue[:300]}")
    if len(set(ex.session_ids.values())) != len(ex.session_ids):
        problems.append(f"the notebooks share a Connect session: {ex.session_ids}")
    for name, (_, user, _) in NOTEBOOKS.items():
        users = {op["userId"] for op in ex.session_operations(name)}
        if users != {user}:
            problems.append(f"notebook {name}: operations of users {users}, want {{{user!r}}}")
    for (name, label), cell in ex.cells.items():
        if cell.index < 0:
            problems.append(f"{name}/{label}: the cell's tag probe is missing")
        if not cell.job_ids:
            problems.append(
                f"{name}/{label}: Spark lists no jobs for test-{label}: {cell.operations}"
            )
        if len(cell.cell_tags) != 1:
            problems.append(
                f"{name}/{label}: sparkscope cell tags on its operations: {cell.cell_tags}"
            )
    multi = [ex.spark_jobs[j] for j in ex.cells[("a", "multi-job")].job_ids]
    if len(multi) < 2 or not any(j["numSkippedStages"] > 0 for j in multi):
        problems.append(f"a/multi-job: want several jobs, one with skipped stages: {multi}")
    failing = [ex.spark_jobs[j] for j in ex.cells[("a", "failing")].job_ids]
    if not any(j["status"] == "FAILED" and j["numFailedTasks"] > 0 for j in failing):
        problems.append(f"a/failing: no FAILED job with failed tasks: {failing}")
    untagged = [op for op in ex.session_operations("a") if not op["sparkSessionTags"]]
    if len(untagged) != 1 or not untagged[0]["jobIds"]:
        problems.append(f"a: want one operation without client tags, with jobs: {untagged}")

    # "at the same time": some operation of A ran while some operation of B ran
    def spans(name: str) -> list[tuple[int, int]]:
        return [
            (op["startTimestamp"], op.get("finishTimestamp") or op["closeTimestamp"])
            for op in ex.session_operations(name)
            if op["jobIds"]
        ]

    if not any(a0 < b1 and b0 < a1 for a0, a1 in spans("a") for b0, b1 in spans("b")):
        problems.append(f"no operation of A overlapped one of B: A {spans('a')} B {spans('b')}")
    _fail_on(problems, "notebook workload as seen by nbclient and Spark's REST API")


def test_each_cell_widget_holds_exactly_its_jobs_with_spark_counts(executed: Executed) -> None:
    """Per Spark cell: one widget, in state done, tagged with the cell's tag, whose jobs are
    exactly Spark's jobs of the cell's operations, with Spark's status, stage ids, task counts
    (total/active/completed/skipped/failed/killed) and stage counts."""
    ex = executed
    problems: list[str] = []
    for (name, label), cell in ex.cells.items():
        where = f"{name}/{label}"
        state = _the_widget(ex, cell, problems)
        if state is None:
            continue
        if state.get("state") != "done":
            problems.append(f"{where}: widget state {state.get('state')!r}, want 'done'")
        if cell.cell_tags and state.get("tag") not in cell.cell_tags:
            problems.append(f"{where}: widget tag {state.get('tag')!r}, Spark ops {cell.cell_tags}")
        jobs = state.get("jobs") or []
        got = {j.get("jobId"): j for j in jobs}
        if len(got) != len(jobs):
            problems.append(f"{where}: widget lists a job twice: {[j.get('jobId') for j in jobs]}")
        if set(got) != cell.job_ids:
            problems.append(
                f"{where}: widget job ids {sorted(got, key=str)}, Spark's jobs of the cell's "
                f"operations {sorted(cell.job_ids)} (missing {sorted(cell.job_ids - set(got))}, "
                f"extra {sorted(set(got) - cell.job_ids, key=str)})"
            )
        for jid in sorted(cell.job_ids & set(got)):
            spark, mine = ex.spark_jobs[jid], got[jid]
            diffs = []
            if mine.get("status") != spark["status"]:
                diffs.append(f"status widget={mine.get('status')!r} spark={spark['status']!r}")
            if mine.get("stageIds") != spark["stageIds"]:
                diffs.append(f"stageIds widget={mine.get('stageIds')} spark={spark['stageIds']}")
            for key, field in TASK_FIELDS.items():
                if (mine.get("tasks") or {}).get(key) != spark[field]:
                    have = (mine.get("tasks") or {}).get(key)
                    diffs.append(f"tasks.{key} widget={have!r} spark {field}={spark[field]}")
            for key, field in STAGE_COUNT_FIELDS.items():
                if (mine.get("stages") or {}).get(key) != spark[field]:
                    have = (mine.get("stages") or {}).get(key)
                    diffs.append(f"stages.{key} widget={have!r} spark {field}={spark[field]}")
            # Whose job it is, by Spark's own tags (the widget keeps no ids of its user).
            want_owner = (ex.session_ids[name], NOTEBOOKS[name][1])
            if _owner(spark) != want_owner:
                diffs.append(f"owner by Spark's tags {_owner(spark)}, want {want_owner}")
            if diffs:
                problems.append(f"{where} job {jid}: " + "; ".join(diffs))
                problems.append(f"    spark:  {_brief_job(spark)}")
                problems.append(f"    widget: {json.dumps(mine, sort_keys=True)[:600]}")
        # The operations behind the widget's jobs (by Spark's tags) are the cell's operations
        # that ran jobs.
        want_ops = sorted(op["operationId"] for op in cell.operations if op["jobIds"])
        have_ops = sorted(
            {_operation(ex.spark_jobs[j["jobId"]]) for j in jobs if j["jobId"] in ex.spark_jobs}
        )
        if have_ops != want_ops:
            problems.append(f"{where}: widget jobs' operations {have_ops}, Spark {want_ops}")
    _fail_on(problems, "cell widgets vs Spark's REST jobs of each cell")


def test_no_widget_shows_the_other_notebooks_work(executed: Executed) -> None:
    """No widget of either notebook holds a job, operation or session of the other notebook, and
    the only widgets in a notebook are those of its Spark cells."""
    ex = executed
    problems: list[str] = []
    for name, run in ex.runs.items():
        other = next(n for n in ex.runs if n != name)
        other_jobs = ex.session_job_ids(other)
        other_ops = {op["operationId"] for op in ex.session_operations(other)}
        own_cells = {c.index for c in ex.cells.values() if c.notebook == name}
        for index in range(len(run.nb.cells)):
            for model_id, _ in nbrun.cell_widgets(run.nb, index):
                state = ex.widget_state(name, model_id) or {}
                where = f"notebook {name} cell {index} widget {model_id}"
                if index not in own_cells:
                    problems.append(
                        f"{where}: a widget in a cell without Spark jobs: {state.get('summary')}"
                    )
                jobs = {j.get("jobId") for j in state.get("jobs") or []}
                if jobs & other_jobs:
                    problems.append(
                        f"{where}: jobs {sorted(jobs & other_jobs)} of notebook {other}"
                    )
                saved = json.dumps(state)
                if any(op in saved for op in other_ops):
                    problems.append(f"{where}: operations of notebook {other}")
                if ex.session_ids[other] in saved:
                    problems.append(f"{where}: session {ex.session_ids[other]} of notebook {other}")
    _fail_on(problems, "widgets showing the other notebook's work")


def test_no_saved_notebook_names_its_user_or_session(executed: Executed) -> None:
    """Who ran a notebook, and in which Connect session and operations, stays in its kernel:
    what sparkscope saves in the file (widget state, the widgets' outputs with their text/plain
    and text/html) holds none of those ids. (The test notebooks print their own session ids, for
    the tests; that output is not sparkscope's.)"""
    ex = executed
    problems: list[str] = []
    for name, run in ex.runs.items():
        ours = [nbrun.widget_states(run.nb)]
        for cell in run.nb.cells:
            ours += [o for o in cell.get("outputs", []) if nbrun.WIDGET_VIEW in o.get("data", {})]
        saved = json.dumps(ours)
        own_ops = {op["operationId"] for op in ex.session_operations(name)}
        user = NOTEBOOKS[name][1]
        if ex.session_ids[name] in saved:
            problems.append(f"notebook {name}: its session id {ex.session_ids[name]} is saved")
        problems += [f"notebook {name}: operation {op} is saved" for op in own_ops if op in saved]
        if f'"{user}"' in saved or f"user {user}" in saved or f"User_{user}_" in saved:
            problems.append(f"notebook {name}: its user {user!r} is saved")
    _fail_on(problems, "ids saved in notebooks")


def test_widget_stages_equal_spark_stages(executed: Executed) -> None:
    """The stage attempts of each cell's widget are Spark's `/stages` attempts of the cell's
    jobs' stages, with Spark's status and task counts."""
    ex = executed
    problems: list[str] = []
    for (name, label), cell in ex.cells.items():
        state = _the_widget(ex, cell, problems)
        if state is None:
            continue
        stage_ids = {s for j in cell.job_ids for s in ex.spark_jobs[j]["stageIds"]}
        want = {
            (s["stageId"], s["attemptId"]): s for s in ex.spark_stages if s["stageId"] in stage_ids
        }
        got = {(s.get("stageId"), s.get("attemptId")): s for s in state.get("stages") or []}
        if set(got) != set(want):
            problems.append(
                f"{name}/{label}: widget stage attempts {sorted(got, key=str)}, "
                f"Spark {sorted(want)}"
            )
        for key in sorted(set(got) & set(want)):
            diffs = [
                f"{mine} widget={got[key].get(mine)!r} spark {theirs}={want[key][theirs]!r}"
                for mine, theirs in STAGE_FIELDS.items()
                if got[key].get(mine) != want[key][theirs]
            ]
            if diffs:
                problems.append(f"{name}/{label} stage {key}: " + "; ".join(diffs))
    _fail_on(problems, "cell widget stages vs Spark's REST /stages")


def test_text_plain_fallback_shows_a_summary(executed: Executed) -> None:
    """Frontends without widgets (and the saved .ipynb) show a text summary: the number of jobs
    and the completed/total task counts, equal to Spark's."""
    ex = executed
    problems: list[str] = []
    for (name, label), cell in ex.cells.items():
        if len(cell.widgets) != 1:
            problems.append(f"{name}/{label}: {len(cell.widgets)} widget outputs, want 1")
            continue
        text = cell.widgets[0][1]
        jobs = [ex.spark_jobs[j] for j in cell.job_ids]
        n = len(jobs)
        tasks = (
            f"{sum(j['numCompletedTasks'] for j in jobs)}/{sum(j['numTasks'] for j in jobs)} tasks"
        )
        want = [f"{n} job" + ("s" if n != 1 else ""), tasks]
        if any(j["status"] == "FAILED" for j in jobs):
            want.append("failed")
        missing = [w for w in want if w not in text]
        if not text.strip() or missing:
            problems.append(f"{name}/{label}: text/plain lacks {missing}: {text!r}")
    _fail_on(problems, "text/plain fallback of the widgets")


def test_failing_cell_widget_shows_the_failed_job(executed: Executed) -> None:
    ex = executed
    cell = ex.cells[("a", "failing")]
    problems: list[str] = []
    state = _the_widget(ex, cell, problems)
    _fail_on(problems, "the failing cell's widget")
    assert state is not None
    failed_in_spark = {j for j in cell.job_ids if ex.spark_jobs[j]["status"] == "FAILED"}
    failed_in_widget = {
        j.get("jobId") for j in state.get("jobs") or [] if j.get("status") == "FAILED"
    }
    assert failed_in_spark, f"Spark shows no FAILED job for the failing cell: {cell.job_ids}"
    assert failed_in_widget == failed_in_spark, (
        f"FAILED jobs: widget {failed_in_widget}, Spark {failed_in_spark}; "
        f"widget jobs {state.get('jobs')}"
    )
    assert state.get("state") == "done", state.get("state")


def test_untagged_worker_query_is_in_no_widget(executed: Executed) -> None:
    """The query notebook A ran on a worker thread carries no client tag in Spark, and its jobs
    are in no widget; the cell that started it shows only its main-thread query's jobs."""
    ex = executed
    untagged = [op for op in ex.session_operations("a") if not op["sparkSessionTags"]]
    assert len(untagged) == 1, f"operations of A without client tags: {untagged}"
    worker_jobs = {int(j) for j in untagged[0]["jobIds"]}
    assert worker_jobs, f"the worker query ran no job: {untagged[0]}"
    shown: dict[int, list[str]] = {}
    nb = ex.runs["a"].nb
    for index in range(len(nb.cells)):
        for model_id, _ in nbrun.cell_widgets(nb, index):
            for job in (ex.widget_state("a", model_id) or {}).get("jobs") or []:
                if job.get("jobId") in worker_jobs:
                    shown.setdefault(job["jobId"], []).append(f"cell {index}")
    assert not shown, f"untagged worker jobs shown in widgets: {shown}"
    cell = ex.cells[("a", "untagged")]
    problems: list[str] = []
    state = _the_widget(ex, cell, problems)
    _fail_on(problems, "the untagged cell's widget")
    assert state is not None
    got = {j.get("jobId") for j in state.get("jobs") or []}
    assert got == cell.job_ids, (
        f"untagged cell widget jobs {got}, its main-thread query's jobs {cell.job_ids}, "
        f"worker jobs {worker_jobs}"
    )
