"""``AireiterTaskTrigger``: waits for an AIReiter task in the triggerer, without holding a worker slot."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_aireiter.connection import DEFAULT_CONN_ID
from airflow_provider_aireiter.exceptions import AireiterError, ErrorReason


class AireiterTaskTrigger(BaseTrigger):
    """Poll one AIReiter task until it finishes, then yield exactly one event.

    The trigger only reads (a triggerer restart may run it twice): the submit happened on the worker.
    Its deadline is absolute wall-clock time, so a restart does not restart the clock.

    A failed query does not end the wait: it is asked again, backing off up to ``poll_interval``,
    until the service answers or the deadline passes (then a ``timeout`` event, as if the task were
    still running). Only an error no retry can fix, or ``max_outage`` when set, gives an ``error``.

    Event: ``{"status": "success" | "failed" | "timeout" | "error", "out_task_id": ..., "task": <task info
    as plain JSON, or None>, "message": ..., "reason": <ErrorReason>, "error": <the error as plain JSON,
    see AireiterError.to_event, for "error">}``.

    :param out_task_id: the task to wait for.
    :param deadline: epoch seconds at which to give up with a ``timeout`` event.
    :param aireiter_conn_id: the ``aireiter`` connection.
    :param poll_interval: seconds between queries (at least 0.1). Polls are aligned to the multiples
        of ``poll_interval`` on the event loop's clock, shared by every trigger of the triggerer (see
        :func:`poll_time`): each comes at most half an interval early or late, and once aligned exactly
        every ``poll_interval``.
    :param max_outage: seconds without an answer from the service after which to stop with an
        ``error`` event (the last error, still retryable); ``None`` (default): until the deadline.
    :param not_found_grace: seconds of "api task not found" after which to stop with an ``error``
        event; ``None`` (default, the sensor): wait for the task to appear until the deadline.
    :param first_poll_at: epoch seconds before which not to query (the deferring task has just asked);
        0 queries at once. Absolute like ``deadline``: a trigger restarted later queries at once. The
        first query goes to the first grid point at or after it, so up to one interval later.
    :param resume_not_before: epoch seconds before which no event is yielded, so the task is not
        resumed before its deferral has settled (see :mod:`airflow_provider_aireiter.resume_gate`);
        the callback receiver reads it too.
    :param deadline_kind: which bound ``deadline`` is (``timeout`` or ``execution_timeout``); echoed
        in the ``timeout`` event.
    """

    def __init__(
        self,
        out_task_id: str,
        deadline: float,
        aireiter_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 10.0,
        first_poll_at: float = 0.0,
        resume_not_before: float = 0.0,
        deadline_kind: str = "timeout",
        max_outage: float | None = None,
        not_found_grace: float | None = None,
        max_consecutive_errors: int | None = None,
    ) -> None:
        # max_consecutive_errors: written by 0.2.0 into the rows of triggers deferred before an
        # upgrade; accepted so those rows still load, and not used (the budget is time now).
        super().__init__()
        self.out_task_id = out_task_id
        self.deadline = float(deadline)
        self.aireiter_conn_id = aireiter_conn_id
        self.poll_interval = float(poll_interval)
        self.first_poll_at = float(first_poll_at)
        self.resume_not_before = float(resume_not_before)
        self.deadline_kind = str(deadline_kind)
        self.max_outage = None if max_outage is None else float(max_outage)
        self.not_found_grace = None if not_found_grace is None else float(not_found_grace)

    @property
    def _step(self) -> float:
        """The time between polls: ``poll_interval``, but never under a tick (a sensor may ask for 0)."""
        return max(self.poll_interval, TICK_SECONDS)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "out_task_id": self.out_task_id,
                "deadline": self.deadline,
                "aireiter_conn_id": self.aireiter_conn_id,
                "poll_interval": self.poll_interval,
                "first_poll_at": self.first_poll_at,
                "resume_not_before": self.resume_not_before,
                "deadline_kind": self.deadline_kind,
                "max_outage": self.max_outage,
                "not_found_grace": self.not_found_grace,
            },
        )

    def _event(
        self, status: str, message: str, task: Any = None, reason: str | None = None, **extra: Any
    ) -> TriggerEvent:
        payload: dict[str, Any] = {
            "status": status,
            "out_task_id": self.out_task_id,
            "task": task.model_dump(mode="json") if task is not None else None,
            "message": message,
        }
        if reason is not None:
            payload["reason"] = reason
        payload.update(extra)
        return TriggerEvent(payload)

    def _timeout_event(self, info: Any, detail: str = "") -> TriggerEvent:
        last = info.status if info is not None else "not yet visible"
        return self._event(
            "timeout",
            f"Deadline passed while AIReiter task {self.out_task_id!r} was {last}{detail}.",
            info,
            reason=ErrorReason.TIMEOUT.value,
            deadline_kind=self.deadline_kind,
        )

    async def _settled(self, event: TriggerEvent) -> TriggerEvent:
        """``event``, once the deferral has settled (an earlier resume can make Airflow fail the task)."""
        from airflow_provider_aireiter.resume_gate import seconds_to_hold

        hold = seconds_to_hold(self.resume_not_before)
        if hold > 0:
            self.log.info("Holding the event for %.1fs, until the deferral has settled.", hold)
            await asyncio.sleep(hold)
        return event

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_aireiter.hooks.aireiter import AireiterHook
        from airflow_provider_aireiter.waiting import StatusWatcher

        hook = AireiterHook(self.aireiter_conn_id)
        watcher = StatusWatcher(self.log, self.out_task_id, time.time())
        info = None
        first_wait = min(self.first_poll_at, self.deadline) - time.time()
        if first_wait > 0:
            await self._sleep_until_poll(first_wait, early=False)
        while True:
            try:
                info = await hook.afind_task(
                    self.out_task_id, stop_at=self.deadline, poll_interval=self._step, give_up_after=self.max_outage
                )
                watcher.observe(info, not_found_grace=self.not_found_grace)
            except AireiterError as error:
                if error.retryable and time.time() >= self.deadline:
                    # The retries ran into the deadline: a timeout, as if the last poll had said "running".
                    yield await self._settled(self._timeout_event(info, f" (last query: {error.message})"))
                    return
                event = self._event(
                    "error",
                    f"Stopped waiting for {self.out_task_id!r} after a failed query: {error.message}",
                    info,
                    reason=error.reason.value,
                    error=error.to_event(),
                )
                yield await self._settled(event)
                return
            if info is not None and info.is_terminal:
                status = "success" if info.kind.value == "success" else "failed"
                event = self._event(status, f"AIReiter task {self.out_task_id!r} is {info.status}.", info)
                yield await self._settled(event)
                return
            remaining = self.deadline - time.time()
            if remaining <= 0:
                yield await self._settled(self._timeout_event(info))
                return
            await self._sleep_until_poll(self._step)

    async def _sleep_until_poll(self, due_in: float, *, early: bool = True) -> None:
        """Sleep until the poll due in ``due_in`` seconds, moved to the poll interval's grid (see
        :func:`poll_time`; not earlier than due unless ``early``), or until the deadline if that comes
        first (to a tenth of a second)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        step = self._step
        until_deadline = self.deadline - time.time()
        if math.isfinite(step) and math.isfinite(due_in):
            when = poll_time(now + due_in, step) if early else grid_point(now + due_in, step)
        else:  # an infinite interval polls only at the deadline
            when = math.inf
        if when - now >= until_deadline:
            when = grid_point(now + until_deadline, TICK_SECONDS)
        await _sleep_until(when)

    async def on_kill(self) -> None:
        """Warn that the remote task keeps running, unless it has finished (then this was a wake-up).

        Airflow calls ``on_kill`` whenever the task instance leaves ``deferred`` other than through this
        trigger's own event: when a user marks or clears it, and also when the callback receiver resumed
        it. One query tells the two apart; a finished remote task has nothing left to warn about.
        """
        from airflow_provider_aireiter.hooks.aireiter import AireiterHook
        from airflow_provider_aireiter.retry import AireiterRetryPolicy

        try:
            info = await AireiterHook(
                self.aireiter_conn_id, retry_policy=AireiterRetryPolicy(max_attempts=1)
            ).afind_task(self.out_task_id)
        except Exception:  # cannot tell (no connection, service away): warn, as for a real kill
            info = None
        if info is not None and info.is_terminal:
            self.log.info(
                "Stopped waiting for AIReiter task %s, which is %s (resumed by its completion callback).",
                self.out_task_id,
                info.status,
            )
            return
        self.log.warning(
            "The Airflow task was killed, but AIReiter has no cancel endpoint: remote task %s keeps running "
            "(and is charged if it completes).",
            self.out_task_id,
        )


