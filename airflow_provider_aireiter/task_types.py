"""Pydantic models at the hook boundary: task statuses, submit results and task information.

Only plain JSON crosses an Airflow boundary (XCom, trigger kwargs and events): use
``model_dump(mode="json")`` and :meth:`TaskInfo.model_validate` on the other side.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TaskStatus(str, Enum):
    """Task statuses the service is known (or suspected) to report.

    Only ``pending``, ``processing``, ``completed`` and ``failed`` (and ``submitted`` on the
    ``gpt_image_2_official`` channel) are seen in real traffic; the others are handled defensively.
    A status outside this enum is treated as still running (see :func:`classify_status`).
    """

    PENDING = "pending"
    SUBMITTED = "submitted"
    QUEUED = "queued"
    PROCESSING = "processing"
    RUNNING = "running"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    SUCCEEDED = "succeeded"
    SUCCESS = "success"
    FINISHED = "finished"
    FAILED = "failed"
    ERROR = "error"
    CANCELLED = "cancelled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    TIMEOUT = "timeout"


RUNNING_STATUSES = frozenset(
    {
        TaskStatus.PENDING,
        TaskStatus.SUBMITTED,
        TaskStatus.QUEUED,
        TaskStatus.PROCESSING,
        TaskStatus.RUNNING,
        TaskStatus.IN_PROGRESS,
    }
)
SUCCESS_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.SUCCEEDED, TaskStatus.SUCCESS, TaskStatus.FINISHED})
FAILURE_STATUSES = frozenset(
    {
        TaskStatus.FAILED,
        TaskStatus.ERROR,
        TaskStatus.CANCELLED,
        TaskStatus.CANCELED,
        TaskStatus.EXPIRED,
        TaskStatus.TIMEOUT,
    }
)

# Numeric codes seen in one client: 0/1 queued/running, 2 success, 3/4 failure.
_NUMERIC_STATUS = {
    "0": TaskStatus.PENDING,
    "1": TaskStatus.PROCESSING,
    "2": TaskStatus.COMPLETED,
    "3": TaskStatus.FAILED,
    "4": TaskStatus.FAILED,
}


class StatusKind(str, Enum):
    """What a status means for a waiter."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    UNKNOWN = "unknown"


def normalize_status(raw: Any) -> str:
    """Lower-case a status as the service sent it (numeric codes become their names)."""
    text = str(raw).strip().lower() if raw is not None else ""
    if text in _NUMERIC_STATUS:
        return _NUMERIC_STATUS[text].value
    return text


def classify_status(status: str) -> StatusKind:
    """Say whether a (normalized) status means running, success or failure.

    Unknown statuses return :attr:`StatusKind.UNKNOWN`; callers keep waiting on them (bounded by
    their timeout) and warn once.
    """
    try:
        member = TaskStatus(status)
    except ValueError:
        return StatusKind.UNKNOWN
    if member in SUCCESS_STATUSES:
        return StatusKind.SUCCESS
    if member in FAILURE_STATUSES:
        return StatusKind.FAILURE
    return StatusKind.RUNNING


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SubmitResult(_Model):
    """What the service answered to a submit.

    :param out_task_id: the caller's id, the key for every later query.
    :param task_id: the service's id (``order_...``); ``None`` when the service sent ``""``.
    :param reattached: ``True`` when no new task was created because the service already knew the id.
    """

    out_task_id: str
    task_id: str | None = None
    status: str = TaskStatus.PENDING.value
    estimated_credits: float | None = None
    created_at: str | None = None
    reattached: bool = False

    @classmethod
    def reattached_to(cls, existing: TaskInfo, out_task_id: str) -> SubmitResult:
        """The result of a submit that found the task already there (nothing new was created)."""
        return cls(
            out_task_id=out_task_id,
            task_id=existing.task_id,
            status=existing.status,
            created_at=existing.created_at,
            reattached=True,
        )


class TaskOutput(_Model):
    """One generated file, as the service lists it."""

    url: str


class TaskInfo(_Model):
    """A task as the query endpoint reports it.

    Built by :func:`airflow_provider_aireiter.envelope.parse_task_info`, which tolerates the
    service's shape variations (error as a string or an object, output URLs under other keys).
    """

    out_task_id: str | None = None
    task_id: str | None = None
    status: str
    model: str | None = None
    created_at: str | None = None
    completed_at: str | None = None
    credits_used: float | None = None
    outputs: list[TaskOutput] = Field(default_factory=list)
    error: str | None = None
    error_code: str | None = None
    metadata: dict[str, Any] | None = None
    #: the request the service echoes (``input``: ``model`` and ``params``), to tell whether a task found
    #: by its id was made from the request a retry would send. Never dumped: it stays on the worker
    #: (a reference image can be a large data URI).
    request: dict[str, Any] | None = Field(default=None, exclude=True)

    @property
    def kind(self) -> StatusKind:
        """Running, success, failure or unknown."""
        return classify_status(self.status)

    @property
    def is_terminal(self) -> bool:
        """Whether the task will not change any more."""
        return self.kind in (StatusKind.SUCCESS, StatusKind.FAILURE)

    @property
    def output_urls(self) -> list[str]:
        """The URLs of the generated files, in the service's order."""
        return [o.url for o in self.outputs]
