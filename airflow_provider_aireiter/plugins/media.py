"""``AireiterMediaPlugin``: the media view of a task instance and the gallery of a DAG run in Airflow's UI.

Two parts: a FastAPI app mounted on the API server at ``/aireiter-media`` (built on its first request,
so processes that import plugins but serve no HTTP never import FastAPI or the view), and
``external_views`` that Airflow's UI shows as tabs of a task instance, a DAG run and a DAG, each an
iframe of one of the app's pages, plus a nav entry for the provider's README (``/aireiter-media/docs``).
The UI fills in ``{DAG_ID}``, ``{RUN_ID}``, ``{TASK_ID}`` and
``{MAP_INDEX}``; hrefs are relative (no leading slash) so they resolve against the UI's base URL.
"""

from __future__ import annotations

from airflow_provider_aireiter.compat import AirflowPlugin
from airflow_provider_aireiter.plugins.webhook import LazyAsgiApp

MEDIA_MOUNT = "/aireiter-media"
_PREFIX = MEDIA_MOUNT.lstrip("/")


class AireiterMediaPlugin(AirflowPlugin):
    """Show every image and play every video an AIReiter task produced, where Airflow shows the task."""

    name = "aireiter_media"
    fastapi_apps = [
        {
            "app": LazyAsgiApp("airflow_provider_aireiter.media_view.app:create_media_app"),
            "url_prefix": MEDIA_MOUNT,
            "name": "AIReiter media",
        }
    ]
    external_views = [
        {
            "name": "Media",
            "href": f"{_PREFIX}/ti?dag_id={{DAG_ID}}&run_id={{RUN_ID}}&task_id={{TASK_ID}}&map_index={{MAP_INDEX}}",
            "destination": "task_instance",
            "url_route": "aireiter-media",
        },
        {
            "name": "Media gallery",
            "href": f"{_PREFIX}/run?dag_id={{DAG_ID}}&run_id={{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "aireiter-run-gallery",
        },
        {
            "name": "Media gallery",
            "href": f"{_PREFIX}/dag?dag_id={{DAG_ID}}",
            "destination": "dag",
            "url_route": "aireiter-dag-gallery",
        },
        {
            # The provider's README, rendered from the installed package (see media_view/docs_page.py).
            "name": "AIReiter docs",
            "href": f"{_PREFIX}/docs",
            "destination": "nav",
            "url_route": "aireiter-docs",
        },
    ]
