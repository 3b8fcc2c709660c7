"""What lies behind the hook: HTTP on both paths, and reading the service's answers.

* **Transport failures** (``requests`` on the worker, aiohttp in the triggerer) are read as one
  :class:`TransportFailure` (what happened, and whether the request may have reached the service) and
  become the same provider error on both paths.
* **The answers' types**: task statuses, :class:`SubmitResult` and :class:`TaskInfo`, as the hook
  returns them. Only plain JSON crosses an Airflow boundary (XCom, trigger kwargs and events): use
  ``model_dump(mode="json")`` and :meth:`TaskInfo.model_validate` on the other side.
* **Answers**: :data:`ERROR_TABLE` is the one table from (HTTP status, body code, documented message)
  to error class; :func:`read_answer` applies it, :func:`parse_submit` and :func:`parse_query` read
  the data. Quirks handled (reference §0-§4): business errors inside HTTP 200; HTML pages for unknown
  routes; a meaningless ``ok``; an empty ``task_id``; ``gpt_image_2_official``'s list envelope.
* **The triggers' HTTP**: one aiohttp session per event loop (:class:`LoopTransport`), at most
  :data:`MAX_IN_FLIGHT` requests at once, proxies from the environment as ``requests`` reads them,
  certificates checked as on the worker, answers read up to a limit. aiohttp is imported by the first
  async request only: a DAG parse never pays for it.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import functools
import json
import os
import ssl
import time
import urllib.request
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Container, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

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

if TYPE_CHECKING:  # aiohttp is imported by the triggers' requests only: a DAG parse never pays for it
    import aiohttp


# ------------------------------------------------------------- the answers' types
#: Task statuses by meaning. Only ``pending``, ``processing``, ``completed`` and ``failed`` (and
#: ``submitted`` on the ``gpt_image_2_official`` channel) are seen in real traffic; the others are
#: handled defensively. A status in none of them is treated as still running, with a warning.
RUNNING_STATUSES = frozenset({"pending", "submitted", "queued", "processing", "running", "in_progress"})
SUCCESS_STATUSES = frozenset({"completed", "succeeded", "success", "finished"})
FAILURE_STATUSES = frozenset({"failed", "error", "cancelled", "canceled", "expired", "timeout"})
#: numeric codes seen in one client: 0/1 queued/running, 2 success, 3/4 failure
_NUMERIC_STATUS = {"0": "pending", "1": "processing", "2": "completed", "3": "failed", "4": "failed"}


class StatusKind(str, Enum):
    """What a status means for a waiter."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    UNKNOWN = "unknown"


def normalize_status(raw: Any) -> str:
    """Lower-case a status as the service sent it (numeric codes become their names)."""
    text = str(raw).strip().lower() if raw is not None else ""
    return _NUMERIC_STATUS.get(text, text)


def classify_status(status: str) -> StatusKind:
    """Say whether a (normalized) status means running, success or failure.

    Unknown statuses return :attr:`StatusKind.UNKNOWN`; callers keep waiting on them (bounded by
    their timeout) and warn once.
    """
    if status in SUCCESS_STATUSES:
        return StatusKind.SUCCESS
    if status in FAILURE_STATUSES:
        return StatusKind.FAILURE
    return StatusKind.RUNNING if status in RUNNING_STATUSES else StatusKind.UNKNOWN


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


class SubmitResult(_Model):
    """What the service answered to a submit.

    :param out_task_id: the caller's id, the key for every later query.
    :param task_id: the service's id (``order_...``); ``None`` when the service sent ``""``.
    :param reattached: ``True`` when no new task was created because the service already knew the id.
    """

    out_task_id: str
    task_id: str | None = None
    status: str = "pending"
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

    Built by :func:`parse_task_info`, which tolerates the
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


# ------------------------------------------------------------------ transport failures
TIMEOUT_CONNECTING = "timed out connecting"
TIMEOUT_ANSWERING = "timed out waiting for the answer"
COULD_NOT_CONNECT = "could not connect"
RESET = "connection was reset or closed"
TLS_CERTIFICATE = "TLS certificate check failed"
TLS_FAILED = "TLS failed"
TOO_LARGE = "the answer is larger than allowed"


