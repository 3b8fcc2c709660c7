"""HTTP request handler: routing, auth, faults and the admin endpoints.

Routes (anything else, including a wrong method, gets HTTP 200 and the HTML
marketing page, like the real site):

* ``POST /api/openapi/submit``, ``POST /api/openapi/query``,
  ``GET /api/openapi/balance`` - Bearer auth; a missing or wrong key gets
  HTTP 401 with body ``{"ok": true, "statusCode": 401, ...}``.
* ``GET``/``HEAD /media/<task_id>/<file>`` - result files, no auth (a CDN).
* ``/_emulator/...`` - admin endpoints, no auth, never logged.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import re
import socket
import struct
from http.server import BaseHTTPRequestHandler
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from .faults import Fault
from .responses import MARKETING_PAGE, business_error, unauthorized
from .server import EmulatorHTTPServer, ServerContext
from .state import redact

log = logging.getLogger("airflow_provider_aireiter.testing.emulator")

API_ROUTES = {
    ("POST", "/api/openapi/submit"): "submit",
    ("POST", "/api/openapi/query"): "query",
    ("GET", "/api/openapi/balance"): "balance",
}
MEDIA_PATH = re.compile(r"^/media/([A-Za-z0-9_-]{1,64})/([A-Za-z0-9_.-]{1,96})$")
TASK_COMPLETE_PATH = re.compile(r"^/tasks/([^/]+)/complete$")
TASK_PATH = re.compile(r"^/tasks/([^/]+)$")
MAX_BODY_BYTES = 160 * 1024 * 1024
STATUS_FAULTS = {"http_429": 429, "http_500": 500, "http_502": 502, "http_503": 503}
STATUS_TEXT = {
    404: "Not Found",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
_INVALID = object()


def _parse_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return _INVALID


class EmulatorRequestHandler(BaseHTTPRequestHandler):
    """Serves one keep-alive connection of the emulator."""

    protocol_version = "HTTP/1.1"
    server_version = "AIReiterEmulator/1.0"
    sys_version = ""
    #: Idle keep-alive connections are closed after this many seconds.
    timeout = 120.0

    def version_string(self) -> str:
        """Value of the ``Server`` header."""
        return self.server_version

    @property
    def ctx(self) -> ServerContext:
        """The shared server context."""
        return cast(EmulatorHTTPServer, self.server).context

    def setup(self) -> None:
        """Set ``TCP_NODELAY`` so small answers are not held back."""
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Route the access log to the emulator logger at debug level."""
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        """Dispatch a GET."""
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_GET

    # -- plumbing ------------------------------------------------------------

    def _send(
        self,
        status: int,
        data: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode("utf-8"), "application/json")

    def _send_text(self, status: int) -> None:
        text = f"{status} {STATUS_TEXT.get(status, 'Error')}\n".encode("ascii")
        self._send(status, text, "text/plain; charset=utf-8")

    def _send_html(self) -> None:
        self._send(200, MARKETING_PAGE, "text/html; charset=utf-8")

    def _reset_connection(self) -> None:
        """Close the socket with SO_LINGER 0 so the peer gets a TCP reset."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _reject_body(self, status: int) -> None:
        self.close_connection = True
        self._send_text(status)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if not length_header:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self._reject_body(413 if length > 0 else 400)
            return None
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self._reject_body(400)
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_BODY_BYTES:
                self._reject_body(413)
                return None
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _authorized(self) -> bool:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode("utf-8"), self.ctx.api_key.encode("utf-8")
        )

    # -- dispatch ------------------------------------------------------------

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        raw = self._read_body()
        if raw is None:
            return
        if path == "/_emulator" or path.startswith("/_emulator/"):
            self._admin(path[len("/_emulator") :], raw)
            return
        endpoint = API_ROUTES.get((self.command, path))
        media_match = MEDIA_PATH.match(path) if self.command in ("GET", "HEAD") else None
        if media_match is not None:
            endpoint = "media"
        body = _parse_json(raw)
        logged = None if body is _INVALID else redact(body, self.ctx.api_key)
        self.ctx.state.record(self.command, path, logged, endpoint)
        if endpoint is None:
            self._send_html()
            return
        fault = self.ctx.faults.draw(endpoint)
        if fault is not None:
            log.debug("injecting %s on %s", fault.kind, endpoint)
            if fault.kind == "task_failure":
                self.ctx.state.arm_failure(fault)
            if self._answer_fault_early(fault):
                return
            if fault.kind == "slow" and self.ctx.stopping.wait(float(fault.option("seconds"))):
                self.close_connection = True
                return
        if media_match is not None:
            self._serve_media(media_match.group(1), media_match.group(2), fault)
        else:
            self._serve_api(endpoint, body, fault)

    def _answer_fault_early(self, fault: Fault) -> bool:
        """Answer faults that replace processing; return ``True`` if answered."""
        if fault.kind in STATUS_FAULTS:
            status = STATUS_FAULTS[fault.kind]
            headers = {"Retry-After": str(fault.option("retry_after"))} if status == 429 else None
            text = f"{status} {STATUS_TEXT[status]}\n".encode("ascii")
            self._send(status, text, "text/plain; charset=utf-8", headers)
            return True
        if fault.kind == "busy_429":
            self._send_json(200, business_error(429, str(fault.option("message"))))
            return True
        if fault.kind == "html":
            self._send_html()
            return True
        return False

    def _serve_api(self, endpoint: str, body: Any, fault: Fault | None) -> None:
        state = self.ctx.state
        status = 200
        if not self._authorized():
            status, payload = 401, unauthorized()
        elif body is _INVALID:
            payload = business_error(400, "invalid request body: malformed JSON")
        elif endpoint == "submit":
            payload = state.submit(body)
        elif endpoint == "query":
            payload = state.query(body)
        else:
            payload = state.balance_answer()
        data = json.dumps(payload).encode("utf-8")
        kind = fault.kind if fault else None
        if kind == "reset_after_processing":
            self._reset_connection()
            return
        if kind == "malformed_json":
            data = data[: len(data) // 2]
        self._send(status, data, "application/json")

    def _serve_media(self, task_id: str, name: str, fault: Fault | None) -> None:
        found = self.ctx.state.media_file(task_id, unquote(name))
        if found is None:
            self._send_text(404)
            return
        data, content_type = found
        kind = fault.kind if fault else None
        if kind == "reset_after_processing":
            self._reset_connection()
            return
        if kind == "truncated_download" and fault is not None and self.command != "HEAD":
            cut = int(len(data) * float(fault.option("fraction")))
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:cut])
            return
        self._send(200, data, content_type, {"Cache-Control": "public, max-age=86400"})

    # -- admin ---------------------------------------------------------------

    def _admin(self, route: str, raw: bytes) -> None:
        ctx = self.ctx
        method = self.command
        route = route.rstrip("/") or "/"
        if method == "GET" and route == "/health":
            server = cast(EmulatorHTTPServer, self.server)
            self._send_json(
                200,
                {
                    "status": "ok",
                    "speed": ctx.state.speed,
                    "duplicate_policy": ctx.state.duplicate_policy,
                    "open_connections": server.open_connections(),
                },
            )
        elif method == "GET" and route == "/requests":
            self._send_json(200, ctx.state.requests())
        elif method == "GET" and route == "/submits":
            self._send_json(200, ctx.state.submits())
        elif method == "GET" and route == "/callbacks":
            self._send_json(200, ctx.callbacks.records())
        elif method == "GET" and route == "/faults":
            self._send_json(200, {**ctx.faults.describe(), "injected": ctx.faults.injected()})
        elif method == "POST" and route == "/faults":
            self._admin_faults(raw)
        elif method == "DELETE" and route == "/faults":
            ctx.faults.clear()
            self._send_json(200, {"ok": True})
        elif method == "POST" and route == "/reset":
            ctx.reset()
            self._send_json(200, {"ok": True})
        elif method == "POST" and route == "/balance":
            self._admin_balance(raw)
        elif method == "POST" and (match := TASK_COMPLETE_PATH.match(route)):
            self._admin_complete(unquote(match.group(1)), raw)
        elif method == "GET" and (match := TASK_PATH.match(route)):
            data = ctx.state.task_data(unquote(match.group(1)))
            self._send_json(200 if data else 404, data or {"error": "task not found"})
        else:
            self._send_json(404, {"error": f"unknown admin endpoint {method} /_emulator{route}"})

    def _admin_body(self, raw: bytes) -> dict[str, Any] | None:
        body = _parse_json(raw)
        if body is None:
            return {}
        if not isinstance(body, dict):
            self._send_json(400, {"error": "a JSON object body is required"})
            return None
        return body

    def _admin_faults(self, raw: bytes) -> None:
        body = self._admin_body(raw)
        if body is None:
            return
        try:
            self.ctx.faults.configure(body)
        except (ValueError, TypeError) as exc:
            self._send_json(400, {"error": str(exc)})
            return
        self._send_json(200, {"ok": True, **self.ctx.faults.describe()})

    def _admin_balance(self, raw: bytes) -> None:
        body = self._admin_body(raw)
        if body is None:
            return
        credits = body.get("credits")
        if isinstance(credits, bool) or not isinstance(credits, int):
            self._send_json(400, {"error": "'credits' must be an integer"})
            return
        self.ctx.state.set_balance(credits)
        self._send_json(200, {"ok": True, "credits": credits})

    def _admin_complete(self, out_task_id: str, raw: bytes) -> None:
        body = self._admin_body(raw)
        if body is None:
            return
        status = body.get("status", "completed")
        error = body.get("error")
        if status not in ("completed", "failed"):
            self._send_json(400, {"error": "'status' must be 'completed' or 'failed'"})
            return
        try:
            self.ctx.state.complete_task(out_task_id, str(status), None if error is None else str(error))
        except KeyError:
            self._send_json(404, {"error": f"no task with out_task_id {out_task_id!r}"})
            return
        except ValueError as exc:
            self._send_json(409, {"error": str(exc)})
            return
        self._send_json(200, {"ok": True, "task": self.ctx.state.task_data(out_task_id)})
