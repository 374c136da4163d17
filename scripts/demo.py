"""The sparkscope demo: a local Spark Connect server with the listener, the agent, a workload
from two users whose jobs the agent attributes to their session, operation and cell tag (shown
live in the terminal), and JupyterLab with an example notebook whose cells get live progress
widgets from the same agent.

Run through `make demo`. Leaves everything up until Ctrl-C when run from a terminal (`--exit`
stops right after the workload).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import threading
import time
import warnings
from collections import defaultdict
from pathlib import Path

import harness

ROOT = Path(__file__).resolve().parents[1]

USERS = ("alice", "bob_smith")


def workload(spark, user: str, errors: list[str]) -> None:
    """A notebook's worth of cells: tagged like the kernel extension tags each cell run."""
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as F

    cells = [
        (
            "cell-1",
            lambda: spark.range(0, 2_000_000, numPartitions=8).selectExpr("sum(id)").collect(),
        ),
        (
            "cell-2",
            lambda: (
                spark.range(0, 400_000, numPartitions=6)
                .withColumn("k", F.col("id") % 50)
                .repartition(5)
                .groupBy("k")
                .count()
                .orderBy("k")
                .collect()
            ),
        ),
        ("cell-3", lambda: spark.sql("SELECT * FROM no_such_table").collect()),
        (None, lambda: spark.range(0, 100_000, numPartitions=4).count()),
    ]
    for tag, run in cells:
        if tag:
            spark.addTag(f"{user}-{tag}")
        try:
            run()
        except PySparkException as e:  # the failing cell is part of the show
            first = str(e).splitlines()[0] if str(e) else ""
            first = first if len(first) <= 100 else first[:99] + "…"
            errors.append(f"{user} {tag}: {type(e).__name__}: {first}")
        finally:
            if tag:
                spark.removeTag(f"{user}-{tag}")
        time.sleep(0.5)


def render(apps: list[dict]) -> str:
    rows = []
    for app in apps:
        rows.append(f"application {app['id']}  (Spark {app['sparkVersion']}, live={app['live']})")
        by_owner: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for job in app["jobs"]:
            c = job.get("connect")
            key = (c["userId"], c["sessionId"][:8]) if c else ("-", "-")
            by_owner[key].append(job)
        for (user, session), jobs in sorted(by_owner.items()):
            rows.append(f"  user {user:<10} session {session}…")
            for job in sorted(jobs, key=lambda j: j["jobId"]):
                c = job.get("connect") or {}
                tags = ",".join(c.get("tags", [])) or "(untagged)"
                done = job["numCompletedTasks"]
                total = job["numTasks"] - job["numSkippedTasks"]
                bar_w = 20
                filled = bar_w * done // total if total > 0 else bar_w
                bar = "#" * filled + "." * (bar_w - filled)
                op = c.get("operationId", "")[:8]
                rows.append(
                    f"    job {job['jobId']:>3} [{bar}] {done:>4}/{total:<4} "
                    f"{job['status']:<9} tag {tags:<18} op {op}"
                )
    return "\n".join(rows)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _stop(signum: int, frame: object) -> None:
    # The first signal unwinds the context managers, which stop every server; later ones (a
    # terminal sends several) must not interrupt that clean-up.
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def main() -> int:
    # Ctrl-C, a closed terminal (SIGHUP) or a supervisor's SIGTERM all stop everything cleanly.
    for sig in STOP_SIGNALS:
        signal.signal(sig, _stop)
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--exit", action="store_true", help="stop right after the workload")
    args = ap.parse_args()
    interactive = sys.stdin.isatty() and not args.exit
    # pyspark's Connect client logs every failed query with its whole JVM stack trace, as pages
    # of JSON; the demo's failures are expected and shown as one line each instead.
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")

    work = ROOT / ".demo"
    binary = harness.agent_binary()
    if binary is None:
        print("build first: make setup", file=sys.stderr)
        return 2
    # `sparkscope server`, as a user runs it: Spark Connect with the listener, the agent beside
    # it, credentials for the run in <home> (SPARKSCOPE_HOME), where notebooks find them.
    home = work / "home"
    events = work / "spark-events"
    events.mkdir(parents=True, exist_ok=True)
    conf = {"spark.eventLog.enabled": "true", "spark.eventLog.dir": events.resolve().as_uri()}
    with harness.SparkscopeServer(binary, work, home, conf=conf) as server:
        print(server.banner)
        sessions = {u: harness.connect_session(server.remote_url(user_id=u)) for u in USERS}
        errors: list[str] = []
        threads = [
            threading.Thread(target=workload, args=(s, u, errors), name=u)
            for u, s in sessions.items()
        ]
        for t in threads:
            t.start()
        clear = "\033[H\033[J" if sys.stdout.isatty() else ""
        shown = ""
        while any(t.is_alive() for t in threads):
            view = render(server.applications())
            if view != shown:  # a terminal redraws; a log gets each new state once
                print(clear + view, flush=True)
                shown = view
            time.sleep(1.0)
        for t in threads:
            t.join()
        time.sleep(0.5)
        print(clear + render(server.applications()))
        print("\nexpected failures:")
        for line in errors or ["none"]:
            print("  " + line)
        for s in sessions.values():
            s.stop()
        if not interactive:
            return 0
        notebooks = work / "notebooks"
        notebooks.mkdir(parents=True, exist_ok=True)
        example = notebooks / "demo.ipynb"
        if not example.exists():  # keep the user's edits across demo runs
            shutil.copy(ROOT / "kernel-comm" / "examples" / "demo.ipynb", example)
        # Nothing sparkscope-specific for the kernels but where the server left the token: the
        # stream's URL comes from the Connect server (spark.sparkscope.streamUrl).
        env = {
            "SPARK_REMOTE": server.remote_url(user_id=os.environ.get("USER", "demo")),
            "SPARKSCOPE_HOME": str(home),
        }
        with harness.JupyterLab(notebooks, work / "jupyter", env=env) as lab:
            print(f"\nJupyterLab with the example notebook:\n  {lab.notebook_url('demo.ipynb')}")
            print(
                "the agent's JSON:  curl -s -H \"Authorization: Bearer $(cat "
                f'{(home / "api-token").relative_to(ROOT)})" {server.url}/api/v1/applications'
            )
            print(f"its metrics:       curl -s {server.url}/metrics")
            print("Ctrl-C to stop everything.")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
