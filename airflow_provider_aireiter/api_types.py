"""The types of the AIReiter API: what a request may hold and what an answer means.

* ``out_task_id``: the caller-chosen id that makes a retried task reattach instead of paying twice;
* the parameter rules of the models the provider knows, checked before any credit is spent;
* task statuses, submit results and task information, as the hook returns them.

Only plain JSON crosses an Airflow boundary (XCom, trigger kwargs and events): use
``model_dump(mode="json")`` and :meth:`TaskInfo.model_validate` on the other side.
"""

from __future__ import annotations

import base64
import hashlib
import re
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from airflow_provider_aireiter.exceptions import AireiterInvalidRequestError


# -------------------------------------------------------- statuses and answers
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
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


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

    Built by :func:`airflow_provider_aireiter.hooks.transport.parse_task_info`, which tolerates the
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


# ----------------------------------------- parameter rules of the known models
MAX_DATA_URI_BYTES = 10 * 1024 * 1024


_DATA_URI = re.compile(r"^data:image/(jpeg|png|webp);base64,", re.IGNORECASE)


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value, re.IGNORECASE):
        raise ValueError(f"{_short(value)!r} is not a public http(s) URL")
    return value


def _image_ref(value: str) -> str:
    match = _DATA_URI.match(value)
    if match:
        payload = value[match.end() :]
        size = len(payload) * 3 // 4
        if size > MAX_DATA_URI_BYTES:
            raise ValueError(f"a data URI of about {size / 1e6:.1f} MB is over the 10 MB limit")
        try:
            base64.b64decode(payload[:4096].ljust(4 * ((min(len(payload), 4096) + 3) // 4), "="), validate=True)
        except ValueError:
            raise ValueError("the data URI's payload is not valid base64") from None
        return value
    if value.lower().startswith("data:"):
        raise ValueError(
            f"{_short(value)!r} is not allowed: data URIs must start with data:image/jpeg, png or webp;base64,"
        )
    return _http_url(value)


def _short(value: str) -> str:
    return value if len(value) <= 60 else value[:57] + "..."


HttpUrl = Annotated[StrictStr, AfterValidator(_http_url)]


ImageRef = Annotated[StrictStr, AfterValidator(_image_ref)]


Prompt = Annotated[StrictStr, AfterValidator(lambda v: v if v.strip() else _fail("must not be empty"))]


def _fail(message: str) -> Any:
    raise ValueError(message)


class ModelParams(BaseModel):
    """Base of the per-model parameter rules: unknown keys pass through unchanged."""

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)


class SeedreamV5LiteParams(ModelParams):
    """``seedream_v5_lite`` (image): up to 9 reference images, 8 aspect ratios, 2K or 3K."""

    prompt: Prompt
    image_url: list[ImageRef] | None = None
    aspect_ratio: Literal["1:1", "3:2", "2:3", "4:3", "3:4", "16:9", "9:16", "21:9"] | None = None
    resolution: Literal["2K", "3K"] | None = None
    web_search: StrictBool | None = None


class Seedance15ProParams(ModelParams):
    """``seedance_1_5_pro`` (video): 16:9 or 9:16, 720p or 1080p, a whole number of seconds."""

    prompt: Prompt
    video_length: (
        Annotated[StrictInt, AfterValidator(lambda v: v if v >= 1 else _fail("must be at least 1"))] | None
    ) = None
    aspect_ratio: Literal["16:9", "9:16"] | None = None
    resolution: Literal["720p", "1080p"] | None = None


class Veo31Params(ModelParams):
    """``veo3_1`` and its channels (video, image-to-video): first and last frame as public URLs."""

    prompt: Prompt
    image_url: HttpUrl | None = None
    end_image_url: HttpUrl | None = None
    aspect_ratio: Literal["16:9", "9:16"] | None = None


#: channel names of Veo 3.1 -> model id
VEO31_CHANNELS = {"default": "veo3_1", "base": "veo3_1_base", "plus": "veo3_1_plus"}


#: model id -> (rules, kind)
KNOWN_MODELS: dict[str, tuple[type[ModelParams], str]] = {
    "seedream_v5_lite": (SeedreamV5LiteParams, "image"),
    "seedance_1_5_pro": (Seedance15ProParams, "video"),
    **{model: (Veo31Params, "video") for model in VEO31_CHANNELS.values()},
    "veo3_1_fast": (Veo31Params, "video"),
}


_VIDEO_HINTS = ("veo", "sora", "seedance", "kling", "minimax", "grok_imagine", "video", "hailuo", "wan")


_IMAGE_COUNT_LIMITS = {"seedream_v5_lite": 9}


def model_kind(model: str) -> str:
    """``"image"`` or ``"video"``: known models from the table, others guessed from the name."""
    if model in KNOWN_MODELS:
        return KNOWN_MODELS[model][1]
    return "video" if any(hint in model.lower() for hint in _VIDEO_HINTS) else "image"


def _allowed(error: dict[str, Any]) -> str:
    expected = (error.get("ctx") or {}).get("expected")
    return f"; allowed: {expected.replace(' or ', ', ')}" if expected else ""


def _describe(error: dict[str, Any], field_prefix: str) -> str:
    loc = [str(p) for p in error.get("loc", ()) if not str(p).startswith(("function-", "constrained-"))]
    field = ".".join([field_prefix, *loc])
    value = error.get("input")
    kind = error.get("type", "")
    if kind == "missing":
        return f"{field} is required"
    if kind == "literal_error":
        return f"{field}={value!r} is not allowed{_allowed(error)}"
    if kind in ("string_type", "int_type", "bool_type", "list_type"):
        wanted = {"string_type": "a string", "int_type": "an integer", "bool_type": "true or false"}.get(kind, "a list")
        return f"{field}={_short(repr(value))} has the wrong type ({type(value).__name__}); it must be {wanted}"
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    return f"{field}={_short(repr(value))}: {message}"


def validate_params(
    model: str, params: Any, *, field_prefix: str = "model_params", unknown: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Check ``params`` for ``model`` and return what to send.

    Known models are checked against their rules; other models only need a JSON object.

    :param unknown: param keys whose values are not known yet (Jinja, an XCom): problems with them
        are left for the check after rendering.
    :raises AireiterInvalidRequestError: naming the field, the bad value and the allowed values.
    """
    if not isinstance(model, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", model or ""):
        raise AireiterInvalidRequestError(
            f"model={model!r} is not a valid AIReiter model id (letters, digits, '_', '-', '.')."
        )
    if not isinstance(params, dict):
        raise AireiterInvalidRequestError(
            f"{field_prefix} must be a dict of the model's params, got {type(params).__name__}: {_short(repr(params))}"
        )
    rules = KNOWN_MODELS.get(model, (None, ""))[0]
    if rules is None:
        return dict(params)
    limit = _IMAGE_COUNT_LIMITS.get(model)
    images = params.get("image_url")
    if limit is not None and isinstance(images, list) and len(images) > limit and "image_url" not in unknown:
        raise AireiterInvalidRequestError(
            f"{field_prefix}.image_url has {len(images)} images; {model} accepts at most {limit}."
        )
    try:
        rules.model_validate(params)
    except ValidationError as exc:
        found: list[dict[str, Any]] = [dict(e) for e in exc.errors(include_url=False)]
        known = [e for e in found if not (e.get("loc") and str(next(iter(e["loc"]))) in unknown)]
        if known:
            problems = "; ".join(_describe(e, field_prefix) for e in known)
            raise AireiterInvalidRequestError(f"Invalid params for {model}: {problems}.") from None
    return dict(params)


# ----------------------------------------------------------------- out_task_id
MAX_LENGTH = 64


_ALLOWED = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")


def check_out_task_id(value: object) -> str:
    """Return ``value`` if it is a valid id: 1 to 64 characters of ``[A-Za-z0-9_-]``."""
    if not isinstance(value, str) or not _ALLOWED.match(value):
        raise AireiterInvalidRequestError(
            f"out_task_id={value!r} is not allowed: use 1 to {MAX_LENGTH} characters of letters, digits, '_' and '-'."
        )
    return value


def default_out_task_id(dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> str:
    """A readable id, stable across retries of one task instance and unique across runs and map indexes.

    ``af-<dag and task, shortened>-<hash of dag_id, task_id, run_id, map_index>``, at most 59 characters,
    so an attempt suffix (``-r12``) still fits in 64.
    """
    digest = hashlib.sha256(f"{dag_id}\x1f{task_id}\x1f{run_id}\x1f{map_index}".encode()).hexdigest()[:24]
    slug = _SLUG_UNSAFE.sub("-", f"{dag_id}-{task_id}").strip("-_")[:30].strip("-_") or "task"
    return f"af-{slug}-{digest}"


def attempt_id(base: str, attempt: int) -> str:
    """The id of attempt ``attempt`` (1 = ``base``); later attempts follow a remote failure."""
    if attempt <= 1:
        return base
    suffix = f"-r{attempt}"
    return base[: MAX_LENGTH - len(suffix)] + suffix
