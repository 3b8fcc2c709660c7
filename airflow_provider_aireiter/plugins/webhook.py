"""``AireiterWebhookPlugin``: mounts the AIReiter callback receiver on Airflow's API server.

Airflow 3's API server mounts every plugin's ``fastapi_apps`` entry with ``app.mount(url_prefix, app)``
next to its own ``/api/v2`` and ``/ui`` apps. Airflow's authentication is a dependency of its own
routes, not a middleware, so a mounted plugin app is reachable without an Airflow token: exactly what
AIReiter needs, as it cannot authenticate to Airflow. The receiver checks the per-task HMAC token in
the URL instead. Only ``POST /aireiter/callback/{conn_id}/{out_task_id}`` exists under the mount.

Plugins are imported by every Airflow process (workers too), so this module stays light: the FastAPI
app is only built on the first request the API server routes to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_aireiter.compat import AirflowPlugin
from airflow_provider_aireiter.plugins.lazy_app import LazyAsgiApp
from airflow_provider_aireiter.webhook.tokens import CALLBACK_MOUNT, redact_query

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send


class LazyWebhookApp(LazyAsgiApp):
    """The callback receiver (:func:`create_callback_app`), built on its first request."""

    def __init__(self) -> None:
        super().__init__("airflow_provider_aireiter.webhook.receiver:create_callback_app")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # The API server's access log prints the query string of the scope Airflow routed here: uvicorn's
            # (Airflow 3.1) when the response starts, Airflow's own middleware (3.2) when it has finished;
            # only 3.3 masks ``token=`` itself. So the routed scope keeps a redacted query string, and the
            # receiver gets a copy with the real one.
            query = scope.get("query_string", b"")
            scope["query_string"] = redact_query(query)
            scope = {**scope, "query_string": query}
        await super().__call__(scope, receive, send)


class AireiterWebhookPlugin(AirflowPlugin):
    """Serve AIReiter's completion callbacks at ``POST /aireiter/callback/{conn_id}/{out_task_id}?token=...``.

    Registered through the ``airflow.plugins`` entry point and the provider info, so installing the
    provider is enough; expose that path of the API server to AIReiter (see the connection's
    ``callback_base_url`` and ``callback_secret`` extras).
    """

    name = "aireiter_webhook"
    fastapi_apps = [
        {
            "app": LazyWebhookApp(),
            "url_prefix": CALLBACK_MOUNT,
            "name": "AIReiter callbacks",
        }
    ]
