"""Resolve the requested model to a route. Model groups, fallbacks and canaries extend this."""

from __future__ import annotations

from switchboard.context import RequestContext, Result
from switchboard.errors import ModelNotFound
from switchboard.pipeline.chain import Handler
from switchboard.routing.table import Route


class RouteStage:
    name = "route"

    def __init__(self, routes: dict[str, Route]) -> None:
        self._routes = routes

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        model = ctx.request.get("model")
        route = self._routes.get(model) if isinstance(model, str) else None
        if route is None:
            shown = model if isinstance(model, str) and len(model) <= 200 else "(invalid)"
            raise ModelNotFound(
                f"the model '{shown}' does not exist or you do not have access to it", param="model"
            )
        ctx.route = route
        return await call_next(ctx)
