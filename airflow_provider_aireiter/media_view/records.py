"""What the media view shows: the AIReiter result dicts (XCom ``return_value``) of task instances.

Read from Airflow's metadata database in the API server, like Airflow's own XCom route does. Only a
dict shaped like the provider's result (``out_task_id``, ``model``, ``outputs``) counts as media; any
other XCom is ignored, so a task instance of another operator shows the empty state.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

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
        name = (self.path or urlsplit(self.url or "").path).lower()
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
    credits_used: Any
    prompt: str | None
    files: list[MediaFile] = field(default_factory=list)


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


def media_entries(
    session: Session, dag_id: str, run_id: str, task_id: str | None = None, map_index: int | None = None
) -> list[MediaEntry]:
    """The AIReiter results of a run, of one task (every map index) or of one task instance."""
    from airflow.models.xcom import XComModel

    query = select(XComModel).where(
        XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.key == "return_value"
    )
    if task_id is not None:
        query = query.where(XComModel.task_id == task_id)
    if map_index is not None:
        query = query.where(XComModel.map_index == map_index)
    rows = session.scalars(query.order_by(XComModel.task_id, XComModel.map_index)).all()
    results = [(row, value) for row in rows if _is_result(value := _decode(row))]
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
            credits_used=value.get("credits_used"),
            prompt=_prompt(rendered.get((row.task_id, row.map_index))),
            files=_files(value.get("outputs") or []),
        )
        for row, value in results
    ]


_SAFE_EXT = re.compile(r"\.[a-z0-9]{2,5}")


def servable_path(entry: MediaEntry, file: MediaFile) -> str | None:
    """The stored path of ``file`` if it is one the provider wrote, else ``None``.

    The provider names outputs ``<out_task_id>_<index>.<ext>`` (hooks/downloads.py). A result dict can
    also be written by other means (a DAG's own return value, the REST API's XCom routes), so a path
    that does not have exactly that name, or has ``..`` segments, is never opened: the view cannot be
    turned into a reader of arbitrary files of the API server.
    """
    if not file.path:
        return None
    location = urlsplit(file.path).path if "://" in file.path else file.path
    if ".." in location.split("/"):
        return None
    name = posixpath.basename(location)
    stem, ext = posixpath.splitext(name)
    if stem != f"{entry.out_task_id}_{file.index}" or not _SAFE_EXT.fullmatch(ext.lower()):
        return None
    if not name.lower().endswith(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS):
        return None
    return file.path
