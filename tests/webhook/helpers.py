"""Helpers for the callback tests: a real uvicorn server on 127.0.0.1, a recording waker, constants."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from airflow_provider_aireiter.hooks.aireiter import CALLBACK_MOUNT, callback_token
from airflow_provider_aireiter.webhook.receiver import (
    CallbackReceiver,
    WakeResult,
    create_callback_app,
    lookup_callback_secret,
)

CONN_ID = "aireiter_cb"
NO_SECRET_CONN_ID = "aireiter_nosecret"
SECRET = "s3cret-0123456789abcdef"


def callback_conn_json(**extra: object) -> str:
    return json.dumps({"conn_type": "aireiter", "host": "http://127.0.0.1:1", "password": "k", "extra": extra})


@dataclass
class RecordingWaker:
    """Stands in for the database: ``waiting`` tasks are woken once (like DEFERRED -> SCHEDULED).

    Keys of ``waiting`` are out_task_ids of connection ``CONN_ID``; ``held`` maps an out_task_id to the
    epoch second its deferral settles (until then it is not woken).
    """

    waiting: dict[str, int] = field(default_factory=dict)
    held: dict[str, float] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    conn_ids: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, conn_id: str, out_task_id: str) -> WakeResult:
        with self.lock:
            self.calls.append(out_task_id)
            self.conn_ids.append(conn_id)
            if conn_id != CONN_ID:
                return WakeResult()
            settles = self.held.get(out_task_id)
            if settles is not None and settles > time.time():
                return WakeResult(held_until=settles)
            return WakeResult(woken=self.waiting.pop(out_task_id, 0))


@dataclass
class CountingLookup:
    """Airflow's real connection lookup, counted."""

    calls: list[str] = field(default_factory=list)

    def __call__(self, conn_id: str) -> str | None:
        self.calls.append(conn_id)
        return lookup_callback_secret(conn_id)


class LiveServer:
    """Serve an ASGI app with uvicorn on a free loopback port, in a background thread."""

    def __init__(self, app: object, *, closers: tuple[Callable[[], None], ...] = ()) -> None:
        self._closers = closers
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")  # type: ignore[arg-type]
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
        for close in self._closers:  # what the app started (a receiver's pending-callback thread)
            close()


@dataclass
class Receiver:
    """A running receiver mounted under ``/aireiter`` like Airflow's API server mounts the plugin."""

    server: LiveServer
    waker: RecordingWaker
    lookup: CountingLookup

    def url(self, out_task_id: str, token: str | None = None, conn_id: str = CONN_ID) -> str:
        url = f"{self.server.base_url}{CALLBACK_MOUNT}/callback/{conn_id}/{out_task_id}"
        return url if token is None else f"{url}?token={token}"

    def signed_url(self, out_task_id: str) -> str:
        return self.url(out_task_id, callback_token(SECRET, CONN_ID, out_task_id))


def start_receiver(**options: float) -> tuple[LiveServer, RecordingWaker, CountingLookup]:
    """A receiver (real connection lookup, recording waker) mounted under ``/aireiter``, not started yet."""
    waker = RecordingWaker()
    lookup = CountingLookup()
    handler = CallbackReceiver(secret_lookup=lookup, waker=waker, **options)  # type: ignore[arg-type]
    root = Starlette(routes=[Mount(CALLBACK_MOUNT, app=create_callback_app(handler))])
    return LiveServer(root, closers=(handler.close,)), waker, lookup


def raw_exchange(port: int, head: bytes, body_parts: list[bytes], timeout: float = 10.0) -> tuple[int, bytes]:
    """Send a hand-made HTTP/1.1 request (head, then body parts) and return (status, raw response).

    The server may answer and close before the whole body is sent; that is expected for oversized
    bodies, so send errors are ignored and the answer is read anyway.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(head)
            for part in body_parts:
                sock.sendall(part)
        except OSError:
            pass
        received = b""
        try:
            while b"\r\n\r\n" not in received:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except OSError:
            pass
    status_line = received.split(b"\r\n", 1)[0].split()
    return (int(status_line[1]) if len(status_line) > 1 else 0), received
