"""Synthetic load on a running agent, for the latency benchmarks: the repo's load generator
(`cargo build --release --example loadgen`) attached to a harness agent feeds it Spark events at
a steady task rate over 100 Connect sessions, each followed by 10 WebSocket subscribers, while a
real notebook is measured beside it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parents[1]
LOADGEN = Path(os.environ.get("LOADGEN") or ROOT / "target" / "release" / "examples" / "loadgen")


class SyntheticLoad:
    """`start()` to `stop()`: the load runs in between (also `with SyntheticLoad(…):`)."""

    def __init__(self, agent, tasks_per_second: int, log: Path) -> None:
        self.agent, self.rate, self.log = agent, tasks_per_second, log
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> Self:
        if not LOADGEN.exists():
            raise SystemExit(f"no {LOADGEN}: cargo build --release --example loadgen")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKSCOPE_")}
        env.update(
            SPARKSCOPE_LISTENER_TOKEN=self.agent.token,
            SPARKSCOPE_SUBSCRIBER_TOKEN=self.agent.subscriber_token,
        )
        http = self.agent.url.split("://", 1)[1]
        args = [
            str(LOADGEN),
            "--attach-ingest",
            self.agent.ingest_addr,
            "--attach-http",
            http,
            "fanout",
            "--tasks-per-second",
            str(self.rate),
            "--seconds",
            "100000",
        ]
        self.out = self.log.open("w")
        self.proc = subprocess.Popen(args, env=env, stdout=self.out, stderr=subprocess.STDOUT)
        # Its subscribers connect and take their snapshots, then the measured window starts.
        time.sleep(8)
        if self.proc.poll() is not None:
            raise SystemExit(f"the load generator stopped: {self.log.read_text()[-2000:]}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.out.close()
