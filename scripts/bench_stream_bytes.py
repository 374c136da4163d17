"""What a notebook's view costs on the wire while a 10,000-task stage runs: the agent's stream to
the kernel (bytes/s, frames/s) and the kernel's widget messages to the browser (comm bytes/s).

Starts the agent and a local Spark Connect server with the listener, runs a real kernel with the
sparkscope extension (jupyter_client), and in it one cell whose single stage has --tasks tasks.
A second subscriber follows the kernel's session on the agent's stream exactly as the kernel
does, and counts what it receives; the kernel's iopub `comm_msg`s (the widget's state updates,
samples for the Tasks view included: the kernel sends them whichever view is shown) are counted
from the kernel's side.

    .venv/bin/python scripts/bench_stream_bytes.py [--tasks 10000] [--plan-branches 0]

With --plan-branches B the cell's query is a union of B aggregations over ranges (about ten
operators each: 200 or so with B = 20), with the same number of tasks in all, so what the Plan
view's live operator metrics add to the stream shows beside a plain stage's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

import harness

SETUP = """%load_ext sparkscope
import os, warnings
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
from pyspark.sql import SparkSession
spark = SparkSession.builder.remote(os.environ["SPARK_REMOTE"]).create()
spark.range(1).collect()
print(spark.client._session_id)
"""
CELL = 'spark.range(0, {n}, 1, {n}).selectExpr("id % 7 AS k").collect(); None'
# B aggregations over ranges, unioned: a plan of about ten operators per branch
PLAN_CELL = """from functools import reduce
parts = [
    spark.range(0, {rows}, 1, {per}).where(f"id % {b} != {{i}}").selectExpr("id % 7 AS k", "id AS v")
    .groupBy("k").agg({{"v": "sum"}}).withColumnRenamed("sum(v)", "s")
    for i in range({b})
]
reduce(lambda a, b: a.unionByName(b), parts).collect(); None
"""


def follow(url: str, token: str, session: str, user: str, out: list, stop: threading.Event):
    import websocket

    ws = websocket.create_connection(
        url, header=[f"Authorization: Bearer {token}"], timeout=5, suppress_origin=True
    )
    ws.send(json.dumps({"subscribe": {"sessions": [{"sessionId": session, "userId": user}]}}))
    ws.settimeout(0.5)
    while not stop.is_set():
        try:
            frame = ws.recv()
        except websocket.WebSocketTimeoutException:
            continue
        out.append((time.monotonic(), frame if isinstance(frame, str) else frame.decode()))
    ws.close()


def plan_nodes(frames: list[tuple[float, str]]) -> tuple[int, int]:
    """The largest plan seen on the stream (nodes) and how many metric values came."""
    most = values = 0
    for _, text in frames:
        if "sqlExecutions" not in text:
            continue
        msg = json.loads(text)
        for x in (msg.get("update") or msg).get("sqlExecutions", []):
            most = max(most, len(x.get("nodes", [])))
            values += len(x.get("metricValues", []))
    return most, values


def run(tasks: int, branches: int) -> None:
    from jupyter_client.manager import KernelManager

    user = "bench"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        binary = harness.agent_binary()
        jar = harness.listener_jar()
        if binary is None or jar is None:
            sys.exit("build the agent and the listener first (make setup)")
        with (
            harness.Agent(binary, work / "agent", token=secrets.token_hex(16)) as agent,
            harness.SparkConnectServer(
                work / "server", listener_jar=jar, agent_addr=agent.ingest_addr, token=agent.token
            ) as server,
        ):
            env = {
                **os.environ,
                "PATH": f"{harness.venv_bin()}:{os.environ.get('PATH', '')}",
                "SPARK_REMOTE": server.remote_url(user_id=user),
                "SPARKSCOPE_URL": agent.stream_url,
                "SPARKSCOPE_TOKEN": agent.subscriber_token,
                "IPYTHONDIR": str(work / "ipython"),
            }
            km = KernelManager(kernel_name="python3")
            km.start_kernel(env=env)
            kc = km.client()
            kc.start_channels()
            kc.wait_for_ready(timeout=120)
            comm: list[tuple[float, int]] = []
            by_trait: list[tuple[float, str, int]] = []
            session = ""
            try:
                msg_id = kc.execute(SETUP)
                while True:
                    msg = kc.get_iopub_msg(timeout=180)
                    if msg["parent_header"].get("msg_id") != msg_id:
                        continue
                    if msg["msg_type"] == "stream":
                        session = msg["content"]["text"].strip().splitlines()[-1]
                    if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                        break
                frames: list[tuple[float, int]] = []
                stop = threading.Event()
                t = threading.Thread(
                    target=follow,
                    args=(agent.stream_url, agent.subscriber_token, session, user, frames, stop),
                    daemon=True,
                )
                t.start()
                time.sleep(1.0)  # the subscription's snapshot is not the stage's traffic
                frames.clear()
                start = time.monotonic()
                if branches:
                    per = max(1, tasks // branches)
                    cell = PLAN_CELL.format(rows=per * 10, per=per, b=branches)
                else:
                    cell = CELL.format(n=tasks)
                msg_id = kc.execute(cell)
                end = None
                while True:
                    try:
                        msg = kc.get_iopub_msg(timeout=1)
                    except queue.Empty:
                        if end is not None and time.monotonic() - end > 3:
                            break
                        continue
                    if msg["msg_type"] == "comm_msg":
                        now = time.monotonic()
                        comm.append((now, len(json.dumps(msg["content"]))))
                        state = (msg["content"].get("data") or {}).get("state") or {}
                        for name, value in state.items():
                            by_trait.append((now, name, len(json.dumps(value))))
                    if (
                        msg["parent_header"].get("msg_id") == msg_id
                        and msg["msg_type"] == "status"
                        and msg["content"]["execution_state"] == "idle"
                        and end is None
                    ):
                        end = time.monotonic()
                stop.set()
                t.join(5)
            finally:
                kc.stop_channels()
                km.shutdown_kernel(now=True)
            seconds = end - start
            during = [f for f in frames if start <= f[0] <= end]
            comm_during = [c for c in comm if start <= c[0] <= end]
            stream_bytes = sum(len(text.encode()) for _, text in during)
            comm_bytes = sum(n for _, n in comm_during)
            what = f"a {branches}-branch union" if branches else "a stage"
            print(f"{what} of {tasks} tasks ran {seconds:.1f} s ({tasks / seconds:,.0f} tasks/s)")
            nodes, values = plan_nodes(during)
            print(f"largest plan on the stream: {nodes} operators; {values} metric values sent")
            print(
                f"agent -> kernel stream: {stream_bytes / seconds / 1024:.1f} KiB/s, "
                f"{len(during) / seconds:.1f} frames/s, {stream_bytes / max(len(during), 1):,.0f} "
                "bytes/frame"
            )
            print(
                f"kernel -> browser widget comm: {comm_bytes / seconds / 1024:.1f} KiB/s, "
                f"{len(comm_during) / seconds:.1f} messages/s"
            )
            traits: dict[str, int] = {}
            for at, name, n in by_trait:
                if start <= at <= end:
                    traits[name] = traits.get(name, 0) + n
            top = sorted(traits.items(), key=lambda kv: -kv[1])[:6]
            print(
                "  by trait: "
                + ", ".join(f"{name} {n / seconds / 1024:.1f} KiB/s" for name, n in top)
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=10_000)
    p.add_argument("--plan-branches", type=int, default=0)
    a = p.parse_args()
    run(a.tasks, a.plan_branches)


if __name__ == "__main__":
    main()
