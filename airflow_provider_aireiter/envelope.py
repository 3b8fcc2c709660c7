"""Reading the service's answers: one place that knows its envelope quirks.

Used by both the sync (``requests``) and the async (aiohttp) paths of the hook, so both raise the
same errors for the same answer.

Quirks handled (reference §0-§4):

* business errors arrive as HTTP 200 with ``statusCode`` (or ``code``) != 200 in the body;
* unknown routes answer HTTP 200 with an HTML page, which is an error, never success;
* ``ok`` is ``true`` even on errors, so it is ignored;
* ``data.task_id`` may be ``""``; ``out_task_id`` is the key;
* ``gpt_image_2_official`` answers ``{"code": 200, "data": [{...}]}``.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import time
from typing import Any

from airflow_provider_aireiter.exceptions import (
    AireiterAuthError,
    AireiterError,
    AireiterGarbledResponseError,
    AireiterHtmlPageError,
    AireiterInsufficientCreditsError,
    AireiterInvalidRequestError,
    AireiterRateLimitedError,
    AireiterResponseError,
    AireiterTaskNotFoundError,
    AireiterTransientError,
)
from airflow_provider_aireiter.task_types import SubmitResult, TaskInfo, TaskOutput, normalize_status

#: how much of a body may appear in a debug log line or an error message
BODY_PREVIEW_CHARS = 200

#: The service's answer to a query for an id it does not know: HTTP 200 with body code 400 and this
#: message (reference §2 and §4, seen by a client: lizy3yo/auto-edit-tool). It is the one definite
#: "this task does not exist", the answer that allows a paid submit to be sent again, so it is matched
#: exactly (case and surrounding whitespace aside); any other 400, "model not found" included, is an
#: invalid request, never "not found".
TASK_NOT_FOUND_MESSAGE = "api task not found"


def preview(body: bytes | str) -> str:
    """A short, single-line excerpt of a body for debug logs."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text if len(text) <= BODY_PREVIEW_CHARS else text[:BODY_PREVIEW_CHARS] + "..."


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds (``"120"``) or an HTTP-date."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_for_http_status(
    http_status: int, retry_after: str | None, *, what: str, out_task_id: str | None = None
) -> AireiterError | None:
    """The error for a non-200 HTTP status, or ``None`` when the body should be read instead."""
    if http_status == 200:
        return None
    if http_status == 401 or http_status == 403:
        return AireiterAuthError(
            f"AIReiter rejected the API key (HTTP {http_status}) on {what}. Check the password field "
            "of the AIReiter connection: it must hold a valid API key from the AIReiter console.",
            service_code=http_status,
            out_task_id=out_task_id,
        )
    if http_status == 429:
        wait = parse_retry_after(retry_after)
        return AireiterRateLimitedError(
            f"AIReiter is rate limiting requests (HTTP 429) on {what}"
            + (f"; it asked to wait {wait:g}s" if wait is not None else "")
            + ". Retry later or lower the number of concurrent tasks (pool or max_active_tis).",
            service_code=429,
            out_task_id=out_task_id,
            retry_after=wait,
        )
    if http_status >= 500:
        return AireiterTransientError(
            f"AIReiter answered HTTP {http_status} (server error) on {what}. This is usually "
            "temporary; the call was retried where safe. Retry the task later.",
            service_code=http_status,
            out_task_id=out_task_id,
        )
    if 200 < http_status < 300:
        return None
    return AireiterResponseError(
        f"AIReiter answered an unexpected HTTP {http_status} on {what}. Check the connection's "
        "base URL (it should be the service root, e.g. https://aireiter.com).",
        service_code=http_status,
        out_task_id=out_task_id,
    )


def decode_envelope(body: bytes, content_type: str | None, *, what: str) -> dict[str, Any]:
    """Parse a body as the service's JSON envelope; an HTML page or bad JSON is an error."""
    stripped = body.lstrip()
    looks_html = stripped[:1] == b"<" or (content_type or "").lower().startswith("text/html")
    if looks_html:
        raise AireiterHtmlPageError(
            f"AIReiter answered {what} with an HTML page instead of JSON. The service does this for "
            "unknown routes: check that the connection's base URL is the service root "
            "(e.g. https://aireiter.com, without /api/openapi)."
        )
    try:
        payload = json.loads(body)
    except ValueError:
        # A garbled body is worth another try, unlike an HTML page.
        raise AireiterGarbledResponseError(
            f"AIReiter answered {what} with a body that is not valid JSON ({len(body)} bytes). "
            "This is usually a transient proxy problem."
        ) from None
    if not isinstance(payload, dict):
        raise AireiterResponseError(
            f"AIReiter answered {what} with JSON that is not an object ({type(payload).__name__})."
        )
    return payload


def body_code(payload: dict[str, Any]) -> int | None:
    for key in ("statusCode", "code"):
        value = payload.get(key)
        if value is None:
            continue
        try:
            return int(value)
        except (TypeError, ValueError):
            return None
    return None


