"""Admin endpoints: the model catalog as the gateway sees it. Master key (admin role) required.

``GET /admin/models``        every configured model: provider, upstream id and its catalog record.
``GET /admin/models?all=1``  the whole catalog (shipped records plus config overrides).

Errors use the OpenAI error body, like every other endpoint.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson

from switchboard.catalog import Catalog
from switchboard.errors import GatewayError, PermissionDenied
from switchboard.gateway import Gateway
from switchboard.http.asgi import JSON_CT, Receive, Scope, Send, encode_headers, header_dict, send_bytes

_TRUE = {"1", "true", "yes"}


def configured_models(gateway: Gateway) -> list[dict[str, Any]]:
    types = {p.name: p.type for p in gateway.settings.providers}
    out = []
    for m in gateway.settings.models:
        match = gateway.catalog.configured(m.name)
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


def _wants_all(scope: Scope) -> bool:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return any(v.lower() in _TRUE for v in query.get("all", []))


class CatalogEndpoint:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            principal = self.gateway.authenticator.authenticate(header_dict(scope))
            if principal.role != "admin":
                raise PermissionDenied("this endpoint needs the master key")
        except GatewayError as err:
            body = orjson.dumps(err.to_openai())
            await send_bytes(send, err.status, body, encode_headers(err.headers), JSON_CT)
            return
        if _wants_all(scope):
            payload = whole_catalog(self.gateway.catalog)
        else:
            payload = {"object": "list", "data": configured_models(self.gateway)}
        await send_bytes(send, 200, orjson.dumps(payload), [], JSON_CT)
