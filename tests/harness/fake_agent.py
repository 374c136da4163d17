"""A stand-in for the sparkscope agent's WebSocket endpoint (docs/streaming-api.md): for the kernel
extension's unit tests, which need an agent that says what a test wants without a Spark Connect
server behind it (they replay `ServerMessage` frames recorded from our own agent), and for the
end-to-end tests of what a kernel tells an impostor on the agent's port. It records the
`ClientMessage` frames and upgrade requests the client sends. It speaks just enough RFC 6455 (the
upgrade, unmasked text frames out, masked frames in, close and ping) and the agent's side of the
stream's handshake: the notebook names its token by key id, this agent proves it knows it (or,
as an impostor, cannot), then checks the notebook's proof, written here from
docs/streaming-api.md apart from the real agent. A bearer token on the upgrade is checked as the
agent checks a JupyterHub token (401 before the upgrade). Cancel requests are recorded and answered by
`on_cancel` (by default not at all), the way a test wants the agent to answer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import Self

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455


def key_id(token: str) -> str:
    return hashlib.sha256(b"sparkscope-key-id\n" + token.encode()).digest()[:16].hex()


def proof(token: str, *parts: str) -> str:
    data = b"".join(p.encode() + b"\n" for p in parts)
    return hmac.new(token.encode(), data, hashlib.sha256).hexdigest()


class Connection:
    def __init__(self, agent: FakeAgent, sock: socket.socket, proven: bool) -> None:
        self.agent = agent
        self.sock = sock
        self.lock = threading.Lock()
        self.closed = False
        # a bearer token, or none needed: frames flow at once; otherwise the handshake first
        self.proven = proven
        self.hello: dict | None = None
        self.agent_nonce = ""

    def send_text(self, text: str) -> None:
        payload = text.encode()
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x81, n)
        elif n < 1 << 16:
            head = struct.pack("!BBH", 0x81, 126, n)
        else:
            head = struct.pack("!BBQ", 0x81, 127, n)
        with self.lock:
            self.sock.sendall(head + payload)

    def close(self, code: int | None = 1000, reason: str = "") -> None:
        """Close with a close frame, or (code None) just drop the TCP connection."""
        if self.closed:
            return
        self.closed = True
        try:
            if code is not None:
                body = struct.pack("!H", code) + reason.encode()
                with self.lock:
                    self.sock.sendall(struct.pack("!BB", 0x88, len(body)) + body)
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("eof")
            buf += chunk
        return buf

    def read_frames(self) -> None:
        try:
            while True:
                b1, b2 = self._recv_exact(2)
                opcode, n = b1 & 0x0F, b2 & 0x7F
                if n == 126:
                    (n,) = struct.unpack("!H", self._recv_exact(2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", self._recv_exact(8))
                mask = self._recv_exact(4) if b2 & 0x80 else b"\0\0\0\0"
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(self._recv_exact(n)))
                if opcode == 0x1:
                    self.agent._received(self, json.loads(data))
                elif opcode == 0x9:  # ping → pong
                    with self.lock:
                        self.sock.sendall(struct.pack("!BB", 0x8A, len(data)) + data)
                elif opcode == 0x8:
                    break
        except (OSError, ConnectionError, ValueError):
            pass
        finally:
            self.closed = True
            self.sock.close()


class FakeAgent:
    """`ws://127.0.0.1:<port>/api/v1/stream` with subscriber token `token`.

    `on_subscribe(conn, message)` runs for every subscribe frame; by default it answers with the
    frames in `self.snapshot` (a list of JSON strings), like the agent answers with a snapshot.
    `on_cancel(request)` runs for every cancel frame and returns the `CancelResult` fields to
    answer with (`requestId` is added), or None to leave it unanswered.
    """

    def __init__(
        self,
        token: str | None = "S",
        port: int = 0,
        impostor: bool = False,
        tls: tuple[Any, Any] | None = None,
    ) -> None:
        self.token = token
        # (certificate, key): speak TLS with them, as an agent with --tls-cert does
        self._tls = None
        if tls is not None:
            import ssl

            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(str(tls[0]), str(tls[1]))
        # an impostor on the agent's port: it cannot prove it knows the token
        self.impostor = impostor
        self.hellos: list[dict] = []
        self.raw: list[str] = []  # every frame and upgrade request received, as text
        self.snapshot: list[str] = [json.dumps({"update": {"generation": "1", "snapshot": True}})]
        self.on_subscribe: Callable[[Connection, dict], None] = self._answer_snapshot
        self.on_cancel: Callable[[dict], dict | None] = lambda request: None
        # the MyWork fields to answer a myWork request with (requestId is added), or None
        self.on_my_work: Callable[[dict], dict | None] = lambda request: None
        self.messages: list[dict] = []
        self.connections: list[Connection] = []
        self.refused = 0
        self._cond = threading.Condition()
        self._listener = socket.create_server(("127.0.0.1", port))
        self.port = self._listener.getsockname()[1]
        self._stopped = False
        threading.Thread(target=self._accept, name="fake-agent", daemon=True).start()

    @property
    def url(self) -> str:
        scheme = "wss" if self._tls else "ws"
        return f"{scheme}://127.0.0.1:{self.port}/api/v1/stream"

    def stop(self) -> None:
        self._stopped = True
        self._listener.close()
        for conn in list(self.connections):
            conn.close(None)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test side

    def send(self, frames: Iterable[str | dict]) -> None:
        for conn in self.open_connections():
            for frame in frames:
                conn.send_text(frame if isinstance(frame, str) else json.dumps(frame))

    def open_connections(self) -> list[Connection]:
        return [c for c in self.connections if not c.closed]

    def drop(self, code: int | None = None, reason: str = "") -> None:
        for conn in self.open_connections():
            conn.close(code, reason)

    def wait_for(self, pred: Callable[[], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = pred()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("fake agent: condition not met")
                self._cond.wait(min(remaining, 0.05))

    def subscribes(self) -> list[dict]:
        return [m["subscribe"] for m in self.messages if "subscribe" in m]

    def cancels(self) -> list[dict]:
        return [m["cancel"] for m in self.messages if "cancel" in m]

    def labels(self) -> list[dict]:
        return [m["label"] for m in self.messages if "label" in m]

    # -- server side

    def _answer_snapshot(self, conn: Connection, message: dict) -> None:
        for frame in self.snapshot:
            conn.send_text(frame)

    def _received(self, conn: Connection, message: dict) -> None:
        with self._cond:
            self.raw.append(json.dumps(message))
            self._cond.notify_all()
        if not conn.proven:
            self._handshake_frame(conn, message)
            return
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()
        if "subscribe" in message:
            self.on_subscribe(conn, message)
        if "myWork" in message:
            work = self.on_my_work(message["myWork"])
            if work is not None:
                result = {"requestId": message["myWork"].get("requestId", ""), **work}
                conn.send_text(json.dumps({"myWork": result}))
        if "cancel" in message:
            answer = self.on_cancel(message["cancel"])
            if answer is not None:
                result = {"requestId": message["cancel"].get("requestId", ""), **answer}
                conn.send_text(json.dumps({"cancelResult": result}))

    def _handshake_frame(self, conn: Connection, message: dict) -> None:
        """The agent's side of the stream's handshake, one frame at a time."""
        if conn.hello is None and isinstance(message.get("hello"), dict):
            hello = message["hello"]
            with self._cond:
                self.hellos.append(hello)
                self._cond.notify_all()
            known = bool(self.token) and hello.get("keyId") == key_id(self.token)
            if not known and not self.impostor:
                return self._refuse(conn, "no token of this agent has that key id")
            conn.hello, conn.agent_nonce = hello, secrets.token_hex(16)
            mine = (
                "0" * 64
                if self.impostor or not self.token
                else proof(
                    self.token,
                    "sparkscope-agent-stream-1",
                    conn.agent_nonce,
                    hello.get("nonce", ""),
                    hello["keyId"],
                )
            )
            conn.send_text(json.dumps({"challenge": {"nonce": conn.agent_nonce, "proof": mine}}))
            return
        if conn.hello is not None and isinstance(message.get("proof"), dict):
            want = proof(
                self.token or "",
                "sparkscope-notebook-1",
                conn.agent_nonce,
                conn.hello.get("nonce", ""),
                conn.hello["keyId"],
            )
            if hmac.compare_digest(want, str(message["proof"].get("proof", ""))):
                conn.proven = True
                conn.send_text(json.dumps({"welcome": {}}))
                return
        self._refuse(conn, "the credential is not valid")

    def _refuse(self, conn: Connection, why: str) -> None:
        with self._cond:
            self.refused += 1
            self._cond.notify_all()
        conn.send_text(json.dumps({"error": {"code": "unauthorized", "message": why}}))
        conn.close(1008, "unauthorized")

    def _accept(self) -> None:
        while not self._stopped:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handshake, args=(sock,), daemon=True).start()

    def _handshake(self, sock: socket.socket) -> None:
        if self._tls is not None:
            try:
                sock = self._tls.wrap_socket(sock, server_side=True)
            except OSError:  # the client did not trust us, or spoke plain text
                sock.close()
                return
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = sock.recv(4096)
            if not chunk:
                sock.close()
                return
            request += chunk
        head = request.split(b"\r\n\r\n", 1)[0].decode()
        lines = head.split("\r\n")
        path = lines[0].split(" ")[1]
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        with self._cond:
            self.raw.append(head)
            self._cond.notify_all()
        given = headers.get("authorization", "").removeprefix("Bearer ").strip()
        bearer_ok = bool(given) and given == self.token and not self.impostor
        if not path.startswith("/api/v1/stream") or (given and not bearer_ok):
            with self._cond:
                self.refused += 1
                self._cond.notify_all()
            sock.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
            sock.close()
            return
        accept = base64.b64encode(
            hashlib.sha1((headers["sec-websocket-key"] + GUID).encode()).digest()
        ).decode()
        sock.sendall(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        conn = Connection(self, sock, proven=bearer_ok or (not self.token and not self.impostor))
        with self._cond:
            self.connections.append(conn)
            self._cond.notify_all()
        conn.read_frames()
        with self._cond:
            self._cond.notify_all()
