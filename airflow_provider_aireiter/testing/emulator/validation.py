"""Validation of submit bodies and of the params of the documented models.

Every problem raises :class:`ValidationError`; the server turns it into a
business error (HTTP 200, body ``statusCode`` 400) whose message names the
field, the bad value and the allowed values.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

OUT_TASK_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
OUT_TASK_ID_RULE = "must match ^[A-Za-z0-9_-]{1,64}$ (1 to 64 letters, digits, '_' or '-')"
MAX_DATA_URI_BYTES = 10 * 1024 * 1024
_DATA_URI = re.compile(r"^data:image/(jpeg|png|webp);base64,(.*)$", re.DOTALL)

SEEDREAM_ASPECT_RATIOS = ("1:1", "3:2", "2:3", "4:3", "3:4", "16:9", "9:16", "21:9")
SEEDREAM_RESOLUTIONS = ("2K", "3K")
SEEDREAM_MAX_IMAGES = 9
SEEDANCE_ASPECT_RATIOS = ("16:9", "9:16")
SEEDANCE_RESOLUTIONS = ("720p", "1080p")
VEO_ASPECT_RATIOS = ("16:9", "9:16")
VEO_MODELS = ("veo3_1", "veo3_1_base", "veo3_1_plus", "veo3_1_fast")


class ValidationError(ValueError):
    """A submit or query body the real service would reject with ``statusCode`` 400."""


def show(value: Any) -> str:
    """Render a bad value for an error message (strings in single quotes)."""
    if isinstance(value, str):
        return f"'{value[:80]}'"
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text[:80]


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _require_prompt(params: Mapping[str, Any]) -> None:
    if "prompt" not in params:
        raise ValidationError("missing params.prompt: a non-empty string is required")
    prompt = params["prompt"]
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValidationError(f"invalid params.prompt {show(prompt)}: a non-empty string is required")


def _check_choice(params: Mapping[str, Any], name: str, allowed: Sequence[str]) -> None:
    if name not in params:
        return
    value = params[name]
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(f"invalid params.{name} {show(value)}: allowed {', '.join(allowed)}")


def _check_single_url(params: Mapping[str, Any], name: str) -> None:
    if name not in params:
        return
    value = params[name]
    if not isinstance(value, str) or not _is_http_url(value):
        raise ValidationError(f"invalid params.{name} {show(value)}: allowed a single public http(s) URL string")


def _check_data_uri(name: str, value: str) -> None:
    match = _DATA_URI.match(value)
    if match is None:
        raise ValidationError(
            f"invalid {name} {show(value)}: allowed an http(s) URL or a data URI data:image/(jpeg|png|webp);base64,..."
        )
    try:
        decoded = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(f"invalid {name}: the data URI is not valid base64") from None
    if len(decoded) > MAX_DATA_URI_BYTES:
        raise ValidationError(
            f"invalid {name}: base64 image is {len(decoded)} bytes, allowed at most {MAX_DATA_URI_BYTES} bytes (10 MB)"
        )


def _check_image_list(params: Mapping[str, Any], name: str, limit: int) -> None:
    if name not in params:
        return
    value = params[name]
    if not isinstance(value, list):
        raise ValidationError(
            f"invalid params.{name} {show(value)}: allowed a list of at most {limit} image URLs or data URIs"
        )
    if len(value) > limit:
        raise ValidationError(f"invalid params.{name}: {len(value)} images given, allowed at most {limit}")
    for index, item in enumerate(value):
        label = f"params.{name}[{index}]"
        if not isinstance(item, str):
            raise ValidationError(f"invalid {label} {show(item)}: allowed an http(s) URL or a data URI string")
        if item.startswith("data:"):
            _check_data_uri(label, item)
        elif not _is_http_url(item):
            raise ValidationError(
                f"invalid {label} {show(item)}: allowed an http(s) URL or a data URI "
                "data:image/(jpeg|png|webp);base64,..."
            )


def validate_seedream_v5_lite(params: Mapping[str, Any]) -> None:
    """Validate ``seedream_v5_lite`` params (unknown keys are accepted)."""
    _require_prompt(params)
    _check_image_list(params, "image_url", SEEDREAM_MAX_IMAGES)
    _check_choice(params, "aspect_ratio", SEEDREAM_ASPECT_RATIOS)
    _check_choice(params, "resolution", SEEDREAM_RESOLUTIONS)
    if "web_search" in params and not isinstance(params["web_search"], bool):
        raise ValidationError(f"invalid params.web_search {show(params['web_search'])}: allowed true, false")


def validate_seedance_1_5_pro(params: Mapping[str, Any]) -> None:
    """Validate ``seedance_1_5_pro`` params (unknown keys are accepted)."""
    _require_prompt(params)
    if "video_length" in params:
        length = params["video_length"]
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValidationError(f"invalid params.video_length {show(length)}: allowed an integer >= 1 (seconds)")
    _check_choice(params, "aspect_ratio", SEEDANCE_ASPECT_RATIOS)
    _check_choice(params, "resolution", SEEDANCE_RESOLUTIONS)


def validate_veo3_1(params: Mapping[str, Any]) -> None:
    """Validate ``veo3_1`` / ``_base`` / ``_plus`` / ``_fast`` params."""
    _require_prompt(params)
    _check_single_url(params, "image_url")
    _check_single_url(params, "end_image_url")
    _check_choice(params, "aspect_ratio", VEO_ASPECT_RATIOS)


PARAM_VALIDATORS: dict[str, Callable[[Mapping[str, Any]], None]] = {
    "seedream_v5_lite": validate_seedream_v5_lite,
    "seedance_1_5_pro": validate_seedance_1_5_pro,
    **{name: validate_veo3_1 for name in VEO_MODELS},
}


def validate_params(model: str, params: Mapping[str, Any]) -> None:
    """Validate ``params`` for ``model``; generic models accept anything."""
    validator = PARAM_VALIDATORS.get(model)
    if validator is not None:
        validator(params)


def validate_out_task_id(value: Any) -> str:
    """Return ``value`` if it is a well-formed ``out_task_id``."""
    if not isinstance(value, str) or OUT_TASK_ID_PATTERN.match(value) is None:
        raise ValidationError(f"invalid field 'out_task_id' {show(value)}: {OUT_TASK_ID_RULE}")
    return value


def validate_submit_body(body: Any) -> dict[str, Any]:
    """Check the top-level submit fields and the model params; return the body."""
    if not isinstance(body, dict):
        raise ValidationError("invalid request body: a JSON object is required")
    model = body.get("model")
    if model is None:
        raise ValidationError("missing required field 'model'")
    if not isinstance(model, str) or not model.strip():
        raise ValidationError(f"invalid field 'model' {show(model)}: a non-empty string is required")
    if "params" not in body:
        raise ValidationError("missing required field 'params'")
    if not isinstance(body["params"], dict):
        raise ValidationError(f"invalid field 'params' {show(body['params'])}: a JSON object is required")
    if "out_task_id" not in body:
        raise ValidationError("missing required field 'out_task_id'")
    validate_out_task_id(body["out_task_id"])
    callback_url = body.get("callback_url")
    if callback_url is not None and (not isinstance(callback_url, str) or not _is_http_url(callback_url)):
        raise ValidationError("invalid field 'callback_url': an http(s) URL string is required")
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValidationError(f"invalid field 'metadata' {show(metadata)}: a JSON object is required")
    validate_params(model, body["params"])
    return body


def query_key(body: Any) -> tuple[str, str]:
    """Return ``("task_id" | "out_task_id", value)`` from a query body."""
    if not isinstance(body, dict):
        raise ValidationError("invalid request body: a JSON object is required")
    for field in ("task_id", "out_task_id"):
        value = body.get(field)
        if isinstance(value, str) and value:
            return field, value
        if value is not None and not isinstance(value, str):
            raise ValidationError(f"invalid field '{field}' {show(value)}: a string is required")
    raise ValidationError("missing required field 'task_id' or 'out_task_id'")
