"""A tiny real HTTP server on 127.0.0.1 that answers from a script and records what it received.

Used where a test must see raw request headers or send answers the emulator never sends
(alternative envelopes, odd statuses). Everything else talks to the emulator.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    status: int = 200
    body: bytes | str | dict[str, Any] = b""
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, dict):
            return json.dumps(self.body).encode(), "application/json"
        if isinstance(self.body, str):
            return self.body.encode(), "text/html" if self.body.lstrip().startswith("<") else "application/json"
        return self.body, "application/json"


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int = 0  # tells connections apart (keep-alive)

    def json(self) -> Any:
        return json.loads(self.body)


class ScriptedServer:
    """Answers requests in order from :attr:`script`; the last answer repeats when the script runs out."""

    def __init__(self) -> None:
        self.script: deque[Answer] = deque()
        self.default = Answer(200, {"ok": True, "statusCode": 400, "message": "api task not found", "data": None})
        self.received: list[Received] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.received.append(
                    Received(self.command, self.path, dict(self.headers.items()), body, self.client_address[1])
                )
                answer = outer.script.popleft() if outer.script else outer.default
                payload, content_type = answer.encoded()
                self.send_response(answer.status)
                headers = {"Content-Type": content_type, "Content-Length": str(len(payload)), **answer.headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add(self, *answers: Answer) -> None:
        self.script.extend(answers)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def ok(data: Any) -> Answer:
    return Answer(200, {"ok": True, "statusCode": 200, "message": "", "data": data})
