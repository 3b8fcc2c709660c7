"""Callbacks that could not wake their task yet, tried again until they do or expire.

A callback can arrive before its task has deferred (the task is still on the worker between the
submit and the deferral), or within the few seconds after the deferral during which a resume is held
(:mod:`airflow_provider_aireiter.resume_gate`). Such a callback is not lost: it is kept here and tried
again, at the time the hold ends or every second, for up to two minutes. Then polling is the fallback.

One thread per receiver does the retries, outside the API server's request threads; the set is
bounded, and only callbacks whose token checked out get here.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_aireiter.webhook.wake import WakeResult

log = logging.getLogger(__name__)

#: seconds a callback that woke nothing is kept and tried again
DEFAULT_KEEP_SECONDS = 120.0
#: seconds between tries while nobody waits for the task yet
DEFAULT_RETRY_SECONDS = 1.0
#: callbacks kept at most (the oldest is dropped beyond)
DEFAULT_LIMIT = 10_000

Key = tuple[str, str]
Waker = Callable[[str, str], "WakeResult"]

_WARNED_FAILURES: set[str] = set()
_WARNED_LOCK = threading.Lock()


def log_wake_failure(error: BaseException, out_task_id: str) -> None:
    """A wake that failed inside the API server: a WARNING with what failed, once per kind of failure
    and process (then DEBUG), so a broken wake (an Airflow upgrade, the database) is seen, not flooded."""
    kind = type(error).__name__
    with _WARNED_LOCK:
        first = kind not in _WARNED_FAILURES
        _WARNED_FAILURES.add(kind)
    if first:
        log.warning(
            "Waking the tasks waiting for AIReiter task %s failed: %s: %s. Their triggers' fallback polls "
            "finish them. Further failures of this kind are logged at DEBUG.",
            out_task_id[:64],
            kind,
            str(error)[:300],
        )
    else:
        log.debug("Waking %r failed", out_task_id[:64], exc_info=True)


class PendingWakes:
    """Retry wake-ups in a background thread.

    :param waker: ``(conn_id, out_task_id) -> WakeResult`` (blocking).
    :param on_woken: called with the key once a retry woke something.
    :param keep_seconds: how long a callback is tried again.
    :param retry_seconds: pause between tries while nobody waits.
    :param limit: callbacks kept at most.
    """

    def __init__(
        self,
        waker: Waker,
        *,
        on_woken: Callable[[Key], None] | None = None,
        keep_seconds: float = DEFAULT_KEEP_SECONDS,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        self.waker = waker
        self.on_woken = on_woken
        self.keep_seconds = keep_seconds
        self.retry_seconds = retry_seconds
        self.limit = limit
        self._expires: dict[Key, float] = {}
        self._due: list[tuple[float, Key]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._expires)

    def add(self, key: Key, retry_at: float | None = None) -> None:
        """Keep ``key`` and try it again at ``retry_at`` (epoch seconds; default: after ``retry_seconds``)."""
        now = time.time()
        with self._cond:
            if key not in self._expires:
                if len(self._expires) >= self.limit:
                    oldest = min(self._expires, key=self._expires.__getitem__)
                    del self._expires[oldest]
                self._expires[key] = now + self.keep_seconds
            heapq.heappush(self._due, (retry_at if retry_at is not None else now + self.retry_seconds, key))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="aireiter-pending-wakes", daemon=True)
                self._thread.start()
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _next_due(self) -> Key | None:
        """Wait for the next key that is due (``None`` once stopped)."""
        with self._cond:
            while not self._stopped:
                now = time.time()
                while self._due and self._due[0][1] not in self._expires:
                    heapq.heappop(self._due)  # woken or dropped meanwhile
                if self._due and self._due[0][0] <= now:
                    _, key = heapq.heappop(self._due)
                    return key
                self._cond.wait(timeout=(self._due[0][0] - now) if self._due else None)
            return None

    def _run(self) -> None:
        while (key := self._next_due()) is not None:
            try:
                result = self.waker(*key)
            except Exception as error:  # the database is away for a moment: try again later
                log_wake_failure(error, key[1])
                result = None
            now = time.time()
            with self._cond:
                expires = self._expires.get(key)
                if expires is None:
                    continue
                if result is not None and result.woken:
                    del self._expires[key]
                elif now >= expires:
                    del self._expires[key]
                    log.info("No deferred task took the AIReiter callback for %s; polling will finish it.", key[1][:64])
                    continue
                else:
                    held = result.held_until if result is not None else None
                    heapq.heappush(self._due, (held if held is not None else now + self.retry_seconds, key))
                    continue
            log.info(
                "AIReiter callback for %s woke %d task instance(s) once their deferral settled.",
                key[1][:64],
                result.woken,
            )
            if self.on_woken is not None:
                self.on_woken(key)
