"""What the media view shows: the AIReiter result dicts (XCom ``return_value``) of task instances.

Read from Airflow's metadata database in the API server, like Airflow's own XCom route does. Only a
dict shaped like the provider's result (``out_task_id``, ``model``, ``outputs``) counts as media; any
other XCom is ignored, so a task instance of another operator shows the empty state.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from airflow_provider_aireiter.hooks.aireiter import output_record, record_name
from airflow_provider_aireiter.hooks.transport import credits_value as credits

IMAGE_EXTENSIONS = (".png", ".jpeg", ".jpg", ".webp", ".gif")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov")


@dataclass(frozen=True)
class MediaFile:
    """One output: the service URL, where the provider stored it (or ``None``), type and size."""

    index: int
    url: str | None
    path: str | None
    content_type: str | None
    size: int | None

    @property
    def kind(self) -> str:
        """``image``, ``video`` or ``other``, from the content type, else the file name."""
        base = (self.content_type or "").split(";")[0].strip().lower()
        if base.startswith(("image/", "video/")):
            return base.split("/")[0]
        name = (self.path or _url_path(self.url)).lower()
        if name.endswith(IMAGE_EXTENSIONS):
            return "image"
        if name.endswith(VIDEO_EXTENSIONS):
            return "video"
        return "other"


@dataclass(frozen=True)
class MediaEntry:
    """The outputs of one task instance (one map index) with what produced them."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    out_task_id: str
    model: str | None
    status: str | None
    credits_used: float | None
    prompt: str | None
    files: list[MediaFile] = field(default_factory=list)
    estimated_credits: float | None = None


@dataclass(frozen=True)
class Credits:
    """The credits of a set of task instances: sums of the known values, and how many were unknown."""

    used: float = 0.0
    estimated: float = 0.0
    tasks: int = 0
    unknown_used: int = 0
    unknown_estimated: int = 0

    @classmethod
    def of(cls, pairs: Iterable[tuple[float | None, float | None]]) -> Credits:
        """From ``(credits used, estimated credits)`` per task instance, each checked by :func:`credits`."""
        rows = list(pairs)
        used = [u for u, _ in rows if u is not None]
        estimated = [e for _, e in rows if e is not None]
        return cls(math.fsum(used), math.fsum(estimated), len(rows), len(rows) - len(used), len(rows) - len(estimated))


def _decode(row: Any) -> Any:
    from airflow.models.xcom import XComModel

    value = XComModel.deserialize_value(row)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value


def _is_result(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("out_task_id"), str)
        and isinstance(value.get("outputs", []), list)
        and "model" in value
    )


def _files(outputs: list[Any]) -> list[MediaFile]:
    files = []
    for index, item in enumerate(outputs):
        if not isinstance(item, dict):
            continue
        size = item.get("size")
        files.append(
            MediaFile(
                index=index,
                url=item.get("url") if isinstance(item.get("url"), str) else None,
                path=item.get("path") if isinstance(item.get("path"), str) else None,
                content_type=item.get("content_type") if isinstance(item.get("content_type"), str) else None,
                size=size if isinstance(size, int) else None,
            )
        )
    return files


def _prompt(rendered: dict[str, Any] | None) -> str | None:
    """The prompt as rendered for this task instance (a model operator's ``prompt`` or ``model_params``)."""
    if not rendered:
        return None
    prompt = rendered.get("prompt")
    if prompt is None:
        params = rendered.get("model_params")
        if isinstance(params, str):
            try:
                params = json.loads(params)
            except ValueError:
                params = None
        if isinstance(params, dict):
            prompt = params.get("prompt")
    return None if prompt is None else str(prompt)


def _rendered(session: Session, dag_id: str, run_id: str, task_id: str | None) -> dict[tuple[str, int], Any]:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as RTIF

    query = select(RTIF.task_id, RTIF.map_index, RTIF.rendered_fields).where(
        RTIF.dag_id == dag_id, RTIF.run_id == run_id
    )
    if task_id is not None:
        query = query.where(RTIF.task_id == task_id)
    return {(row.task_id, row.map_index): row.rendered_fields for row in session.execute(query)}