@dataclass(frozen=True)
class TransportFailure:
    """What went wrong on the wire.

    :param detail: one of the phrases above (or an exception's class name).
    :param sent: whether the request may have reached the service (``False``: it certainly did not).
    """

    detail: str
    sent: bool = True


def network_error(what: str, failure: TransportFailure, *, out_task_id: str | None) -> AireiterTransientError:
    """The provider's error for a transport failure during ``what`` (e.g. "the query of 'x'")."""
    # A submit that may have been sent is never sent again before the service is asked (see submit()).
    error = AireiterTransientError(
        f"Network problem on {what}: {failure.detail}. Check that the AIReiter base URL is reachable from "
        "this machine.",
        out_task_id=out_task_id,
        maybe_processed=failure.sent,
    )
    error.transport_detail = failure.detail
    return error


def _tls_detail(exc: BaseException) -> str:
    return TLS_CERTIFICATE if "CERTIFICATE_VERIFY_FAILED" in str(exc) else TLS_FAILED


def from_requests(exc: Exception) -> TransportFailure:
    """Read a ``requests`` exception."""
    import requests

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return TransportFailure(TIMEOUT_CONNECTING, sent=False)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return TransportFailure(TIMEOUT_ANSWERING)
    if isinstance(exc, requests.exceptions.SSLError):
        return TransportFailure(_tls_detail(exc), sent=False)
    if isinstance(exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        return TransportFailure(RESET)  # the answer was cut or garbled in transit
    if isinstance(exc, requests.exceptions.ConnectionError):
        if _is_connect_failure(exc):
            return TransportFailure(COULD_NOT_CONNECT, sent=False)
        return TransportFailure(RESET)
    return TransportFailure(type(exc).__name__)


def from_aiohttp(exc: BaseException, *, connecting: bool) -> TransportFailure:
    """Read an aiohttp exception (or a timeout); ``connecting``: whether it happened before sending."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return TransportFailure(_tls_detail(exc), sent=False)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransportFailure(COULD_NOT_CONNECT, sent=False)
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return TransportFailure(TIMEOUT_CONNECTING, sent=False) if connecting else TransportFailure(TIMEOUT_ANSWERING)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        return TransportFailure(RESET)
    if isinstance(exc, aiohttp.ClientResponseError):  # a malformed answer (bad status line, headers)
        return TransportFailure(RESET)
    return TransportFailure(type(exc).__name__)


def _is_connect_failure(exc: Exception) -> bool:
    """Whether a ``requests`` connection error happened before the request was sent."""
    import urllib3.exceptions

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, urllib3.exceptions.NewConnectionError | ConnectionRefusedError):
            return True
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
            continue
        args = getattr(current, "args", ())
        nested = next((a for a in args if isinstance(a, BaseException)), None)
        current = nested or current.__cause__ or current.__context__
    return False


# ------------------------------------------------------------------ reading answers
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


API_KEY_ADVICE = (
    "Check the password field of the AIReiter connection: it must hold a valid API key from the AIReiter console."
)
CREDITS_ADVICE = "Top up credits in the AIReiter console, then clear the task to run it again."
BUSY_ADVICE = "Retry later or lower the number of concurrent tasks (pool or max_active_tis)."
LATER_ADVICE = "This is usually temporary; the call is retried where safe."
PARAMS_ADVICE = "Check the model name and its params against the model's documentation."
BASE_URL_ADVICE = "Check the connection's base URL (it should be the service root, e.g. https://aireiter.com)."


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


@dataclass(frozen=True)
class ErrorRule:
    """One row of :data:`ERROR_TABLE`: which answers it matches, the error class, and what the message says.

    :param where: ``"http"`` for the HTTP status, ``"body"`` for the envelope's ``statusCode``/``code``.
    :param codes: the codes it matches (``range(500, 1000)``: any server error).
    :param message: when set, the envelope's message must be exactly this (case and spaces aside).
    :param source: where the classification comes from (reference §4), for the next reader.
    """

    where: str
    codes: Container[int]
    error: type[AireiterError]
    says: str
    advice: str
    source: str
    message: str | None = None


#: Every answer that is an error, first match wins: (HTTP status or body code, documented message) ->
#: the error class, and so whether it is retried, fails the task at once, or lets a submit be re-sent.
#: A body code no row names is a refusal (:class:`AireiterInvalidRequestError`); an HTTP status no row
#: names, a wrong address (:class:`AireiterResponseError`), unless its body is the service's envelope.
ERROR_TABLE: tuple[ErrorRule, ...] = (
    ErrorRule("http", (401, 403), AireiterAuthError, "rejected the API key on", API_KEY_ADVICE, "HTTP semantics"),
    ErrorRule("http", (429,), AireiterRateLimitedError, "is rate limiting requests on", BUSY_ADVICE, "HTTP"),
    ErrorRule("http", range(500, 1000), AireiterTransientError, "had a server error on", LATER_ADVICE, "HTTP"),
    ErrorRule("body", (401, 403), AireiterAuthError, "rejected the API key on", API_KEY_ADVICE, "imyexi SKILL.md"),
    ErrorRule("body", (433,), AireiterInsufficientCreditsError, "has not enough credits for", CREDITS_ADVICE, "imyexi"),
    ErrorRule("body", (429,), AireiterRateLimitedError, "is busy on", BUSY_ADVICE, "scaap-app test mock"),
    ErrorRule(
        "body",
        (400,),
        AireiterTaskNotFoundError,
        "does not know the task of",
        "Check the out_task_id; a task just submitted may take a moment to appear.",
        "auto-edit-tool: the one definite 'no such task', the answer that allows a paid submit again",
        message=TASK_NOT_FOUND_MESSAGE,
    ),
    ErrorRule("body", (400, 404, 422), AireiterInvalidRequestError, "rejected as invalid", PARAMS_ADVICE, "imyexi"),
    ErrorRule("body", range(500, 1000), AireiterTransientError, "had a server error on", LATER_ADVICE, "inferred"),
)


def error_for(
    where: str,
    code: int,
    *,
    what: str,
    message: str = "",
    retry_after: str | None = None,
    out_task_id: str | None = None,
) -> AireiterError | None:
    """The error for HTTP status or body code ``code`` (``where``), by :data:`ERROR_TABLE`; ``None`` for success."""
    if code == 200 or (where == "http" and 200 < code < 300):
        return None
    said = f": {message!r}" if message else ""
    answer = f"HTTP {code}" if where == "http" else f"code {code}"
    for rule in ERROR_TABLE:
        if rule.where != where or code not in rule.codes:
            continue
        if rule.message is not None and message.strip().lower() != rule.message:
            continue
        text = f"AIReiter {rule.says} {what} ({answer}{said}). {rule.advice}"
        if rule.error is AireiterRateLimitedError:
            wait = parse_retry_after(retry_after)
            if wait is not None:
                text += f" It asked to wait {wait:g}s."
            return AireiterRateLimitedError(text, service_code=code, out_task_id=out_task_id, retry_after=wait)
        return rule.error(text, service_code=code, out_task_id=out_task_id)
    if where == "body":
        return AireiterInvalidRequestError(
            f"AIReiter refused {what} (code {code}{said}).", service_code=code, out_task_id=out_task_id
        )
    return AireiterResponseError(
        f"AIReiter answered an unexpected HTTP {code} on {what}. {BASE_URL_ADVICE}",
        service_code=code,
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


def read_answer(
    status: int, headers: Mapping[str, str], content: bytes, *, what: str, out_task_id: str | None
) -> dict[str, Any]:
    """The envelope of an answer whose ``statusCode`` says success, or the error :data:`ERROR_TABLE` names.

    A non-200 HTTP status whose body is the service's envelope is read by its body code (it says more);
    ``requests``' and aiohttp's header mappings both ignore case.
    """
    http_error = error_for("http", status, what=what, retry_after=headers.get("retry-after"), out_task_id=out_task_id)
    if http_error is not None and isinstance(http_error, AireiterAuthError | AireiterTransientError):
        raise http_error
    try:
        payload = decode_envelope(content, headers.get("content-type"), what=what)
    except (AireiterResponseError, AireiterGarbledResponseError):
        if http_error is not None:
            raise http_error from None
        raise
    code = body_code(payload)
    if code is None:
        if http_error is not None:  # JSON, but not the service's envelope (a proxy, another API)
            raise http_error
        return payload
    message = str(payload.get("message") or payload.get("msg") or "").strip()
    error = error_for("body", code, what=what, message=message, out_task_id=out_task_id)
    if error is not None:
        raise error
    return payload


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
    except (TypeError, ValueError, OverflowError):
        return None


#: the largest credits value believed; anything larger is unknown
MAX_CREDITS = 1e12


def credits_value(value: Any) -> float | None:
    """A credits value as a finite number from 0 to :data:`MAX_CREDITS`, else ``None`` (unknown).

    For an answer of the service and for what the media view reads from a result, which can be
    edited to hold anything: a string, a bool, a dict, a negative, NaN or a number too large for a
    float are all unknown.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not 0 <= value <= MAX_CREDITS:  # compared exactly: also a 400-digit int, without converting it
        return None
    return abs(float(value))  # abs: -0.0 is 0


def parse_submit(payload: dict[str, Any], *, out_task_id: str) -> SubmitResult:
    """Read a submit answer (either envelope) into a :class:`SubmitResult`."""
    what = f"the submit of {out_task_id!r}"
    data = _data_object(payload, what=what)
    return SubmitResult(
        out_task_id=_text_or_none(data.get("out_task_id")) or out_task_id,
        task_id=_text_or_none(data.get("task_id")),
        status=normalize_status(data.get("status") or "pending"),
        estimated_credits=credits_value(_number_or_none(data.get("estimated_credits"))),
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
        credits_used=credits_value(_number_or_none(data.get("credits_used"))),
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
    info = parse_task_info(_data_object(payload, what=what), out_task_id=out_task_id)
    if not info.status:
        raise AireiterResponseError(f"AIReiter answered {what} without a task status.")
    return info


# ------------------------------------------------------------------ the triggers' HTTP (aiohttp)


#: requests in flight at once per event loop (and connections kept to the service)
MAX_IN_FLIGHT = 32
#: the largest answer read from the API (its answers are a few KiB)
MAX_ANSWER_BYTES = 8 * 1024 * 1024
#: how long the hooks of one event loop reuse a connection lookup (a thousand triggers starting
#: together make one trip to the triggerer's supervisor, not a thousand)
CONNECTION_REUSE_SECONDS = 60.0


class TransportError(Exception):
    """A request that got no usable answer; :attr:`failure` says what happened."""

    def __init__(self, failure: TransportFailure) -> None:
        super().__init__(failure.detail)
        self.failure = failure


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


def proxy_for(url: str, proxies: Mapping[str, str]) -> str | None:
    """The proxy ``proxies`` (the environment's ``HTTPS_PROXY``... as ``urllib.request.getproxies()``
    reads them) name for ``url``, unless ``NO_PROXY`` exempts its host; or ``None``.

    Not aiohttp's ``trust_env``: it also reads ``.netrc``, in a thread of the default executor, on every request.
    """
    parts = urlsplit(url)
    proxy = proxies.get(parts.scheme.lower())
    if not proxy or urllib.request.proxy_bypass(parts.netloc.rpartition("@")[2]):
        return None
    return proxy


def default_ssl_context() -> ssl.SSLContext:
    """Certificate checks as on the worker: ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``, else certifi."""
    return _ssl_context(os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None)


@functools.lru_cache(maxsize=8)
def _ssl_context(bundle: str | None) -> ssl.SSLContext:
    """One context per bundle path and process: building one reads the whole bundle (about 20 ms of CPU)."""
    if bundle and os.path.isdir(bundle):
        return ssl.create_default_context(capath=bundle)
    if not bundle:
        import certifi

        bundle = certifi.where()
    return ssl.create_default_context(cafile=bundle)


class LoopTransport:
    """What the triggers of one event loop share: the aiohttp session, the slots and the connection lookups.

    At most ``max_in_flight`` requests at once, and as many kept-alive connections; requests beyond
    wait for a slot before aiohttp sees them (holding no connection, their timeout not running).
    Answers are read up to :data:`MAX_ANSWER_BYTES` (after decompression); a larger one is refused.
    """

    def __init__(self, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.max_in_flight = max_in_flight
        self.slots = asyncio.Semaphore(max_in_flight)
        self._session: aiohttp.ClientSession | None = None
        #: the environment's proxies, read with the session (like its other settings)
        self.proxies: Mapping[str, str] = {}
        self._settings: dict[str, tuple[float, asyncio.Future[Any]]] = {}
        self.closer: AsyncIterator[None] | None = None
        self.closer_started: asyncio.Future[None] | None = None

    def session(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_in_flight, ssl=default_ssl_context())
            self._session = aiohttp.ClientSession(connector=connector)
            self.proxies = urllib.request.getproxies()
        return self._session

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Answer:
        """POST ``body``; the answer, or :class:`TransportError`."""
        import aiohttp

        async with self.slots:
            # sock_connect tells a timeout while connecting apart (nothing was sent then)
            limits = aiohttp.ClientTimeout(total=timeout, sock_connect=timeout)
            try:
                session = self.session()
                proxy = proxy_for(url, self.proxies)
                request = session.post(url, data=body, headers=headers, timeout=limits, proxy=proxy)
                async with request as response:
                    data = await _read_limited(response, MAX_ANSWER_BYTES)
                    return Answer(response.status, response.headers, data)
            except TransportError:
                raise
            except (aiohttp.ClientError, TimeoutError) as exc:
                connecting = isinstance(exc, aiohttp.ConnectionTimeoutError)
                raise TransportError(from_aiohttp(exc, connecting=connecting)) from None

    async def connection_settings(self, conn_id: str, fetch: Callable[[], Awaitable[Any]]) -> Any:
        """``conn_id``'s settings: one ``fetch`` for every caller until the lookup is old; failures are not kept."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        entry = self._settings.get(conn_id)
        if entry is None or now - entry[0] >= CONNECTION_REUSE_SECONDS:
            lookup = asyncio.ensure_future(fetch())
            lookup.add_done_callback(_retrieve)  # a failure nobody waits for any more is not logged as lost
            entry = self._settings[conn_id] = (now, lookup)
        try:
            # shield: one caller cancelled (its trigger killed) does not cancel the others' lookup
            return await asyncio.shield(entry[1])
        except Exception:
            if self._settings.get(conn_id) is entry:
                del self._settings[conn_id]
            raise

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    declared = response.content_length
    if declared is not None and declared > limit:
        raise TransportError(TransportFailure(TOO_LARGE))
    if declared is not None and not response.headers.get("Content-Encoding"):
        return await response.read()  # the usual answer: a declared size, within the limit
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise TransportError(TransportFailure(TOO_LARGE))
        chunks.append(chunk)
    return b"".join(chunks)


_TRANSPORTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopTransport] = weakref.WeakKeyDictionary()


def loop_transport() -> LoopTransport:
    """The running event loop's transport (created on first use, closed when the loop shuts down)."""
    loop = asyncio.get_running_loop()
    transport = _TRANSPORTS.get(loop)
    if transport is None:
        transport = _TRANSPORTS[loop] = LoopTransport()
        # An async generator the loop finalizes in shutdown_asyncgens() (asyncio.run does): it closes
        # the session while the loop still runs, so no "Unclosed client session" is left behind.
        transport.closer = _close_at_shutdown(transport)
        transport.closer_started = asyncio.ensure_future(transport.closer.__anext__())
    return transport


async def _close_at_shutdown(transport: LoopTransport) -> AsyncIterator[None]:
    try:
        yield  # never resumed: closed by the loop's shutdown_asyncgens()
    finally:
        await transport.close()


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
