"""The error taxonomy of the provider.

Every error raised by the hook, operators, sensor and trigger derives from :class:`AireiterError`,
so a DAG author can catch one class. Each message says what happened and what to do next, and never
contains the API key or a callback secret.

An error keeps its class, and so whether a retry can help, across the trigger boundary: the
triggerer puts :meth:`AireiterError.to_event` (the class name and the error's fields, plain JSON)
into its event, and the worker rebuilds the very same class with :func:`error_from_event`. Nothing
is decided by parsing message text.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_aireiter.compat import AirflowException, AirflowFailException, metric

if TYPE_CHECKING:
    from airflow_provider_aireiter.hooks.transport import TaskInfo


class ErrorReason(str, Enum):
    """Why a call to AIReiter failed; carried in trigger events to rebuild the right exception."""

    AUTH = "auth"
    INSUFFICIENT_CREDITS = "insufficient_credits"
    INVALID_REQUEST = "invalid_request"
    TASK_NOT_FOUND = "task_not_found"
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"
    BAD_RESPONSE = "bad_response"
    TASK_FAILED = "task_failed"
    TIMEOUT = "timeout"
    OUTCOME_UNKNOWN = "outcome_unknown"


class AireiterError(AirflowException):
    """Base class of every AIReiter provider error.

    :param message: what happened and what to do next.
    :param service_code: the service's ``statusCode`` (body) or HTTP status, when there was one.
    :param out_task_id: the caller's task id the error concerns, when known.
    """

    reason: ErrorReason = ErrorReason.BAD_RESPONSE
    #: whether retrying the same call later may succeed
    retryable: bool = False

    def __init__(self, message: str, *, service_code: int | None = None, out_task_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.service_code = service_code
        self.out_task_id = out_task_id

    def __str__(self) -> str:
        return self.message

    def to_event(self) -> dict[str, Any]:
        """This error as plain JSON for a trigger event; :func:`error_from_event` rebuilds it exactly."""
        fields = {k: v for k, v in vars(self).items() if k != "message" and _is_plain(v)}
        return {"class": type(self).__name__, "message": self.message, "fields": fields}


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


class AireiterPermanentError(AireiterError, AirflowFailException):
    """An error that no retry can fix: the Airflow task fails at once, without using its retries.

    Airflow's own ``AirflowFailException`` is a base class, so a task's ``retries`` are not spent on a
    wrong API key, missing credits, params the service rejects, or a wrong base URL.
    """


class AireiterAuthError(AireiterPermanentError):
    """The service rejected the API key (401)."""

    reason = ErrorReason.AUTH


class AireiterInsufficientCreditsError(AireiterPermanentError):
    """The account has not enough credits for this task (service code 433)."""

    reason = ErrorReason.INSUFFICIENT_CREDITS


class AireiterInvalidRequestError(AireiterPermanentError, ValueError):
    """The request is malformed or a parameter is not allowed (service code 400, or local validation)."""

    reason = ErrorReason.INVALID_REQUEST


class AireiterTaskNotFoundError(AireiterError):
    """The service does not know this task id (``api task not found``)."""

    reason = ErrorReason.TASK_NOT_FOUND


class AireiterTransientError(AireiterError):
    """A network failure or server error (5xx) that may go away if retried.

    :param maybe_processed: whether the service may have acted on the request although no answer
        arrived (a reset after sending, a 5xx, a timeout, a garbled body). ``False`` when the request
        certainly did not reach the service (could not connect) or was refused (429).
    """

    reason = ErrorReason.TRANSIENT
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        service_code: int | None = None,
        out_task_id: str | None = None,
        maybe_processed: bool = True,
    ) -> None:
        super().__init__(message, service_code=service_code, out_task_id=out_task_id)
        self.maybe_processed = maybe_processed
        #: for a network failure: what went wrong on the wire (a phrase of hooks/transport.py)
        self.transport_detail: str | None = None


class AireiterRateLimitedError(AireiterTransientError):
    """The service is busy or rate limiting (HTTP 429 or body code 429).

    :param retry_after: seconds the service asked us to wait, when it said so.
    """

    reason = ErrorReason.RATE_LIMITED

    def __init__(
        self,
        message: str,
        *,
        service_code: int | None = None,
        out_task_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, service_code=service_code, out_task_id=out_task_id, maybe_processed=False)
        self.retry_after = retry_after


class AireiterResponseError(AireiterPermanentError):
    """The service answered with something that is not its JSON envelope (an HTML page: a wrong base URL)."""

    reason = ErrorReason.BAD_RESPONSE


class AireiterHtmlPageError(AireiterResponseError):
    """The service answered with an HTML page where its JSON API should be (an unknown route)."""


class AireiterGarbledResponseError(AireiterTransientError):
    """The answer was cut short or is not valid JSON: the request may have been processed; worth another try."""

    reason = ErrorReason.BAD_RESPONSE


class AireiterTaskFailedError(AireiterError):
    """The remote generation task ended in a failure status.

    :param remote_error: the service's error text for the task.
    :param task_id: the service's own id (``order_...``), when it gave one.
    :param status: the task's failure status (``failed``, ``cancelled``...), when it was read.
    """

    reason = ErrorReason.TASK_FAILED

    def __init__(
        self,
        message: str,
        *,
        out_task_id: str | None = None,
        task_id: str | None = None,
        remote_error: str | None = None,
        service_code: int | None = None,
        status: str | None = None,
    ) -> None:
        super().__init__(message, service_code=service_code, out_task_id=out_task_id)
        self.task_id = task_id
        self.remote_error = remote_error
        self.status = status


class AireiterWatchedTaskFailedError(AireiterTaskFailedError, AirflowFailException):
    """The task a sensor watches failed remotely: the sensor fails without retrying (a retry sees the same)."""


class AireiterSubmitOutcomeUnknownError(AireiterError):
    """A submit's answer was lost and the service could not be asked whether it landed.

    The submit is not sent again (that could pay twice). The task's next try looks its ``out_task_id``
    up first and reattaches if the submit did land.
    """

    reason = ErrorReason.OUTCOME_UNKNOWN


class AireiterTimeoutError(AireiterError):
    """Waiting for a task took longer than allowed; the remote task may still be running."""

    reason = ErrorReason.TIMEOUT


F = TypeVar("F", bound=Callable[..., Any])


def counts_errors(method: F) -> F:
    """Count the provider error a task's ``execute``/``execute_complete`` ends with: ``aireiter.error.<reason>``.

    The one place errors are counted: a try ends in exactly one such method, on the worker, whether it
    waited there or in the triggerer (whose error events are raised again in ``execute_complete``).
    """

    @functools.wraps(method)
    def counted(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except AireiterError as error:
            metric("error", reason=error.reason.value)
            raise

    return counted  # type: ignore[return-value]


def _error_classes() -> dict[str, type[AireiterError]]:
    """Every error class of the provider by name (this module's subclasses of :class:`AireiterError`)."""
    found: dict[str, type[AireiterError]] = {}
    todo: list[type[AireiterError]] = [AireiterError]
    while todo:
        cls = todo.pop()
        if cls.__module__ == __name__:
            found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found


_BY_REASON: dict[ErrorReason, type[AireiterError]] = {
    cls.reason: cls
    for cls in (
        AireiterAuthError,
        AireiterInsufficientCreditsError,
        AireiterInvalidRequestError,
        AireiterTaskNotFoundError,
        AireiterTransientError,
        AireiterRateLimitedError,
        AireiterResponseError,
        AireiterTaskFailedError,
        AireiterTimeoutError,
        AireiterSubmitOutcomeUnknownError,
    )
}


def error_from_event(
    payload: Any, *, reason: str | None = None, message: str = "", out_task_id: str | None = None
) -> AireiterError:
    """Rebuild the error an event carries (:meth:`AireiterError.to_event`): the same class, the same fields.

    ``payload`` is ``None`` for an event written by an earlier version of the provider (a trigger
    that was deferred before an upgrade): then the class is chosen by ``reason`` alone, as it was.
    """
    if isinstance(payload, dict):
        cls = _error_classes().get(str(payload.get("class")))
        if cls is not None:
            error = cls.__new__(cls)
            Exception.__init__(error, str(payload.get("message", message)))
            fields = payload.get("fields")
            error.__dict__.update(fields if isinstance(fields, dict) else {})
            error.message = str(payload.get("message", message))
            return error
    try:
        by_reason = _BY_REASON[ErrorReason(reason)]
    except ValueError:
        by_reason = AireiterError
    return by_reason(message, out_task_id=out_task_id)


# -------------------------------------------------- errors a wait ends with


def raise_if_failed(info: TaskInfo) -> None:
    """Raise :class:`AireiterTaskFailedError` when ``info`` is a failed task."""
    if info.kind.value == "failure":
        reason = info.error or "no error text given"
        raise AireiterTaskFailedError(
            f"AIReiter task {info.out_task_id!r} ended with status {info.status!r}: {reason}. "
            "Check the prompt and params (content review rejects some prompts); clearing the task "
            "submits a new attempt.",
            out_task_id=info.out_task_id,
            task_id=info.task_id,
            remote_error=info.error,
            status=info.status,
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