#: the grid a wake-up for a deadline is rounded up to (seconds of the event loop's clock), and the
#: shortest poll interval (a sensor's ``poke_interval`` may be 0)
TICK_SECONDS = 0.1


def poll_time(due: float, poll_interval: float) -> float:
    """When a poll due at loop time ``due`` is sent: on the grid of every multiple of ``poll_interval``.

    The grid is on the event loop's clock, so it is the same for every trigger of the triggerer: the
    triggers with one interval poll together, in one turn of the loop, however their deferrals were
    spread. A lone wake-up after an idle pause costs several times the CPU of a poll sent in a batch
    (``benchmarks/triggerer_capacity.py``). A poll goes to the first grid point no earlier than half an
    interval before it was due, so it comes at most half an interval early or late, and once on the
    grid a trigger polls exactly every ``poll_interval`` (however long a poll takes, up to half an
    interval). A trigger's first poll is never early (``first_poll_at``): it goes to the first grid
    point at or after it. Intervals that divide each other share grid points (every 30 s point is a
    10 s one). The service never gets a whole batch at once: the loop's transport sends at most 32
    requests at a time and queues the rest.
    """
    return grid_point(due - poll_interval / 2, poll_interval)


def grid_point(at: float, step: float) -> float:
    """The first multiple of ``step`` at or after ``at``."""
    return math.ceil(at / step) * step


async def _sleep_until(when: float) -> None:
    """Sleep until loop time ``when`` (at once if it has passed). Sleepers due at the same point are
    woken by one turn of the event loop."""
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()
    timer = loop.call_at(when, _wake, woken)
    try:
        await woken
    finally:
        timer.cancel()


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)
