"""The mock upstream application: every provider format this package knows, on one server.

Each provider's mock is a module exposing ``routes()``; add yours to ``_MODULES``.
"""

from __future__ import annotations

import importlib

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from switchboard.mock.controls import Controls

_MODULES: tuple[str, ...] = ("openai",)


def create_mock_app(controls: Controls | None = None, api_key: str | None = None) -> Starlette:
    routes: list[BaseRoute] = []
    for name in _MODULES:
        routes.extend(importlib.import_module(f"switchboard.mock.{name}").routes())
    app = Starlette(routes=routes)
    app.state.controls = controls or Controls()
    app.state.api_key = api_key
    return app
