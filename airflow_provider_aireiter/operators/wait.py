"""The one wait path of the operators and the sensor: check, defer, resume, finish.

Both wait the same way: on a worker they poll at their poll interval; deferred, they wait in the
triggerer on :class:`~airflow_provider_aireiter.triggers.aireiter.AireiterTaskTrigger` (at the callback
fallback interval when a completion callback is expected), and resume in ``execute_complete``.

A failed query never ends a wait by itself (see :mod:`airflow_provider_aireiter.retry`): on a worker
the hook asks again, backing off up to the poll interval; a check that fails just before a deferral
defers all the same, and a callback wake that cannot reach the service waits again; the trigger
rides out failures the same way. Only an error no retry can fix, ``max_outage`` when set, or the
deadline ends a wait.

The wait ends at an absolute deadline: the wait's own ``timeout``, or the task's ``execution_timeout``
counted from the task's start, whichever comes first (Airflow does not apply ``execution_timeout``
to a deferred task itself). Which of the two ended it decides the error:

* ``execution_timeout``: Airflow's ``AirflowTaskTimeout``, retried by Airflow like any other;
* the wait's ``timeout``: :meth:`timeout_exception` (the operators: ``AireiterTimeoutError``, whose
  retry reattaches; the sensor: ``AirflowSensorTimeout``, never retried, as in poke mode).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_aireiter.exceptions import AireiterTimeoutError
    from airflow_provider_aireiter.hooks.aireiter import AireiterHook
    from airflow_provider_aireiter.task_types import TaskInfo

#: which bound ends a wait (carried in the defer kwargs)
WAIT_TIMEOUT = "timeout"
EXECUTION_TIMEOUT = "execution_timeout"


class AireiterWaitMixin:
    """Waiting for one AIReiter task, for an operator (``BaseOperator``) or a sensor.

    The class using it sets ``aireiter_conn_id``, ``output_path``, ``callback_poll_interval`` and
    ``max_outage``, and may override :meth:`timeout_exception`, :meth:`expects_callback` and
    ``not_found_grace``.
    """

    aireiter_conn_id: str
    output_path: Any
    callback_poll_interval: float
    #: seconds without an answer from the service after which a wait fails; ``None``: until the deadline
    max_outage: float | None
    #: seconds of "api task not found" after which a wait fails (``None``: wait for the task to appear)
    not_found_grace: float | None = None
    log: Any

    # ------------------------------------------------------------------ parts

    def _hook(self) -> AireiterHook:
        from airflow_provider_aireiter.hooks.aireiter import AireiterHook

        return AireiterHook(self.aireiter_conn_id)

    def expects_callback(self, hook: AireiterHook) -> bool:
        """Whether a completion callback can wake this task (then deferred waits poll only as a fallback)."""
        return hook.settings.callbacks_enabled

    def deferred_poll_interval(self, hook: AireiterHook, poll_interval: float) -> float:
        """The trigger's interval: ``poll_interval``, stretched to the fallback when a callback is expected."""
        if self.expects_callback(hook):
            return max(poll_interval, float(self.callback_poll_interval))
        return poll_interval

    def wait_deadline(self, context: Context, wait_seconds: float) -> tuple[float, str]:
        """The absolute end of the wait and which bound it is (``timeout`` or ``execution_timeout``)."""
        now = time.time()
        deadline, kind = now + wait_seconds, WAIT_TIMEOUT
        execution_timeout = getattr(self, "execution_timeout", None)
        if execution_timeout is not None:
            start = getattr(context.get("ti"), "start_date", None)
            started = start.timestamp() if start is not None else now
            bound = started + execution_timeout.total_seconds()
            if bound < deadline:
                deadline, kind = bound, EXECUTION_TIMEOUT
        return deadline, kind

    def timeout_exception(self, error: AireiterTimeoutError) -> BaseException:
        """What a wait that reached its own ``timeout`` raises (operators: the error itself)."""
        return error

    # ------------------------------------------------------------------ the path

    def defer_wait(self, out_task_id: str, deadline: float, deadline_kind: str, interval: float) -> NoReturn:
        """Wait in the triggerer; ``execute_complete`` resumes with the trigger's (or a callback's) event."""
        from airflow_provider_aireiter.resume_gate import resume_not_before
        from airflow_provider_aireiter.triggers.aireiter import AireiterTaskTrigger

        now = time.time()
        self.defer(  # type: ignore[attr-defined]
            trigger=AireiterTaskTrigger(
                out_task_id=out_task_id,
                deadline=deadline,
                aireiter_conn_id=self.aireiter_conn_id,
                poll_interval=interval,
                first_poll_at=now + interval,  # this task has just asked
                resume_not_before=resume_not_before(now),
                deadline_kind=deadline_kind,
                max_outage=self.max_outage,
                not_found_grace=self.not_found_grace,
            ),
            method_name="execute_complete",
            kwargs={
                "out_task_id": out_task_id,
                "deadline": deadline,
                "deadline_kind": deadline_kind,
                "deferred_at": now,
            },
            timeout=None,  # the trigger's own absolute deadline bounds the wait (see the module docstring)
        )
        raise AssertionError("defer() returned")  # pragma: no cover - defer always raises

    def check_then_defer(
        self, context: Context, hook: AireiterHook, out_task_id: str, wait_seconds: float, poll_interval: float
    ) -> TaskInfo | None:
        """Ask once; a finished task is returned, a running one is deferred (this does not return).

        A check that gets no answer defers all the same: the trigger asks again.
        """
        from airflow_provider_aireiter.exceptions import AireiterError

        try:
            info = hook.find_task(out_task_id, retry=False)
        except AireiterError as error:
            if not error.retryable:
                raise
            self.log.warning(
                "Could not ask AIReiter about %s before deferring (%s); the trigger will.", out_task_id, error
            )
            info = None
        if info is not None and info.is_terminal:
            return info
        deadline, kind = self.wait_deadline(context, wait_seconds)
        self.defer_wait(out_task_id, deadline, kind, self.deferred_poll_interval(hook, poll_interval))

    def resume(
        self,
        hook: AireiterHook,
        event: Any,
        out_task_id: str,
        deadline: float | None,
        deadline_kind: str | None,
        deferred_at: float | None,
    ) -> TaskInfo:
        """The finished task after a resume; a callback for a task still running defers again."""
        from airflow_provider_aireiter.compat import AirflowTaskTimeout
        from airflow_provider_aireiter.completion import log_wake, resolve_event
        from airflow_provider_aireiter.exceptions import AireiterError, AireiterTimeoutError

        log_wake(self.log, event, deferred_at)
        if isinstance(event, dict) and event.get("deadline_kind"):
            deadline_kind = str(event["deadline_kind"])  # dag.test() passes the event without the defer kwargs
        try:
            info = resolve_event(hook, event, out_task_id)
        except AireiterTimeoutError as error:
            if deadline_kind == EXECUTION_TIMEOUT:
                raise AirflowTaskTimeout(
                    f"execution_timeout reached while waiting in the triggerer. {error.message}"
                ) from error
            raise self.timeout_exception(error) from None
        except AireiterError as error:
            if not (error.retryable and _is_callback(event)):
                raise
            # A callback woke the task, but the service does not answer: the trigger rides it out.
            self.log.warning("Woken by a callback, but AIReiter did not answer (%s); waiting again.", error)
            info = None
        if info is None:
            self.log.info("Woken by a callback, but AIReiter task %s is still running; waiting again.", out_task_id)
            interval = self.deferred_poll_interval(hook, self.poll_seconds())
            self.defer_wait(out_task_id, deadline or time.time(), deadline_kind or WAIT_TIMEOUT, interval)
        return info

    def poll_seconds(self) -> float:
        """Seconds between queries while waiting on a worker."""
        raise NotImplementedError

    def finish(self, hook: AireiterHook, info: TaskInfo, context: Context) -> dict[str, Any]:
        """Check the final task, download its outputs and return the result dict (see :mod:`.completion`)."""
        from airflow_provider_aireiter.completion import finish

        outlets = getattr(self, "outlets", None)
        return finish(hook, info, output_path=self.output_path, context=context, outlets=outlets, log=self.log)


def _is_callback(event: Any) -> bool:
    from airflow_provider_aireiter.completion import CALLBACK_EVENT_STATUS

    return isinstance(event, dict) and event.get("status") == CALLBACK_EVENT_STATUS
