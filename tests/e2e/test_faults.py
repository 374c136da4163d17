"""Right after every fault, in every mode: a real Spark Connect server (or a classic
SparkContext) with the listener, an agent killed and restarted, Spark's UI off, reconciliation
against retention, a failed stage's root cause, and a driver killed with SIGKILL. Each test ends
with what the agent shows beside what Spark says (its REST API where it has one).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import harness
import pytest
import requests
from harness.feed import Feed
from sparkscope.sessions import SessionKey
from test_failures import SLEEPY, Query, jobs_of, metric, wait_same


def notices(app: dict, kind: str) -> list[dict]:
    return [n for n in app.get("notices", []) if n.get("kind") == f"NOTICE_KIND_{kind}"]


def agent_with(work: Path, name: str, *args: str) -> harness.Agent:
    binary = harness.agent_binary()
    assert binary is not None, "sparkscope binary not built"
    return harness.Agent(binary, work / name, token=secrets.token_hex(16), extra_args=list(args))


def live_app(agent: harness.Agent) -> str | None:
    try:
        apps = agent.applications()
    except requests.RequestException:
        return None
    live = [a["id"] for a in apps if a["live"]]
    return live[0] if live else None


def wait_live(agent: harness.Agent, app_id: str, timeout: float = 30) -> None:
    def live() -> bool:
        try:
            app = agent.application(app_id)
        except requests.RequestException:
            return False
        return bool(app and app["live"])

    harness.wait_until(live, timeout, 0.1, "the listener to (re)connect")


# ---------------------------------------------------------------------------------------------
# Spark's UI off: no REST API to fall back on


def test_ui_off_a_job_that_ended_unseen_is_over_and_unknown_with_one_notice(
    tmp_path: Path, require_piece
) -> None:
    require_piece(harness.agent_binary(), "sparkscope binary", "make setup")
    jar = require_piece(harness.listener_jar(), "listener jar", "listener-jar/build.sh")
    with agent_with(tmp_path, "agent") as agent:
        link = harness.Proxy(agent.ingest_addr)
        # the agent tries Spark's REST API (off) from the application's first hello on
        began = time.monotonic()
        server = harness.SparkConnectServer(
            tmp_path / "server",
            listener_jar=jar,
            agent_addr=link.addr,
            token=agent.token,
            conf={"spark.ui.enabled": "false"},
            app_id_of=lambda: live_app(agent),
        )
        with server:
            spark = harness.connect_session(server.remote_url(user_id="erin"))
            key = SessionKey(spark.client._session_id, "erin")
            feed = Feed(agent, key)
            try:
                q = Query(
                    spark,
                    lambda s: (
                        s.range(0, 4, 1, 4).selectExpr(SLEEPY.format(ms=6000) + " AS x").collect()
                    ),
                )
                q.start()
                feed.wait(
                    "the job running in the widget",
                    lambda a, j, s, g: any(x["status"] == "JOB_STATUS_RUNNING" for x in j.values()),
                    60,
                )
                # the listener's link is down while the job ends: its end never reaches the
                # agent, whose Spark REST API is off
                link.cut()
                q.finish()
                link.resume()
                wait_live(agent, server.app_id)
                started = time.monotonic()

                def over(a, j, s, g) -> bool:
                    return bool(j) and all(
                        x["status"] == "JOB_STATUS_UNKNOWN" and x.get("completionTimeMs")
                        for x in j.values()
                    )

                feed.wait("the job shown over and unknown", over, 30)
                apps, jobs, stages, _ = feed.view()
                assert all(
                    st["status"] not in ("STAGE_STATUS_ACTIVE", "STAGE_STATUS_PENDING")
                    for st in stages.values()
                ), stages
                assert all(x["tasks"].get("active", 0) == 0 for x in jobs.values()), jobs
                (api_job,) = agent.jobs(server.app_id)
                assert api_job["status"] == "UNKNOWN" and api_job["numActiveTasks"] == 0
                # 10 s of an unreachable REST API: one notice, a few tries, not one every 2 s
                time.sleep(max(0.0, 10 - (time.monotonic() - started)))
                app = agent.application(server.app_id)
                tries = app["ingest"]["reconcileFailures"]
                apps, *_ = feed.view()
                told = notices(apps[server.app_id], "UNRECONCILED")
                assert len(told) == 1, apps[server.app_id].get("notices")
                # tries with backoff over the whole outage (since the application began): 0.5 s
                # after a gap, then 2, 4, 8, 16 s apart; one every 2 s would be 3 to 4 times as many
                elapsed = time.monotonic() - began
                schedule = [0.5 + 2 * (2**k - 1) for k in range(10)]
                allowed = sum(1 for t in schedule if t <= elapsed + 1)
                assert 1 <= tries <= allowed, f"{tries} tries in {elapsed:.1f} s"
                print(
                    f"UI off: job {api_job['jobId']} shown {api_job['status']} with 0 active "
                    f"tasks; {len(told)} unreconciled notice, {tries} tries in {elapsed:.1f} s: "
                    f"{told[0]['message']!r}"
                )
            finally:
                feed.close()
                spark.stop()
                link.close()


# ---------------------------------------------------------------------------------------------
# One server, UI on: periodic reconciliation against a small retention, a root cause through a
# restart, then the driver killed


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def agent(work: Path, require_piece):
    require_piece(harness.agent_binary(), "sparkscope binary", "make setup")
    with agent_with(
        work,
        "agent",
        "--retain-jobs",
        "5",
        "--reconcile-interval-seconds",
        "1",
        "--listener-gone-grace-seconds",
        "4",
    ) as a:
        yield a


@pytest.fixture(scope="module")
def server(work: Path, agent: harness.Agent, reporting_to):
    # a task may fail 3 times before its stage does: a failure that is not the end
    with reporting_to(work / "server", agent, master="local[2,3]") as s:
        yield s


def test_periodic_reconciliation_with_a_small_retention_counts_each_job_once(agent, server) -> None:
    spark = harness.connect_session(server.remote_url(user_id="fay"))
    try:
        # 20 jobs, one at a time, while a long one keeps periodic reconciliation running
        q = Query(
            spark,
            lambda s: s.range(0, 2, 1, 1).selectExpr(SLEEPY.format(ms=15000) + " AS x").collect(),
        )
        q.start()
        for _ in range(20):
            spark.range(0, 100, 1, 2).count()
        time.sleep(4)  # several periodic reconciliations
        q.finish()
        spark_jobs = server.jobs()
        harness.wait_until(
            lambda: (
                metric(agent, "sparkscope_jobs_finished_total", application=server.app_id)
                == len(spark_jobs)
            ),
            20,
            0.25,
            "every job counted as finished",
        )
        time.sleep(3)  # more reconciliations: nothing may be counted again
        started = metric(agent, "sparkscope_jobs_started_total", application=server.app_id)
        finished = metric(agent, "sparkscope_jobs_finished_total", application=server.app_id)
        tasks = metric(agent, "sparkscope_tasks_finished_total", application=server.app_id)
        spark_tasks = sum(
            j["numCompletedTasks"] + j["numFailedTasks"] + j["numKilledTasks"] for j in spark_jobs
        )
        assert (started, finished) == (len(spark_jobs), len(spark_jobs))
        assert tasks == spark_tasks, (tasks, spark_tasks)
        assert len(agent.jobs(server.app_id)) <= 5
        print(
            f"--retain-jobs 5, reconciling every second: {started:.0f} started, "
            f"{finished:.0f} finished, {tasks:.0f} tasks; Spark: {len(spark_jobs)} jobs, "
            f"{spark_tasks} tasks"
        )
    finally:
        spark.stop()


def test_a_failed_tasks_root_cause_survives_an_agent_restart(agent, server) -> None:
    spark = harness.connect_session(server.remote_url(user_id="gus"))
    feed = Feed(agent, SessionKey(spark.client._session_id, "gus"))
    try:
        # partition 0's first attempt fails at once; the retry and partition 1 sleep 8 s
        # (reflect gives a null result as the string 'null')
        fail_once = (
            "IF(spark_partition_id() = 0 AND "
            "reflect('java.lang.System', 'getProperty', 'sparkscope.failed') = 'null' AND "
            "reflect('java.lang.System', 'setProperty', 'sparkscope.failed', 'yes') = 'null', "
            "raise_error('root cause: partition zero refused'), "
            f"{SLEEPY.format(ms=8000)})"
        )
        q = Query(spark, lambda s: s.range(0, 2, 1, 2).selectExpr(f"{fail_once} AS x").collect())
        q.start()

        def cause(a, j, s, g) -> str | None:
            for st in s.values():
                message = (st.get("firstFailure") or {}).get("message") or ""
                if "partition zero refused" in message:
                    return message
            return None

        feed.wait("the task failure seen", lambda *v: cause(*v) is not None, 60)
        seen = feed.snapshots
        agent.kill()
        agent.restart()
        wait_live(agent, server.app_id)
        feed.wait_snapshot_after(seen)
        assert jobs_of(q.tag, server.jobs("running")), "the job ended before the restart"
        # the stream starts over with a snapshot of the restarted agent's state
        feed.wait("the stage back after the restart", lambda a, j, s, g: bool(s), 30)
        kept = cause(*feed.view())
        assert kept is not None, "the root cause was lost in the restart"
        q.finish()
        wait_same(agent, server, q.tag, timeout=20)
        print(f"after an agent restart mid-job the stage still says: {kept[:80]!r}")
    finally:
        feed.close()
        spark.stop()


def test_a_driver_killed_with_sigkill_is_told_and_nothing_stays_running(agent, server) -> None:
    spark = harness.connect_session(server.remote_url(user_id="hal"))
    key = SessionKey(spark.client._session_id, "hal")
    feed = Feed(agent, key)
    q = Query(spark, lambda s: s.range(0, 2, 1, 2).selectExpr(SLEEPY.format(ms=60000)).collect())
    q.start()
    try:
        driver_killed(agent, server, feed)
    finally:
        feed.close()
        # the server is gone: close the channel without asking it anything, or pyspark's exit
        # handler retries its clean-up against the dead server for minutes
        spark.client.close()
        q.join(5)


def driver_killed(agent, server, feed: Feed) -> None:
    feed.wait(
        "the job running in the widget",
        lambda a, j, s, g: any(x["status"] == "JOB_STATUS_RUNNING" for x in j.values()),
        60,
    )
    killed = time.monotonic()
    os.killpg(server.proc.pid, signal.SIGKILL)
    feed.wait("the disconnect pushed", lambda a, j, s, g: not a[server.app_id].get("live"), 60)
    told = time.monotonic() - killed

    def ended(a, j, s, g) -> bool:
        app = a[server.app_id]
        return bool(notices(app, "LISTENER_GONE")) and all(
            x["status"] != "JOB_STATUS_RUNNING" for x in j.values()
        )

    feed.wait("the driver's work ended as unknown", ended, 30)
    over = time.monotonic() - killed
    apps, jobs, stages, _ = feed.view()
    assert all(st["status"] != "STAGE_STATUS_ACTIVE" for st in stages.values()), stages
    assert not [j for j in agent.jobs(server.app_id) if j["status"] == "RUNNING"]
    assert metric(agent, "sparkscope_jobs_running", application=server.app_id) == 0
    print(
        f"driver SIGKILLed: the widget showed it gone after {told:.1f} s, its "
        f"{len(jobs)} running job(s) ended as {sorted({j['status'] for j in jobs.values()})} "
        f"after {over:.1f} s (grace 4 s): "
        f"{notices(apps[server.app_id], 'LISTENER_GONE')[0]['message']!r}"
    )


# ---------------------------------------------------------------------------------------------
# A classic session (the driver in the kernel) through an agent restart

CLASSIC = """\
import json, os, sys, time, warnings
warnings.filterwarnings("ignore")
from pyspark.sql import SparkSession
jar, agent = sys.argv[1], sys.argv[2]
spark = (
    SparkSession.builder.master("local[2]").appName("classic")
    .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
    .config("spark.ui.showConsoleProgress", "false").config("spark.jars", jar)
    .config("spark.extraListeners", "io.sparkscope.listener.SparkscopeListener")
    .config("spark.sparkscope.agent", agent).config("spark.sparkscope.classicSession", "true")
    .getOrCreate()
)
sc = spark.sparkContext
print(json.dumps({"app": sc.applicationId, "ui": sc.uiWebUrl, "user": sc.sparkUser()}), flush=True)
sc.addJobTag("sparkscope-cell-classic")
try:
    spark.range(0, 4, 1, 2).selectExpr("reflect('java.lang.Thread', 'sleep', 90000L)").collect()
    print(json.dumps({"stopped": False}), flush=True)
