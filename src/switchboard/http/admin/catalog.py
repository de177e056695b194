"""``GET /admin/models``: the model catalog as the gateway sees it.

``GET /admin/models``        every configured model: provider, upstream id and its catalog record.
``GET /admin/models?all=1``  the whole catalog (shipped records plus config overrides).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from switchboard.catalog import Catalog
from switchboard.config.schema import Settings
from switchboard.http.admin.authz import Access, allow

_TRUE = {"1", "true", "yes"}

router = APIRouter()


def configured_models(settings: Settings, catalog: Catalog) -> list[dict[str, Any]]:
    types = {p.name: p.type for p in settings.providers}
    out = []
    for m in settings.models:
        # Each deployment's own record: the deployments of a group may be different models.
        match = catalog.resolve_entry(types[m.provider], m.model, m.info)
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


@router.get("/admin/models", summary="The configured models and their catalog records")
async def models(
    request: Request, access: Annotated[Access, Depends(allow("provider", "read"))], all: str | None = None
) -> dict[str, Any]:
    services = request.app.state.services
    if all is not None and all.lower() in _TRUE:
        return whole_catalog(services.catalog)
    return {"object": "list", "data": configured_models(services.settings, services.catalog)}
