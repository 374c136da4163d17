"""Latency from a stage completing in Spark to the notebook widget showing it in the browser.

Starts the agent, a local Spark Connect server with the listener, JupyterLab and Debian's
Chromium (Playwright), runs one cell of many short sequential jobs (one stage each) and, for every
completed stage, takes

    latency = (browser time the widget first drew a stage completion >= this one)
              - (the stage's completionTime in Spark's REST API)

Both clocks are this machine's (the driver JVM's currentTimeMillis and the browser's Date.now()).
The widget stamps `data-last-stage-completion-ms` / `data-last-stage-seen-at` on its root when it
first draws a newer stage completion; a MutationObserver in the page records every pair. The path
measured is listener (100 ms coalescing) → agent → stream (coalesced per subscriber) → kernel
(widget throttle) → comm → JupyterLab → DOM.

    .venv/bin/python scripts/bench_widget_latency.py [--jobs 30] [--gap-ms 200] [--runs 2]
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

NOTEBOOK = "widget_latency.ipynb"

SETUP = """%load_ext sparkscope
import os, time, warnings
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
from pyspark.sql import SparkSession
spark = SparkSession.builder.remote(os.environ["SPARK_REMOTE"]).create()
spark.range(1).collect()  # warm-up: the first query pays for class loading and codegen
"""
# {jobs} short single-stage jobs, one after another, {gap} s apart
CELL = """for i in range({jobs}):
    spark.range(0, 4, 1, 2).selectExpr("sum(id) + {{}}".format(i)).collect()
    time.sleep({gap})
