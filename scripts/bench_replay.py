"""`sparkscope replay` against Spark's History Server on the same event log.

Makes a task-heavy event log on a real Spark Connect server (or takes one given with --log),
then times:
  - Spark's History Server: a running server that has already listed the log answers its first
    `GET /api/v1/applications/<app>/jobs`, which replays the whole log into its status store;
  - `sparkscope replay <log> --format json`, the whole process, wall clock.
Both outputs are compared job by job. Prints the medians and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness

FIELDS = tuple(f for f in harness.JOB_FIELDS if f not in ("jobId", "jobTags"))


def make_log(work: Path, jobs: int, tasks: int) -> Path:
    events = work / "events"
    with harness.SparkConnectServer(work / "server", event_log_dir=events) as server:
        spark = harness.connect_session(server.remote_url(user_id="bench"))
        spark.addTag("bench")
        for _ in range(jobs):
            spark.range(0, tasks * 10, numPartitions=tasks).selectExpr("sum(id)").collect()
        spark.stop()
    (log,) = list(events.iterdir())
    return log


def time_history_server(log: Path, work: Path, app_id: str) -> tuple[float, list[dict]]:
    log_dir = work / "hs-logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir()
    os.symlink(log.resolve(), log_dir / log.name)
    with harness.HistoryServer(log_dir, work) as hs:
        hs.wait_listed(app_id)
        t0 = time.perf_counter()
        jobs = hs.get(f"applications/{app_id}/jobs")
        return time.perf_counter() - t0, jobs


def time_replay(binary: Path, log: Path) -> tuple[float, dict]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [str(binary), "replay", str(log), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - t0, json.loads(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--log", type=Path, help="an existing event log (file or eventlog_v2_ dir)")
    ap.add_argument("--jobs", type=int, default=30)
    ap.add_argument("--tasks", type=int, default=2000, help="tasks per job")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path, help="append the figures to this file as a JSON line")
    args = ap.parse_args()

    binary = harness.agent_binary()
    work = Path(tempfile.mkdtemp(prefix="sparkscope-bench-"))
    log = args.log or make_log(work, args.jobs, args.tasks)
    size = sum(f.stat().st_size for f in (log.iterdir() if log.is_dir() else [log]))

    replay_times = []
    for _ in range(args.runs):
        t, out = time_replay(binary, log)
        replay_times.append(t)
    (app,) = out["applications"]
    hs_times = []
    for _ in range(args.runs):
        t, hs_jobs = time_history_server(log, work, app["id"])
        hs_times.append(t)

    ours = {j["jobId"]: j for j in app["jobs"]}
    theirs = {j["jobId"]: j for j in hs_jobs}
    diffs = [
        (jid, f, ours.get(jid, {}).get(f), theirs[jid].get(f))
        for jid in theirs
        for f in FIELDS
        if ours.get(jid, {}).get(f) != theirs[jid].get(f)
    ]
    r, h = statistics.median(replay_times), statistics.median(hs_times)
    print(f"event log: {log} ({size / 1e6:.1f} MB on disk, {len(theirs)} jobs)")
    print(f"history server, first jobs request (replays the log): median {h:.3f} s  {hs_times}")
    print(f"sparkscope replay, whole process:                    median {r:.3f} s  {replay_times}")
    print(f"speed-up: {h / r:.1f}x")
    print(f"jobs differing from the History Server: {len({d[0] for d in diffs})} {diffs[:5]}")
    if args.json:
        figures = {
            "bench": "replay",
            "log_mb": size / 1e6,
            "jobs": len(theirs),
            "tasks": sum(j.get("numTasks", 0) for j in hs_jobs),
            "replay_s": r,
            "history_server_s": h,
            "differing_jobs": len({d[0] for d in diffs}),
        }
        with args.json.open("a") as out:
            out.write(json.dumps(figures) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 1 if diffs or set(ours) != set(theirs) else 0


if __name__ == "__main__":
    sys.exit(main())
