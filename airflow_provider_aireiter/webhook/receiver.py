"""The API server's side of completion callbacks: ``POST /aireiter/callback/{conn_id}/{out_task_id}?token=...``.

Mounted by :class:`~airflow_provider_aireiter.plugins.webhook.AireiterWebhookPlugin` on Airflow's API
server. AIReiter cannot authenticate to Airflow, so the route needs no Airflow token; the per-task
HMAC token in the URL is the authentication. A callback's body, signature and retry policy are
undocumented, so a callback is only a wake-up signal: a valid one resumes the deferred task, which
then asks the query endpoint for the truth. The body is checked to be JSON (or empty) and otherwise
ignored; it is never logged.

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
again (:class:`PendingWakes`), so a callback that came early still wakes its task within a second of
its deferral settling. Blocking work (connection lookup, database) runs in a small dedicated thread
pool so a flood cannot starve the API server's own threads.

**The wake is the one part of the provider that uses Airflow internals** (the metadata-database
models ``Trigger`` and ``TaskInstance``, ``Trigger.submit_event`` and a row-lock helper): Airflow 3
has no public API to resume a deferred task from an external HTTP call; its own Human-in-the-loop
endpoint does the same the same way. For every ``AireiterTaskTrigger`` row of the callback's
connection whose ``out_task_id`` matches and whose task instance is ``DEFERRED``, it submits
``{"status": "callback", "wait": <the trigger's WaitState>}`` exactly as the triggerer would, once
the deferral has settled. Trigger kwargs are stored encrypted, so only the deferred AIReiter rows are
decrypted, and what each waits for is remembered by trigger id and creation time.
"""

from __future__ import annotations

import datetime
import heapq
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
import cachetools
from airflow.models.taskinstance import TaskInstance
from airflow.models.trigger import Trigger
from airflow.triggers.base import TriggerEvent
from airflow.utils.session import NEW_SESSION, provide_session
from airflow.utils.sqlalchemy import with_row_locks
from airflow.utils.state import TaskInstanceState
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import lazyload, load_only

from airflow_provider_aireiter.api_types import check_out_task_id
from airflow_provider_aireiter.compat import metric
from airflow_provider_aireiter.exceptions import AireiterError
from airflow_provider_aireiter.hooks.aireiter import (
    DEFAULT_CONN_ID,
    MIN_CALLBACK_SECRET_CHARS,
    redact_token,
    token_is_valid,
)
from airflow_provider_aireiter.triggers.aireiter import CALLBACK_EVENT_STATUS, WaitState, settle_seconds

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


# ----------------------------------------------------------- the HTTP endpoint
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

    from airflow_provider_aireiter.hooks.aireiter import settings_from_connection

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
    """Wake the tasks of ``conn_id`` waiting on ``out_task_id`` in the metadata database."""
    return wake_waiting_tasks(conn_id, out_task_id)


class _TtlCache:
    """``key -> value`` with expiry and a size bound (cachetools), safe across the API server's threads."""

    def __init__(self, ttl: float, limit: int = 1024) -> None:
        self._items: cachetools.TTLCache[str, Any] = cachetools.TTLCache(maxsize=limit, ttl=ttl)
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bool, Any]:
        with self._lock:
            return (True, self._items[key]) if key in self._items else (False, None)

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._items[key] = value


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


# ------------------------------- callbacks kept until they can wake their task
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


# -------------------------- waking deferred task instances (Airflow internals)
log = logging.getLogger(__name__)
#: how ``AireiterTaskTrigger.serialize()`` names its class (the ``trigger.classpath`` column)
TRIGGER_CLASSPATH = "airflow_provider_aireiter.triggers.aireiter.AireiterTaskTrigger"
#: trigger ids decrypted per query (keeps ``IN (...)`` lists under every backend's parameter limit)
_CHUNK = 500
#: remembered ``out_task_id`` per trigger row at most (about 100 bytes each)
_MEMO_LIMIT = 50_000
_TriggerKey = tuple[int, datetime.datetime]


@dataclass(frozen=True)
class WakeResult:
    """The outcome of one wake-up.

    :param woken: task instances resumed now.
    :param held_until: when set, matching triggers have not settled yet: try again at this epoch second.
    """

    woken: int = 0
    held_until: float | None = None


#: what each deferred trigger row waits for, by (trigger id, created_date): kwargs never change after a
#: row is written, so a later wake-up decrypts only the triggers created since (bounded, least recent out)
_memo: cachetools.LRUCache[_TriggerKey, WaitState | None] = cachetools.LRUCache(maxsize=_MEMO_LIMIT)
_memo_lock = threading.Lock()


def clear_memo() -> None:
    """Forget every remembered trigger (for tests; never needed for correctness)."""
    with _memo_lock:
        _memo.clear()


class _Unreadable(Exception):
    """A trigger row whose kwargs cannot be decrypted or decoded."""


