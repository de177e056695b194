"""The admin API: the terminal handler of every ``/admin/*`` request.

It runs behind the same stage chain as every other endpoint, so it receives the authenticated
principal in ``ctx``; the access issue's admin framework replaces the route table below. Today:

``GET /admin/models``        every configured model: provider, upstream id and its catalog record.
``GET /admin/models?all=1``  the whole catalog (shipped records plus config overrides).

Errors use the OpenAI error body, like every other endpoint. Only the platform admin role (the
master key) may call it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from switchboard.catalog import Catalog
from switchboard.config.schema import Settings
from switchboard.context import Reply, RequestContext, Result
from switchboard.errors import PermissionDenied
from switchboard.http.errors import MethodNotAllowed, unknown_url

_TRUE = {"1", "true", "yes"}

AdminHandler = Callable[[RequestContext], Awaitable[Result]]


def configured_models(settings: Settings, catalog: Catalog) -> list[dict[str, Any]]:
    types = {p.name: p.type for p in settings.providers}
    out = []
    for m in settings.models:
        match = catalog.configured(m.name)
        out.append({
            "id": m.name,
            "object": "model",
            "provider": m.provider,
            "provider_type": types[m.provider],
            "model": m.model,
            # How the record was found (exact | base | prefix | config); see docs/catalog.md.
            "catalog_match": match.kind if match else None,
            "catalog": match.info.record() if match else None,
        })
    return out


def whole_catalog(catalog: Catalog) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [info.record() for info in catalog.entries()],
        "sources": catalog.sections,
    }


def _wants_all(query: str) -> bool:
    return any(v.lower() in _TRUE for v in parse_qs(query).get("all", []))


class AdminAPI:
    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self._settings = settings
        self._catalog = catalog
        self.routes: dict[tuple[str, str], AdminHandler] = {("GET", "/admin/models"): self.models}
        self._paths = {path for _, path in self.routes}

    async def __call__(self, ctx: RequestContext) -> Result:
        principal = ctx.principal
        if principal is None or principal.role != "admin":
            raise PermissionDenied("this endpoint needs the master key")
        handler = self.routes.get((ctx.method, ctx.path))
        if handler is None:
            if ctx.path in self._paths:
                raise MethodNotAllowed(f"method {ctx.method} is not allowed on {ctx.path}")
            raise unknown_url(ctx.method, ctx.path)
        return await handler(ctx)

    async def models(self, ctx: RequestContext) -> Result:
        if _wants_all(ctx.query):
            return Reply(whole_catalog(self._catalog))
        return Reply({"object": "list", "data": configured_models(self._settings, self._catalog)})
