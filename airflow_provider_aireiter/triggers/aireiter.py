"""``AireiterTaskTrigger``: waits for an AIReiter task in the triggerer, without holding a worker slot.

A wait's state is one object, :class:`WaitState`: the deferring task builds it, the trigger row stores
it (the trigger's kwargs *are* its fields), the trigger's event and the callback receiver's wake event
carry it back, and the resumed task reads it from the event. Nothing about a wait is stored twice.

**When a deferred task may be resumed: not before its deferral has settled.** Airflow's scheduler has
a race on fast resumes (apache/airflow #66374, #67287, #71580, #72716). When a task defers, its worker
exits and the executor reports "success" for that try. If the task instance is resumed and queued
again *before* the scheduler has processed that stale "success", the scheduler takes it for a task
killed behind its back and marks it FAILED (Airflow 3.3 ignores the stale event only while the
resumed task instance is still ``scheduled``). Nothing in the metadata database says when the
scheduler has processed that event, so the provider holds every resume of its own until
``resume_not_before`` (:func:`resume_not_before`), a fixed time after the deferral. The trigger
sleeps until then before yielding a finished task's event; the callback receiver holds a wake-up
until then. The hold is time, not a proof: a scheduler whose loop lags further behind needs a larger
``[aireiter] resume_settle_seconds``. Measured on the real deployment of the tests (LocalExecutor,
2 cores), an 8 s hold let 0 of 90 fast resumes fail at a load average of 9, and 4 of 90 at a load
average of 20 to 25, where the stale event came up to 17.5 s after the deferral.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_aireiter.compat import metric
from airflow_provider_aireiter.exceptions import AireiterError, ErrorReason
from airflow_provider_aireiter.get_provider_info import DEFAULT_CONN_ID, DEFAULT_SETTLE_SECONDS

#: the shortest poll interval (a sensor's ``poke_interval`` may be 0), and the precision of a wake-up
#: for a deadline
MIN_POLL_INTERVAL = 0.1
#: the status of the event the callback receiver submits: "the task may be done, ask the service"
CALLBACK_EVENT_STATUS = "callback"
#: which bound ends a wait
WAIT_TIMEOUT = "timeout"
EXECUTION_TIMEOUT = "execution_timeout"


def settle_seconds() -> float:
    """``[aireiter] resume_settle_seconds`` (default 15; 0 turns the hold off, for ``dag.test()``)."""
    from airflow_provider_aireiter.compat import conf

    try:
        value = conf.getfloat("aireiter", "resume_settle_seconds", fallback=DEFAULT_SETTLE_SECONDS)
    except ValueError:
        value = DEFAULT_SETTLE_SECONDS
    return max(0.0, float(value))


def resume_not_before(deferred_at: float | None = None) -> float:
    """The epoch second before which a task deferring now must not be resumed."""
    return (time.time() if deferred_at is None else deferred_at) + settle_seconds()


def seconds_to_hold(not_before: float, now: float | None = None) -> float:
    """How much longer a resume must wait (0 when it may happen now)."""
    return max(0.0, not_before - (time.time() if now is None else now))


@dataclass(frozen=True)
class WaitState:
    """One wait for one AIReiter task, from the deferring task into the trigger and back.

    :param out_task_id: the task to wait for.
    :param deadline: epoch seconds at which the wait ends with a ``timeout`` event.
    :param aireiter_conn_id: the ``aireiter`` connection.
    :param poll_interval: seconds between queries (at least :data:`MIN_POLL_INTERVAL`).
    :param first_poll_at: epoch seconds before which not to query (the deferring task has just
        asked); 0 queries at once.
    :param resume_not_before: epoch seconds before which no event is yielded (see the module docstring).
    :param deadline_kind: which bound ``deadline`` is (``timeout`` or ``execution_timeout``).
    :param max_outage: seconds without an answer after which the wait ends with an ``error`` event.
    :param not_found_grace: seconds of "api task not found" after which the wait ends with an ``error``.
    :param deferred_at: epoch seconds of the deferral (logged at the resume).
    :param fallback: a completion callback is expected, so the polls are only its fallback (each one
        is counted as ``aireiter.fallback_poll``).
    :param estimated_credits: the submit's estimate, carried to the result dict of the resumed task.
    """

    out_task_id: str
    deadline: float
    aireiter_conn_id: str = DEFAULT_CONN_ID
    poll_interval: float = 10.0
    first_poll_at: float = 0.0
    resume_not_before: float = 0.0
    deadline_kind: str = WAIT_TIMEOUT
    max_outage: float | None = None
    not_found_grace: float | None = None
    deferred_at: float | None = None
    fallback: bool = False
    estimated_credits: float | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WaitState:
        """Read a wait from trigger kwargs or an event; keys of other versions are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))  # every field is a plain value: no deep copy needed

    @property
    def step(self) -> float:
        """Seconds between polls: ``poll_interval``, never under :data:`MIN_POLL_INTERVAL`."""
        return max(float(self.poll_interval), MIN_POLL_INTERVAL)


