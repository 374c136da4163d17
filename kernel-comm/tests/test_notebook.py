"""One real notebook run: nbclient executes a notebook in a real IPython kernel with sparkscope
loaded, against a real Spark Connect server with the sparkscope listener and the real agent
(tests/harness/). Checks what a saved notebook holds: a widget in exactly the cells that ran
Spark jobs, their final state in the notebook's widget state, equal to the agent's own jobs, and a
text/plain summary for frontends without widgets. Skipped unless the agent and the listener jar
are built (`make setup`), failed instead under CI / SPARKSCOPE_E2E_STRICT."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
harness = pytest.importorskip("harness")

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    binary, jar = harness.agent_binary(), harness.listener_jar()
    if binary is None or jar is None:
        msg = "the agent binary or the listener jar is not built (make setup)"
        if os.environ.get("CI") or os.environ.get("SPARKSCOPE_E2E_STRICT"):
            pytest.fail(msg)
        pytest.skip(msg)
    work = tmp_path_factory.mktemp("notebook")
    with (
        harness.Agent(
            binary, work, token=LISTENER_TOKEN, subscriber_token="nb-subscriber-0123456789"
        ) as agent,
        harness.SparkConnectServer(
            work, listener_jar=jar, agent_addr=agent.ingest_addr, token=LISTENER_TOKEN
        ) as server,
    ):
        yield agent, server


LISTENER_TOKEN = "nb-listener-0123456789"

CELLS = [
    "%load_ext sparkscope",
    # the session is created in the cell that runs its first job
    """from pyspark.sql import SparkSession
spark = SparkSession.builder.remote('{url}').create()
spark.range(0, 100_000, 1, 4).count()""",
    "x = 1 + 1",
    """from pyspark.sql import functions as F
spark.range(0, 200_000, 1, 8).groupBy((F.col('id') % 10).alias('k')).count().orderBy('k').collect()""",
    """try:
    spark.sql("SELECT raise_error(concat('boom ', id)) FROM range(0, 10, 1, 2)").collect()
except Exception as exc:
    print(type(exc).__name__)""",
    "spark.stop()",
]


def test_saved_notebook_has_each_cells_jobs(stack, tmp_path: Path, monkeypatch) -> None:
    agent, server = stack
    monkeypatch.setenv("SPARKSCOPE_URL", agent.stream_url)
    monkeypatch.setenv("SPARKSCOPE_TOKEN", agent.subscriber_token)
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")
    url = server.remote_url(user_id="alice")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c.replace("{url}", url)) for c in CELLS]
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=180, store_widget_state=True, resources={}
    )
    client.execute()
    nbformat.write(nb, tmp_path / "run.ipynb")  # for a look after a failure

    shown = {i: _widget_outputs(cell) for i, cell in enumerate(nb.cells)}
    assert [i for i, outs in shown.items() if outs] == [1, 3, 4]  # only the cells with jobs
    assert all(len(outs) == 1 for outs in shown.values() if outs)
    states = nb.metadata["widgets"][WIDGET_STATE]["state"]

    rest = {j["jobId"]: j for j in agent.jobs(server.app_id)}
    seen_jobs: set[int] = set()
    for i in (1, 3, 4):
        (out,) = shown[i]
        state = states[out["data"][WIDGET_VIEW]["model_id"]]["state"]
        assert state["tag"].startswith("sparkscope-cell-")
        assert state["state"] == "done" and state["cell_done"] is True
        assert state["jobs"], f"cell {i}: no jobs in the saved state"
        for job in state["jobs"]:
            ref = rest[job["jobId"]]
            assert state["tag"] in ref["connect"]["tags"]  # the agent attributes it to this cell
            assert job["status"] == ref["status"]
            assert job["tasks"] == {
                "total": ref["numTasks"],
                "active": ref["numActiveTasks"],
                "completed": ref["numCompletedTasks"],
                "skipped": ref["numSkippedTasks"],
                "failed": ref["numFailedTasks"],
                "killed": ref["numKilledTasks"],
            }
            assert job["stageIds"] == ref["stageIds"]
            seen_jobs.add(job["jobId"])
        # frontends without widgets show the final summary
        assert out["data"]["text/plain"].startswith("sparkscope: ")
        assert "running" not in out["data"]["text/plain"].splitlines()[0]
    # every job the session ran is in exactly one cell's widget
    assert seen_jobs == {
        j["jobId"] for j in rest.values() if (j.get("connect") or {}).get("userId") == "alice"
    }
    failing = states[shown[4][0]["data"][WIDGET_VIEW]["model_id"]]["state"]
    assert [j["status"] for j in failing["jobs"]] == ["FAILED"]
    # Who ran the cells and in which session stays in the kernel: the file holds neither.
    saved = (tmp_path / "run.ipynb").read_text()
    ids = {j["connect"]["sessionId"] for j in rest.values() if j.get("connect")}
    ids |= {j["connect"]["operationId"] for j in rest.values() if j.get("connect")}
    assert ids and not any(i in saved for i in ids), "a session or operation id was saved"
    assert '"alice"' not in saved and "user alice" not in saved


def _widget_outputs(cell) -> list:
    return [
        o
        for o in cell.get("outputs", [])
        if o.get("output_type") == "display_data" and WIDGET_VIEW in o.get("data", {})
    ]
