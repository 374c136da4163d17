"""sparkscope as a user installs and starts it: the wheel `make setup` built goes into a fresh
venv with pip and brings the agent binary, the listener jar and the kernel extension; `sparkscope
server` starts a real Spark Connect server with the listener attached and the agent beside it; a
notebook that only loads the extension and connects to that server finds the stream (from the
server's `spark.sparkscope.streamUrl`) and its credential (from the file the server wrote) with
no SPARKSCOPE_* variable set, and its cell's widget shows the jobs Spark's REST API reports.
Ctrl-C stops Spark and the agent.
"""

from __future__ import annotations

import json
import os
import subprocess
import venv
from pathlib import Path

import harness
import nbformat
import pytest
from harness import nbrun

WHEELS = harness.REPO_ROOT / "target" / "wheels"


@pytest.fixture(scope="module")
def wheel(require_piece) -> Path:
    found = sorted(WHEELS.glob("sparkscope-*.whl"))
    return require_piece(found[-1] if found else None, "sparkscope's wheel", "scripts/wheel.sh")


def test_the_wheel_installs_the_agent_the_listener_and_the_extension(
    wheel: Path, tmp_path: Path
) -> None:
    target = tmp_path / "venv"
    venv.create(target, with_pip=True)
    py = target / "bin" / "python"
    pip = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert pip.returncode == 0, pip.stderr
    exe = target / "bin" / "sparkscope"
    assert exe.is_file()

    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("sparkscope "), version.stdout
    jar = subprocess.run([str(exe), "listener-jar"], capture_output=True, text=True, check=True)
    jar_path = Path(jar.stdout.strip())
    assert jar_path.is_file() and jar_path.is_relative_to(target), jar_path
    # the listener class is in it
    listing = subprocess.run(
        ["jar", "tf", str(jar_path)], capture_output=True, text=True, check=False
    )
    assert "io/sparkscope/listener/SparkscopeListener.class" in listing.stdout
    # `python -m sparkscope` is the same command
    via_python = subprocess.run(
        [str(py), "-m", "sparkscope", "listener-jar"], capture_output=True, text=True, check=True
    )
    assert via_python.stdout == jar.stdout
    # the package's own idea of its pieces agrees, and its extension imports with its widget
    probe = subprocess.run(
        [
            str(py),
            "-c",
            (
                "import json, sparkscope, sparkscope.install as i, sparkscope.widget as w, pathlib;"
                "print(json.dumps([str(i.binary()), str(i.listener_jar()),"
                " pathlib.Path(w.__file__).with_name('static').joinpath('widget.js').is_file()]))"
            ),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    binary, jar_again, has_js = json.loads(probe.stdout)
    assert Path(binary) == exe and Path(jar_again) == jar_path and has_js


def test_an_install_without_the_jar_says_what_to_do(tmp_path: Path) -> None:
    env = {**os.environ, "SPARKSCOPE_LISTENER_JAR": str(tmp_path / "missing.jar")}
    binary = harness.agent_binary()
    assert binary is not None
    out = subprocess.run(
        [str(binary), "listener-jar"], capture_output=True, text=True, env=env, check=False
    )
    assert out.returncode != 0
    assert "SPARKSCOPE_LISTENER_JAR names" in out.stderr and "missing.jar" in out.stderr


def test_sparkscope_server_and_a_notebook_that_configures_nothing(
    tmp_path: Path, require_piece
) -> None:
    binary = require_piece(harness.agent_binary(), "sparkscope binary", "make setup")
    home = tmp_path / "home"
    server = harness.SparkscopeServer(binary, tmp_path / "server", home)
    try:
        server.start()
        banner = server.banner
        assert server.remote in banner and f":{server.http_port}/api/v1/stream" in banner, banner
        # credentials made for the run, readable by the user only, never printed
        for name in ("token", "api-token"):
            secret = home / name
            assert secret.stat().st_mode & 0o077 == 0, oct(secret.stat().st_mode)
            assert secret.read_text().strip() not in banner
        (app,) = server.applications()  # the listener reports to the agent

        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_code_cell(nbrun.SETUP),
            nbformat.v4.new_code_cell(
                'spark.range(0, 40_000, 1, 4).selectExpr("id % 5 AS k").groupBy("k").count()'
                ".collect()"
            ),
            nbformat.v4.new_code_cell("%sparkscope"),
        ]
        source = tmp_path / "zero.ipynb"
        nbformat.write(nb, source)
        (tmp_path / "kernel").mkdir()
        env = nbrun.kernel_env(
            tmp_path / "kernel",
            {"SPARK_REMOTE": server.remote_url(user_id="dana"), "SPARKSCOPE_HOME": str(home)},
        )
        for name in [k for k in env if k.startswith("SPARKSCOPE_") and k != "SPARKSCOPE_HOME"]:
            env.pop(name)
        env.pop("JUPYTERHUB_API_TOKEN", None)
        run = nbrun.NotebookRun("zero", source, tmp_path / "zero.out.ipynb", env)
        nbrun.execute_concurrently([run], timeout=300)
        assert run.error is None, run.error

        widgets = nbrun.cell_widgets(run.nb, 1)
        assert len(widgets) == 1, run.nb.cells[1].get("outputs")
        state = nbrun.widget_states(run.nb)[widgets[0][0]]["state"]
        assert state["state"] == "done", state
        shown = {j["jobId"]: j for j in state["jobs"]}
        assert shown and all(j["status"] == "SUCCEEDED" for j in shown.values())
        (current,) = server.applications()
        attributed = {j["jobId"]: j.get("connect") or {} for j in current["jobs"]}
        assert {attributed[j]["userId"] for j in shown} == {"dana"}
        status = nbrun.stdout(run.nb, 2)
        assert f":{server.http_port}/api/v1/stream" in status and "connected" in status, status

        # A Connect user runs code in the driver: the listener's token is not where that code
        # can read it, neither the driver's environment nor the file it was read from.
        spark = harness.connect_session(server.remote_url(user_id="mallory"))
        try:
            getenv = "reflect('java.lang.System', 'getenv', '{}')"
            (row,) = spark.sql(
                f"SELECT {getenv.format('SPARKSCOPE_LISTENER_TOKEN')} AS t,"
                f" {getenv.format('SPARK_HOME')} AS home"
            ).collect()
            # reflect() gives a null result as the string "null"; SPARK_HOME shows it reads
            assert row["home"] not in (None, "null"), row
            assert row["t"] in (None, "null"), "the listener token is in the driver's environment"
            left = sorted(p.name for p in home.glob("listener-token*"))
            assert left == [], f"the listener's token file is still there: {left}"
        finally:
            spark.stop()

        # the same jobs, with the same task counts, as Spark's own REST API
        spark = {j["jobId"]: j for j in harness.spark_jobs(server.ui_url, app["id"])}
        for job_id, job in shown.items():
            assert spark[job_id]["status"] == "SUCCEEDED"
            assert job["tasks"]["completed"] == spark[job_id]["numCompletedTasks"]
    finally:
        code = server.interrupt()
    assert code == 0, harness.tail(server.log_path)
    # nothing of Spark is left running
    pids = subprocess.run(
        ["pgrep", "-f", f"spark.connect.grpc.binding.port={server.connect_port}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert pids.stdout.strip() == "", pids.stdout
    assert "spark connect server stopped" in harness.tail(server.log_path)
