"""One cell of the version matrix (scripts/matrix.sh), run by the Python of a venv holding the
pyspark under test: the listener jar and agent of this repo's install against that pyspark's
Spark, a small workload (a shuffle, a count, a failing job) tagged like a notebook cell, then the
agent's jobs must equal Spark's REST API and be attributed to the session and the tag.

    python scripts/matrix_check.py connect|classic

Prints one JSON line: {"pyspark", "mode", "jobs", "ok", "problems", "seconds"}.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import harness

TAG = "matrix-cell"
FIELDS = (
    "status",
    "numTasks",
    "numCompletedTasks",
    "numSkippedTasks",
    "numFailedTasks",
    "numActiveTasks",
    "stageIds",
)


def workload(spark) -> None:
    spark.range(0, 100_000, 1, 4).selectExpr("id % 7 AS k").groupBy("k").count().collect()
    spark.range(0, 10_000, 1, 3).count()
    try:  # a job whose task fails (not an analysis error)
        spark.range(0, 10, 1, 2).selectExpr("raise_error('matrix boom')").collect()
    except Exception as e:  # noqa: BLE001 - expected: whatever class this pyspark raises
        print(f"expected failure: {type(e).__name__}", file=sys.stderr)


def compare(agent: harness.Agent, ui: str, app_id: str, session: tuple[str, str]) -> list[str]:
    spark = {j["jobId"]: j for j in harness.spark_jobs(ui, app_id)}
    problems: list[str] = []
    deadline = time.monotonic() + 15
    while True:
        ours = {j["jobId"]: j for j in agent.jobs(app_id)}
        problems = []
        if ours.keys() != spark.keys():
            problems.append(f"jobs {sorted(ours)} != Spark's {sorted(spark)}")
        for job_id in ours.keys() & spark.keys():
            for f in FIELDS:
                mine, theirs = ours[job_id].get(f), spark[job_id].get(f)
                if f == "stageIds":
                    mine, theirs = sorted(mine or []), sorted(theirs or [])
                if mine != theirs:
                    problems.append(f"job {job_id} {f}: {mine} != Spark's {theirs}")
            c = ours[job_id].get("connect") or {}
            if (c.get("sessionId"), c.get("userId")) != session or TAG not in c.get("tags", []):
                problems.append(f"job {job_id} attributed to {c}")
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.5)


def main() -> int:
    mode = sys.argv[1]
    import pyspark

    os.environ["SPARK_HOME"] = str(Path(pyspark.__file__).parent)
    binary, jar = harness.agent_binary(), harness.listener_jar()
    assert binary and jar, "make setup first"
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f"matrix-{pyspark.__version__}-{mode}-"))
    token = secrets.token_hex(16)
    with harness.Agent(binary, work / "agent", token=token) as agent:
        if mode == "connect":
            with harness.SparkConnectServer(
                work / "server", listener_jar=jar, agent_addr=agent.ingest_addr, token=token
            ) as server:
                from pyspark.sql import SparkSession

                spark = SparkSession.builder.remote(server.remote_url(user_id="matrix")).create()
                spark.addTag(TAG)
                workload(spark)
                session = (spark.client._session_id, "matrix")
                problems = compare(agent, server.ui_url, server.app_id, session)
                spark.stop()
        else:
            from pyspark.sql import SparkSession

            os.environ["SPARKSCOPE_LISTENER_TOKEN"] = token
            spark = (
                SparkSession.builder.master("local[2]")
                .config("spark.driver.host", "127.0.0.1")
                .config("spark.driver.bindAddress", "127.0.0.1")
                .config("spark.ui.showConsoleProgress", "false")
                .config("spark.driver.extraClassPath", str(jar))
                .config("spark.extraListeners", "io.sparkscope.listener.SparkscopeListener")
                .config("spark.sparkscope.agent", agent.ingest_addr)
                .config("spark.sparkscope.classicSession", "true")
                .getOrCreate()
            )
            sc = spark.sparkContext
            sc.addJobTag(TAG)
            workload(spark)
            session = (sc.applicationId, sc.sparkUser())
            problems = compare(agent, sc.uiWebUrl, sc.applicationId, session)
            spark.stop()
        jobs = len(agent.jobs(session[0] if mode == "classic" else server.app_id))
    print(
        json.dumps(
            {
                "pyspark": pyspark.__version__,
                "mode": mode,
                "jobs": jobs,
                "ok": not problems,
                "problems": problems[:10],
                "seconds": round(time.monotonic() - started, 1),
            }
        )
    )
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
