"""Resolve the requested model to a route. Model groups, fallbacks and canaries extend this.

The model table is the live snapshot (routing/live.py): one attribute read per request, and the
request keeps the Route it got (``ctx.route``) even if the table is swapped meanwhile.
"""

from __future__ import annotations

from typing import Protocol

from switchboard.context import RequestContext, Result
from switchboard.errors import ModelNotFound
from switchboard.pipeline.chain import Handler
from switchboard.routing.live import Snapshot


class Table(Protocol):
    current: Snapshot


class RouteStage:
    name = "route"

    def __init__(self, table: Table) -> None:
        self._table = table

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        model = ctx.request.get("model")
        route = self._table.current.routes.get(model) if isinstance(model, str) else None
        if route is None:
            shown = model if isinstance(model, str) and len(model) <= 200 else "(invalid)"
            raise ModelNotFound(
                f"the model '{shown}' does not exist or you do not have access to it", param="model"
            )
        ctx.route = route
        return await call_next(ctx)
