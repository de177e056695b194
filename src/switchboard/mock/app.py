"""The mock upstream application: every provider format this package knows, on one server.

Each provider's mock is a module exposing ``routes()``; add yours to ``_MODULES``.
"""

from __future__ import annotations

import base64
import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from switchboard.mock.capture import Captures, MockMiddleware, captured, install_log_filter
from switchboard.mock.common import STATS
from switchboard.mock.controls import Controls
from switchboard.mock.faults import FaultPlan

_MODULES: tuple[str, ...] = (
    "openai",
    "anthropic",
    "gemini",
    "cohere",
    "bedrock",
    "azure",
    "mistral",
    "files",
    "message_batches",  # Anthropic's Message Batches (mock/message_batches.py)
    "media",  # moderations, images, audio, rerank (mock/media.py)
)


# A 1x1 transparent PNG, served for image-URL tests.
PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


async def pixel(request: Request) -> Response:
    return Response(PIXEL_PNG, media_type="image/png")


async def stats(request: Request) -> Response:
    return JSONResponse(STATS.as_dict())


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    # After uvicorn has configured logging: expected events (a deliberate drop, a request still
    # hanging at shutdown) are reported in one line, not as tracebacks.
    install_log_filter()
    yield


def create_mock_app(controls: Controls | None = None, api_key: str | None = None) -> Starlette:
    routes: list[BaseRoute] = [
        Route("/images/pixel.png", pixel, methods=["GET"]),
        Route("/_mock/stats", stats, methods=["GET"]),
        Route("/_mock/captured/{marker}", captured, methods=["GET"]),
    ]
    for name in _MODULES:
        routes.extend(importlib.import_module(f"switchboard.mock.{name}").routes())
    app = Starlette(routes=routes, middleware=[Middleware(MockMiddleware)], lifespan=lifespan)
    app.state.controls = controls or Controls()
    app.state.api_key = api_key
    app.state.captures = Captures()
    app.state.faults = FaultPlan()
    return app
