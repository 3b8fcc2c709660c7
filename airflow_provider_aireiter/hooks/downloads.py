"""Streaming one generated file to local or object storage.

The file is written under a temporary name in the destination folder and moved into place only once
its byte count matches ``Content-Length``: no partial file is ever visible under the final name, so a
file that exists under its final name is complete and a retry does not fetch it again.
No ``Authorization`` header is sent: output URLs live on a CDN, and the API key must not leave for it.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import posixpath
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_aireiter.exceptions import (
    AireiterInvalidRequestError,
    AireiterResponseError,
    AireiterTransientError,
)
from airflow_provider_aireiter.hooks.transport_errors import TransportFailure, from_requests, network_error

_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpeg",
    "image/jpg": ".jpeg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
}


@dataclass(frozen=True)
class DownloadedFile:
    """Where one output went: ``path`` as a URI-like string, its content type and size in bytes."""

    url: str
    path: str
    content_type: str | None
    size: int
    reused: bool = False


def extension_for(content_type: str | None, url: str) -> str:
    """The file extension for a content type, else the URL's own suffix, else ``.bin``."""
    if content_type:
        base = content_type.split(";")[0].strip().lower()
        if base in _EXTENSIONS:
            return _EXTENSIONS[base]
        guessed = mimetypes.guess_extension(base)
        if guessed:
            return guessed
    suffix = posixpath.splitext(urlsplit(url).path)[1].lower()
    return suffix if 1 < len(suffix) <= 6 else ".bin"


def check_output_url(url: str) -> None:
    """Only http(s) output URLs are fetched (never ``file://`` or anything else)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise AireiterInvalidRequestError(
            f"Refusing to download output URL with scheme {scheme!r}: only http and https URLs are fetched."
        )


def existing_output(directory: Any, stem: str, url: str) -> DownloadedFile | None:
    """A complete file from an earlier try: ``<stem>.<any extension>`` in ``directory``, if there is one.

    The extension is not predicted: it came from the content type the earlier try was served (which
    only the server knows), so an ``out.jpg`` saved as ``.jpeg`` or an extension-less URL saved as
    ``.png`` is found all the same. Only complete files carry the final name (see the module docstring).
    """
    try:
        if not directory.exists():
            return None
        candidates = sorted(p for p in directory.iterdir() if _is_final_name_of(p.name, stem))
    except FileNotFoundError:
        return None
    if not candidates:
        return None
    found = candidates[0]
    size = found.stat().st_size
    content_type = mimetypes.guess_type(found.name)[0]
    return DownloadedFile(url=url, path=str(found), content_type=content_type, size=size, reused=True)


def _is_final_name_of(name: str, stem: str) -> bool:
    """``<stem>.<ext>`` (one suffix, no temporary ``.part`` file)."""
    if not name.startswith(stem + "."):
        return False
    suffix = name[len(stem) :]
    return suffix.count(".") == 1 and 1 < len(suffix) <= 8 and not suffix.endswith(".part")


def stream_to_path(
    url: str, directory: Any, stem: str, *, timeout: float, user_agent: str, chunk_size: int = 1024 * 1024
) -> DownloadedFile:
    """GET ``url`` and stream it to ``directory/<stem><ext>`` (``directory``: an ``ObjectStoragePath``)."""
    import requests

    check_output_url(url)
    what = f"the download of {url.split('?')[0]}"
    try:
        response = requests.get(url, stream=True, timeout=timeout, headers={"User-Agent": user_agent})
    except requests.exceptions.RequestException as exc:
        raise network_error(what, from_requests(exc), out_task_id=None) from None
    with response:
        if response.status_code >= 500 or response.status_code == 429:
            raise AireiterTransientError(f"HTTP {response.status_code} on {what}; it is retried.")
        if response.status_code != 200:
            raise AireiterResponseError(
                f"HTTP {response.status_code} on {what}. The output URL may have expired: download "
                "outputs promptly after completion."
            )
        content_type = response.headers.get("Content-Type")
        expected = response.headers.get("Content-Length")
        final = directory / (stem + extension_for(content_type, url))
        partial = directory / f".{stem}.{uuid.uuid4().hex[:8]}.part"
        directory.mkdir(parents=True, exist_ok=True)
        written = 0
        try:
            with partial.open("wb") as sink:
                for chunk in response.iter_content(chunk_size=chunk_size):
                    sink.write(chunk)
                    written += len(chunk)
        except requests.exceptions.RequestException as exc:
            _remove_quietly(partial)
            failure = from_requests(exc)
            raise network_error(
                f"{what} (the connection broke after {written} bytes)",
                TransportFailure(failure.detail),
                out_task_id=None,
            ) from None
        except BaseException:
            _remove_quietly(partial)
            raise
        if expected is not None and expected.isdigit() and int(expected) != written:
            _remove_quietly(partial)
            raise AireiterTransientError(
                f"{what.capitalize()} was cut short: {written} of {expected} bytes; it is retried."
            )
        partial.rename(final)
    return DownloadedFile(url=url, path=str(final), content_type=content_type, size=written)


def record_name(file_name: str) -> str:
    """The name of the record written next to a stored output (hidden, so it is never taken for one)."""
    return f".{file_name}.aireiter.json"


def output_record(dag_id: str, run_id: str, task_id: str, map_index: int, index: int, size: int) -> dict[str, Any]:
    """What is recorded next to a stored output: the task instance it was stored for, and its size.

    The media view serves a stored file only when this record names the very task instance and output
    index whose result points at it (``media_view/records.py``). Users who can edit an XCom cannot write
    to the media storage, so an edited result cannot point the view at a file stored for anything else.
    """
    return {
        "aireiter_output": 1,
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "map_index": map_index,
        "index": index,
        "size": size,
    }


def write_output_record(directory: Any, stored: DownloadedFile, record: dict[str, Any]) -> None:
    """Write ``record`` next to ``stored`` (overwritten by a retry: the same task instance, the same file)."""
    name = posixpath.basename(urlsplit(stored.path).path if "://" in stored.path else stored.path)
    with (directory / record_name(name)).open("w") as sink:
        sink.write(json.dumps(record, sort_keys=True))


def _remove_quietly(path: Any) -> None:
    with contextlib.suppress(Exception):  # best-effort clean-up of a temporary file
        path.unlink()
