"""The HTTP endpoint AIReiter calls when a task finishes: ``POST /callback/{conn_id}/{out_task_id}?token=...``.

Mounted by :class:`~airflow_provider_aireiter.plugins.webhook.AireiterWebhookPlugin` under
``/aireiter`` on Airflow's API server. AIReiter cannot authenticate to Airflow, so the route needs no
Airflow token; the per-task HMAC token in the URL is the authentication.

A callback's body, signature and retry policy are undocumented, so a callback is only a wake-up
signal: a valid one resumes the deferred task, which then asks the query endpoint for the truth. The
body is checked to be JSON (or empty) and otherwise ignored; it is never logged.

Checks, cheapest first, none with side effects until all have passed:

==========================================  ======
declared ``Content-Length`` over the limit   413
no ``token``                                 401
bad ids, unknown connection, no secret,      403
a secret under 16 characters, wrong token
(or another task's token)
body actually read over the limit            413
body not received within 10 s                408
non-empty body that is not JSON              400
secrets backend or database unavailable      503
==========================================  ======

Then ``202 {"accepted": true, "woken": n}``; ``n`` is 0 when nothing could be woken at once: the task
has not deferred yet, its deferral has not settled, nobody waits (an unknown task, a duplicate
delivery, a task already finished), or the same task was woken less than ``min_wake_interval`` ago.
Except in the last case the answer then says ``"pending": true``: the callback is kept and tried
again (:mod:`.pending`), so a callback that came early still wakes its task within a second of the
task's deferral settling.
Blocking work (connection lookup, database) runs in a small dedicated thread pool so a flood cannot
starve the API server's own threads. Other methods get FastAPI's ``405``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from airflow_provider_aireiter.connection import MIN_CALLBACK_SECRET_CHARS
from airflow_provider_aireiter.exceptions import AireiterError
from airflow_provider_aireiter.task_ids import check_out_task_id
from airflow_provider_aireiter.webhook.pending import PendingWakes, Waker, log_wake_failure
from airflow_provider_aireiter.webhook.tokens import redact_token, token_is_valid

if TYPE_CHECKING:
    from airflow_provider_aireiter.webhook.wake import WakeResult

log = logging.getLogger(__name__)

#: largest body accepted (bytes); AIReiter's completion notice is small
DEFAULT_MAX_BODY_BYTES = 64 * 1024
#: seconds a connection's callback secret (or its absence) is remembered
DEFAULT_SECRET_TTL = 30.0
#: seconds during which a task that was just woken is not woken again (replays of one valid URL)
DEFAULT_MIN_WAKE_INTERVAL = 5.0
#: seconds allowed for reading the body
DEFAULT_BODY_TIMEOUT = 10.0
#: threads for connection lookups and database work
DEFAULT_WORKER_THREADS = 4

_TOKEN_FORMAT = re.compile(r"^[0-9a-f]{64}$")
#: Airflow's own conn_id alphabet, at most the width of the ``connection.conn_id`` column
_CONN_ID_FORMAT = re.compile(r"^[\w#!()\-.:\\]{1,250}$")

SecretLookup = Callable[[str], "str | None"]


class CallbackLookupError(Exception):
    """The callback secret could not be read (secrets backend or database unavailable)."""


def lookup_callback_secret(conn_id: str) -> str | None:
    """The ``callback_secret`` of connection ``conn_id``; ``None`` when it or the secret is missing.

    Uses Airflow's server-side connection access (secrets backends, then the metadata database), as the
    API server has no Task SDK supervisor to ask.

    :raises CallbackLookupError: when a backend fails (not for a connection that does not exist).
    """
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    from airflow_provider_aireiter.connection import settings_from_connection

    try:
        conn = Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return None
    except Exception as exc:
        raise CallbackLookupError(type(exc).__name__) from None
    try:
        return settings_from_connection(conn).callback_secret
    except AireiterError:  # e.g. no API key: this connection never submitted a task
        return None


def default_waker(conn_id: str, out_task_id: str) -> WakeResult:
    """Wake the tasks of ``conn_id`` waiting on ``out_task_id`` in the metadata database (see :mod:`.wake`)."""
    from airflow_provider_aireiter.webhook.wake import wake_waiting_tasks

    return wake_waiting_tasks(conn_id, out_task_id)


class _TtlCache:
    """A small ``key -> value`` memory with expiry and a size bound (secrets, recent wake-ups)."""

    def __init__(self, ttl: float, limit: int = 1024) -> None:
        self.ttl = ttl
        self.limit = limit
        self._items: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bool, Any]:
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return False, None
            if hit[0] <= time.monotonic():
                del self._items[key]
                return False, None
            return True, hit[1]

    def put(self, key: str, value: Any) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._items) >= self.limit:
                for stale in [k for k, (expires, _) in self._items.items() if expires <= now]:
                    del self._items[stale]
                if len(self._items) >= self.limit:  # still full of live entries: drop the oldest
                    self._items.pop(next(iter(self._items)))
            self._items[key] = (now + self.ttl, value)


@dataclass
class _Outcome:
    status: int
    body: dict[str, Any]
    note: str


def _loggable(text: str, limit: int) -> str:
    """A caller-supplied value made safe for one log line: truncated, non-printables escaped."""
    short = text[:limit] + ("~" if len(text) > limit else "")
    return short.encode("unicode_escape").decode("ascii")


class CallbackReceiver:
    """The request handling behind :func:`create_callback_app`; see the module docstring for the rules.

    :param secret_lookup: ``conn_id -> callback secret or None`` (blocking; cached for ``secret_ttl``).
    :param waker: ``(conn_id, out_task_id) -> WakeResult`` (blocking).
    :param max_body_bytes: largest accepted body.
    :param secret_ttl: seconds a looked-up secret (or its absence) is reused.
    :param min_wake_interval: seconds after a successful wake-up during which the same task is not
        woken again (a replayed valid URL cannot keep a worker busy).
    :param body_timeout: seconds allowed to read the body.
    :param worker_threads: threads for the blocking calls, separate from the API server's pool.
    """

    def __init__(
        self,
        *,
        secret_lookup: SecretLookup = lookup_callback_secret,
        waker: Waker = default_waker,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        secret_ttl: float = DEFAULT_SECRET_TTL,
        min_wake_interval: float = DEFAULT_MIN_WAKE_INTERVAL,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        worker_threads: int = DEFAULT_WORKER_THREADS,
    ) -> None:
        self.secret_lookup = secret_lookup
        self.waker = waker
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.worker_threads = worker_threads
        self._secrets = _TtlCache(secret_ttl)
        self._recently_woken = _TtlCache(min_wake_interval, limit=10_000)
        self.pending = PendingWakes(waker, on_woken=lambda key: self._recently_woken.put(_wake_key(*key), True))
        self._short_secret_warned: set[str] = set()
        self._limiter: anyio.CapacityLimiter | None = None
        self._lookups: dict[str, anyio.Lock] = {}

    def close(self) -> None:
        """Stop the pending-callback thread (callbacks still pending are left to polling)."""
        self.pending.stop()

    def _threads(self) -> anyio.CapacityLimiter:
        if self._limiter is None:  # created lazily: it belongs to the running event loop
            self._limiter = anyio.CapacityLimiter(self.worker_threads)
        return self._limiter

    async def _secret_for(self, conn_id: str) -> str | None:
        hit, secret = self._secrets.get(conn_id)
        if hit:
            return secret
        # One lookup per connection at a time: concurrent requests wait for it instead of repeating it.
        lock = self._lookups.setdefault(conn_id, anyio.Lock())
        try:
            async with lock:
                hit, secret = self._secrets.get(conn_id)
                if hit:
                    return secret
                secret = await anyio.to_thread.run_sync(self.secret_lookup, conn_id, limiter=self._threads())
                self._secrets.put(conn_id, secret)
                return secret
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._lookups.pop(conn_id, None)

    async def _read_body(self, request: Request) -> bytes | None:
        """The body, or ``None`` as soon as it grows past the limit (the rest is never read)."""
        chunks: list[bytes] = []
        size = 0
        with anyio.fail_after(self.body_timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > self.max_body_bytes:
                    return None
                chunks.append(chunk)
        return b"".join(chunks)

    async def handle(self, conn_id: str, out_task_id: str, request: Request) -> _Outcome:
        """Check one callback and, when it is genuine, wake the tasks waiting for it."""
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                return _Outcome(400, {"detail": "Invalid Content-Length."}, "bad content-length")
            if int(declared) > self.max_body_bytes:
                return _Outcome(413, {"detail": "Body too large."}, "declared body too large")

        token = request.query_params.get("token")
        if not token:
            return _Outcome(401, {"detail": "Missing token."}, "no token")
        forbidden = _Outcome(403, {"detail": "Invalid token."}, "bad token")
        try:
            check_out_task_id(out_task_id)
        except AireiterError:
            return _Outcome(403, forbidden.body, "bad out_task_id")
        if not _CONN_ID_FORMAT.match(conn_id) or not _TOKEN_FORMAT.match(token):
            return forbidden
        try:
            secret = await self._secret_for(conn_id)
        except CallbackLookupError as exc:
            return _Outcome(503, {"detail": "Temporarily unavailable."}, f"secret lookup failed ({exc})")
        if not secret:
            return _Outcome(403, forbidden.body, "no callback secret for connection")
        if len(secret) < MIN_CALLBACK_SECRET_CHARS:  # as the operators refuse to sign with it
            if conn_id not in self._short_secret_warned:
                self._short_secret_warned.add(conn_id)
                log.warning(
                    "The connection %r has a callback_secret of %d characters; callbacks signed with it are "
                    "refused (at least %d are required).",
                    _loggable(conn_id, 40),
                    len(secret),
                    MIN_CALLBACK_SECRET_CHARS,
                )
            return _Outcome(403, forbidden.body, "callback secret too short")
        if not token_is_valid(secret, conn_id, out_task_id, token):
            return forbidden

        try:
            body = await self._read_body(request)
        except TimeoutError:
            return _Outcome(408, {"detail": "Body not received in time."}, "body timeout")
        if body is None:
            return _Outcome(413, {"detail": "Body too large."}, "body too large")
        if body.strip():
            try:
                json.loads(body)
            except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested absurdly deep
                return _Outcome(400, {"detail": "Body is not JSON."}, "body not JSON")

        key = _wake_key(conn_id, out_task_id)
        hit, _ = self._recently_woken.get(key)
        if hit:
            return _Outcome(202, {"accepted": True, "woken": 0}, "woken moments ago; ignored")
        try:
            result = await anyio.to_thread.run_sync(self.waker, conn_id, out_task_id, limiter=self._threads())
        except Exception as exc:
            log_wake_failure(exc, out_task_id)
            return _Outcome(503, {"detail": "Temporarily unavailable."}, f"wake failed ({type(exc).__name__})")
        if result.woken:
            self._recently_woken.put(key, True)
            return _Outcome(202, {"accepted": True, "woken": result.woken}, "accepted")
        self.pending.add((conn_id, out_task_id), result.held_until)
        note = "held until the deferral settles" if result.held_until else "nobody waits yet; kept"
        return _Outcome(202, {"accepted": True, "woken": 0, "pending": True}, note)


def _wake_key(conn_id: str, out_task_id: str) -> str:
    return f"{conn_id}\x00{out_task_id}"


def create_callback_app(receiver: CallbackReceiver | None = None) -> FastAPI:
    """The FastAPI app serving ``POST /callback/{conn_id}/{out_task_id}?token=...`` (mount it under ``/aireiter``).

    :param receiver: the request handling; by default one that reads secrets from Airflow connections
        and wakes tasks through the metadata database.
    """
    handler = receiver or CallbackReceiver()
    app = FastAPI(
        title="AIReiter callbacks",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.post("/callback/{conn_id}/{out_task_id}", status_code=202)
    async def aireiter_callback(conn_id: str, out_task_id: str, request: Request) -> JSONResponse:
        started = time.monotonic()
        outcome = await handler.handle(conn_id, out_task_id, request)
        token = request.query_params.get("token") or ""
        level = logging.INFO if outcome.status < 400 else logging.WARNING
        log.log(
            level,
            "AIReiter callback conn=%s out_task_id=%s token=%s -> %d %s (%.1f ms)",
            _loggable(conn_id, 40),
            _loggable(out_task_id, 24),
            _loggable(redact_token(token), 12) if token else "-",
            outcome.status,
            outcome.note,
            (time.monotonic() - started) * 1000,
        )
        return JSONResponse(outcome.body, status_code=outcome.status)

    app.state.receiver = handler
    return app
