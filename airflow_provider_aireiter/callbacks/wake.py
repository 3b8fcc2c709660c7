"""Wake the deferred task instances that wait on one AIReiter task.

**This is the one module of the provider that uses Airflow internals** (the metadata-database models
``Trigger`` and ``TaskInstance``, ``Trigger.submit_event`` and a row-lock helper). Why: Airflow 3 has
no public API to resume a deferred task from an external HTTP call. Its own Human-in-the-loop
endpoint does the same thing the same way (direct database access from the API server, then
``handle_event_submit``). Everything here runs in the API server process, which owns a database
session; nothing here runs on workers or in the triggerer.

What a wake-up does: for every ``AireiterTaskTrigger`` row whose ``out_task_id`` matches and whose task
instance is ``DEFERRED``, it submits the event ``{"status": "callback", "out_task_id": ...}`` exactly as
the triggerer would. The task instance becomes ``SCHEDULED`` with the event in ``next_kwargs``; the
worker's ``execute_complete`` then asks AIReiter for the truth (a callback is only a hint) and finishes
or defers again. A task instance that is no longer ``DEFERRED`` is left alone, so a duplicate callback
wakes nothing.

Cost: one query selects the deferred AIReiter triggers (filtered by ``classpath`` in SQL, joined to
their deferred task instance). Trigger kwargs are stored encrypted, so only those rows are decrypted,
and each trigger's ``out_task_id`` is remembered (keyed by trigger id and creation time; kwargs never
change after a trigger row is written), so a later wake-up decrypts only the triggers created since.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections import OrderedDict
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


class _OutTaskIdMemo:
    """``(trigger id, created_date) -> out_task_id``, bounded, thread-safe (the API server uses threads)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._items: OrderedDict[_TriggerKey, str | None] = OrderedDict()
        self._lock = threading.Lock()

    def split(self, keys: list[_TriggerKey]) -> tuple[dict[_TriggerKey, str | None], list[_TriggerKey]]:
        """The known values among ``keys``, and the keys not known yet."""
        known: dict[_TriggerKey, str | None] = {}
        missing: list[_TriggerKey] = []
        with self._lock:
            for key in keys:
                if key in self._items:
                    known[key] = self._items[key]
                    self._items.move_to_end(key)
                else:
                    missing.append(key)
        return known, missing

    def store(self, values: dict[_TriggerKey, str | None]) -> None:
        with self._lock:
            self._items.update(values)
            while len(self._items) > self._limit:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_memo = _OutTaskIdMemo(_MEMO_LIMIT)


def clear_memo() -> None:
    """Forget every remembered trigger (for tests; never needed for correctness)."""
    _memo.clear()


class _Unreadable(Exception):
    """A trigger row whose kwargs cannot be decrypted or decoded."""


def _out_task_id_of(trigger: Trigger) -> str | None:
    """The ``out_task_id`` a trigger row waits for (``None`` if it has none)."""
    try:
        kwargs: Any = trigger.kwargs  # the model's decrypting property
    except Exception as exc:  # e.g. another Fernet key: this row can never match
        raise _Unreadable(type(exc).__name__) from None
    value = kwargs.get("out_task_id") if isinstance(kwargs, dict) else None
    return value if isinstance(value, str) else None


def _deferred_trigger_keys(session: Session) -> list[_TriggerKey]:
    """Ids and creation times of the AIReiter triggers that have a task instance in ``DEFERRED``."""
    stmt = (
        select(Trigger.id, Trigger.created_date)
        .join(TaskInstance, TaskInstance.trigger_id == Trigger.id)
        .where(Trigger.classpath == TRIGGER_CLASSPATH, TaskInstance.state == TaskInstanceState.DEFERRED)
        .distinct()
    )
    return [(row[0], row[1]) for row in session.execute(stmt)]


def _decrypt(keys: list[_TriggerKey], session: Session) -> dict[_TriggerKey, str | None]:
    """Read the ``out_task_id`` of the given trigger rows (loading only the columns needed)."""
    found: dict[_TriggerKey, str | None] = {}
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
                found[(trigger.id, trigger.created_date)] = _out_task_id_of(trigger)
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


def find_waiting_trigger_ids(out_task_id: str, *, session: Session) -> list[int]:
    """Ids of the ``AireiterTaskTrigger`` rows for ``out_task_id`` that have a ``DEFERRED`` task instance."""
    keys = _deferred_trigger_keys(session)
    known, missing = _memo.split(keys)
    if missing:
        fresh = _decrypt(missing, session)
        _memo.store(fresh)
        known.update(fresh)
    return sorted(trigger_id for (trigger_id, _), value in known.items() if value == out_task_id)


@provide_session
def wake_waiting_tasks(out_task_id: str, *, session: Session = NEW_SESSION) -> int:
    """Resume every task instance deferred on ``AireiterTaskTrigger(out_task_id=...)``.

    Each one gets the event ``{"status": "callback", "out_task_id": out_task_id}`` through
    ``Trigger.submit_event``, as if its trigger had fired. The deferred task instances are locked first
    (``SELECT ... FOR UPDATE`` where the database supports it), so a trigger firing at the same moment
    is not overwritten and nothing is resumed twice.

    :param out_task_id: the AIReiter task the callback was signed for.
    :param session: a metadata-database session; committed by the caller when given, else here.
    :return: how many task instances left ``DEFERRED``; 0 when nobody was waiting (an unknown id, a
        task that already finished, or a duplicate callback).
    """
    trigger_ids = find_waiting_trigger_ids(out_task_id, session=session)
    if not trigger_ids:
        return 0
    event = TriggerEvent({"status": CALLBACK_EVENT_STATUS, "out_task_id": out_task_id})
    woken = 0
    for trigger_id in trigger_ids:
        locked = select(TaskInstance.id).where(
            TaskInstance.trigger_id == trigger_id, TaskInstance.state == TaskInstanceState.DEFERRED
        )
        waiting = list(session.scalars(with_row_locks(locked, session, of=TaskInstance)))
        if not waiting:
            continue  # its trigger fired (or the task was cleared) since the first query
        Trigger.submit_event(trigger_id, event, session=session)
        woken += len(waiting)
    session.flush()
    return woken
