"""``GET /admin/models``: the model catalog as the gateway sees it.

``GET /admin/models``        every model deployment, the YAML's and those added at run time:
                             provider, upstream id and its catalog record.
``GET /admin/models?all=1``  the whole catalog (shipped records plus config overrides).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from switchboard.catalog import Catalog
from switchboard.config.schema import ModelConfig, Settings
from switchboard.errors import InvalidRequest
from switchboard.http.admin.authz import Access, allow
from switchboard.http.admin.query import query_params
from switchboard.routing.live import LiveRouting

_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}

router = APIRouter()


def configured_models(settings: Settings, catalog: Catalog,
                      routing: LiveRouting | None = None) -> list[dict[str, Any]]:
    """Every deployment the gateway serves: the YAML's, in the file's order, then the models
    added through the admin API (``/admin/v1/models``) as the current model table holds them."""
    types = {p.name: p.type for p in settings.providers}
    out = [_row(m, types[m.provider], catalog, "config") for m in settings.models]
    if routing is not None:
        table, yaml = routing.current, {m.name for m in settings.models}
        out += [_row(m, table.routes[name].target.provider_type, catalog, "database")
                for name, m in table.models.items() if name not in yaml]
    return out


def _row(m: ModelConfig, provider_type: str, catalog: Catalog, source: str) -> dict[str, Any]:
    # Each deployment's own record: the deployments of a group may be different models.
    match = catalog.resolve_entry(provider_type, m.model, m.info)
    return {
        "id": m.name,
        "object": "model",
        "provider": m.provider,
        "provider_type": provider_type,
        "model": m.model,
        # How the record was found (exact | base | prefix | config); see docs/catalog.md.
        "catalog_match": match.kind if match else None,
        "catalog": match.info.record() if match else None,
        "source": source,  # config (the YAML) | database (added at run time), as /admin/v1/models
    }


def whole_catalog(catalog: Catalog) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [info.record() for info in catalog.entries()],
        "sources": catalog.sections,
    }


@router.get("/admin/models", summary="The configured models and their catalog records")
async def models(
    request: Request, access: Annotated[Access, Depends(allow("provider", "read"))], all: str | None = None
) -> dict[str, Any]:
    services = request.app.state.services
    # Anything else (?all=on, ?alll=1) answered the served models as a success: not what was asked.
    query_params(request, ("all",))
    if all is not None and all.lower() not in _TRUE | _FALSE:
        raise InvalidRequest("all: expected 1, true or yes (or 0, false or no)", param="all",
                             code="invalid_value")
    if all is not None and all.lower() in _TRUE:
        return whole_catalog(services.catalog)
    data = configured_models(services.settings, services.catalog, services.routing)
    return {"object": "list", "data": data}
