"""``GET /admin/v1/usage/unpriced``: the served models whose calls cannot be priced.

A model without an input price (or, for a model that writes, an output price) in the catalog and
its entry's ``info:`` is recorded with ``unpriced: true`` and a cost that counts its tokens as 0;
with ``spend.refuse_unpriced`` its calls are refused. Readable by whoever may read the models.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from switchboard.http.admin.authz import Access, allow
from switchboard.http.admin.query import query_params

router = APIRouter()


@router.get("/admin/v1/usage/unpriced", summary="Served models with no known price")
async def unpriced(
    request: Request, access: Annotated[Access, Depends(allow("model", "read"))]
) -> dict[str, Any]:
    query_params(request, ())  # misspelt or repeated: a 400, never ignored
    services = request.app.state.services
    data = services.prices.unpriced() if services.prices is not None else []
    return {"object": "list", "data": data,
            "refused": services.settings.spend.refuse_unpriced}
