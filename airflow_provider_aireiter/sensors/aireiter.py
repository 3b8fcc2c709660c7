"""``AireiterTaskSensor``: wait for an AIReiter task submitted elsewhere."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_aireiter.api_types import check_out_task_id
from airflow_provider_aireiter.compat import conf
from airflow_provider_aireiter.exceptions import counts_errors
from airflow_provider_aireiter.get_provider_info import DEFAULT_CONN_ID
from airflow_provider_aireiter.operators.aireiter import (
    DEFAULT_CALLBACK_POLL_INTERVAL,
    AireiterOutputLink,
    AireiterWaitMixin,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_aireiter.exceptions import AireiterTimeoutError
    from airflow_provider_aireiter.hooks.aireiter import AireiterHook
    from airflow_provider_aireiter.hooks.transport import TaskInfo
    from airflow_provider_aireiter.retry import OutageLog


class AireiterTaskSensor(AireiterWaitMixin, BaseSensorOperator):
    """Wait until an AIReiter task finishes; return the same result dict as the generation operators.

    Works in ``poke``, ``reschedule`` and deferrable mode, with Airflow's sensor semantics in all
    three: a remote failure fails the sensor without retrying (there is nothing a retry could
    change) and ``soft_fail=True`` skips it instead; running out of ``timeout`` raises
    ``AirflowSensorTimeout`` (never retried; skipped with ``soft_fail``). Deferred, it is a callback
    sensor: AIReiter's completion callback for the watched task wakes it at once, when that task was
    submitted by this provider's operators with the connection's callbacks on. Only then
    (``expect_callback=True``: the DAG author says so, as the sensor cannot know how a task was
    submitted) do deferred queries drop to ``callback_poll_interval``; otherwise it polls at
    ``poke_interval`` in every mode. ``execution_timeout`` also bounds the deferred wait. An unknown
    ``out_task_id`` is waited for (a task may be queried before the service shows it) until the timeout.

    A poke whose query fails (5xx, 429, a reset, a timeout, a garbled body) is not a failure: it is
    logged (the first, then at most one warning a minute) and the sensor pokes again at its interval,
    until its timeout; deferred, the trigger rides out failures the same way. ``max_outage`` gives up
    sooner (in poke and deferrable mode; in reschedule mode each poke starts afresh, so only the
    timeout bounds an outage there).

    :param out_task_id: the task to wait for (templated).
    :param aireiter_conn_id: the ``aireiter`` connection (templated).
    :param output_path: where to download the outputs (templated); see the operators.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param poke_interval: seconds between queries.
    :param expect_callback: the watched task was submitted by this provider's operators with the
        connection's callbacks on, so its completion callback wakes this sensor: deferred queries are
        only a fallback, every ``callback_poll_interval``. Default ``False``: poll at ``poke_interval``.
    :param callback_poll_interval: seconds between fallback queries in deferrable mode with ``expect_callback``.
    :param max_outage: seconds (or a timedelta) without an answer from the service after which the
        sensor fails (a retryable error); default ``None``: until the sensor's timeout.
    :param timeout: seconds (or a timedelta) before giving up (the sensor's usual timeout).
    """

    template_fields: Sequence[str] = ("out_task_id", "output_path", "aireiter_conn_id")
    operator_extra_links = (AireiterOutputLink(),)
    ui_color = "#f3e8ff"

    def __init__(
        self,
        *,
        out_task_id: str,
        aireiter_conn_id: str = DEFAULT_CONN_ID,
        output_path: Any = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        expect_callback: bool = False,
        callback_poll_interval: float = DEFAULT_CALLBACK_POLL_INTERVAL,
        max_outage: float | timedelta | None = None,
        poke_interval: float | timedelta = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.out_task_id = out_task_id
        self.init_wait(aireiter_conn_id, output_path, callback_poll_interval, max_outage, deferrable)
        self.expect_callback = expect_callback
        self._missing_logged = False
        self._outage: OutageLog | None = None

    def expects_callback(self, hook: AireiterHook) -> bool:
        return self.expect_callback and hook.settings.callbacks_enabled

    def poll_seconds(self) -> float:
        return float(self.poke_interval)

    def timeout_exception(self, error: AireiterTimeoutError) -> BaseException:
        from airflow_provider_aireiter.compat import AirflowSensorTimeout

        return AirflowSensorTimeout(error.message)

    @counts_errors
    def execute(self, context: Context) -> Any:
        check_out_task_id(self.out_task_id)
        # BaseSensorOperator's own loop in every mode, so soft_fail and timeouts behave as for any
        # sensor; deferred, the first poke that finds the task still running defers (see poke).
        return super().execute(context)

    def poke(self, context: Context) -> bool | PokeReturnValue:
        from airflow_provider_aireiter.exceptions import AireiterError
        from airflow_provider_aireiter.retry import OutageLog

        hook = self._hook()
        if self._outage is None:
            self._outage = OutageLog(self.log, f"the query of {self.out_task_id!r}", self.max_outage)
        try:
            info = hook.find_task(self.out_task_id, retry=False)  # Airflow's poke loop asks again
        except AireiterError as error:
            if not error.retryable:
                raise
            self._outage.failed(error, None if self.deferrable else self.poll_seconds())
            if self.max_outage is not None and self._outage.down_for >= self.max_outage:
                raise
            return self._not_done_yet(context, hook)  # deferred: the trigger rides the outage out
        self._outage.answered()
        if info is not None and info.is_terminal:
            return PokeReturnValue(is_done=True, xcom_value=self.finish(hook, info, context))
        self._log_missing(info)
        if info is not None:
            self.log.info("AIReiter task %s is %s.", self.out_task_id, info.status)
        return self._not_done_yet(context, hook)

    def _not_done_yet(self, context: Context, hook: AireiterHook) -> bool:
        """Deferred: wait in the triggerer from here on (does not return); else poke again later."""
        if self.deferrable:
            deadline, kind = self.wait_deadline(context, float(self.timeout))
            self.defer_wait(hook, self.out_task_id, deadline, kind)
        return False

    @counts_errors
    def execute_complete(self, context: Context, event: dict[str, Any] | None = None, **legacy: Any) -> dict[str, Any]:
        """Resume after the trigger fired (or a callback woke the task: then the service is asked).

        ``soft_fail`` is applied by ``BaseSensorOperator.resume_execution``, as for any sensor.
        ``legacy``: defer kwargs of tasks deferred by 0.3.0 or earlier.
        """
        hook = self._hook()
        with _remote_failure_is_final():
            info, _ = self.resume(hook, event, legacy)
        return self.finish(hook, info, context)

    def finish(
        self, hook: AireiterHook, info: TaskInfo, context: Context, estimated_credits: float | None = None
    ) -> dict[str, Any]:
        """The result dict; a remote failure fails the sensor at once (``AirflowFailException``)."""
        with _remote_failure_is_final():
            return super().finish(hook, info, context, estimated_credits)

    def _log_missing(self, info: TaskInfo | None) -> None:
        if info is None and not self._missing_logged:
            self._missing_logged = True
            self.log.info(
                "AIReiter does not know task %s yet; waiting for it to appear (up to the sensor's timeout).",
                self.out_task_id,
            )


@contextlib.contextmanager
def _remote_failure_is_final() -> Iterator[None]:
    """A remote failure seen by the sensor: an ``AirflowFailException`` (no retry can change it)."""
    from airflow_provider_aireiter.exceptions import AireiterTaskFailedError, AireiterWatchedTaskFailedError

    try:
        yield
    except AireiterWatchedTaskFailedError:
        raise
    except AireiterTaskFailedError as error:
        raise AireiterWatchedTaskFailedError(
            error.message, out_task_id=error.out_task_id, task_id=error.task_id, remote_error=error.remote_error
        ) from None