def raise_for_business_error(payload: dict[str, Any], *, what: str, out_task_id: str | None = None) -> None:
    """Raise the matching error when the envelope's ``statusCode`` says the call failed."""
    code = body_code(payload)
    if code is None or code == 200:
        return
    message = str(payload.get("message") or payload.get("msg") or "").strip()
    said = f": {message!r}" if message else ""
    # Where each classification comes from (reference §4): 401/403 a client's notes (imyexi SKILL.md);
    # 433 a client's notes and tests (imyexi); 429 "busy" a client's test mock (scaap-app); 400 for an
    # unknown task (auto-edit-tool) and for a malformed body (imyexi); 404/422 by analogy with 400
    # (inferred); >= 500 a server error (inferred); anything else a refusal.
    if code == 401 or code == 403:
        raise AireiterAuthError(
            f"AIReiter rejected the API key on {what} (code {code}{said}). Check the password field "
            "of the AIReiter connection.",
            service_code=code,
            out_task_id=out_task_id,
        )
    if code == 433:
        raise AireiterInsufficientCreditsError(
            f"AIReiter says the account has not enough credits for {what} (code 433{said}). "
            "Top up credits in the AIReiter console, then clear the task to run it again.",
            service_code=code,
            out_task_id=out_task_id,
        )
    if code == 429:
        raise AireiterRateLimitedError(
            f"AIReiter is busy (code 429{said}) on {what}. Retry later.",
            service_code=code,
            out_task_id=out_task_id,
        )
    if code == 400 and message.lower() == TASK_NOT_FOUND_MESSAGE:
        raise AireiterTaskNotFoundError(
            f"AIReiter does not know the task {out_task_id!r} ({message!r}). Check the out_task_id; "
            "a task just submitted may take a moment to appear.",
            service_code=code,
            out_task_id=out_task_id,
        )
    if code == 400 or code == 404 or code == 422:
        raise AireiterInvalidRequestError(
            f"AIReiter rejected {what} as invalid (code {code}{said}). Check the model name and its "
            "params against the model's documentation.",
            service_code=code,
            out_task_id=out_task_id,
        )
    if code >= 500:
        raise AireiterTransientError(
            f"AIReiter reported a server error on {what} (code {code}{said}). Retry later.",
            service_code=code,
            out_task_id=out_task_id,
        )
    raise AireiterInvalidRequestError(
        f"AIReiter refused {what} (code {code}{said}).",
        service_code=code,
        out_task_id=out_task_id,
    )


def _data_object(payload: dict[str, Any], *, what: str) -> dict[str, Any]:
    data = payload.get("data")
    if isinstance(data, list):  # gpt_image_2_official's envelope
        data = data[0] if data else None
    if not isinstance(data, dict):
        raise AireiterResponseError(f"AIReiter answered {what} without a data object.")
    return data


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _number_or_none(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse_submit(payload: dict[str, Any], *, out_task_id: str) -> SubmitResult:
    """Read a submit answer (either envelope) into a :class:`SubmitResult`."""
    what = f"the submit of {out_task_id!r}"
    raise_for_business_error(payload, what=what, out_task_id=out_task_id)
    data = _data_object(payload, what=what)
    return SubmitResult(
        out_task_id=_text_or_none(data.get("out_task_id")) or out_task_id,
        task_id=_text_or_none(data.get("task_id")),
        status=normalize_status(data.get("status") or "pending"),
        estimated_credits=_number_or_none(data.get("estimated_credits")),
        created_at=_text_or_none(data.get("created_at")),
    )


_URL_KEYS = ("url", "video_url", "image_url", "output_url", "file_url", "download_url")


def _outputs(value: Any) -> list[TaskOutput]:
    items = value if isinstance(value, list) else [value] if value else []
    found: list[TaskOutput] = []
    for item in items:
        url: Any = item
        if isinstance(item, dict):
            url = next((item[k] for k in _URL_KEYS if isinstance(item.get(k), str) and item[k]), None)
        if isinstance(url, str) and url.strip():
            found.append(TaskOutput(url=url.strip()))
    return found


def _error(data: dict[str, Any]) -> tuple[str | None, str | None]:
    err = data.get("error")
    if isinstance(err, dict):
        message = _text_or_none(err.get("message") or err.get("msg") or err.get("detail"))
        code = _text_or_none(err.get("code"))
        if message is None and err:
            message = preview(json.dumps(err))
        return message, code
    message = _text_or_none(err)
    if message is None and normalize_status(data.get("status")) in ("failed", "error"):
        message = _text_or_none(data.get("message") or data.get("fail_reason"))
    return message, None


def parse_task_info(data: dict[str, Any], *, out_task_id: str | None = None) -> TaskInfo:
    """Build a :class:`TaskInfo` from a query ``data`` object (also the callback body's likely shape)."""
    error, error_code = _error(data)
    raw_input = data.get("input")
    model = raw_input.get("model") if isinstance(raw_input, dict) else None
    metadata = data.get("metadata")
    return TaskInfo(
        out_task_id=_text_or_none(data.get("out_task_id")) or out_task_id,
        task_id=_text_or_none(data.get("task_id")),
        status=normalize_status(data.get("status")),
        model=_text_or_none(model) or _text_or_none(data.get("model")),
        created_at=_text_or_none(data.get("created_at")),
        completed_at=_text_or_none(data.get("completed_at")),
        credits_used=_number_or_none(data.get("credits_used")),
        outputs=_outputs(data.get("output")),
        error=error,
        error_code=error_code,
        metadata=metadata if isinstance(metadata, dict) else None,
        request=raw_input if isinstance(raw_input, dict) else None,
    )


def parse_query(payload: dict[str, Any], *, out_task_id: str | None, task_id: str | None) -> TaskInfo:
    """Read a query answer; raises :class:`AireiterTaskNotFoundError` for an unknown id."""
    key = out_task_id or task_id
    what = f"the query of {key!r}"
    raise_for_business_error(payload, what=what, out_task_id=out_task_id)
    info = parse_task_info(_data_object(payload, what=what), out_task_id=out_task_id)
    if not info.status:
        raise AireiterResponseError(f"AIReiter answered {what} without a task status.")
    return info
