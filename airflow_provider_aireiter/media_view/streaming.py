"""Serving a stored output from any ``ObjectStoragePath`` scheme, with HTTP range requests.

Browsers seek in a video by asking for byte ranges; Starlette's ``FileResponse`` only reads local
files, so this answers one ``bytes=`` range (the form browsers send) over any fsspec file system.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterator
from typing import Any

CHUNK = 256 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class RangeNotSatisfiable(ValueError):
    """The ``Range`` header asks for bytes the file does not have."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` byte positions (inclusive) of a single ``bytes=`` range, or ``None`` for all.

    A header this does not understand (several ranges, another unit) is ignored, as RFC 9110 allows:
    the whole file is sent.
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        return None
    first_text, last_text = match.groups()
    if not first_text:  # a suffix: the last N bytes
        length = int(last_text)
        if length == 0:
            raise RangeNotSatisfiable(header)
        return max(size - length, 0), size - 1
    first = int(first_text)
    last = min(int(last_text), size - 1) if last_text else size - 1
    if first >= size or first > last:
        raise RangeNotSatisfiable(header)
    return first, last


def open_stored(path_text: str) -> Any:
    """The stored output as an ``ObjectStoragePath`` (connection credentials resolved by Airflow)."""
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(path_text)


def content_type_of(path_text: str, recorded: str | None) -> str:
    if recorded:
        return recorded.split(";")[0].strip()
    return mimetypes.guess_type(path_text)[0] or "application/octet-stream"


def read_range(path: Any, first: int, last: int) -> Iterator[bytes]:
    """The bytes ``first..last`` of ``path``, in chunks (memory does not grow with the file)."""
    remaining = last - first + 1
    with path.open("rb") as source:
        source.seek(first)
        while remaining > 0:
            chunk = source.read(min(CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


def file_response(path_text: str, recorded_type: str | None, range_header: str | None) -> Any:
    """A 200 or 206 streaming response of the stored file, or 416 for a range it does not have."""
    from starlette.responses import Response, StreamingResponse

    path = open_stored(path_text)
    size = int(path.stat().st_size)
    headers = {
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, max-age=300",
        "X-Content-Type-Options": "nosniff",
    }
    media_type = content_type_of(path_text, recorded_type)
    try:
        wanted = parse_range(range_header, size)
    except RangeNotSatisfiable:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    if wanted is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(read_range(path, 0, size - 1), media_type=media_type, headers=headers)
    first, last = wanted
    headers["Content-Length"] = str(last - first + 1)
    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return StreamingResponse(read_range(path, first, last), status_code=206, media_type=media_type, headers=headers)
