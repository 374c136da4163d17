"""A real executor loss: a Spark Connect server on `local-cluster[2,1,1024]` (two executor JVMs),
one executor killed with SIGKILL in the middle of a shuffle's reduce stage, so that tasks fail
with ExecutorLostFailure and FetchFailed and the stages run again, and the agent killed and
restarted while they do. At the end every job equals Spark's REST API, `numFailedTasks`
included; then `sparkscope replay` of the application's event log equals Spark's History Server
reading the same log.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
from pathlib import Path

import harness
import websocket
from test_core_pipeline import _fail_on, job_problems
from test_failures import SLEEPY, Query, wait_same


def executor_pids(app_id: str) -> list[int]:
    """The executor JVMs of `app_id` (the standalone worker starts them with its id), read from
    /proc: their command lines are longer than `ps` shows."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"org.apache.spark.executor.CoarseGrainedExecutorBackend" in args and (
            app_id.encode() in args
        ):
            pids.append(int(proc.name))
    return sorted(pids)


def streamed_executor_logs(agent: harness.Agent, session_id: str, user: str) -> list[dict]:
    """The application's executor log links as a notebook following the session gets them."""
    ws = websocket.create_connection(
        agent.stream_url,
        suppress_origin=True,
        header=[f"Authorization: Bearer {agent.subscriber_token}"],
        timeout=15,
    )
    try:
        ws.send(
            json.dumps({"subscribe": {"sessions": [{"sessionId": session_id, "userId": user}]}})
        )
        while True:
            msg = json.loads(ws.recv())
            apps = msg.get("update", {}).get("applications", [])
            if apps:
                return apps[0].get("executorLogs", [])
    finally:
        ws.close()


def test_an_executor_lost_mid_shuffle_with_the_agent_restarted_equals_spark(
    tmp_path: Path, reporting_to, require_piece
) -> None:
    binary = require_piece(harness.agent_binary(), "sparkscope binary", "make setup")
    with (
        harness.Agent(binary, tmp_path / "agent", token=secrets.token_hex(16)) as agent,
        reporting_to(
            tmp_path / "server",
            agent,
            master="local-cluster[2,1,1024]",
            event_log_dir=tmp_path / "events",
            # eight reduce tasks that stay eight, so the loss falls in the middle of them
            conf={"spark.sql.adaptive.coalescePartitions.enabled": "false"},
        ) as server,
    ):
        harness.wait_until(
            lambda: len(executor_pids(server.app_id)) == 2, 120, 0.5, "two executor JVMs"
        )
        spark = harness.connect_session(server.remote_url(user_id="ivy"))
        try:
            q = Query(
                spark,
                lambda s: (
                    s.range(0, 8, 1, 8)
                    .selectExpr("id", f"{SLEEPY.format(ms=300)} AS s")
                    .repartition(8)
                    .selectExpr(f"{SLEEPY.format(ms=2500)} AS t")
                    .collect()
                ),
            )
            q.start()

            def reducing() -> bool:
                stages = server.rest("stages", {"status": "active"})
                return any(
                    st["numCompleteTasks"] >= 1 and st["numTasks"] == 8 and st["stageId"] > 0
                    for st in stages
                )

            harness.wait_until(reducing, 120, 0.2, "the reduce stage under way")
            victim = executor_pids(server.app_id)[0]
            os.kill(victim, signal.SIGKILL)

            def retried() -> bool:
                return any(st["attemptId"] > 0 for st in server.rest("stages"))

            harness.wait_until(retried, 120, 0.2, "a stage attempt after the loss")
            agent.kill()
            agent.restart()
            q.finish(300)
            wait_same(agent, server, timeout=60)
            spark_jobs = server.jobs()
            failed = {j["jobId"]: j["numFailedTasks"] for j in spark_jobs}
            attempts = sorted(
                (st["stageId"], st["attemptId"], st["status"]) for st in server.rest("stages")
            )
            assert sum(failed.values()) > 0, f"no task failed: {spark_jobs}"
            assert any(a > 0 for _, a, _ in attempts), attempts
            # each live executor's stdout and stderr links, as Spark's /executors lists them,
            # also after the agent's restart (the listener's snapshot resends its executors)
            want = sorted(
                (e["id"], kind, url)
                for e in server.rest("executors")
                if e["id"] != "driver"
                for kind, url in e.get("executorLogs", {}).items()
            )
            got = sorted(
                (e["executorId"], e["kind"], e["url"])
                for e in streamed_executor_logs(agent, spark.client._session_id, "ivy")
            )
            assert want and {k for _, k, _ in want} >= {"stdout", "stderr"}, want
            assert got == want, (got, want)
        finally:
            spark.stop()
        server.stop()
        # the standalone worker of local-cluster keeps executor logs under $SPARK_HOME/work
        shutil.rmtree(harness.util.spark_home() / "work" / server.app_id, ignore_errors=True)
        out = harness.replay(binary, server.event_log_path())
        (app,) = [a for a in out["applications"] if a.get("id") == server.app_id]
        with harness.HistoryServer(server.event_log_path().parent, tmp_path / "history") as hs:
            hs.wait_listed(server.app_id)
            history_jobs = hs.get(f"applications/{server.app_id}/jobs")
        _fail_on(
            job_problems(history_jobs, app["jobs"], "replay"),
            "sparkscope replay vs Spark's History Server after an executor loss",
        )
        print(
            f"executor {victim} killed mid-shuffle, agent restarted during the retry: "
            f"{len(spark_jobs)} jobs equal Spark's REST API live and through replay vs the "
            f"History Server; failed tasks per job {failed}; stage attempts {attempts}"
        )
