"""Record the agent's WebSocket frames for two notebook-like cell runs against a real Spark Connect
server with the sparkscope listener, into tests/data/agent_stream.jsonl (what fake_agent.py
replays). Run from the repository root after `make setup`:

    .venv/bin/python kernel-comm/tests/record_frames.py

Cell 1 (tag ...0001) runs an aggregation (a shuffle: several jobs, skipped stages under AQE);
cell 2 (tag ...0002) runs a query whose tasks fail. The session id and the tags are replaced by the
fixed placeholders below so tests can substitute their own; everything else is as recorded.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import harness

HERE = Path(__file__).resolve().parent
SESSION_PLACEHOLDER = "11111111-1111-4111-8111-111111111111"
TAGS = ("sparkscope-cell-000000000001", "sparkscope-cell-000000000002")
OUT = HERE / "data" / "agent_stream.jsonl"


def main() -> None:
    import websocket

    binary, jar = harness.agent_binary(), harness.listener_jar()
    if binary is None or jar is None:
        sys.exit("build the agent and the listener jar first (make setup)")
    work = Path(tempfile.mkdtemp(prefix="sparkscope-record-"))
    with (
        harness.Agent(binary, work, token="T", subscriber_token="S") as agent,
        harness.SparkConnectServer(
            work, listener_jar=jar, agent_addr=agent.ingest_addr, token="T"
        ) as server,
    ):
        spark = harness.connect_session(server.remote_url(user_id="alice"))
        sid = spark.client._session_id
        ws = websocket.create_connection(
            agent.stream_url, header=["Authorization: Bearer S"], timeout=30
        )
        ws.send(json.dumps({"subscribe": {"sessions": [{"sessionId": sid, "userId": "alice"}]}}))
        frames: list[str] = []
        stop = threading.Event()

        def read() -> None:
            ws.settimeout(0.5)
            while not stop.is_set():
                try:
                    frames.append(ws.recv())
                except websocket.WebSocketTimeoutException:
                    continue

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        from pyspark.errors import PySparkException
        from pyspark.sql import functions as F

        spark.addTag(TAGS[0])
        spark.range(0, 200_000, 1, 8).groupBy((F.col("id") % 10).alias("k")).count().orderBy(
            "k"
        ).collect()
        spark.removeTag(TAGS[0])
        spark.addTag(TAGS[1])
        try:
            spark.sql("SELECT raise_error(concat('boom ', id)) FROM range(0, 10, 1, 2)").collect()
        except PySparkException as exc:  # the failure is the point
            print("cell 2 failed as intended:", type(exc).__name__)
        spark.removeTag(TAGS[1])
        time.sleep(3)  # the last updates (operation closed, jobs ended)
        stop.set()
        reader.join()
        ws.close()
        spark.stop()

    lines = []
    for frame in frames:
        lines.append(frame.replace(sid, SESSION_PLACEHOLDER))
    OUT.write_text("\n".join(lines) + "\n")
    print(f"{len(lines)} frames → {OUT}")


if __name__ == "__main__":
    main()