class AireiterTaskTrigger(BaseTrigger):
    """Poll one AIReiter task until it finishes, then yield exactly one event.

    The trigger only reads (a triggerer restart may run it twice): the submit happened on the worker.
    Its deadline is absolute wall-clock time, so a restart does not restart the clock. The keyword
    arguments are the fields of :class:`WaitState`.

    Polls are spread: the first comes within one interval after ``first_poll_at``, the next ones
    every ``poll_interval`` give or take a tenth, so waits deferred together do not query the paid
    service together.

    A failed query does not end the wait: it is asked again, backing off up to ``poll_interval``,
    until the service answers or the deadline passes (then a ``timeout`` event, as if the task were
    still running). Only an error no retry can fix, or ``max_outage`` when set, gives an ``error``.

    Event: ``{"status": "success" | "failed" | "timeout" | "error", "wait": <the WaitState>, "task":
    <task info as plain JSON, or None>, "message": ..., "reason": <ErrorReason, for timeout and error>,
    "error": <the error as plain JSON, see AireiterError.to_event, for "error">}``.
    """

    def __init__(self, out_task_id: str, deadline: float, max_consecutive_errors: int | None = None, **kwargs: Any):
        # max_consecutive_errors: written by 0.2.0 into the rows of triggers deferred before an
        # upgrade; accepted so those rows still load, and not used (the budget is time now).
        super().__init__()
        self.wait = WaitState.from_json({"out_task_id": out_task_id, "deadline": float(deadline), **kwargs})

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", self.wait.to_json()

    def _event(self, status: str, message: str, task: Any = None, **extra: Any) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "wait": self.wait.to_json(),
                "task": task.model_dump(mode="json") if task is not None else None,
                "message": message,
                **extra,
            }
        )

    def _timeout_event(self, info: Any, detail: str = "") -> TriggerEvent:
        last = info.status if info is not None else "not yet visible"
        return self._event(
            "timeout",
            f"Deadline passed while AIReiter task {self.wait.out_task_id!r} was {last}{detail}.",
            info,
            reason=ErrorReason.TIMEOUT.value,
        )

    async def _settled(self, event: TriggerEvent) -> TriggerEvent:
        """``event``, once the deferral has settled (an earlier resume can make Airflow fail the task)."""
        hold = seconds_to_hold(self.wait.resume_not_before)
        if hold > 0:
            self.log.info("Holding the event for %.1fs, until the deferral has settled.", hold)
            await asyncio.sleep(hold)
        return event

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_aireiter.hooks.aireiter import AireiterHook
        from airflow_provider_aireiter.retry import StatusWatcher

        wait = self.wait
        hook = AireiterHook(wait.aireiter_conn_id)
        watcher = StatusWatcher(self.log, wait.out_task_id, time.time())
        info = None
        queries = None
        now = time.time()
        if wait.first_poll_at > now:  # spread over the interval after it, never earlier
            await self._sleep(wait.first_poll_at + random.uniform(0.0, wait.step) - now)
        while True:
            try:
                if queries is None:  # set up once: every poll of this wait is retried by the same tenacity loop
                    queries = await hook.await_queries(
                        wait.out_task_id, stop_at=wait.deadline, poll_interval=wait.step, give_up_after=wait.max_outage
                    )
                if wait.fallback:
                    metric("fallback_poll")
                info = await hook.afind_task(wait.out_task_id, queries=queries)
                watcher.observe(info, not_found_grace=wait.not_found_grace)
            except AireiterError as error:
                if error.retryable and time.time() >= wait.deadline:
                    # The retries ran into the deadline: a timeout, as if the last poll had said "running".
                    yield await self._settled(self._timeout_event(info, f" (last query: {error.message})"))
                    return
                event = self._event(
                    "error",
                    f"Stopped waiting for {wait.out_task_id!r} after a failed query: {error.message}",
                    info,
                    reason=error.reason.value,
                    error=error.to_event(),
                )
                yield await self._settled(event)
                return
            if info is not None and info.is_terminal:
                status = "success" if info.kind.value == "success" else "failed"
                event = self._event(status, f"AIReiter task {wait.out_task_id!r} is {info.status}.", info)
                yield await self._settled(event)
                return
            if wait.deadline - time.time() <= 0:
                yield await self._settled(self._timeout_event(info))
                return
            await self._sleep(wait.step * random.uniform(0.9, 1.1))

    async def _sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or until the deadline (to a tenth of a second) if that comes first."""
        until_deadline = self.wait.deadline - time.time()
        if not math.isfinite(seconds) or seconds >= until_deadline:
            seconds = math.ceil(max(until_deadline, 0.0) / MIN_POLL_INTERVAL) * MIN_POLL_INTERVAL
        await asyncio.sleep(max(seconds, 0.0))

    async def on_kill(self) -> None:
        """Warn that the remote task keeps running, unless it has finished (then this was a wake-up).

        Airflow calls ``on_kill`` whenever the task instance leaves ``deferred`` other than through this
        trigger's own event: when a user marks or clears it, and also when the callback receiver resumed
        it. One query tells the two apart; a finished remote task has nothing left to warn about.
        """
        from airflow_provider_aireiter.hooks.aireiter import AireiterHook
        from airflow_provider_aireiter.retry import AireiterRetryPolicy

        out_task_id = self.wait.out_task_id
        try:
            hook = AireiterHook(self.wait.aireiter_conn_id, retry_policy=AireiterRetryPolicy(max_attempts=1))
            info = await hook.afind_task(out_task_id)
        except Exception:  # cannot tell (no connection, service away): warn, as for a real kill
            info = None
        if info is not None and info.is_terminal:
            self.log.info(
                "Stopped waiting for AIReiter task %s, which is %s (resumed by its completion callback).",
                out_task_id,
                info.status,
            )
            return
        self.log.warning(
            "The Airflow task was killed, but AIReiter has no cancel endpoint: remote task %s keeps running "
            "(and is charged if it completes).",
            out_task_id,
        )