"""

RECORDER_JS = """() => {
  window.__sparkscopeLatency = [];
  const record = (root) => {
    const c = root.dataset.lastStageCompletionMs, s = root.dataset.lastStageSeenAt;
    if (c && s) window.__sparkscopeLatency.push(
      {tag: root.dataset.tag, completion: Number(c), seenAt: Number(s)});
  };
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      if (m.target.classList && m.target.classList.contains('sparkscope-cell')) record(m.target);
    }
  }).observe(document.body, {subtree: true, attributes: true,
                             attributeFilter: ['data-last-stage-seen-at']});
}"""


def rest_ms(value: str) -> int:
    """Spark REST's `2026-11-21T11:20:01.326GMT` in epoch milliseconds."""
    dt = datetime.strptime(value.replace("GMT", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
    return round(dt.timestamp() * 1000)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return ordered[int(rank) - 1]


def write_notebook(path: Path, jobs: int, gap_s: float) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        cells=[new_code_cell(SETUP), new_code_cell(CELL.format(jobs=jobs, gap=gap_s))],
    )
    nbformat.write(nb, path)


def stage_completions(server: harness.SparkConnectServer, tag: str) -> dict[int, int]:
    """stage id -> completion (epoch ms, Spark's clock) of the COMPLETE stages of the jobs of
    the operations tagged `tag`."""
    ops = [op for op in server.connect_operations() if tag in op["sparkSessionTags"]]
    job_ids = {int(j) for op in ops for j in op["jobIds"]}
    stage_ids = {s for j in server.jobs() if j["jobId"] in job_ids for s in j["stageIds"]}
    return {
        s["stageId"]: rest_ms(s["completionTime"])
        for s in server.rest("stages")
        if s["stageId"] in stage_ids and s["status"] == "COMPLETE" and s.get("completionTime")
    }


def run(args: argparse.Namespace, work: Path) -> dict[bool, list[float]]:
    binary = harness.agent_binary()
    jar = harness.listener_jar()
    if binary is None or jar is None:
        sys.exit("build and install sparkscope first: make setup")
    if browser.chromium_path() is None or not browser.playwright_available():
        sys.exit("needs Debian's chromium (/usr/bin/chromium) and the playwright Python package")
    root = work / "lab-root"
    root.mkdir(parents=True, exist_ok=True)
    write_notebook(root / NOTEBOOK, args.jobs, args.gap_ms / 1000)
    latencies: dict[bool, list[float]] = {False: [], True: []}
    with (
        harness.Agent(binary, work, token="bench-" + str(time.time_ns())) as agent,
        harness.SparkConnectServer(
            work, listener_jar=jar, agent_addr=agent.ingest_addr, token=agent.token
        ) as server,
        harness.JupyterLab(
            root,
            work,
            env={
                "SPARK_REMOTE": server.remote_url(user_id="bench"),
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
        load = None
        for r in range(args.runs):
            loaded = args.load_tasks_per_second > 0 and r >= args.runs // 2
            if loaded and load is None:
                load = SyntheticLoad(agent, args.load_tasks_per_second, work / "loadgen.log")
                load.start()
            before = nb.page.evaluate("() => window.__sparkscopeLatency.length")
            nb.run_cell(1)
            nb.wait_cell_done(1, 60 + args.jobs * (1 + args.gap_ms / 1000))
            # the final state may land just after the cell ends
            widget = nb.cell_locator(1).locator(".sparkscope-cell").first
            harness.wait_until(
                lambda w=widget: w.get_attribute("data-state") == "done",
                30,
                0.2,
                "the widget to be done",
            )
            time.sleep(1.0)
            pairs = nb.page.evaluate("() => window.__sparkscopeLatency")[before:]
            tags = {p["tag"] for p in pairs}
            if len(tags) != 1:
                sys.exit(f"run {r}: expected one widget's records, got tags {tags}")
            (tag,) = tags
            completions = stage_completions(server, tag)
            missed = 0
            for stage_id, done_ms in sorted(completions.items()):
                shown = [p["seenAt"] for p in pairs if p["completion"] >= done_ms]
                if not shown:
                    missed += 1
                    continue
                latencies[loaded].append(min(shown) - done_ms)
            print(
                f"run {r + 1}/{args.runs}{' (under load)' if loaded else ''}: "
                f"{len(completions)} completed stages, "
                f"{len(pairs)} widget draws of a new stage completion, {missed} never shown"
            )
            if args.keep:
                (work / f"run-{r + 1}.json").write_text(
                    json.dumps({"tag": tag, "pairs": pairs, "completions": completions}, indent=1)
                )
        if load is not None:
            load.stop()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=30, help="short jobs (stages) per cell run")
    parser.add_argument("--gap-ms", type=int, default=200, help="pause between the jobs")
    parser.add_argument("--runs", type=int, default=2, help="times the cell is run")
    parser.add_argument("--keep", type=Path, help="keep logs and raw records in this directory")
    parser.add_argument(
        "--load-tasks-per-second", type=int, default=0, help="synthetic load for the later runs"
    )
    parser.add_argument("--json", type=Path, help="append the figures to this file as a JSON line")
    args = parser.parse_args()
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        latencies = run(args, args.keep.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="sparkscope-latency-") as tmp:
            latencies = run(args, Path(tmp))
    if not latencies[False] and not latencies[True]:
        sys.exit("no stage completion was shown by the widget")
    print(f"\n$ {command}")
    figures: dict = {"bench": "widget_latency"}
    for loaded, values in latencies.items():
        if not values:
            continue
        under = f" at {args.load_tasks_per_second} tasks/s of load" if loaded else ""
        print(
            f"stage completion (Spark) -> widget shows it (browser){under}, {len(values)} stages: "
            f"p50 {percentile(values, 50):.0f} ms, p95 {percentile(values, 95):.0f} ms, "
            f"min {min(values):.0f} ms, max {max(values):.0f} ms, "
            f"mean {statistics.fmean(values):.0f} ms"
        )
        key = "loaded" if loaded else "quiet"
        figures[key] = {
            "n": len(values),
            "p50_ms": percentile(values, 50),
            "p95_ms": percentile(values, 95),
        }
    figures["load_tasks_per_second"] = args.load_tasks_per_second
    if args.json:
        with args.json.open("a") as out:
            out.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
