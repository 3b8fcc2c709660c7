"""A real TCP server on 127.0.0.1 that answers each HTTP request with exactly the bytes a test chooses.

For the async client's framing and connection handling: cut-short answers, chunked bodies sent
byte by byte, connections closed at awkward moments, answers that never come. Each request is
passed to ``answer``, which returns the steps to take: ``bytes`` to send, a ``float`` to sleep,
:data:`CLOSE` to close the connection, :data:`HANG` to never answer.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

CLOSE = "close"
HANG = "hang"
Step = bytes | float | str


@dataclass
class RawRequest:
    connection: int  # 1 for the first connection accepted, 2 for the next, ...
    head: str
    body: bytes

    @property
    def request_line(self) -> str:
        return self.head.split("\r\n", 1)[0]

    def header(self, name: str) -> str | None:
        for line in self.head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


def json_answer(body: bytes = b'{"ok": true}', *, status: str = "200 OK", extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode()
        + body
    )


class RawServer:
    def __init__(
        self, answer: Callable[[RawRequest], Sequence[Step]], ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.answer = answer
        self.requests: list[RawRequest] = []
        self.connections = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = int(self._listener.getsockname()[1])
        self._ssl = ssl_context
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    @property
    def base_url(self) -> str:
        return f"{'https' if self._ssl else 'http'}://127.0.0.1:{self.port}"

    def __enter__(self) -> RawServer:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() below; close() alone does not
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        for thread in self._threads:
            thread.join(5)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
            thread = threading.Thread(target=self._serve, args=(sock, number), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, sock: socket.socket, number: int) -> None:
        try:
            if self._ssl is not None:
                sock.settimeout(5)
                sock = self._ssl.wrap_socket(sock, server_side=True)
                sock.settimeout(None)
        except (OSError, ssl.SSLError):
            sock.close()
            return
        with self._lock:
            self._sockets.append(sock)
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                request = RawRequest(number, head.decode("latin-1"), b"")
                length = int(request.header("content-length") or 0)
                while len(buffer) < length:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buffer += data
                request.body, buffer = buffer[:length], buffer[length:]
                with self._lock:
                    self.requests.append(request)
                    self.in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    for step in self.answer(request):
                        if isinstance(step, bytes):
                            sock.sendall(step)
                        elif isinstance(step, float):
                            time.sleep(step)
                        elif step == CLOSE:
                            return
                        elif step == HANG:
                            self._stopping.wait(30)
                            return
                finally:
                    with self._lock:
                        self.in_flight -= 1
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                sock.close()
