"""``LazyAsgiApp``: an ASGI app that builds the real one on its first request.

Plugins are imported by every Airflow process (workers and DAG processors too), so a plugin's
``fastapi_apps`` entry must not import FastAPI or the views behind it. The real app is built by a
factory named by its import path, the first time the API server routes a request to it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send


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