def _results(
    session: Session, dag_id: str, run_ids: list[str], task_id: str | None = None, map_index: int | None = None
) -> list[tuple[Any, dict[str, Any]]]:
    """``(XCom row, result dict)`` of the AIReiter results of some runs, a task or a task instance."""
    from airflow.models.xcom import XComModel

    query = select(XComModel).where(
        XComModel.dag_id == dag_id, XComModel.run_id.in_(run_ids), XComModel.key == "return_value"
    )
    if task_id is not None:
        query = query.where(XComModel.task_id == task_id)
    if map_index is not None:
        query = query.where(XComModel.map_index == map_index)
    rows = session.scalars(query.order_by(XComModel.task_id, XComModel.map_index)).all()
    return [(row, value) for row in rows if _is_result(value := _decode(row))]


def run_credits(session: Session, dag_id: str, run_ids: list[str]) -> dict[str, Credits]:
    """The :class:`Credits` of each run (one query for all of them)."""
    pairs: dict[str, list[tuple[float | None, float | None]]] = {run_id: [] for run_id in run_ids}
    for row, value in _results(session, dag_id, run_ids):
        pairs[row.run_id].append((credits(value.get("credits_used")), credits(value.get("estimated_credits"))))
    return {run_id: Credits.of(found) for run_id, found in pairs.items()}


def media_entries(
    session: Session, dag_id: str, run_id: str, task_id: str | None = None, map_index: int | None = None
) -> list[MediaEntry]:
    """The AIReiter results of a run, of one task (every map index) or of one task instance."""
    results = _results(session, dag_id, [run_id], task_id, map_index)
    if not results:
        return []
    rendered = _rendered(session, dag_id, run_id, task_id)
    return [
        MediaEntry(
            dag_id=dag_id,
            run_id=run_id,
            task_id=row.task_id,
            map_index=row.map_index,
            out_task_id=value["out_task_id"],
            model=value.get("model"),
            status=value.get("status"),
            credits_used=credits(value.get("credits_used")),
            prompt=_prompt(rendered.get((row.task_id, row.map_index))),
            files=_files(value.get("outputs") or []),
            estimated_credits=credits(value.get("estimated_credits")),
        )
        for row, value in results
    ]


#: the media types served, by the extension the provider gives a download (hooks/aireiter.py), each
#: with the first bytes a file of that type starts with; nothing else is ever served
MEDIA_TYPES: dict[str, tuple[str, tuple[tuple[int, bytes], ...]]] = {
    ".png": ("image/png", ((0, b"\x89PNG\r\n\x1a\n"),)),
    ".jpeg": ("image/jpeg", ((0, b"\xff\xd8\xff"),)),
    ".jpg": ("image/jpeg", ((0, b"\xff\xd8\xff"),)),
    ".gif": ("image/gif", ((0, b"GIF87a"), (0, b"GIF89a"))),
    ".webp": ("image/webp", ((8, b"WEBP"),)),
    ".mp4": ("video/mp4", ((4, b"ftyp"),)),
    ".mov": ("video/quicktime", ((4, b"ftyp"), (4, b"moov"), (4, b"wide"), (4, b"mdat"))),
    ".webm": ("video/webm", ((0, b"\x1a\x45\xdf\xa3"),)),
}


@dataclass(frozen=True)
class Servable:
    """A stored output the view may serve: where it is, its media type and size."""

    path: str
    media_type: str
    size: int


def media_roots() -> list[str]:
    """``[aireiter] media_roots``: the storage URIs under which stored outputs may be served (none by default)."""
    from airflow_provider_aireiter.compat import conf

    raw = conf.get("aireiter", "media_roots", fallback="") or ""
    return [root.strip() for root in raw.split(",") if root.strip()]


def _url_path(url: str | None) -> str:
    try:
        return urlsplit(url or "").path
    except ValueError:  # e.g. an unclosed IPv6 bracket: no usable path
        return ""


