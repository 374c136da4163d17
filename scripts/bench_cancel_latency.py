"""Latency from a click on the widget's Cancel to Spark stopping the cell's job, in a real browser.

Starts the agent, a local Spark Connect server (`local[2]`) with the listener, JupyterLab and
Debian's Chromium (Playwright). Each run starts a cell whose job has two 40 s tasks, waits until
both tasks run, clicks the widget's Cancel (a real click through Playwright) and takes, from the
click (the page's `Date.now()` in a capturing click listener):

    job stopped   Spark's REST API first shows the job not RUNNING (polled every 10 ms);
                  also the job's `completionTime` as Spark recorded it
    tasks ended   Spark's REST API first shows no active task of the job; also the last task
                  end (`launchTime + duration` of its task records) as Spark recorded it
    widget        the widget's root first has `data-state="cancelled"` (a MutationObserver)

All clocks are this machine's (browser, this script, the driver JVM). The path measured is
browser → comm (a kernel subshell: the kernel is busy in the cell's collect()) → the kernel's
agent client → agent → Spark Connect Interrupt → Spark cancels the job and kills its tasks; and
for the widget, Spark → listener → agent → stream → kernel → comm → DOM.

    .venv/bin/python scripts/bench_cancel_latency.py [--runs 10] [--keep DIR]
        [--load-tasks-per-second 10000] [--json FILE]

With a load, the later half of the runs happen while the repo's load generator feeds the same
agent that many tasks per second (100 sessions, 1,000 subscribers; scripts/bench_load.py): the
first half is the anchor, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import harness
from bench_load import SyntheticLoad
from harness import browser

NOTEBOOK = "cancel_latency.ipynb"
USER = "bench"

SETUP = """%load_ext sparkscope
import os, warnings
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
from pyspark.sql import SparkSession
spark = SparkSession.builder.remote(os.environ["SPARK_REMOTE"]).create()
spark.range(1).collect()  # warm-up: class loading and codegen
"""
CELL = """spark.range(0, 2, numPartitions=2).selectExpr(
    "reflect('java.lang.Thread', 'sleep', cast(40000 as bigint))").collect()
