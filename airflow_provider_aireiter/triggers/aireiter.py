"""``AireiterTaskTrigger``: waits for an AIReiter task in the triggerer, without holding a worker slot."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_aireiter.connection import DEFAULT_CONN_ID
from airflow_provider_aireiter.exceptions import AireiterError, ErrorReason

#: the statuses a trigger event can carry
EVENT_STATUSES = ("success", "failed", "timeout", "error")


class AireiterTaskTrigger(BaseTrigger):
    """Poll one AIReiter task until it finishes, then yield exactly one event.

    The trigger only reads (a triggerer restart may run it twice): the submit happened on the worker.
    Its deadline is absolute wall-clock time, so a restart does not restart the clock.

    Event: ``{"status": "success" | "failed" | "timeout" | "error", "out_task_id": ..., "task": <task info
    as plain JSON, or None>, "message": ..., "reason": <ErrorReason for "error">}``.

    :param out_task_id: the task to wait for.
    :param deadline: epoch seconds at which to give up with a ``timeout`` event.
    :param aireiter_conn_id: the ``aireiter`` connection.
    :param poll_interval: seconds between queries.
    :param max_consecutive_errors: transient query failures in a row before an ``error`` event.
    :param first_poll_at: epoch seconds before which not to query (the deferring task has just asked);
        0 queries at once. Absolute like ``deadline``: a trigger restarted later queries at once.
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
        max_consecutive_errors: int = 5,
        first_poll_at: float = 0.0,
        resume_not_before: float = 0.0,
        deadline_kind: str = "timeout",
    ) -> None:
        super().__init__()
        self.out_task_id = out_task_id
        self.deadline = float(deadline)
        self.aireiter_conn_id = aireiter_conn_id
        self.poll_interval = float(poll_interval)
        self.max_consecutive_errors = int(max_consecutive_errors)
        self.first_poll_at = float(first_poll_at)
        self.resume_not_before = float(resume_not_before)
        self.deadline_kind = str(deadline_kind)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "out_task_id": self.out_task_id,
                "deadline": self.deadline,
                "aireiter_conn_id": self.aireiter_conn_id,
                "poll_interval": self.poll_interval,
                "max_consecutive_errors": self.max_consecutive_errors,
                "first_poll_at": self.first_poll_at,
                "resume_not_before": self.resume_not_before,
                "deadline_kind": self.deadline_kind,
            },
        )

    def _event(
        self, status: str, message: str, task: Any = None, reason: str | None = None, **extra: str
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
        from airflow_provider_aireiter.retry import AireiterRetryPolicy
        from airflow_provider_aireiter.waiting import StatusWatcher

        # The consecutive-failure budget is the hook's retry policy (tenacity): one place retries.
        policy = AireiterRetryPolicy(max_attempts=self.max_consecutive_errors, max_delay=self.poll_interval)
        hook = AireiterHook(self.aireiter_conn_id, retry_policy=policy)
        watcher = StatusWatcher(self.log, self.out_task_id, time.time())
        info = None
        tick = tick_for(self.poll_interval)
        first_wait = min(self.first_poll_at, self.deadline) - time.time()
        if first_wait > 0:
            await _sleep_on_tick(first_wait, tick)
        while True:
            try:
                info = await hook.afind_task(self.out_task_id, stop_at=self.deadline)
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
                )
                yield await self._settled(event)
                return
            watcher.observe(info)
            if info is not None and info.is_terminal:
                status = "success" if info.kind.value == "success" else "failed"
                event = self._event(status, f"AIReiter task {self.out_task_id!r} is {info.status}.", info)
                yield await self._settled(event)
                return
            remaining = self.deadline - time.time()
            if remaining <= 0:
                yield await self._settled(self._timeout_event(info))
                return
            # A little jitter keeps triggers deferred at the same moment from polling in lockstep.
            pause = self.poll_interval * random.uniform(0.9, 1.1)
            if pause < remaining:
                await _sleep_on_tick(pause, tick)
            else:  # the deadline comes first: no later than the fine grid allows
                await _sleep_on_tick(remaining)

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


#: poll wake-ups are rounded up to a grid of this step (seconds of the event loop's clock) ...
TICK_SECONDS = 0.1
#: ... or of this coarser step for poll intervals of at least ten of them
COARSE_TICK_SECONDS = 1.0


def tick_for(poll_interval: float) -> float:
    """The wake-up grid for a poll interval: a whole second from 10 s up, else a tenth of a second.

    The grid costs each poll up to one step of delay; at a tenth of the interval that is within the
    ±10 % jitter the polls get anyway. Every coarse grid point is also a fine one, so triggers with
    different intervals still share their wake-ups.
    """
    return COARSE_TICK_SECONDS if poll_interval >= 10 * COARSE_TICK_SECONDS else TICK_SECONDS


async def _sleep_on_tick(seconds: float, tick: float = TICK_SECONDS) -> None:
    """Sleep at least ``seconds``, waking on the next point of a grid shared by every trigger.

    Triggers waking on the same grid point are woken by one turn of the event loop and their queries go
    out together. A lone wake-up is the expensive kind: after an idle pause a poll costs several times
    the CPU of one sent in a batch (cold caches; ``benchmarks/triggerer_capacity.py`` shows it at
    N = 100), so the grid saves CPU at every size, at the cost of polling up to one step later.
    """
    loop = asyncio.get_running_loop()
    when = math.ceil((loop.time() + seconds) / tick) * tick
    woken: asyncio.Future[None] = loop.create_future()
    timer = loop.call_at(when, _wake, woken)
    try:
        await woken
    finally:
        timer.cancel()


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)
