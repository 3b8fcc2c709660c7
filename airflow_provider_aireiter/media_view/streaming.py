"""Serving a stored output from any ``ObjectStoragePath`` scheme, with HTTP range requests.

Browsers seek in a video by asking for byte ranges; Starlette's ``FileResponse`` only reads local
files, so this answers one ``bytes=`` range (the form browsers send) over any fsspec file system.

Only a :class:`~airflow_provider_aireiter.media_view.records.Servable` is served (see
:func:`~airflow_provider_aireiter.media_view.records.servable`), with its media type, ``nosniff`` and a
sandboxing ``Content-Security-Policy``: even a file that got past the checks could not run script on
Airflow's origin. A local file is opened without following a symlink, and must still be the size
that was checked.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

from airflow_provider_aireiter.media_view.records import Servable

CHUNK = 256 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class RangeNotSatisfiable(ValueError):
    """The ``Range`` header asks for bytes the file does not have."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` byte positions (inclusive) of a single ``bytes=`` range, or ``None`` for all.

    A header this does not understand (several ranges, another unit) or an invalid range (its last
    position before its first) is ignored, as RFC 9110 says: the whole file is sent. A valid range
    that starts past the end, or an empty suffix, is unsatisfiable (416).
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
    if last_text and int(last_text) < first:
        return None  # invalid: ignored
    if first >= size:
        raise RangeNotSatisfiable(header)
    last = min(int(last_text), size - 1) if last_text else size - 1
    return first, last


def open_stored(path_text: str) -> Any:
    """The stored output as an ``ObjectStoragePath`` (connection credentials resolved by Airflow)."""
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(path_text)


#: headers of every served file: no sniffing, no script, no plugins, not framed by other origins
MEDIA_HEADERS = {
    "Accept-Ranges": "bytes",
    "Cache-Control": "private, max-age=300",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox; frame-ancestors 'self'",
    "Content-Disposition": "inline",
}


def open_servable(servable: Servable) -> BinaryIO:
    """The servable file, opened for reading (a local one without following a symlink)."""
    if "://" in servable.path:
        return cast("BinaryIO", open_stored(servable.path).open("rb"))
    fd = os.open(servable.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size != servable.size:
        os.close(fd)
        raise FileNotFoundError(servable.path)  # changed since it was checked
    return os.fdopen(fd, "rb")


def read_range(source: BinaryIO, first: int, last: int) -> Iterator[bytes]:
    """The bytes ``first..last`` of the open file, in chunks (memory does not grow with the file); closes it."""
    remaining = last - first + 1
    with source:
        source.seek(first)
        while remaining > 0:
            chunk = source.read(min(CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


def file_response(servable: Servable, range_header: str | None, *, head: bool = False) -> Any:
    """A 200 or 206 streaming response of the stored file, or 416 for a range it does not have.

    ``head``: the same status and headers without a body (``HEAD``).
    """
    from starlette.responses import Response, StreamingResponse

    size = servable.size
    headers = dict(MEDIA_HEADERS)
    media_type = servable.media_type
    try:
        wanted = parse_range(range_header, size)
    except RangeNotSatisfiable:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    first, last = wanted if wanted is not None else (0, size - 1)
    status = 200 if wanted is None else 206
    if wanted is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    headers["Content-Length"] = str(last - first + 1)
    if head:
        return Response(status_code=status, media_type=media_type, headers=headers)
    # Opened before the headers go out: a file gone or changed since the check is a 404, not a cut stream.
    source = open_servable(servable)
    return StreamingResponse(
        read_range(source, first, last), status_code=status, media_type=media_type, headers=headers
    )
