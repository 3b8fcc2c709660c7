"""What a waiter makes of a task's state: progress log lines, the failure and the timeout errors.

Shared by the hook's sync wait, the trigger and the operators' finish step.
"""

from __future__ import annotations

import time
from typing import Any

from airflow_provider_aireiter.exceptions import (
    AireiterTaskFailedError,
    AireiterTaskNotFoundError,
    AireiterTimeoutError,
)
from airflow_provider_aireiter.task_types import StatusKind, TaskInfo


def raise_if_failed(info: TaskInfo) -> None:
    """Raise :class:`AireiterTaskFailedError` when ``info`` is a failed task."""
    if info.kind is StatusKind.FAILURE:
        reason = info.error or "no error text given"
        raise AireiterTaskFailedError(
            f"AIReiter task {info.out_task_id!r} ended with status {info.status!r}: {reason}. "
            "Check the prompt and params (content review rejects some prompts); clearing the task "
            "submits a new attempt.",
            out_task_id=info.out_task_id,
            task_id=info.task_id,
            remote_error=info.error,
        )


def timeout_error(
    out_task_id: str, waited: float | None, info: TaskInfo | None, *, last_error: str | None = None
) -> AireiterTimeoutError:
    """The error for a wait that ran out of time; it names the id to resume with.

    :param last_error: when the service was not answering as the deadline passed, what the last query met.
    """
    last = info.status if info is not None else "not yet visible"
    after = f" after {waited:.0f}s" if waited is not None else ""
    failing = f"; the service was not answering at the deadline: {last_error}" if last_error else ""
    return AireiterTimeoutError(
        f"Gave up waiting for AIReiter task {out_task_id!r}{after} (last status: {last}{failing}). "
        f"The remote task may still finish: resume with AireiterTaskSensor(out_task_id={out_task_id!r}) "
        "or clear this task (it reattaches instead of paying again).",
        out_task_id=out_task_id,
    )


class StatusWatcher:
    """Logs a waiter's progress: one line per status change, one warning per unknown status."""

    def __init__(self, log: Any, out_task_id: str, started: float) -> None:
        self.log = log
        self.out_task_id = out_task_id
        self.started = started
        self.last: str | None = None
        self.warned: set[str] = set()
        self.missing_since: float | None = None

    def observe(self, info: TaskInfo | None, *, not_found_grace: float | None = None) -> None:
        """Log what changed; after ``not_found_grace`` seconds of "api task not found", raise
        :class:`AireiterTaskNotFoundError` (a task this wait submitted should not stay unknown)."""
        now = time.time()
        if info is not None:
            self.missing_since = None
        elif self.missing_since is None:
            self.missing_since = now
        elif not_found_grace is not None and now - self.missing_since >= not_found_grace:
            raise AireiterTaskNotFoundError(
                f"AIReiter has answered 'api task not found' for task {self.out_task_id!r} for "
                f"{now - self.missing_since:.0f}s although it was submitted: check that the connection points at "
                "the service the task was submitted to.",
                out_task_id=self.out_task_id,
            )
        status = info.status if info is not None else "<not found>"
        if status == self.last:
            return
        self.last = status
        elapsed = now - self.started
        if info is None:
            self.log.info("AIReiter task %s is not visible yet (%.0fs); still waiting.", self.out_task_id, elapsed)
            return
        self.log.info("AIReiter task %s is %s (%.0fs elapsed)", self.out_task_id, status, elapsed)
        if info.kind is StatusKind.UNKNOWN and status not in self.warned:
            self.warned.add(status)
            self.log.warning(
                "AIReiter reported an unknown status %r for %s; treating it as still running.",
                status,
                self.out_task_id,
            )
