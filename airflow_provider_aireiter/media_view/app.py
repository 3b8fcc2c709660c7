"""The media view's FastAPI app, mounted on Airflow's API server by :mod:`..plugins.media`.

Every route depends on the API server's own security dependencies (``requires_access_dag``, which
reads the caller from the ``Authorization`` header or the UI's ``_token`` cookie that a same-origin
iframe sends): no credentials is 401, a user the auth manager does not let read the DAG's task
instances and XComs is 403. A file is only ever looked up by task instance and output index among
the outputs recorded in that task instance's result; no path from the request is opened, and a
recorded path is served only when :func:`~.records.servable` says the provider stored it for that
very task instance under the ``[aireiter] media_roots`` the administrator allowed. The server never
redirects: an output that was not stored is a link to the service's URL in the page.

Odd input is a 4xx, never a 500: ``map_index`` and ``n`` are bounded, ``width`` is one of
:data:`.thumbnails.WIDTHS` and only for images, a DAG, run or task instance that does not exist is
404. Every route answers ``HEAD`` like ``GET``, without the body.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView, DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import requires_access_dag, requires_access_view
from airflow.models.dag import DagModel
from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from airflow_provider_aireiter.media_view import thumbnails
from airflow_provider_aireiter.media_view.docs_page import docs_page
from airflow_provider_aireiter.media_view.pages import credits_chart, gallery_page, task_instance_page
from airflow_provider_aireiter.media_view.records import (
    MediaEntry,
    MediaFile,
    media_entries,
    media_roots,
    run_credits,
    servable,
)
from airflow_provider_aireiter.media_view.streaming import file_response, open_servable

#: How many runs the DAG-level gallery shows, newest first.
RUNS_PER_DAG_PAGE = 10
#: How many runs the DAG-level gallery's credits chart shows, newest first.
RUNS_PER_CHART = 30
GALLERY_THUMB_WIDTH = 320
#: the largest map index and output index accepted (a database integer holds them)
MAX_INDEX = 2**31 - 1
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    # Server-rendered pages without script: only their own media and inline style, framed by Airflow's UI.
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'",
}


def _map_index(value: str | None) -> int | None:
    """``None`` (every map index) for an absent value or the UI's unsubstituted ``{MAP_INDEX}``."""
    if value is None or value in ("", "{MAP_INDEX}"):
        return None
    text = value.strip()
    if not (text == "-1" or (text.isascii() and text.isdecimal() and len(text) <= 10 and int(text) <= MAX_INDEX)):
        raise HTTPException(422, f"map_index={value[:40]!r} is not allowed; allowed: -1 or 0 to {MAX_INDEX}")
    return int(text)


def _html(request: Request, html: str) -> HTMLResponse:
    return _head_or_get(request, HTMLResponse, html.encode(), _PAGE_HEADERS, "text/html; charset=utf-8")


def _head_or_get(request: Request, cls: Any, body: bytes, headers: dict[str, str], media_type: str) -> Any:
    """The response; for ``HEAD`` the same headers (``Content-Length`` included) without the body."""
    if request.method != "HEAD":
        return cls(body, headers=headers, media_type=media_type)
    return cls(b"", headers={**headers, "Content-Length": str(len(body))}, media_type=media_type)


def _require_run(session: Any, dag_id: str, run_id: str) -> None:
    found = session.scalar(select(DagRun.id).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id).limit(1))
    if found is None:
        raise HTTPException(404, "No such DAG run.")


def _require_task(session: Any, dag_id: str, run_id: str, task_id: str) -> None:
    found = session.scalar(
        select(TaskInstance.id)
        .where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id)
        .limit(1)
    )
    if found is None:
        raise HTTPException(404, "No such task in this DAG run.")


