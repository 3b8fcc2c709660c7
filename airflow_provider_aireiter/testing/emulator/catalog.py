"""Model catalogue of the emulator: kind, credit price and default durations.

The real service publishes no prices or timings for the three documented
models, so the numbers below are the emulator's own documented choices:

=========================  =====  ========  =================================
model                      kind   credits   default durations (pending, proc)
=========================  =====  ========  =================================
``seedream_v5_lite``       image  10        3 s + 20 s
``gpt_image_2_official``   image  10        3 s + 20 s (starts ``submitted``)
``seedance_1_5_pro``       video  100       5 s + 90 s
``veo3_1``                 video  100       5 s + 90 s
``veo3_1_base``            video  80        5 s + 90 s
``veo3_1_plus``            video  120       5 s + 90 s
``veo3_1_fast``            video  60        5 s + 90 s
any other image model      image  10        3 s + 20 s
any other video model      video  100       5 s + 90 s
=========================  =====  ========  =================================

Durations are in *emulator seconds*; real time is emulator time divided by
the speed factor. A model name not listed is a "generic model": it is a video
model when its name contains one of :data:`VIDEO_NAME_HINTS`, else an image
model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

IMAGE = "image"
VIDEO = "video"

#: Substrings that make an unknown model name count as a video model.
VIDEO_NAME_HINTS: tuple[str, ...] = (
    "veo",
    "sora",
    "seedance",
    "kling",
    "minimax",
    "grok_imagine",
    "video",
    "hailuo",
    "wan",
)

#: Model whose submit answers the alternative ``{"code": 200, "data": [...]}`` envelope.
OFFICIAL_GPT_IMAGE = "gpt_image_2_official"

#: Default (pending_s, processing_s) per kind, in emulator seconds.
DEFAULT_DURATIONS: dict[str, tuple[float, float]] = {
    IMAGE: (3.0, 20.0),
    VIDEO: (5.0, 90.0),
}

#: Credits charged per completed task, per model.
CREDIT_TABLE: dict[str, int] = {
    "seedream_v5_lite": 10,
    OFFICIAL_GPT_IMAGE: 10,
    "seedance_1_5_pro": 100,
    "veo3_1": 100,
    "veo3_1_base": 80,
    "veo3_1_plus": 120,
    "veo3_1_fast": 60,
}

#: Credits for models missing from :data:`CREDIT_TABLE`, per kind.
DEFAULT_CREDITS: dict[str, int] = {IMAGE: 10, VIDEO: 100}

Durations = Mapping[str, tuple[float, float]]


def model_kind(model: str) -> str:
    """Return ``"video"`` or ``"image"`` for a model name."""
    lowered = model.lower()
    if any(hint in lowered for hint in VIDEO_NAME_HINTS):
        return VIDEO
    return IMAGE


def estimated_credits(model: str) -> int:
    """Return the credits a task of ``model`` costs once completed."""
    if model in CREDIT_TABLE:
        return CREDIT_TABLE[model]
    return DEFAULT_CREDITS[model_kind(model)]


def durations_for(model: str, overrides: Durations | None) -> tuple[float, float]:
    """Return ``(pending_s, processing_s)`` for ``model``.

    :param overrides: optional mapping of model name to durations; the key
        ``"*"`` applies to every model not named explicitly.
    """
    if overrides:
        if model in overrides:
            pending, processing = overrides[model]
            return float(pending), float(processing)
        if "*" in overrides:
            pending, processing = overrides["*"]
            return float(pending), float(processing)
    return DEFAULT_DURATIONS[model_kind(model)]


@dataclass(frozen=True)
class ModelInfo:
    """What the emulator knows about one model name."""

    name: str
    kind: str
    credits: int
    initial_status: str

    @classmethod
    def lookup(cls, model: str) -> ModelInfo:
        """Describe ``model`` (known or generic)."""
        initial = "submitted" if model == OFFICIAL_GPT_IMAGE else "pending"
        return cls(model, model_kind(model), estimated_credits(model), initial)