def _location(uri: str, *, root: bool = False) -> tuple[str, str, str] | None:
    """``(scheme, netloc, normalized path)`` of a storage URI or a local path; ``None`` if it is odd.

    :param root: a media root, which may be a bucket without a path (``s3://bucket``).
    """
    try:
        parts = urlsplit(uri if "://" in uri else "file://" + uri)
    except ValueError:
        return None
    path = parts.path or ("/" if root else "")
    if parts.query or parts.fragment or not path.startswith("/") or "\x00" in path:
        return None
    parts = parts._replace(path=path)
    if ".." in parts.path.split("/"):
        return None
    return parts.scheme.lower(), parts.netloc.lower(), posixpath.normpath(parts.path)


def _under_a_root(location: tuple[str, str, str], roots: list[str]) -> bool:
    scheme, netloc, path = location
    if scheme == "file":
        path = os.path.realpath(path)  # a symlinked folder that leads out of every root is out
    for root in roots:
        allowed = _location(root, root=True)
        if allowed is None or allowed[:2] != (scheme, netloc):
            continue
        prefix = allowed[2].rstrip("/") + "/"
        if scheme == "file":
            prefix = os.path.realpath(allowed[2]).rstrip("/") + "/"
        if path.startswith(prefix):
            return True
    return False


def _recorded_for(entry: MediaEntry, file: MediaFile, record: Any, size: int) -> bool:
    expected = output_record(entry.dag_id, entry.run_id, entry.task_id, entry.map_index, file.index, size)
    return isinstance(record, dict) and all(record.get(key) == value for key, value in expected.items())


def servable(entry: MediaEntry, file: MediaFile, roots: list[str] | None = None) -> Servable | None:
    """The stored output ``file`` of ``entry`` if the view may serve it, else ``None``.

    Everything in a result dict may have been edited (an XCom is editable through the REST API), so
    the view serves a recorded path only when all of these hold:

    * the name is one the provider gives an output (``<out_task_id>_<index>.<ext>``, no ``..``);
    * it lies under one of the ``[aireiter] media_roots`` the administrator listed (none by default:
      then nothing stored is served); a local path is resolved first (a symlinked folder leading out
      of the roots is out), and a file that is itself a symlink, not a regular file, or has other hard
      links is refused;
    * the record the provider wrote next to it when it stored it (:func:`record_name`) names this
      very task instance and output index, and the file still has the size recorded. Users who may
      edit XComs cannot write to the media storage, so they cannot make one;
    * its extension is one of :data:`MEDIA_TYPES` and its first bytes are that type's.

    The media type served is the one of that table, never the one a result dict recorded.
    """
    if not file.path:
        return None
    location = _location(file.path)
    if location is None:
        return None
    name = posixpath.basename(location[2])
    stem, ext = posixpath.splitext(name)
    ext = ext.lower()
    if stem != f"{entry.out_task_id}_{file.index}" or ext not in MEDIA_TYPES:
        return None
    if not _under_a_root(location, media_roots() if roots is None else roots):
        return None
    media_type, signatures = MEDIA_TYPES[ext]
    try:
        if location[0] == "file":
            size, head = _read_local(location[2], 16)
            _, recorded = _read_local(posixpath.join(posixpath.dirname(location[2]), record_name(name)), 4096)
            record = json.loads(recorded)
            path = location[2]
        else:
            from airflow_provider_aireiter.media_view.streaming import open_stored

            stored = open_stored(file.path)
            size = int(stored.stat().st_size)
            with stored.open("rb") as handle:
                head = handle.read(16)
            with (stored.parent / record_name(name)).open("rb") as handle:
                record = json.loads(handle.read(4096))
            path = file.path
    except (OSError, ValueError):
        return None
    if not _recorded_for(entry, file, record, size):
        return None
    if not any(head[offset : offset + len(magic)] == magic for offset, magic in signatures):
        return None
    return Servable(path=path, media_type=media_type, size=size)


def _read_local(path: str, limit: int) -> tuple[int, bytes]:
    """The size and first ``limit`` bytes of a local regular file with one link only, opened without
    following a symlink and without blocking (a FIFO or a device is refused, never waited on).

    :raises OSError: for anything else (a symlink, a folder, a hard-linked or missing file).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise OSError(f"not a regular file with one link: {path}")
        return info.st_size, os.read(fd, limit)
    finally:
        os.close(fd)
