"""``/admin/v1/tenants``: the organisations. Only the platform admin creates and deletes them;
a tenant's own people read it (and its admins rename it); another tenant answers 404."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import ConfigDict

from switchboard.access.cache import ALL
from switchboard.access.roles import Reach
from switchboard.errors import Conflict, NotFound, PermissionDenied
from switchboard.http.admin import audit
from switchboard.http.admin.authz import DEFAULT_TENANT, Access, allow
from switchboard.http.admin.body import AdminBody
from switchboard.http.admin.budgets import delete_tenant_with
from switchboard.http.admin.one_writer import one_writer
from switchboard.http.admin.query import query_params
from switchboard.http.admin.scoping import (
    After,
    Ident,
    Limit,
    Name,
    Regions,
    conflict,
    page,
    regions_of,
    unchanged,
)
from switchboard.stores import Stores, Tenant
from switchboard.stores.protocols import AuditEntry
from switchboard.stores.protocols.tenancy import TenantIdRetired

router = APIRouter(prefix="/admin/v1/tenants", tags=["tenants"])


class TenantCreate(AdminBody):
    model_config = ConfigDict(extra="forbid")

    id: Ident
    name: Name | None = None
    allowed_regions: Regions | None = None  # None: anywhere


class TenantUpdate(AdminBody):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    # The platform admin only: a tenant's own admins may not widen its residency policy.
    allowed_regions: Regions | None = None


def public(tenant: Tenant) -> dict[str, Any]:
    return {
        "id": tenant.id,
        "object": "tenant",
        "name": tenant.name,
        "created_at": tenant.created_at.isoformat(),
        "created_by": tenant.created_by,
        "allowed_regions": tenant.allowed_regions,
    }


def _stores(request: Request) -> Stores:
    stores: Stores = request.app.state.services.stores()
    return stores


async def _get(access: Access, stores: Stores, tenant_id: str) -> Tenant:
    tenant = await stores.tenancy.get_tenant(tenant_id) if access.sees(tenant_id) else None
    if tenant is None:
        raise NotFound(f"no tenant '{tenant_id[:64]}'", code="tenant_not_found")
    return tenant


@router.post("", status_code=201, summary="Create a tenant")
async def create_tenant(
    body: TenantCreate, request: Request, access: Annotated[Access, Depends(allow("tenant", "create"))]
) -> dict[str, Any]:
    tenant = Tenant(id=body.id, name=body.name, created_by=access.principal.id,
                    allowed_regions=regions_of(body.allowed_regions))
    # Stored with its audit entry: an error answered means no tenant.
    created = audit.entry(request, "tenant.create", "tenant", tenant.id, after=public(tenant),
                          tenant=tenant.id)
    try:
        await _stores(request).tenancy.create_tenant(tenant, audited=created)
    except TenantIdRetired:
        raise Conflict(f"the id '{body.id}' was a deleted tenant's and is not reused (its data is "
                       "still filed under it): choose another", code="tenant_id_retired") from None
    except ValueError:
        raise conflict(f"the tenant '{body.id}' exists already") from None
    return public(tenant)


@router.get("", summary="List tenants (everyone but the platform admin sees only their own)")
async def list_tenants(
    request: Request,
    access: Annotated[Access, Depends(allow("tenant", "read"))],
    limit: Limit = 100,
    after: After = None,
) -> dict[str, Any]:
    query_params(request, ("limit", "after"))  # a misspelt or repeated one is a 400
    stores = _stores(request)
    if access.reach >= Reach.ANY:
        found = await stores.tenancy.list_tenants(after=after, limit=limit + 1)
    else:
        own = await stores.tenancy.get_tenant(access.tenant)
        found = [own] if own is not None and (after is None or own.id > after) else []
    return page(found, limit, public, lambda t: t.id)


@router.get("/{tenant_id}", summary="One tenant")
async def get_tenant(
    tenant_id: str, request: Request, access: Annotated[Access, Depends(allow("tenant", "read"))]
) -> dict[str, Any]:
    query_params(request, ())  # misspelt or repeated: a 400, never ignored
    return public(await _get(access, _stores(request), tenant_id))


@router.patch("/{tenant_id}", summary="Rename a tenant, or set its allowed regions")
async def update_tenant(
    tenant_id: str,
    body: TenantUpdate,
    request: Request,
    access: Annotated[Access, Depends(allow("tenant", "update"))],
) -> dict[str, Any]:
    stores = _stores(request)
    # Queued behind the other changes of this tenant here: each reads what the one before wrote, so
    # copies of one change find it made and write (and audit) nothing.
    async with one_writer("tenant", tenant_id):
        before = await _get(access, stores, tenant_id)
        changes = body.model_dump(exclude_unset=True)
        if "allowed_regions" in changes:
            if access.reach < Reach.ANY:
                raise PermissionDenied("only the platform admin sets a tenant's allowed regions",
                                       code="permission_denied")
            changes["allowed_regions"] = regions_of(body.allowed_regions)
        if unchanged(before, changes):
            return public(before)  # nothing to change: nothing written, nothing audited

        def audited(after: Tenant) -> AuditEntry:
            return audit.entry(request, "tenant.update", "tenant", tenant_id, before=public(before),
                               after=public(after), tenant=tenant_id)

        # Only the fields given are written: an admin changing another field meanwhile keeps it.
        # Written with its audit entry: an error answered means nothing changed.
        stored = await stores.tenancy.update_tenant(replace(before, **changes), changes, audited=audited)
        if stored is None:  # deleted since it was read
            raise NotFound(f"no tenant '{tenant_id[:64]}'", code="tenant_not_found")
    after = stored
    if after.allowed_regions != before.allowed_regions:
        await request.app.state.services.key_cache().changed(ALL)  # keys hold the policy
    return public(after)


@router.delete("/{tenant_id}", summary="Delete an empty tenant")
async def delete_tenant(
    tenant_id: str, request: Request, access: Annotated[Access, Depends(allow("tenant", "delete"))]
) -> dict[str, Any]:
    stores = _stores(request)
    tenant = await _get(access, stores, tenant_id)
    if tenant.id == DEFAULT_TENANT:
        raise conflict("the default tenant cannot be deleted")
    teams, users, keys = await stores.tenancy.count_members(tenant.id)
    if teams or users or keys:
        raise conflict(f"the tenant still has {teams} team(s), {users} user(s) and {keys} "
                       "unrevoked key(s): delete or revoke them first")
    # The tenant, its budgets (out of reach once it is gone: its lists answer 404) and all their
    # audit entries go in one transaction: an error answered means nothing changed.
    audited = audit.entry(request, "tenant.delete", "tenant", tenant.id, before=public(tenant),
                          tenant=tenant.id)
    if not await delete_tenant_with(request, tenant.id, audited):  # emptiness checked again as it goes
        # Read again: another delete that came first leaves nothing to delete (404, as for any
        # tenant that is gone); a tenant still there gained a team, a user or a key meanwhile.
        await _get(access, stores, tenant_id)
        raise conflict("the tenant gained a team, a user or a key while it was being deleted; try again")
    # Token callers' tenancy is cached as "every key": dropped, a token naming the deleted tenant
    # is refused from its next verification (access/residency.py).
    await request.app.state.services.key_cache().changed(ALL)
    return {"id": tenant.id, "object": "tenant", "deleted": True}
