"""When a deferred task may be resumed: not before its deferral has settled.

Airflow's scheduler has a race on fast resumes (apache/airflow #66374, #67287, #71580, #72716). When a
task defers, its worker exits and the executor reports "success" for that try. If the task instance
is resumed (its trigger fires, or a callback wakes it) and queued again *before* the scheduler has
processed that stale "success", the scheduler takes it for a task killed behind its back and marks
it FAILED. Airflow 3.3 ignores the stale event only while the resumed task instance is still
``scheduled``; once it is ``queued`` or ``running`` it is failed.

Nothing in the metadata database says when the scheduler has processed that event, so the provider
holds every resume of its own until a fixed time after the deferral: ``resume_not_before``, set by
the deferring task and carried in the trigger's kwargs. Both ways a task is resumed obey it:

* the trigger (:mod:`.triggers.aireiter`) sleeps until then before yielding a finished task's event;
* the callback receiver (:mod:`.webhook.wake`) holds a wake-up until then, and keeps a callback
  that arrived before the deferral until the task has deferred and settled.

A resume therefore comes at least :func:`settle_seconds` after the deferral, and never later than
that when the remote task had already finished. The hold is time, not a proof: a scheduler whose
loop lags further behind needs a larger ``[aireiter] resume_settle_seconds``. Measured on the real
deployment of the tests (LocalExecutor, 2 cores), an 8 s hold let 0 of 90 fast resumes fail at a
load average of 9, and 4 of 90 at a load average of 20 to 25, where the stale event came up to 17.5 s
after the deferral.
"""

from __future__ import annotations

import time

#: seconds after a deferral before the provider resumes the task (``[aireiter] resume_settle_seconds``)
DEFAULT_SETTLE_SECONDS = 15.0


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
