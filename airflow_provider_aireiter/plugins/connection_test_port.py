"""``AireiterConnectionTestPlugin``: makes the row **Test** button of an AIReiter connection work on Airflow 3.3.

The AIReiter form hides the port field (the Base URL holds the whole address), so a connection made
in the form is stored with no port. The connection list's row Test button sends ``port: 0`` for such
a connection (the UI's ``Number(null)``), and Airflow's test route refuses a test whose port differs
from the stored one unless the request carries the password itself, which the UI masks: every row
Test answered "Bad Request". apache/airflow#73298 fixes it in the route by reading port 0 as blank;
until the Airflow in use has that fix, this middleware drops ``port: 0`` from test requests of
``aireiter`` connections before the route reads them, so the stored connection is tested. It changes
nothing else and no other connection type, and it is a no-op once Airflow itself reads 0 as blank.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from airflow_provider_aireiter.compat import AirflowPlugin

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

TEST_ROUTE = "/api/v2/connections/test"
#: A connection test body is a few hundred bytes; anything far larger is passed on untouched.
MAX_BODY = 1024 * 1024


def without_zero_port(body: bytes) -> bytes:
    """The request body with ``"port": 0`` removed when it tests an ``aireiter`` connection."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return body
    if not isinstance(data, dict) or data.get("conn_type") != "aireiter" or data.get("port") != 0:
        return body
    del data["port"]
    return json.dumps(data).encode()


class ZeroPortConnectionTestMiddleware:
    """Pure ASGI middleware: rewrites only ``POST .../api/v2/connections/test`` bodies (see the module)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith(TEST_ROUTE):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the route see that
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if not message.get("more_body", False) or size > MAX_BODY:
                break
        body = b"".join(chunks)
        if size > MAX_BODY:
            await self.app(scope, _replay([_request(body, more=True)], receive), send)
            return
        fixed = without_zero_port(body)
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(fixed)).encode()))
        await self.app({**scope, "headers": headers}, _replay([_request(fixed, more=False)], receive), send)


def _request(body: bytes, *, more: bool) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


class AireiterConnectionTestPlugin(AirflowPlugin):
    """Registers :class:`ZeroPortConnectionTestMiddleware` on the API server."""

    name = "aireiter_connection_test"
    fastapi_root_middlewares = [
        {"middleware": ZeroPortConnectionTestMiddleware, "args": [], "kwargs": {}, "name": "AIReiter row Test port"}
    ]