def create_media_app() -> FastAPI:
    """The app; Airflow's API server modules are imported here, in the API server only (see plugins/media.py)."""
    readable = [
        Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.TASK_INSTANCE)),
        Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.XCOM)),
    ]
    app = FastAPI(title="AIReiter media", docs_url=None, redoc_url=None, openapi_url=None)

    def file_url_for(request: Request) -> Any:
        root = request.scope.get("root_path", "")

        def file_url(entry: MediaEntry, file: MediaFile, width: int | None) -> str:
            query = {
                "dag_id": entry.dag_id,
                "run_id": entry.run_id,
                "task_id": entry.task_id,
                "map_index": entry.map_index,
                "n": file.index,
            }
            if width is not None:
                query["width"] = width
            return f"{root}/file?{urlencode(query)}"

        return file_url

    def can_serve(entry: MediaEntry, file: MediaFile) -> bool:
        return servable(entry, file, roots) is not None

    roots = media_roots()  # read once: the API server's configuration

    @app.api_route("/ti", methods=["GET", "HEAD"], response_class=HTMLResponse, dependencies=readable)
    def task_instance_view(
        request: Request,
        session: SessionDep,
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: Annotated[str | None, Query()] = None,
    ) -> HTMLResponse:
        index = _map_index(map_index)
        _require_task(session, dag_id, run_id, task_id)
        entries = media_entries(session, dag_id, run_id, task_id, index)
        return _html(request, task_instance_page(f"Media of {task_id}", entries, file_url_for(request), can_serve))

    @app.api_route("/run", methods=["GET", "HEAD"], response_class=HTMLResponse, dependencies=readable)
    def run_gallery(request: Request, session: SessionDep, dag_id: str, run_id: str) -> HTMLResponse:
        _require_run(session, dag_id, run_id)
        runs = [(run_id, media_entries(session, dag_id, run_id))]
        title = f"Media gallery of {dag_id}"
        return _html(request, gallery_page(title, runs, file_url_for(request), can_serve, GALLERY_THUMB_WIDTH))

    @app.api_route("/dag", methods=["GET", "HEAD"], response_class=HTMLResponse, dependencies=readable)
    def dag_gallery(request: Request, session: SessionDep, dag_id: str) -> HTMLResponse:
        if session.scalar(select(DagModel.dag_id).where(DagModel.dag_id == dag_id)) is None:
            raise HTTPException(404, "No such DAG.")
        run_ids = list(
            session.scalars(
                select(DagRun.run_id)
                .where(DagRun.dag_id == dag_id)
                .order_by(DagRun.run_after.desc(), DagRun.id.desc())
                .limit(RUNS_PER_CHART)
            ).all()
        )
        totals = run_credits(session, dag_id, run_ids)
        chart = credits_chart([(run_id, totals[run_id]) for run_id in run_ids]) if run_ids else ""
        runs = [(run_id, media_entries(session, dag_id, run_id)) for run_id in run_ids[:RUNS_PER_DAG_PAGE]]
        title = f"Media gallery of {dag_id} (newest {RUNS_PER_DAG_PAGE} runs first)"
        page = gallery_page(title, runs, file_url_for(request), can_serve, GALLERY_THUMB_WIDTH, chart)
        return _html(request, page)

    @app.api_route(
        "/docs",
        methods=["GET", "HEAD"],
        response_class=HTMLResponse,
        dependencies=[Depends(requires_access_view(AccessView.DOCS))],
    )
    def provider_docs(request: Request) -> HTMLResponse:
        return _html(request, docs_page())

    @app.api_route("/file", methods=["GET", "HEAD"], dependencies=readable)
    def output_file(
        request: Request,
        session: SessionDep,
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: Annotated[int, Query(ge=-1, le=MAX_INDEX)],
        n: Annotated[int, Query(ge=0, le=MAX_INDEX)],
        width: int | None = None,
    ) -> Response:
        if width is not None and width not in thumbnails.WIDTHS:
            allowed = ", ".join(str(w) for w in thumbnails.WIDTHS)
            raise HTTPException(422, f"width={width} is not allowed; allowed: {allowed}")
        entries = media_entries(session, dag_id, run_id, task_id, map_index)
        found = [(e, f) for e in entries for f in e.files if f.index == n]
        if not found:
            raise HTTPException(404, "No such output of this task instance.")
        entry, file = found[0]
        if not file.path:
            raise HTTPException(404, "This output was not stored; the page links to the service's URL instead.")
        stored = servable(entry, file, roots)
        if stored is None:
            raise HTTPException(404, "This output is not a media file the provider stored for this task instance.")
        try:
            if width is not None:
                if not stored.media_type.startswith("image/"):
                    raise HTTPException(422, "width is only for images.")
                if thumbnails.pillow_available():
                    data = thumbnails.thumbnail(lambda: open_servable(stored), stored.path, stored.size, width)
                    headers = {"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"}
                    return _head_or_get(request, Response, data, headers, "image/jpeg")
            return file_response(stored, request.headers.get("range"), head=request.method == "HEAD")
        except thumbnails.NotThumbnailable as error:
            raise HTTPException(422, f"No thumbnail: {error}.") from None
        except FileNotFoundError:
            raise HTTPException(404, "The stored file is gone from its storage.") from None

    return app
