"""``AireiterTaskSensor``: wait for an AIReiter task submitted elsewhere."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.configuration import conf

from airflow_provider_aireiter.connection import DEFAULT_CONN_ID
from airflow_provider_aireiter.operators.links import AireiterOutputLink
from airflow_provider_aireiter.task_ids import check_out_task_id

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_aireiter.hooks.aireiter import AireiterHook
    from airflow_provider_aireiter.models import TaskInfo


class AireiterTaskSensor(BaseSensorOperator):
    """Wait until an AIReiter task finishes; return the same result dict as the generation operators.

    Works in ``poke``, ``reschedule`` and deferrable mode. Deferred, it is a callback sensor: when the
    connection has a callback base URL, AIReiter's completion callback wakes it at once and queries drop
    to ``callback_poll_interval``. An unknown ``out_task_id`` is waited for (a task may be queried before
    the service shows it) until the timeout. A remote failure fails the sensor (``soft_fail`` skips it).

    :param out_task_id: the task to wait for (templated).
    :param aireiter_conn_id: the ``aireiter`` connection.
    :param output_path: where to download the outputs (templated); see the operators.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param poke_interval: seconds between queries.
    :param callback_poll_interval: seconds between fallback queries in deferrable mode with callbacks on.
    :param timeout: seconds (or a timedelta) before giving up (the sensor's usual timeout).
    """

    template_fields: Sequence[str] = ("out_task_id", "output_path")
    operator_extra_links = (AireiterOutputLink(),)
    ui_color = "#f3e8ff"

    def __init__(
        self,
        *,
        out_task_id: str,
        aireiter_conn_id: str = DEFAULT_CONN_ID,
        output_path: Any = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        callback_poll_interval: float = 60.0,
        poke_interval: float | timedelta = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.out_task_id = out_task_id
        self.aireiter_conn_id = aireiter_conn_id
        self.output_path = output_path
        self.deferrable = deferrable
        self.callback_poll_interval = callback_poll_interval
        self._missing_logged = False

    def _hook(self) -> AireiterHook:
        from airflow_provider_aireiter.hooks.aireiter import AireiterHook

        return AireiterHook(self.aireiter_conn_id)

    def execute(self, context: Context) -> Any:
        check_out_task_id(self.out_task_id)
        if not self.deferrable:
            return super().execute(context)
        hook = self._hook()
        info = hook.find_task(self.out_task_id)
        if info is not None and info.is_terminal:
            return self._finish(hook, info, context)
        self._log_missing(info)
        self._defer_wait(hook, time.time() + float(self.timeout))

    def _defer_wait(self, hook: AireiterHook, deadline: float) -> NoReturn:
        from airflow_provider_aireiter.resume_gate import resume_not_before
        from airflow_provider_aireiter.triggers.aireiter import AireiterTaskTrigger

        interval = float(self.poke_interval)
        if hook.settings.callbacks_enabled:
            interval = max(interval, float(self.callback_poll_interval))
        now = time.time()
        self.defer(
            trigger=AireiterTaskTrigger(
                out_task_id=self.out_task_id,
                deadline=deadline,
                aireiter_conn_id=self.aireiter_conn_id,
                poll_interval=interval,
                first_poll_at=now + interval,  # this task has just asked
                resume_not_before=resume_not_before(now),
            ),
            method_name="execute_complete",
            kwargs={"deadline": deadline, "deferred_at": now},
            timeout=None,
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        hook = self._hook()
        info = hook.find_task(self.out_task_id)
        if info is None or not info.is_terminal:
            self._log_missing(info)
            if info is not None:
                self.log.info("AIReiter task %s is %s.", self.out_task_id, info.status)
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._finish(hook, info, context))

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any] | None = None,
        deadline: float | None = None,
        deferred_at: float | None = None,
    ) -> dict[str, Any]:
        """Resume after the trigger fired (or a callback woke the task: then the service is asked)."""
        from airflow_provider_aireiter.completion import log_wake, resolve_event
        from airflow_provider_aireiter.exceptions import AireiterTaskFailedError

        hook = self._hook()
        log_wake(self.log, event, deferred_at)
        try:
            info = resolve_event(hook, event, self.out_task_id)
        except AireiterTaskFailedError:
            self._skip_if_soft_fail()
            raise
        if info is None:
            self.log.info(
                "Woken by a callback, but AIReiter task %s is still running; waiting again.", self.out_task_id
            )
            self._defer_wait(hook, deadline or time.time())
        return self._finish(hook, info, context)

    def _finish(self, hook: AireiterHook, info: TaskInfo, context: Context) -> dict[str, Any]:
        from airflow_provider_aireiter.completion import finish
        from airflow_provider_aireiter.models import StatusKind

        if info.kind is StatusKind.FAILURE:
            self._skip_if_soft_fail(info)
        return finish(hook, info, output_path=self.output_path, context=context, outlets=self.outlets, log=self.log)

    def _skip_if_soft_fail(self, info: TaskInfo | None = None) -> None:
        if self.soft_fail:
            from airflow.sdk.exceptions import AirflowSkipException

            detail = f": {info.error}" if info is not None and info.error else ""
            raise AirflowSkipException(f"AIReiter task {self.out_task_id!r} failed{detail}; skipped (soft_fail).")

    def _log_missing(self, info: TaskInfo | None) -> None:
        if info is None and not self._missing_logged:
            self._missing_logged = True
            self.log.info(
                "AIReiter does not know task %s yet; waiting for it to appear (up to the sensor's timeout).",
                self.out_task_id,
            )
