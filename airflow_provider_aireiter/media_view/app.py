"""The media view's FastAPI app, mounted on Airflow's API server by :mod:`..plugins.media`.

Every route depends on the API server's own security dependencies (``requires_access_dag``, which
reads the caller from the ``Authorization`` header or the UI's ``_token`` cookie that a same-origin
iframe sends): no credentials is 401, a user the auth manager does not let read the DAG's task
instances and XComs is 403. A file is only ever looked up by task instance and output index among
the outputs recorded in that task instance's result; no path from the request is opened.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView, DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import requires_access_dag, requires_access_view
from airflow.models.dagrun import DagRun
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from airflow_provider_aireiter.media_view import thumbnails
from airflow_provider_aireiter.media_view.docs_page import docs_page
from airflow_provider_aireiter.media_view.pages import gallery_page, task_instance_page
from airflow_provider_aireiter.media_view.records import MediaEntry, MediaFile, media_entries, servable_path
from airflow_provider_aireiter.media_view.streaming import file_response, open_stored

#: How many runs the DAG-level gallery shows, newest first.
RUNS_PER_DAG_PAGE = 10
GALLERY_THUMB_WIDTH = 320
_PAGE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _map_index(value: str | None) -> int | None:
    """``None`` (every map index) for an absent value or the UI's unsubstituted ``{MAP_INDEX}``."""
    if value is None or value in ("", "{MAP_INDEX}"):
        return None
    try:
        number = int(value)
    except ValueError:
        number = -2
    if number < -1:
        raise HTTPException(422, f"map_index={value!r} is not allowed; allowed: -1 or a map index >= 0")
    return number


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

    def servable(entry: MediaEntry, file: MediaFile) -> bool:
        return servable_path(entry, file) is not None

    @app.get("/ti", response_class=HTMLResponse, dependencies=readable)
    def task_instance_view(
        request: Request,
        session: SessionDep,
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: Annotated[str | None, Query()] = None,
    ) -> HTMLResponse:
        entries = media_entries(session, dag_id, run_id, task_id, _map_index(map_index))
        html = task_instance_page(f"Media of {task_id}", entries, file_url_for(request), servable)
        return HTMLResponse(html, headers=_PAGE_HEADERS)

    @app.get("/run", response_class=HTMLResponse, dependencies=readable)
    def run_gallery(request: Request, session: SessionDep, dag_id: str, run_id: str) -> HTMLResponse:
        runs = [(run_id, media_entries(session, dag_id, run_id))]
        html = gallery_page(f"Media gallery of {dag_id}", runs, file_url_for(request), servable, GALLERY_THUMB_WIDTH)
        return HTMLResponse(html, headers=_PAGE_HEADERS)

    @app.get("/dag", response_class=HTMLResponse, dependencies=readable)
    def dag_gallery(request: Request, session: SessionDep, dag_id: str) -> HTMLResponse:
        run_ids = session.scalars(
            select(DagRun.run_id)
            .where(DagRun.dag_id == dag_id)
            .order_by(DagRun.run_after.desc(), DagRun.id.desc())
            .limit(RUNS_PER_DAG_PAGE)
        ).all()
        runs = [(run_id, media_entries(session, dag_id, run_id)) for run_id in run_ids]
        title = f"Media gallery of {dag_id} (newest {RUNS_PER_DAG_PAGE} runs first)"
        html = gallery_page(title, runs, file_url_for(request), servable, GALLERY_THUMB_WIDTH)
        return HTMLResponse(html, headers=_PAGE_HEADERS)

    @app.get("/docs", response_class=HTMLResponse, dependencies=[Depends(requires_access_view(AccessView.DOCS))])
    def provider_docs() -> HTMLResponse:
        return HTMLResponse(docs_page(), headers=_PAGE_HEADERS)

    @app.get("/file", dependencies=readable)
    def output_file(
        request: Request,
        session: SessionDep,
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: int,
        n: Annotated[int, Query(ge=0)],
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
        if file.path:
            path_text = servable_path(entry, file)
            if path_text is None:
                raise HTTPException(404, "This output's recorded path is not a file the provider wrote.")
            try:
                if width is not None and file.kind == "image" and thumbnails.pillow_available():
                    path = open_stored(path_text)
                    data = thumbnails.thumbnail(path, path_text, int(path.stat().st_size), width)
                    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})
                return file_response(path_text, file.content_type, request.headers.get("range"))
            except FileNotFoundError:
                raise HTTPException(404, "The stored file is gone from its storage.") from None
        if file.url and urlsplit(file.url).scheme in ("http", "https"):
            # Nothing was stored: the service URL is all there is (it may have expired).
            return RedirectResponse(file.url, status_code=307)
        raise HTTPException(404, "This output was not stored and has no http(s) URL.")

    return app
