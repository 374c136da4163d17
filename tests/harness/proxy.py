"""A TCP proxy between a listener and the agent, whose connections a test can cut and hold off
for a while: a network blip, as the listener lives it."""

from __future__ import annotations

import socket
import threading

from .util import LOOPBACK


class Proxy:
    """A TCP proxy between the listener and the agent, whose connections the test can cut and
    hold off for a while: a network blip, as the listener lives it."""

    def __init__(self, target: str, record: bool = False) -> None:
        host, port = target.rsplit(":", 1)
        # with `record`, what the listener sent, for tests that read the wire
        self.recorded: bytearray | None = bytearray() if record else None
        self.target = (host, int(port))
        self.srv = socket.create_server((LOOPBACK, 0))
        self.addr = f"{LOOPBACK}:{self.srv.getsockname()[1]}"
        self.open = threading.Event()
        self.open.set()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.srv.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            self.pairs.append((client, upstream))
            for a, b, rec in ((client, upstream, self.recorded), (upstream, client, None)):
                threading.Thread(target=self._pump, args=(a, b, rec), daemon=True).start()

    def lines(self) -> list[bytes]:
        """The complete lines the listener sent so far (with `record`)."""
        data = bytes(self.recorded or b"")
        return data[: data.rfind(b"\n") + 1].splitlines()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket, record: bytearray | None = None) -> None:
        try:
            while data := a.recv(65536):
                if record is not None:
                    record += data
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """Closes every connection and refuses new ones until `resume`."""
        self.open.clear()
        for pair in self.pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.pairs.clear()

    def resume(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.srv.close()
