"""What a request to AIReiter may hold, checked before any credit is spent.

* the parameter rules of the models the provider knows (one table, :data:`KNOWN_MODELS`);
* ``out_task_id``: the caller-chosen id that makes a retried task reattach instead of paying twice.

Plain Python only: a DAG file using the operators runs these checks at every parse. What an answer
means (statuses, :class:`~airflow_provider_aireiter.hooks.transport.TaskInfo`) is read in
:mod:`airflow_provider_aireiter.hooks.transport`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from airflow_provider_aireiter.exceptions import AireiterInvalidRequestError

# ----------------------------------------- parameter rules of the known models
MAX_DATA_URI_BYTES = 10 * 1024 * 1024
_DATA_URI = re.compile(r"^data:image/(jpeg|png|webp);base64,", re.IGNORECASE)


def _short(value: str) -> str:
    return value if len(value) <= 60 else value[:57] + "..."


def _http_url(value: str) -> None:
    if not re.match(r"^https?://[^\s/]+", value, re.IGNORECASE):
        raise ValueError(f"{_short(value)!r} is not a public http(s) URL")


def _image_ref(value: str) -> None:
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
        return
    if value.lower().startswith("data:"):
        raise ValueError(
            f"{_short(value)!r} is not allowed: data URIs must start with data:image/jpeg, png or webp;base64,"
        )
    _http_url(value)


def _not_empty(value: str) -> None:
    if not value.strip():
        raise ValueError("must not be empty")


def _positive(value: int) -> None:
    if value < 1:
        raise ValueError("must be at least 1")


#: what each type is called in an error message
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list"}


class ParamRule:
    """What one documented param of a model may hold.

    :param type: ``str``, ``int`` (not a bool), ``bool`` or ``list`` (of strings, each checked by ``check``).
    :param choices: the allowed values, when the reference lists them.
    :param check: raises ``ValueError`` with what is wrong (for a list: each item).
    :param max_items: the most items a list may hold.
    """

    # A plain class: a dataclass would cost every DAG parse a millisecond of generated code.
    __slots__ = ("check", "choices", "max_items", "required", "type")

    def __init__(
        self,
        type: type = str,
        *,
        required: bool = False,
        choices: tuple[str, ...] = (),
        check: Callable[[Any], None] | None = None,
        max_items: int | None = None,
    ) -> None:
        self.type, self.required, self.choices, self.check, self.max_items = type, required, choices, check, max_items

    def problems(self, field: str, value: Any) -> list[str]:
        """What is wrong with ``value`` for ``field`` (empty when it is allowed)."""
        if value is None:
            return [f"{field} is required"] if self.required else []
        if not isinstance(value, self.type) or (self.type is int and isinstance(value, bool)):
            wanted = _TYPE_NAMES[self.type]
            return [f"{field}={_short(repr(value))} has the wrong type ({type(value).__name__}); it must be {wanted}"]
        if self.choices and value not in self.choices:
            return [f"{field}={value!r} is not allowed; allowed: {', '.join(repr(c) for c in self.choices)}"]
        if isinstance(value, list):
            if self.max_items is not None and len(value) > self.max_items:
                return [f"{field} has {len(value)} items; at most {self.max_items} are accepted"]
            items = [ParamRule(str, check=self.check).problems(f"{field}.{i}", v) for i, v in enumerate(value)]
            return [problem for found in items for problem in found]
        try:
            if self.check is not None:
                self.check(value)
        except ValueError as error:
            return [f"{field}={_short(repr(value))}: {error}"]
        return []


PROMPT = ParamRule(str, required=True, check=_not_empty)
VIDEO_ASPECT_RATIOS = ParamRule(choices=("16:9", "9:16"))
VEO31_PARAMS = {
    "prompt": PROMPT,
    "image_url": ParamRule(check=_http_url),
    "end_image_url": ParamRule(check=_http_url),
    "aspect_ratio": VIDEO_ASPECT_RATIOS,
}
#: channel names of Veo 3.1 -> model id
VEO31_CHANNELS = {"default": "veo3_1", "base": "veo3_1_base", "plus": "veo3_1_plus"}


class ModelRules(NamedTuple):
    """A model the provider knows: image or video, and the rules of its documented params (by wire name).
    Params not listed are sent as given (the service may add some)."""

    kind: str
    params: Mapping[str, ParamRule]


#: model id -> its rules, as far as the reference documents them
KNOWN_MODELS: dict[str, ModelRules] = {
    "seedream_v5_lite": ModelRules(
        "image",
        {
            "prompt": PROMPT,
            "image_url": ParamRule(list, check=_image_ref, max_items=9),
            "aspect_ratio": ParamRule(choices=("1:1", "3:2", "2:3", "4:3", "3:4", "16:9", "9:16", "21:9")),
            "resolution": ParamRule(choices=("2K", "3K")),
            "web_search": ParamRule(bool),
        },
    ),
    "seedance_1_5_pro": ModelRules(
        "video",
        {
            "prompt": PROMPT,
            "video_length": ParamRule(int, check=_positive),
            "aspect_ratio": VIDEO_ASPECT_RATIOS,
            "resolution": ParamRule(choices=("720p", "1080p")),
        },
    ),
    **{model: ModelRules("video", VEO31_PARAMS) for model in (*VEO31_CHANNELS.values(), "veo3_1_fast")},
}
_VIDEO_HINTS = ("veo", "sora", "seedance", "kling", "minimax", "grok_imagine", "video", "hailuo", "wan")


def model_kind(model: str) -> str:
    """``"image"`` or ``"video"``: known models from the table, others guessed from the name."""
    if model in KNOWN_MODELS:
        return KNOWN_MODELS[model].kind
    return "video" if any(hint in model.lower() for hint in _VIDEO_HINTS) else "image"


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
    rules = KNOWN_MODELS.get(model)
    if rules is not None:
        problems = [
            problem
            for key, rule in rules.params.items()
            if key not in unknown
            for problem in rule.problems(f"{field_prefix}.{key}", params.get(key))
        ]
        if problems:
            raise AireiterInvalidRequestError(f"Invalid params for {model}: {'; '.join(problems)}.")
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
