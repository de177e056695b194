"""The audit log: every admin change recorded (who, when, from where, what, before and after,
never a secret), and ``GET /admin/v1/audit`` to read it, per tenant, newest first, filtered.
Tenant admins read their tenant's log; the platform admin any tenant's (``?tenant=``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from switchboard.access.roles import Reach
from switchboard.context import Principal
from switchboard.http.admin.authz import Access, allow
from switchboard.http.admin.query import MAX_BIGINT, digits_only, query_params
from switchboard.http.admin.scoping import UtcTime
from switchboard.stores.protocols import AuditEntry, AuditQuery

router = APIRouter(prefix="/admin/v1/audit", tags=["audit"])
DEFAULT_TENANT = "default"
# Gateway-wide changes (of no tenant's records) are filed in the default tenant's log; only the
# platform admin may read these resources (access/roles.py), so only it reads their entries: a
# tenant admin of the default tenant would otherwise read providers' settings in the log. Models
# too: every role reads them, but each only those its key may use (GET /admin/v1/models), and an
# entry would name any model and its upstream id.
PLATFORM_TYPES = ("provider", "provider_credential", "model", "deployment", "split", "server_secret")
Filter = Annotated[str, StringConstraints(max_length=128)]


def entry(request: Request, action: str, resource_type: str, resource_id: str, *,
          before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
          tenant: str | None = None) -> AuditEntry:
    """The entry of the change this request makes, for the store to write with the change, in
    its transaction (both or neither). ``before``/``after`` are the public forms of the
    resource, which never hold a secret. ``tenant``: the tenant the changed record belongs to
    (default: the caller's), whose admins read the entry."""
    principal: Principal = request.state.principal
    return AuditEntry(
        tenant_id=tenant or principal.tenant_id or DEFAULT_TENANT,
        actor=principal.id,
        actor_role=principal.role,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        before=before,
        after=after,
        client=request.client.host if request.client else None,
        request_id=request.state.request_id,
    )


# Who the gateway's own changes are filed under (a key chain's budgets deleted once its keys expired).
SYSTEM_ACTOR = "system"


def system_entry(action: str, resource_type: str, resource_id: str, *, tenant: str,
                 before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> AuditEntry:
    """The entry of a change the gateway made on its own, no request behind it: actor and role
    ``system``, no client or request id."""
    return AuditEntry(
        tenant_id=tenant, actor=SYSTEM_ACTOR, actor_role=SYSTEM_ACTOR, action=action,
        resource_type=resource_type, resource_id=resource_id, before=before, after=after)


def _public(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "object": "audit_entry",
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "actor_role": entry.actor_role,
        "action": entry.action,
        "resource_type": entry.resource_type,
        "resource_id": entry.resource_id,
        "before": entry.before,
        "after": entry.after,
        "client": entry.client,
        "request_id": entry.request_id,
    }


class AuditParams(BaseModel):
    """The query string: a parameter not listed here is a 400, as on logs, usage and alerts."""

    model_config = ConfigDict(extra="forbid")

    action: Filter | None = None
    resource_id: Filter | None = None
    actor: Filter | None = None
    since: UtcTime | None = None
    # Entry ids are the database's 64-bit integers: a larger cursor is a 400, not a driver error.
    before: Annotated[int | None, digits_only(1, MAX_BIGINT)] = Field(default=None, ge=1, le=MAX_BIGINT,
                               description="Cursor: entries older than this id (last_id of a page).")
    limit: Annotated[int, digits_only(1, 1000)] = Field(default=100, ge=1, le=1000)
    tenant: str | None = Field(default=None, max_length=64,
                               description="Another tenant's log (platform admin only)")


ALLOWED = frozenset(AuditParams.model_fields)


@router.get("", summary="Admin changes, newest first")
async def list_entries(
    request: Request,
    access: Annotated[Access, Depends(allow("audit", "read"))],
    params: Annotated[AuditParams, Query()],
) -> dict[str, Any]:
    query_params(request, ALLOWED)  # a repeated parameter is a 400, as on logs and alerts
    limit = params.limit
    hidden = () if access.reach >= Reach.ANY else PLATFORM_TYPES
    query = AuditQuery(action=params.action, resource_id=params.resource_id, actor=params.actor,
                       since=params.since, before_id=params.before, limit=limit + 1, hidden_types=hidden)
    store = request.app.state.services.stores().audit
    entries = await store.query(access.tenant_for(params.tenant), query)
    page = entries[:limit]
    return {
        "object": "list",
        "data": [_public(e) for e in page],
        "has_more": len(entries) > limit,
        "last_id": page[-1].id if page else None,
    }
