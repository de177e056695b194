"""``GET /admin/v1/alerts``: alert incidents, open and recent, newest first.

Who sees what (docs/observability.md, "Alerts"): deployment incidents (error rate, latency,
breaker) are about the gateway's shared model table and are the platform admin's only, like
the routing they describe; a budget incident belongs to its budget's tenant, whose tenant
admins see it (and only theirs). The platform admin sees every incident, or one tenant's with
``?tenant=``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from switchboard.access.roles import Reach
from switchboard.errors import GatewayError, InvalidRequest, NotFound
from switchboard.http.admin.authz import Access, allow
from switchboard.http.admin.query import digits_only, query_params
from switchboard.http.admin.scoping import UtcTime
from switchboard.observability.alerts.incidents import public
from switchboard.stores.protocols import Incident, IncidentQuery

router = APIRouter(prefix="/admin/v1/alerts", tags=["alerts"])


class AlertsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Literal["open", "resolved"] | None = None
    kind: Literal["error_rate", "latency", "breaker", "budget"] | None = None
    rule: str | None = Field(default=None, min_length=1, max_length=64)
    since: UtcTime | None = None
    before: str | None = Field(default=None, min_length=1, max_length=64,
                               description="Cursor: the incidents after this one (last_id of a page)")
    limit: Annotated[int, digits_only(1, 1000)] = Field(default=100, ge=1, le=1000)
    tenant: str | None = Field(default=None, min_length=1, max_length=64,
                               description="One tenant's incidents (platform admin only)")


ALLOWED = frozenset(AlertsQuery.model_fields)


def _listed(cursor: Incident, params: AlertsQuery, tenant: str | None) -> bool:
    """Whether the cursor could be on a page of this list. Its state is not checked: an incident
    resolved between two pages of open ones still marks where the next page starts (the order,
    started_at then id, never changes), so paging on through a changing list keeps working."""
    return ((tenant is None or cursor.tenant_id == tenant)
            and (params.kind is None or cursor.kind == params.kind)
            and (params.rule is None or cursor.rule == params.rule)
            and (params.since is None or cursor.started_at >= params.since))


@router.get("", summary="Alert incidents, open and recent, newest first")
async def list_incidents(
    request: Request,
    access: Annotated[Access, Depends(allow("alert", "read"))],
    params: Annotated[AlertsQuery, Query()],
) -> dict[str, Any]:
    query_params(request, ALLOWED)  # a repeated parameter is a 400, as on logs and analytics
    store = request.app.state.services.stores().incidents
    if store is None:
        raise GatewayError("alert incidents are not available", status=503, code="alerts_unavailable")
    # The platform admin: every incident (the platform's and every tenant's), or one tenant's.
    # Anyone else: their own tenant's (naming another is a 404).
    tenant = params.tenant if access.reach >= Reach.ANY else access.tenant_for(params.tenant)
    if tenant is not None and tenant != access.tenant:
        # A tenant that never existed is a 404, as on the other lists; a deleted one's incidents
        # outlive it (as its audit log and usage do), so its name still lists them.
        tenancy = request.app.state.services.stores().tenancy
        if await tenancy.get_tenant(tenant) is None and not await tenancy.tenant_retired(tenant):
            raise NotFound(f"no tenant '{tenant[:64]}'", code="tenant_not_found")
    if params.before is not None:
        # A cursor names an incident of this list: an unknown one (or one outside the caller's
        # reach, never said to exist) would silently read as "no more incidents", and one the
        # filters leave out is another list's last_id.
        cursor = await store.get(params.before)
        if cursor is None or not _listed(cursor, params, tenant):
            raise InvalidRequest("before: not an incident of this list (pass the last_id of the "
                                 "previous page)", param="before", code="invalid_cursor")
    query = IncidentQuery(tenant_id=tenant, state=params.state, kind=params.kind, rule=params.rule,
                          since=params.since, before_id=params.before, limit=params.limit + 1)
    found = await store.query(query)
    page = found[:params.limit]
    return {
        "object": "list",
        "data": [public(i) for i in page],
        "has_more": len(found) > params.limit,
        "last_id": page[-1].id if page else None,
    }
