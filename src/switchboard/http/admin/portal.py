"""``/admin/v1/catalog``: what the caller's tenant may discover, for a developer portal.

``GET /admin/v1/catalog``               published prompt APIs, REST services and models, each
                                        with the caller team's subscription state; ``?kind=``,
                                        ``?q=``, ``?after=``/``?limit=`` pages.
``GET /admin/v1/catalog/openapi.json``  one OpenAPI 3.1 document for all of it.

Any key of the tenant may read it (the ``catalog`` row of the permission table); another
tenant's APIs and services never appear. The entries come from one source per kind
(portal/sources.py); :func:`register_source` adds one.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from switchboard import __version__
from switchboard.apis import openapi
from switchboard.config.services import METHODS
from switchboard.errors import InvalidRequest
from switchboard.http.admin.authz import Access, allow
from switchboard.http.admin.query import Limit, query_params
from switchboard.http.admin.scoping import TenantQuery, tenant_in_reach
from switchboard.http.apis.docs import serving
from switchboard.portal import (
    ApiSource,
    CatalogQuery,
    Entry,
    ModelSource,
    PortalCatalog,
    ServiceInfo,
    ServiceSource,
    Source,
)
from switchboard.portal.cache import TenantSource
from switchboard.portal.catalog import public
from switchboard.portal.openapi import document

router = APIRouter(prefix="/admin/v1/catalog", tags=["catalog"])

# More sources, built from the admin services (e.g. services registered at run time).
EXTRA_SOURCES: list[Callable[[Any], Source]] = []


def register_source(factory: Callable[[Any], Source]) -> None:
    """Add a kind to the catalog: ``factory(admin services)`` builds its source."""
    EXTRA_SOURCES.append(factory)


def _info(name: str, spec: Any) -> ServiceInfo:
    def get(key: str) -> Any:
        return spec.get(key) if isinstance(spec, Mapping) else getattr(spec, key, None)

    methods = get("methods")
    return ServiceInfo(name=name, description=get("description"), team=get("team"),
                       require_approval=bool(get("require_approval")), openapi_url=get("openapi_url"),
                       methods=tuple(methods) if methods else METHODS)


async def _services(services: Any, tenant: str) -> list[ServiceInfo]:
    """The configuration's services the tenant sees, then the tenant's stored ones (a stored
    service under a configured name is shadowed, as on the request path)."""
    table = services.services
    configured = table.visible(tenant) if table is not None else []
    found = [_info(s.name, s.settings) for s in configured]
    names = {s.name for s in configured}
    store = services.stores().services
    if store is not None:
        found += [_info(r.name, r.spec) for r in await store.list_services(tenant) if r.name not in names]
    return found


def _catalog(request: Request) -> PortalCatalog:
    state = request.app.state
    found: PortalCatalog | None = getattr(state, "portal_catalog", None)
    if found is None:
        services = state.services
        apis = ApiSource(lambda: services.stores().apis, lambda: services.stores().prompts)
        stored = ServiceSource(lambda tenant: _services(services, tenant))
        # Both list the tenant's own, whoever asks: read once per tenant (portal/cache.py).
        sources: list[Source] = [
            TenantSource(apis.kind, apis.listed, services.catalog_cache),
            TenantSource(stored.kind, stored.listed, services.catalog_cache),
        ]
        if services.routing is not None:
            routing = services.routing
            sources.append(ModelSource(lambda: routing.current))
        sources += [factory(services) for factory in EXTRA_SOURCES]
        found = PortalCatalog(sources, lambda: services.stores().subscriptions, services.catalog_cache)
        state.portal_catalog = found
    return found


Text = Annotated[str | None, Query(max_length=200, description="Text in the name, description or owner")]
# An entry's id is "<kind>:<name>", and a model's name may be 256 characters.
MAX_AFTER = 300
After = Annotated[str | None, Query(max_length=MAX_AFTER, description="Last id of the previous page")]


@router.get("", summary="What the caller's tenant may discover, with the team's subscription state")
async def list_catalog(
    request: Request,
    access: Annotated[Access, Depends(allow("catalog", "read"))],
    kind: Annotated[str | None, Query(max_length=32, description="api, service or model")] = None,
    q: Text = None,
    after: After = None,
    limit: Limit = 100,
    tenant: TenantQuery = None,
) -> dict[str, Any]:
    query_params(request, ("kind", "q", "after", "limit", "tenant"), longer={"after": MAX_AFTER})
    catalog = _catalog(request)
    if kind is not None and kind not in catalog.kinds:
        raise InvalidRequest(f"kind: expected one of {', '.join(catalog.kinds)}", param="kind",
                             code="invalid_value")
    scope = await tenant_in_reach(access, request.app.state.services.stores(), tenant)
    page = await catalog.page(scope, access.principal, CatalogQuery(kind=kind, q=q or None, after=after,
                                                                    limit=limit))
    data = [public(entry, sub, access.principal.team_id) for entry, sub in page.entries]
    return {"object": "list", "data": data, "has_more": page.has_more,
            "last_id": data[-1]["id"] if data else None}


@router.get("/openapi.json", summary="One OpenAPI 3.1 document for the whole catalog")
async def catalog_openapi(
    request: Request,
    access: Annotated[Access, Depends(allow("catalog", "read"))],
    tenant: TenantQuery = None,
) -> dict[str, Any]:
    query_params(request, ("tenant",))
    catalog = _catalog(request)
    scope = await tenant_in_reach(access, request.app.state.services.stores(), tenant)
    entries = await catalog.entries(scope, access.principal)
    services = request.app.state.services

    async def operations(tenant: str, name: str) -> openapi.ApiOperations | None:
        apis, prompts = services.stores().apis, services.stores().prompts
        if apis is None or prompts is None:
            return None
        record = await apis.get(tenant, name)
        prompt = await serving(prompts, record) if record is not None else None
        if record is None or prompt is None:
            return None
        return openapi.operations(record, prompt)

    async def api_paths(entry: Entry) -> openapi.ApiOperations | None:
        cache = services.catalog_cache()
        if cache is None:
            return await operations(scope, entry.name)
        cache.use("operations", operations)
        # A copy: the document adds the catalog's own fields to the operations.
        return copy.deepcopy(await cache.value(scope, "operations", entry.name))

    return await document(scope, entries, api_paths, __version__, access.principal.team_id)
