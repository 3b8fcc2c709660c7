"""``AireiterWebhookPlugin``: mounts the AIReiter callback receiver on Airflow's API server.

Airflow 3's API server mounts every plugin's ``fastapi_apps`` entry with ``app.mount(url_prefix, app)``
next to its own ``/api/v2`` and ``/ui`` apps. Airflow's authentication is a dependency of its own
routes, not a middleware, so a mounted plugin app is reachable without an Airflow token: exactly what
AIReiter needs, as it cannot authenticate to Airflow. The receiver checks the per-task HMAC token in
the URL instead. Only ``POST /aireiter/callback/{conn_id}/{out_task_id}`` exists under the mount.

Plugins are imported by every Airflow process (workers too), so this module stays light: the FastAPI
apps (this one's and the media view's) are built on the first request the API server routes to them
(:class:`LazyAsgiApp`).
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import TYPE_CHECKING, Any

from airflow_provider_aireiter.compat import AirflowPlugin
from airflow_provider_aireiter.hooks.aireiter import CALLBACK_MOUNT, redact_query

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send


# ------------------------------------------- apps built on their first request
class LazyAsgiApp:
    """Builds ``module:factory()`` on the first call and hands every request to what it returned."""

    def __init__(self, factory: str) -> None:
        self.factory = factory
        self._app: Any = None

    def build(self) -> Any:
        if self._app is None:
            module, _, name = self.factory.partition(":")
            self._app = getattr(importlib.import_module(module), name)()
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.build()(scope, receive, send)


# ------------------------------------------------------------------ the plugin
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


#: what :mod:`airflow_provider_aireiter.webhook.receiver` uses of Airflow's internals: (module, attribute path)
WAKE_INTERNALS = (
    ("airflow.models.trigger", "Trigger.submit_event"),
    ("airflow.models.trigger", "Trigger.encrypted_kwargs"),
    ("airflow.models.trigger", "Trigger.classpath"),
    ("airflow.models.trigger", "Trigger.created_date"),
    ("airflow.models.trigger", "Trigger.task_instance"),
    ("airflow.models.taskinstance", "TaskInstance.trigger_id"),
    ("airflow.models.taskinstance", "TaskInstance.state"),
    ("airflow.utils.state", "TaskInstanceState.DEFERRED"),
    ("airflow.utils.sqlalchemy", "with_row_locks"),
    ("airflow.utils.session", "provide_session"),
    ("airflow.triggers.base", "TriggerEvent"),
)


def missing_wake_internals(needed: tuple[tuple[str, str], ...] = WAKE_INTERNALS) -> list[str]:
    """The Airflow internals the callback wake uses that this Airflow does not have."""
    import importlib

    missing = []
    for module_name, path in needed:
        try:
            value: object = importlib.import_module(module_name)
            for part in path.split("."):
                value = getattr(value, part)
        except (ImportError, AttributeError):
            missing.append(f"{module_name}.{path}")
    return missing


def check_wake_internals() -> bool:
    """Log an ERROR naming what is missing when this Airflow lacks something the wake uses."""
    missing = missing_wake_internals()
    if missing:
        logging.getLogger(__name__).error(
            "AIReiter callbacks cannot wake deferred tasks on this Airflow: %s missing. Callbacks will be "
            "refused with 503 and tasks finish by polling only (every callback_poll_interval). Upgrade the "
            "provider, or remove the connection's callback settings.",
            ", ".join(missing),
        )
    return not missing


class AireiterWebhookPlugin(AirflowPlugin):
    """Serve AIReiter's completion callbacks at ``POST /aireiter/callback/{conn_id}/{out_task_id}?token=...``.

    Registered through the ``airflow.plugins`` entry point and the provider info, so installing the
    provider is enough; expose that path of the API server to AIReiter (see the connection's
    ``callback_base_url`` and ``callback_secret`` extras).
    """

    name = "aireiter_webhook"

    @classmethod
    def on_load(cls, *args: object, **kwargs: object) -> None:
        """In the API server (the one process that serves callbacks), check what the wake relies on."""
        if "airflow.api_fastapi.app" in sys.modules:
            check_wake_internals()

    fastapi_apps = [
        {
            "app": LazyWebhookApp(),
            "url_prefix": CALLBACK_MOUNT,
            "name": "AIReiter callbacks",
        }
    ]
