"""Delivery of completion callbacks (``callback_url``) from one background thread.

When a task with a ``callback_url`` finishes (completed *or* failed) its query
``data`` object is POSTed there as JSON. A non-2xx answer or a connection
error is retried up to 3 more times after ``1 s, 2 s, 4 s`` divided by the
speed factor (at least 0.05 s). Every attempt is recorded with the URL *path*
only (query strings often carry tokens), the ``out_task_id`` and the start of
the receiver's answer (its first 256 characters), so a test can see what the
receiver made of the callback.

The real service's callback body, retry policy and failure behaviour are
undocumented; this is the emulator's choice.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .faults import FaultInjector

log = logging.getLogger("airflow_provider_aireiter.testing.emulator")

MAX_ATTEMPTS = 4
MIN_BACKOFF = 0.05
SEND_TIMEOUT = 3.0
#: characters of the receiver's answer kept in a delivery record
ANSWER_LIMIT = 256


@dataclass
class _Delivery:
    url: str
    out_task_id: str
    body: bytes
    attempt: int
    fault: str | None
    generation: int


class CallbackSender:
    """Queue and send callbacks with retries; records every attempt.

    :param faults: the emulator's fault injector (endpoint ``"callback"``).
    :param speed: clock speed factor, scales the retry backoff.
    """

    def __init__(self, faults: FaultInjector, speed: float = 1.0) -> None:
        self._faults = faults
        self._speed = speed
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, _Delivery]] = []
        self._order = itertools.count()
        self._records: list[dict[str, Any]] = []
        self._generation = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def start(self) -> None:
        """Start the sender thread."""
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="aireiter-emulator-callbacks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the sender thread (pending deliveries are dropped) and join it."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=SEND_TIMEOUT + 2)
            self._thread = None

    def clear(self) -> None:
        """Drop pending deliveries and forget the records."""
        with self._cond:
            self._generation += 1
            self._queue.clear()
            self._records.clear()

    def records(self) -> list[dict[str, Any]]:
        """Delivery attempts: ``out_task_id``, ``path``, ``attempt``, ``status_code``,
        ``delivered``, ``error``, ``fault``, ``answer`` (start of the response body, or ``None``), ``time``."""
        with self._cond:
            return [dict(record) for record in self._records]

    def enqueue(self, url: str, out_task_id: str, data: dict[str, Any]) -> None:
        """Schedule the callback for a finished task (applies callback faults)."""
        fault = self._faults.draw("callback")
        kind = fault.kind if fault else None
        body = json.dumps(data).encode("utf-8")
        with self._cond:
            if kind == "callback_drop":
                self._record(url, out_task_id, 0, None, "dropped by fault injection", kind)
                return
            delay = float(fault.option("seconds")) if fault and kind == "callback_delay" else 0.0
            copies = 2 if kind == "callback_duplicate" else 1
            for _ in range(copies):
                item = _Delivery(url, out_task_id, body, 1, kind, self._generation)
                self._push(time.monotonic() + delay, item)
            self._cond.notify_all()

    def _push(self, due: float, item: _Delivery) -> None:
        heapq.heappush(self._queue, (due, next(self._order), item))

    def _record(
        self,
        url: str,
        out_task_id: str,
        attempt: int,
        status: int | None,
        error: str | None,
        fault: str | None,
        answer: str | None = None,
    ) -> None:
        self._records.append(
            {
                "out_task_id": out_task_id,
                "path": urlsplit(url).path or "/",
                "attempt": attempt,
                "status_code": status,
                "delivered": status is not None and 200 <= status < 300,
                "error": error,
                "fault": fault,
                "answer": answer,
                "time": time.time(),
            }
        )

    def _next(self) -> _Delivery | None:
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                if self._queue and self._queue[0][0] <= now:
                    return heapq.heappop(self._queue)[2]
                timeout = self._queue[0][0] - now if self._queue else None
                self._cond.wait(timeout)
            return None

    def _run(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            status, error, answer = self._send(item)
            with self._cond:
                if item.generation != self._generation:
                    continue
                self._record(item.url, item.out_task_id, item.attempt, status, error, item.fault, answer)
                if (status is None or not 200 <= status < 300) and item.attempt < MAX_ATTEMPTS:
                    backoff = max(MIN_BACKOFF, 2 ** (item.attempt - 1) / self._speed)
                    item.attempt += 1
                    self._push(time.monotonic() + backoff, item)

    def _send(self, item: _Delivery) -> tuple[int | None, str | None, str | None]:
        request = urllib.request.Request(
            item.url,
            data=item.body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "aireiter-emulator"},
        )
        try:
            with self._opener.open(request, timeout=SEND_TIMEOUT) as response:
                return int(response.status), None, _answer(response.read())
        except urllib.error.HTTPError as exc:
            try:
                body = exc.read()
            except OSError:
                body = b""
            return int(exc.code), None, _answer(body)
        except (OSError, ValueError) as exc:
            log.debug("callback for %s failed: %s", item.out_task_id, type(exc).__name__)
            return None, type(exc).__name__, None


def _answer(body: bytes) -> str:
    """The start of a receiver's answer, as text."""
    return body[: ANSWER_LIMIT * 4].decode("utf-8", errors="replace")[:ANSWER_LIMIT]