"""

RECORDER_JS = """() => {
  window.__cancelClicks = [];
  window.__cancelledAt = {};
  document.addEventListener('click', (ev) => {
    if (ev.target.closest && ev.target.closest('.sparkscope-cancel')) {
      window.__cancelClicks.push(Date.now());
    }
  }, true);
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      const root = m.target;
      if (root.classList && root.classList.contains('sparkscope-cell')
          && root.dataset.state === 'cancelled' && !(root.dataset.tag in window.__cancelledAt)) {
        window.__cancelledAt[root.dataset.tag] = Date.now();
      }
    }
  }).observe(document.body, {subtree: true, attributes: true, attributeFilter: ['data-state']});
}"""

METRICS = (
    ("job_rest", "click -> Spark REST shows the job not RUNNING"),
    ("job_spark", "click -> the job's completionTime (Spark's record)"),
    ("tasks_rest", "click -> Spark REST shows no active task"),
    ("tasks_spark", "click -> the last task's end (Spark's task records)"),
    ("widget", "click -> the widget shows cancelled"),
)


def rest_ms(value: str) -> int:
    """Spark REST's `2026-11-21T11:20:01.326GMT` in epoch milliseconds."""
    dt = datetime.strptime(value.replace("GMT", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
    return round(dt.timestamp() * 1000)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return ordered[int(rank) - 1]


def write_notebook(path: Path) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        cells=[new_code_cell(SETUP), new_code_cell(CELL)],
    )
    nbformat.write(nb, path)


def last_task_end(server: harness.SparkConnectServer, job: dict) -> int | None:
    """The latest task end (epoch ms, Spark's clock) over the job's stage attempts."""
    ends = []
    for stage in server.rest("stages"):
        if stage["stageId"] not in job["stageIds"]:
            continue
        tasks = server.rest(f"stages/{stage['stageId']}/{stage['attemptId']}/taskList")
        for task in tasks:
            if task.get("launchTime") and task.get("duration") is not None:
                ends.append(rest_ms(task["launchTime"]) + task["duration"])
    return max(ends) if ends else None


def one_run(nb: browser.LabNotebook, server: harness.SparkConnectServer, seen: set[int]) -> dict:
    nb.run_cell(1)

    def running() -> dict | None:
        for job in server.jobs("running"):
            if job["jobId"] not in seen and job["numActiveTasks"] == 2:
                return job
        return None

    job = harness.wait_until(running, 60, 0.1, "the cell's job to run both tasks")
    seen.add(job["jobId"])
    button = nb.cell_locator(1).locator(".sparkscope-cancel")
    button.wait_for(state="visible", timeout=30_000)
    clicks = nb.page.evaluate("() => window.__cancelClicks.length")
    button.click()
    at: dict[str, float] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not {"job_rest", "tasks_rest"} <= at.keys():
        spark_job = server.rest(f"jobs/{job['jobId']}")
        now = time.time() * 1000
        if spark_job["status"] != "RUNNING":
            at.setdefault("job_rest", now)
        if spark_job["numActiveTasks"] == 0:
            at.setdefault("tasks_rest", now)
        time.sleep(0.01)
    if "tasks_rest" not in at:
        sys.exit(f"job {job['jobId']} still has running tasks 30 s after the click: {spark_job}")
    click = nb.page.evaluate("() => window.__cancelClicks")[clicks]
    nb.wait_cell_done(1, 60)
    tag = nb.cell_locator(1).locator(".sparkscope-cell").first.get_attribute("data-tag")
    widget = harness.wait_until(
        lambda: nb.page.evaluate("(t) => window.__cancelledAt[t]", tag),
        10,
        0.1,
        "the widget to show cancelled",
    )
    spark_job = server.rest(f"jobs/{job['jobId']}")
    record = {
        "jobId": job["jobId"],
        "status": spark_job["status"],
        "numKilledTasks": spark_job["numKilledTasks"],
        "click": click,
        "job_rest": at["job_rest"] - click,
        "job_spark": rest_ms(spark_job["completionTime"]) - click,
        "tasks_rest": at["tasks_rest"] - click,
        "widget": widget - click,
    }
    task_end = last_task_end(server, spark_job)
    if task_end is not None:
        record["tasks_spark"] = task_end - click
    return record


def run(args: argparse.Namespace, work: Path) -> list[dict]:
    binary = harness.agent_binary()
    jar = harness.listener_jar()
    if binary is None or jar is None:
        sys.exit("build and install sparkscope first: make setup")
    if browser.chromium_path() is None or not browser.playwright_available():
        sys.exit("needs Debian's chromium (/usr/bin/chromium) and the playwright Python package")
    root = work / "lab-root"
    root.mkdir(parents=True, exist_ok=True)
    write_notebook(root / NOTEBOOK)
    records: list[dict] = []
    with (
        harness.Agent(binary, work, token="bench-" + str(time.time_ns())) as agent,
        harness.SparkConnectServer(
            work, listener_jar=jar, agent_addr=agent.ingest_addr, token=agent.token
        ) as server,
        harness.JupyterLab(
            root,
            work,
            env={
                "SPARK_REMOTE": server.remote_url(user_id=USER),
                "SPARKSCOPE_URL": agent.stream_url,
                "SPARKSCOPE_TOKEN": agent.subscriber_token,
            },
        ) as lab,
        browser.chromium(work / "chromium-profile") as context,
    ):
        nb = browser.LabNotebook.open(context, lab, NOTEBOOK)
        nb.page.evaluate(RECORDER_JS)
        nb.run_cell(0)
        nb.wait_cell_done(0, 180)
        seen = {j["jobId"] for j in server.jobs()}
        load = None
        for r in range(args.runs):
            loaded = args.load_tasks_per_second > 0 and r >= args.runs // 2
            if loaded and load is None:
                load = SyntheticLoad(agent, args.load_tasks_per_second, work / "loadgen.log")
                load.start()
            record = one_run(nb, server, seen)
            record["loaded"] = loaded
            records.append(record)
            print(
                f"run {r + 1}/{args.runs}{' (under load)' if loaded else ''}: "
                f"job {record['jobId']} {record['status']}, "
                f"{record['numKilledTasks']} tasks killed; "
                + ", ".join(f"{k} {record[k]:.0f} ms" for k, _ in METRICS if k in record)
            )
        if load is not None:
            load.stop()
        if args.keep:
            (work / "cancel-latency.json").write_text(json.dumps(records, indent=1))
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="cancelled cell runs (at least 5)")
    parser.add_argument("--keep", type=Path, help="keep logs and raw records in this directory")
    parser.add_argument(
        "--load-tasks-per-second", type=int, default=0, help="synthetic load for the later runs"
    )
    parser.add_argument("--json", type=Path, help="append the figures to this file as a JSON line")
    parser.add_argument("--quick", action="store_true", help="2 runs: checks that it works")
    args = parser.parse_args()
    if args.runs < 5 and not args.quick:
        parser.error("--runs must be at least 5")
    if args.quick:
        args.runs = 2
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        records = run(args, args.keep.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="sparkscope-cancel-") as tmp:
            records = run(args, Path(tmp))
    print(f"\n$ {command}")
    figures: dict = {"bench": "cancel_latency", "load_tasks_per_second": args.load_tasks_per_second}
    for loaded in (False, True):
        group = [r for r in records if r["loaded"] == loaded]
        if not group:
            continue
        under = f", at {args.load_tasks_per_second} tasks/s of load" if loaded else ""
        print(f"{len(group)} runs{under}, nearest-rank percentiles:")
        for key, label in METRICS:
            values = [r[key] for r in group if key in r]
            if not values:
                print(f"  {label}: no data")
                continue
            print(
                f"  {label}: p50 {percentile(values, 50):.0f} ms, "
                f"p95 {percentile(values, 95):.0f} ms"
                f" (min {min(values):.0f}, max {max(values):.0f}, "
                f"mean {statistics.fmean(values):.0f})"
            )
            figures.setdefault("loaded" if loaded else "quiet", {})[key] = {
                "n": len(values),
                "p50_ms": percentile(values, 50),
                "p95_ms": percentile(values, 95),
            }
    if args.json:
        with args.json.open("a") as out:
            out.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