def _waiting_of(trigger: Trigger) -> WaitState | None:
    """What a trigger row waits for (``None`` if its kwargs name no ``out_task_id``)."""
    try:
        kwargs: Any = trigger.kwargs  # the model's decrypting property
    except Exception as exc:  # e.g. another Fernet key: this row can never match
        raise _Unreadable(type(exc).__name__) from None
    if not isinstance(kwargs, dict) or not isinstance(kwargs.get("out_task_id"), str):
        return None
    fields = dict(kwargs)
    not_before = kwargs.get("resume_not_before")
    if not isinstance(not_before, int | float) or isinstance(not_before, bool):
        # A trigger written before the hold existed: settle from its creation time.
        fields["resume_not_before"] = trigger.created_date.timestamp() + settle_seconds()
    fields["aireiter_conn_id"] = str(kwargs.get("aireiter_conn_id") or DEFAULT_CONN_ID)
    try:
        return WaitState.from_json(fields)
    except (TypeError, ValueError):  # no deadline: not a row this provider wrote
        return None


def _deferred_trigger_keys(session: Session) -> list[_TriggerKey]:
    """Ids and creation times of the AIReiter triggers that have a task instance in ``DEFERRED``."""
    stmt = (
        select(Trigger.id, Trigger.created_date)
        .join(TaskInstance, TaskInstance.trigger_id == Trigger.id)
        .where(Trigger.classpath == TRIGGER_CLASSPATH, TaskInstance.state == TaskInstanceState.DEFERRED)
        .distinct()
    )
    return [(row[0], row[1]) for row in session.execute(stmt)]


def _decrypt(keys: list[_TriggerKey], session: Session) -> dict[_TriggerKey, WaitState | None]:
    """Read what the given trigger rows wait for (loading only the columns needed)."""
    found: dict[_TriggerKey, WaitState | None] = {}
    unreadable: list[int] = []
    wanted = dict(keys)
    ids = list(wanted)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        stmt = (
            select(Trigger)
            .where(Trigger.id.in_(chunk))
            .options(
                load_only(Trigger.id, Trigger.created_date, Trigger.encrypted_kwargs),
                lazyload(Trigger.task_instance),
            )
            .execution_options(populate_existing=True)
        )
        for trigger in session.scalars(stmt):
            if trigger.created_date != wanted.get(trigger.id):
                continue
            try:
                found[(trigger.id, trigger.created_date)] = _waiting_of(trigger)
            except _Unreadable:
                found[(trigger.id, trigger.created_date)] = None  # remembered: not retried nor logged again
                unreadable.append(trigger.id)
    if unreadable:
        log.warning(
            "Skipped %d AIReiter trigger(s) whose kwargs cannot be read (Fernet key changed?), e.g. id %s.",
            len(unreadable),
            unreadable[0],
        )
    return found


def find_waiting_triggers(conn_id: str, out_task_id: str, *, session: Session) -> dict[int, WaitState]:
    """The ``AireiterTaskTrigger`` rows of ``conn_id`` for ``out_task_id`` that have a ``DEFERRED`` task instance."""
    keys = _deferred_trigger_keys(session)
    with _memo_lock:
        known = {key: _memo[key] for key in keys if key in _memo}
    missing = [key for key in keys if key not in known]
    if missing:
        fresh = _decrypt(missing, session)
        with _memo_lock:
            _memo.update(fresh)
        known.update(fresh)
    return {
        trigger_id: waiting
        for (trigger_id, _), waiting in sorted(known.items())
        if waiting is not None and waiting.out_task_id == out_task_id and waiting.aireiter_conn_id == conn_id
    }


@provide_session
def wake_waiting_tasks(conn_id: str, out_task_id: str, *, session: Session = NEW_SESSION) -> WakeResult:
    """Resume the task instances deferred on ``AireiterTaskTrigger(out_task_id=..., aireiter_conn_id=conn_id)``.

    Each one whose deferral has settled gets the event ``{"status": "callback", "out_task_id": ...}``
    through ``Trigger.submit_event``, as if its trigger had fired. The deferred task instances are locked
    first (``SELECT ... FOR UPDATE`` where the database supports it), so a trigger firing at the same
    moment is not overwritten and nothing is resumed twice. Triggers of other connections are never
    touched: a token is only as good as the connection whose secret signed it.

    :param conn_id: the connection the callback URL (and its token) belongs to.
    :param out_task_id: the AIReiter task the callback was signed for.
    :param session: a metadata-database session; committed by the caller when given, else here.
    :return: how many task instances left ``DEFERRED`` (0 when nobody was waiting: an unknown id, a
        task that already finished, a duplicate callback), and when to try again for those not settled.
    """
    waiting = find_waiting_triggers(conn_id, out_task_id, session=session)
    if not waiting:
        return WakeResult()
    now = time.time()
    held = [w.resume_not_before for w in waiting.values() if w.resume_not_before > now]
    woken = 0
    for trigger_id, entry in waiting.items():
        if entry.resume_not_before > now:
            continue
        locked = select(TaskInstance.id).where(
            TaskInstance.trigger_id == trigger_id, TaskInstance.state == TaskInstanceState.DEFERRED
        )
        deferred = list(session.scalars(with_row_locks(locked, session, of=TaskInstance)))
        if not deferred:
            continue  # its trigger fired (or the task was cleared) since the first query
        event = TriggerEvent({"status": CALLBACK_EVENT_STATUS, "wait": entry.to_json()})
        Trigger.submit_event(trigger_id, event, session=session)
        woken += len(deferred)
    session.flush()
    if woken:
        metric("callback_wake", woken)  # here only: both the callback's request and a kept callback's retry wake here
    return WakeResult(woken=woken, held_until=min(held) if held else None)
