"""Parameter rules of the models the provider knows, checked before any credit is spent.

One pydantic model per model family, as far as the reference documents them (enums, types, counts).
Unknown keys are allowed and sent as given (the service may add parameters; pass them as
``extra_params``). Errors name the field, the bad value and the allowed values.
"""

from __future__ import annotations

import base64
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr, ValidationError

from airflow_provider_aireiter.exceptions import AireiterInvalidRequestError

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

    model_config = ConfigDict(extra="allow", frozen=True)


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
