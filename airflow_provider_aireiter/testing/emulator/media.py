"""Result files served by the emulator: real PNG images and real MP4 videos.

Image sizes (width x height) follow the requested ``aspect_ratio`` and
``resolution``:

* ``seedream_v5_lite``: ``2K`` gives a long side of 2048 px, ``3K`` a long
  side of 3072 px; the short side is ``long * ratio`` rounded to a multiple
  of 8. Defaults: ``aspect_ratio`` ``1:1``, ``resolution`` ``2K``. Examples:
  ``16:9``/``2K`` is 2048x1152, ``16:9``/``3K`` 3072x1728, ``3:2``/``2K``
  2048x1368, ``21:9``/``2K`` 2048x880, ``9:16``/``3K`` 1728x3072.
* every other image model: a long side of 1024 px, following ``aspect_ratio``
  when it is a ``W:H`` string, else square.

The pixels are colour bands derived from a hash of the prompt, so different
prompts give different files. PNGs are written with :mod:`zlib` and
:mod:`struct` only and cached per task by the caller.

Videos are one small fixture MP4 (1 s, 160x90, H.264) with an extra top-level
``free`` box appended that carries a hash of the prompt, so the bytes differ
per prompt and the file stays a valid MP4. The fixture does **not** match the
resolution a real model would produce; for reference, ``seedance_1_5_pro``
reports these sizes upstream: ``16:9``/``720p`` 1280x720, ``16:9``/``1080p``
1920x1080, ``9:16``/``720p`` 720x1280, ``9:16``/``1080p`` 1080x1920.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

from .catalog import VIDEO

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SEEDREAM_LONG_SIDE = {"2K": 2048, "3K": 3072}
GENERIC_LONG_SIDE = 1024
SEEDANCE_SIZES = {
    ("16:9", "720p"): (1280, 720),
    ("16:9", "1080p"): (1920, 1080),
    ("9:16", "720p"): (720, 1280),
    ("9:16", "1080p"): (1080, 1920),
}
_BANDS = 8


def _parse_ratio(value: Any) -> tuple[int, int]:
    if isinstance(value, str) and ":" in value:
        left, _, right = value.partition(":")
        if left.isdigit() and right.isdigit() and int(left) > 0 and int(right) > 0:
            return int(left), int(right)
    return 1, 1


def _round8(value: float) -> int:
    return max(8, round(value / 8.0) * 8)


def _fit(long_side: int, ratio: tuple[int, int]) -> tuple[int, int]:
    width, height = ratio
    if width >= height:
        return long_side, _round8(long_side * height / width)
    return _round8(long_side * width / height), long_side


def image_size(model: str, params: Mapping[str, Any]) -> tuple[int, int]:
    """Return the ``(width, height)`` of the image a task produces."""
    ratio = _parse_ratio(params.get("aspect_ratio", "1:1"))
    if model == "seedream_v5_lite":
        long_side = SEEDREAM_LONG_SIDE.get(str(params.get("resolution", "2K")), 2048)
        return _fit(long_side, ratio)
    return _fit(GENERIC_LONG_SIDE, ratio)


def prompt_digest(params: Mapping[str, Any]) -> bytes:
    """Return a SHA-256 digest of the prompt (empty prompt if absent)."""
    prompt = params.get("prompt", "")
    return hashlib.sha256(str(prompt).encode("utf-8")).digest()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def make_png(width: int, height: int, seed: bytes) -> bytes:
    """Build an RGB PNG of ``width`` x ``height`` coloured from ``seed``.

    The picture is a grid of 8x8 colour blocks. Each band's first scanline is
    stored with filter 0 and the following ones with filter 2 ("Up") as all
    zero bytes, so the raw data is built by bytes multiplication and
    compresses very fast.
    """
    stream = hashlib.shake_256(seed).digest(_BANDS * _BANDS * 3)
    colours = [stream[i : i + 3] for i in range(0, len(stream), 3)]
    column_edges = [width * i // _BANDS for i in range(_BANDS + 1)]
    row_edges = [height * i // _BANDS for i in range(_BANDS + 1)]
    repeat_row = b"\x02" + bytes(width * 3)
    parts: list[bytes] = []
    for band in range(_BANDS):
        rows = row_edges[band + 1] - row_edges[band]
        if rows <= 0:
            continue
        line = b"".join(
            colours[band * _BANDS + col] * (column_edges[col + 1] - column_edges[col]) for col in range(_BANDS)
        )
        parts.append(b"\x00" + line)
        parts.append(repeat_row * (rows - 1))
    raw = b"".join(parts)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


@lru_cache(maxsize=1)
def fixture_mp4() -> bytes:
    """Return the bytes of the bundled fixture MP4."""
    return (resources.files(__package__) / "media" / "sample.mp4").read_bytes()


def make_mp4(seed: bytes) -> bytes:
    """Return the fixture MP4 with a top-level ``free`` box carrying ``seed``."""
    payload = b"aireiter-emulator prompt-sha256=" + seed.hex().encode("ascii")
    return fixture_mp4() + struct.pack(">I", 8 + len(payload)) + b"free" + payload


def render(model: str, kind: str, params: Mapping[str, Any]) -> tuple[bytes, str]:
    """Return ``(body, content_type)`` of the result file of a task."""
    seed = prompt_digest(params)
    if kind == VIDEO:
        return make_mp4(seed), "video/mp4"
    width, height = image_size(model, params)
    return make_png(width, height, seed), "image/png"


def extension(kind: str) -> str:
    """Return the file extension used in output URLs for ``kind``."""
    return "mp4" if kind == VIDEO else "png"
