"""The agent's memory with thousands of connections that never say hello: RSS before, while
they are open, and after they close. Run with the venv's Python after `make setup`:

    .venv/bin/python scripts/bench_idle_connections.py [CONNECTIONS]
"""

from __future__ import annotations

import resource
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path

import harness
import requests


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 256)), hard))
    binary = harness.agent_binary()
    if binary is None:
        sys.exit("build the agent first (make setup)")
    with tempfile.TemporaryDirectory() as work:
        agent = harness.Agent(binary, Path(work), token=secrets.token_hex(16))
        with agent:
            pid = agent.proc.pid
            before = rss_mb(pid)
            host, port = agent.ingest_addr.split(":")
            started = time.monotonic()
            conns = [socket.create_connection((host, int(port)), timeout=10) for _ in range(n)]
            opened = time.monotonic() - started
            time.sleep(1)
            during = rss_mb(pid)
            healthy = agent._ready()
            for c in conns:
                c.close()
            time.sleep(2)
            after = rss_mb(pid)
            text = requests.get(f"{agent.url}/metrics", timeout=10).text
            evicted = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("sparkscope_limit_hits_total") and "pending_listeners" in line
            )
    print(f"{n} idle connections opened in {opened:.2f} s")
    print(
        f"agent RSS: {before:.1f} MB before, {during:.1f} MB with them open, {after:.1f} MB after"
    )
    print(
        f"still serving: {bool(healthy)}; silent connections closed by the pending bound: {evicted:.0f}"
    )


if __name__ == "__main__":
    main()
