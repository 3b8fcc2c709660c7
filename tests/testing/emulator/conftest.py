"""Helpers for the emulator tests: a small HTTP client and a callback receiver.

The ``aireiter_emulator`` / ``aireiter_connection`` fixtures come from
``airflow_provider_aireiter.testing.emulator.pytest_plugin``, which the package's
``pytest11`` entry point loads; declaring ``pytest_plugins`` here as well would
register the plugin twice and make pytest fail.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from airflow_provider_aireiter.testing.emulator import Emulator


class Api:
    """Thin ``requests`` client for the emulator's API."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.base = emu.base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {emu.api_key}"

    def submit(
        self,
        out_task_id: str = "t1",
        model: str = "seedream_v5_lite",
        params: dict[str, Any] | None = None,
        **extra: Any,
    ) -> requests.Response:
        body = {
            "model": model,
            "params": params if params is not None else {"prompt": "a fox"},
            "out_task_id": out_task_id,
        }
        body.update(extra)
        return self.session.post(f"{self.base}/api/openapi/submit", json=body, timeout=10)

    def query(self, out_task_id: str | None = None, task_id: str | None = None) -> requests.Response:
        body = {"out_task_id": out_task_id} if task_id is None else {"task_id": task_id}
        return self.session.post(f"{self.base}/api/openapi/query", json=body, timeout=10)

    def balance(self) -> requests.Response:
        return self.session.get(f"{self.base}/api/openapi/balance", timeout=10)

    def wait_status(self, out_task_id: str, statuses: tuple[str, ...], timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            data = self.query(out_task_id).json()["data"]
            if data["status"] in statuses:
                return dict(data)
            assert time.monotonic() < deadline, f"task stuck in {data['status']}"
            time.sleep(0.02)


class Receiver:
    """A local HTTP server recording POSTed callbacks; answers the scripted statuses, then 200.

    Every answer carries ``answer`` as its body (empty by default).
    """

    def __init__(self, statuses: list[int] | None = None, answer: bytes = b"") -> None:
        self.statuses = list(statuses or [])
        self.answer = answer
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.received.append(
                        {
                            "path": self.path,
                            "content_type": self.headers.get("Content-Type"),
                            "body": json.loads(body),
                            "time": time.monotonic(),
                        }
                    )
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", str(len(receiver.answer)))
                self.end_headers()
                self.wfile.write(receiver.answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.01)
        with self.lock:
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def api(aireiter_emulator: Emulator) -> Api:
    """A client for the fixture emulator."""
    return Api(aireiter_emulator)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A callback receiver answering 200."""
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def make_receiver() -> Iterator[Any]:
    """Factory for receivers with scripted answer statuses."""
    made: list[Receiver] = []

    def factory(statuses: list[int] | None = None, answer: bytes = b"") -> Receiver:
        server = Receiver(statuses, answer)
        made.append(server)
        return server

    yield factory
    for server in made:
        server.close()
