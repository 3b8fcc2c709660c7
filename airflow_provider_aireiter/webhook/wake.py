"""Wake the deferred task instances that wait on one AIReiter task.

**This is the one module of the provider that uses Airflow internals** (the metadata-database models
``Trigger`` and ``TaskInstance``, ``Trigger.submit_event`` and a row-lock helper). Why: Airflow 3 has
no public API to resume a deferred task from an external HTTP call. Its own Human-in-the-loop
endpoint does the same thing the same way (direct database access from the API server, then
``handle_event_submit``). Everything here runs in the API server process, which owns a database
session; nothing here runs on workers or in the triggerer.

What a wake-up does: for every ``AireiterTaskTrigger`` row of the callback's connection whose
``out_task_id`` matches and whose task instance is ``DEFERRED``, it submits the event
``{"status": "callback", "out_task_id": ...}`` exactly as the triggerer would, once the deferral has
settled (the trigger's ``resume_not_before``, see :mod:`airflow_provider_aireiter.resume_gate`). A
trigger that has not settled yet is left alone and its time is returned, for the receiver to try again
then. The task instance becomes ``SCHEDULED`` with the event in ``next_kwargs``; the
worker's ``execute_complete`` then asks AIReiter for the truth (a callback is only a hint) and finishes
or defers again. A task instance that is no longer ``DEFERRED`` is left alone, so a duplicate callback
wakes nothing.

Cost: one query selects the deferred AIReiter triggers (filtered by ``classpath`` in SQL, joined to
their deferred task instance). Trigger kwargs are stored encrypted, so only those rows are decrypted,
and what each trigger waits for is remembered (keyed by trigger id and creation time; kwargs never
change after a trigger row is written), so a later wake-up decrypts only the triggers created since.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.models.taskinstance import TaskInstance
from airflow.models.trigger import Trigger
from airflow.triggers.base import TriggerEvent
from airflow.utils.session import NEW_SESSION, provide_session
from airflow.utils.sqlalchemy import with_row_locks
from airflow.utils.state import TaskInstanceState
from sqlalchemy import select
from sqlalchemy.orm import lazyload, load_only

from airflow_provider_aireiter.completion import CALLBACK_EVENT_STATUS
from airflow_provider_aireiter.connection import DEFAULT_CONN_ID
from airflow_provider_aireiter.resume_gate import settle_seconds

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

#: how ``AireiterTaskTrigger.serialize()`` names its class (the ``trigger.classpath`` column)
TRIGGER_CLASSPATH = "airflow_provider_aireiter.triggers.aireiter.AireiterTaskTrigger"

#: trigger ids decrypted per query (keeps ``IN (...)`` lists under every backend's parameter limit)
_CHUNK = 500

#: remembered ``out_task_id`` per trigger row at most (about 100 bytes each)
_MEMO_LIMIT = 50_000

_TriggerKey = tuple[int, datetime.datetime]


@dataclass(frozen=True)
class Waiting:
    """What one trigger row waits for, read from its kwargs."""

    conn_id: str
    out_task_id: str
    resume_not_before: float


@dataclass(frozen=True)
class WakeResult:
    """The outcome of one wake-up.

    :param woken: task instances resumed now.
    :param held_until: when set, matching triggers have not settled yet: try again at this epoch second.
    """

    woken: int = 0
    held_until: float | None = None


class _WaitingMemo:
    """``(trigger id, created_date) -> Waiting | None``, bounded, thread-safe (the API server uses threads)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._items: OrderedDict[_TriggerKey, Waiting | None] = OrderedDict()
        self._lock = threading.Lock()

    def split(self, keys: list[_TriggerKey]) -> tuple[dict[_TriggerKey, Waiting | None], list[_TriggerKey]]:
        """The known values among ``keys``, and the keys not known yet."""
        known: dict[_TriggerKey, Waiting | None] = {}
        missing: list[_TriggerKey] = []
        with self._lock:
            for key in keys:
                if key in self._items:
                    known[key] = self._items[key]
                    self._items.move_to_end(key)
                else:
                    missing.append(key)
        return known, missing

    def store(self, values: dict[_TriggerKey, Waiting | None]) -> None:
        with self._lock:
            self._items.update(values)
            while len(self._items) > self._limit:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_memo = _WaitingMemo(_MEMO_LIMIT)


def clear_memo() -> None:
    """Forget every remembered trigger (for tests; never needed for correctness)."""
    _memo.clear()


class _Unreadable(Exception):
    """A trigger row whose kwargs cannot be decrypted or decoded."""


def _waiting_of(trigger: Trigger) -> Waiting | None:
    """What a trigger row waits for (``None`` if its kwargs name no ``out_task_id``)."""
    try:
        kwargs: Any = trigger.kwargs  # the model's decrypting property
    except Exception as exc:  # e.g. another Fernet key: this row can never match
        raise _Unreadable(type(exc).__name__) from None
    if not isinstance(kwargs, dict) or not isinstance(kwargs.get("out_task_id"), str):
        return None
    not_before = kwargs.get("resume_not_before")
    if not isinstance(not_before, int | float) or isinstance(not_before, bool):
        # A trigger written before the hold existed: settle from its creation time.
        not_before = trigger.created_date.timestamp() + settle_seconds()
    return Waiting(
        conn_id=str(kwargs.get("aireiter_conn_id") or DEFAULT_CONN_ID),
        out_task_id=kwargs["out_task_id"],
        resume_not_before=float(not_before),
    )


def _deferred_trigger_keys(session: Session) -> list[_TriggerKey]:
    """Ids and creation times of the AIReiter triggers that have a task instance in ``DEFERRED``."""
    stmt = (
        select(Trigger.id, Trigger.created_date)
        .join(TaskInstance, TaskInstance.trigger_id == Trigger.id)
        .where(Trigger.classpath == TRIGGER_CLASSPATH, TaskInstance.state == TaskInstanceState.DEFERRED)
        .distinct()
    )
    return [(row[0], row[1]) for row in session.execute(stmt)]


def _decrypt(keys: list[_TriggerKey], session: Session) -> dict[_TriggerKey, Waiting | None]:
    """Read what the given trigger rows wait for (loading only the columns needed)."""
    found: dict[_TriggerKey, Waiting | None] = {}
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


def find_waiting_triggers(conn_id: str, out_task_id: str, *, session: Session) -> dict[int, Waiting]:
    """The ``AireiterTaskTrigger`` rows of ``conn_id`` for ``out_task_id`` that have a ``DEFERRED`` task instance."""
    keys = _deferred_trigger_keys(session)
    known, missing = _memo.split(keys)
    if missing:
        fresh = _decrypt(missing, session)
        _memo.store(fresh)
        known.update(fresh)
    return {
        trigger_id: waiting
        for (trigger_id, _), waiting in sorted(known.items())
        if waiting is not None and waiting.out_task_id == out_task_id and waiting.conn_id == conn_id
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
    event = TriggerEvent({"status": CALLBACK_EVENT_STATUS, "out_task_id": out_task_id})
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
        Trigger.submit_event(trigger_id, event, session=session)
        woken += len(deferred)
    session.flush()
    return WakeResult(woken=woken, held_until=min(held) if held else None)
