"""Fake sparkscope agent for benchmarks: takes every listener that has no token (the handshake's
proofs are empty then), reads and discards the lines.

Usage: sink_agent.py PORT STATUS_FILE. Once a second it rewrites STATUS_FILE with
"connections=N lines=N bytes=N" so the bench can report what actually arrived.
"""

import socket
import sys
import threading
import time

CHALLENGE = (
    b'{"ok":true,"agent":"sparkscope-bench-sink","nonce":"00000000000000000000000000000000"}\n'
)
WELCOME = b'{"ok":true,"welcome":true}\n'


def main() -> None:
    port, status_path = int(sys.argv[1]), sys.argv[2]
    totals = {"connections": 0, "lines": 0, "bytes": 0}
    lock = threading.Lock()

    def serve(conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as f:
            if not f.readline():
                return
            conn.sendall(CHALLENGE)
            if not f.readline():  # the listener's (empty) proof
                return
            conn.sendall(WELCOME)
            for line in f:
                with lock:
                    totals["lines"] += 1
                    totals["bytes"] += len(line)

    def report() -> None:
        while True:
            with lock:
                text = " ".join(f"{k}={v}" for k, v in totals.items())
            with open(status_path, "w") as out:
                out.write(text + "\n")
            time.sleep(1)

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(8)
    threading.Thread(target=report, daemon=True).start()
    while True:
        conn, _ = srv.accept()
        with lock:
            totals["connections"] += 1
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