except Exception as e:
    print(json.dumps({"stopped": True, "error": type(e).__name__}), flush=True)
spark.stop()
"""


def test_a_classic_session_keeps_its_cell_and_cancel_through_an_agent_restart(
    tmp_path: Path, require_piece
) -> None:
    jar = require_piece(harness.listener_jar(), "listener jar", "make setup")
    with agent_with(tmp_path, "agent") as agent:
        script = tmp_path / "classic.py"
        script.write_text(CLASSIC)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPARK")}
        env["SPARKSCOPE_LISTENER_TOKEN"] = agent.token
        env["SPARK_HOME"] = str(harness.spark_home())
        proc = subprocess.Popen(
            [sys.executable, str(script), str(jar), agent.ingest_addr],
            stdout=subprocess.PIPE,
            stderr=open(tmp_path / "classic.log", "wb"),  # noqa: SIM115
            env=env,
            text=True,
        )
        try:
            probe = json.loads(proc.stdout.readline())
            app_id, ui, user = probe["app"], probe["ui"], probe["user"]
            feed = Feed(agent, SessionKey(app_id, user))
            tag = "sparkscope-cell-classic"

            def cell_running(a, j, s, g) -> bool:
                group = g.get(tag)
                return bool(group) and any(
                    j.get(i, {}).get("status") == "JOB_STATUS_RUNNING" for i in group["jobIds"]
                )

            feed.wait("the cell's job running", cell_running, 120)
            seen = feed.snapshots
            agent.kill()
            time.sleep(1)
            agent.restart()
            wait_live(agent, app_id)
            feed.wait_snapshot_after(seen)
            feed.wait("the cell's job running again after the restart", cell_running, 30)
            result = feed.cancel({"tag": tag})
            assert result.get("ok") is True, result
            out = json.loads(proc.stdout.readline())
            assert out["stopped"] is True, out
            (job_id,) = g_ids = feed.view()[3][tag]["jobIds"]
            spark_job = harness.rest_get(ui, f"applications/{app_id}/jobs/{job_id}")
            feed.wait(
                "the cell's job ended as Spark says",
                lambda a, j, s, g: j[job_id]["status"] == f"JOB_STATUS_{spark_job['status']}",
                30,
            )
            print(
                f"classic session through an agent restart: cell's job(s) {g_ids} followed, "
                f"cancel {result.get('message') or 'ok'}; Spark says {spark_job['status']}, "
                f"{spark_job['numKilledTasks']} killed task(s)"
            )
            feed.close()
        finally:
            proc.kill()
            proc.wait(30)
