"""``/admin/v1/teams``: the teams of a tenant. Tenant admins manage their tenant's teams; team
roles see their own team only; anything else answers 404 ``team_not_found``."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import ConfigDict, field_validator

from switchboard.access.cache import ALL
from switchboard.access.roles import Reach
from switchboard.config.mcp import McpToolRule
from switchboard.errors import NotFound, PermissionDenied
from switchboard.http.admin import audit
from switchboard.http.admin.authz import Access, allow
from switchboard.http.admin.body import AdminBody
from switchboard.http.admin.one_writer import one_writer
from switchboard.http.admin.query import query_params
from switchboard.http.admin.scoping import (
    After,
    Ident,
    Limit,
    Name,
    Regions,
    TenantQuery,
    conflict,
    new_id,
    page,
    regions_of,
    team_in_reach,
    tenant_in_reach,
    unchanged,
)
from switchboard.stores import Stores, Team
from switchboard.stores.protocols import AuditEntry

router = APIRouter(prefix="/admin/v1/teams", tags=["teams"])


class TeamCreate(AdminBody):
    model_config = ConfigDict(extra="forbid")

    name: Name
    tenant: Ident | None = None  # the platform admin only
    allowed_regions: Regions | None = None  # None: wherever the tenant allows
    mcp_tools: McpToolRule | None = None  # MCP tool permissions of its keys (docs/mcp.md)


class TeamUpdate(AdminBody):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    # Tenant admins and above: a team's own admins may not widen its residency policy.
    allowed_regions: Regions | None = None
    mcp_tools: McpToolRule | None = None

    @field_validator("name")
    @classmethod
    def _given(cls, value: object) -> object:
        # Left out: unchanged. Given: it must be a value; these fields are required on creation.
        if value is None:
            raise ValueError("may not be null")
        return value


def public(team: Team) -> dict[str, Any]:
    return {
        "id": team.id,
        "object": "team",
        "tenant": team.tenant_id,
        "name": team.name,
        "created_at": team.created_at.isoformat(),
        "created_by": team.created_by,
        "allowed_regions": team.allowed_regions,
        "mcp_tools": None if team.mcp_tools is None else dict(team.mcp_tools),
    }


def _stores(request: Request) -> Stores:
    stores: Stores = request.app.state.services.stores()
    return stores


@router.post("", status_code=201, summary="Create a team")
async def create_team(
    body: TeamCreate, request: Request, access: Annotated[Access, Depends(allow("team", "create"))]
) -> dict[str, Any]:
    stores = _stores(request)
    tenant = await tenant_in_reach(access, stores, body.tenant)
    team = Team(id=new_id("team"), tenant_id=tenant, name=body.name, created_by=access.principal.id,
                allowed_regions=regions_of(body.allowed_regions),
                mcp_tools=None if body.mcp_tools is None else body.mcp_tools.model_dump())
    # Stored with its audit entry: an error answered means no team.
    await stores.tenancy.create_team(team, audited=audit.entry(request, "team.create", "team", team.id,
                                                               after=public(team), tenant=tenant))
    return public(team)


@router.get("", summary="List teams (team roles: their own)")
async def list_teams(
    request: Request,
    access: Annotated[Access, Depends(allow("team", "read"))],
    tenant: TenantQuery = None,
    limit: Limit = 100,
    after: After = None,
) -> dict[str, Any]:
    query_params(request, ("tenant", "limit", "after"))  # a misspelt or repeated one is a 400
    stores = _stores(request)
    tenant_id = await tenant_in_reach(access, stores, tenant)
    if access.reach >= Reach.TENANT:
        found = await stores.tenancy.list_teams(tenant_id, after=after, limit=limit + 1)
    else:
        own_id = access.principal.team_id
        own = None if own_id is None else await stores.tenancy.get_team(tenant_id, own_id)
        found = [own] if own is not None and (after is None or own.id > after) else []
    return page(found, limit, public, lambda t: t.id)


@router.get("/{team_id}", summary="One team")
async def get_team(
    team_id: str, request: Request, access: Annotated[Access, Depends(allow("team", "read"))]
) -> dict[str, Any]:
    query_params(request, ())  # misspelt or repeated: a 400, never ignored
    return public(await team_in_reach(access, _stores(request), team_id))


@router.patch("/{team_id}", summary="Rename a team, or set its allowed regions")
async def update_team(
    team_id: str, body: TeamUpdate, request: Request,
    access: Annotated[Access, Depends(allow("team", "update"))],
) -> dict[str, Any]:
    stores = _stores(request)
    # Queued behind the other changes of this team here: each reads what the one before wrote, so
    # copies of one change find it made and write (and audit) nothing.
    async with one_writer("team", team_id):
        before = await team_in_reach(access, stores, team_id)
        changes = body.model_dump(exclude_unset=True)
        if "allowed_regions" in changes:
            if access.reach < Reach.TENANT:
                raise PermissionDenied("a team's allowed regions are set by its tenant's admins",
                                       code="permission_denied")
            changes["allowed_regions"] = regions_of(body.allowed_regions)
        if "mcp_tools" in changes:
            if access.reach < Reach.TENANT:
                raise PermissionDenied("a team's MCP tool permissions are set by its tenant's admins",
                                       code="permission_denied")
            changes["mcp_tools"] = None if body.mcp_tools is None else body.mcp_tools.model_dump()
        if unchanged(before, changes):
            return public(before)  # nothing to change: nothing written, nothing audited

        def audited(after: Team) -> AuditEntry:
            return audit.entry(request, "team.update", "team", team_id, before=public(before),
                               after=public(after), tenant=before.tenant_id)

        # Only the fields given are written: an admin changing another field meanwhile keeps it.
        # Written with its audit entry: an error answered means nothing changed.
        after = await stores.tenancy.update_team(replace(before, **changes), changes, audited=audited)
        if after is None:  # deleted since it was read
            raise NotFound(f"no team '{team_id[:64]}'", code="team_not_found")
    if after.allowed_regions != before.allowed_regions or after.mcp_tools != before.mcp_tools:
        await request.app.state.services.key_cache().changed(ALL)  # keys hold the policy
    return public(after)


@router.delete("/{team_id}", summary="Delete a team without members or keys")
async def delete_team(
    team_id: str, request: Request, access: Annotated[Access, Depends(allow("team", "delete"))]
) -> dict[str, Any]:
    stores = _stores(request)
    team = await team_in_reach(access, stores, team_id)
    _, users, keys = await stores.tenancy.count_members(team.tenant_id, team_id=team.id)
    if users or keys:
        raise conflict(f"the team still has {users} member(s) and {keys} unrevoked key(s): "
                       "move or delete them and revoke the keys first")
    deleted = audit.entry(request, "team.delete", "team", team.id, before=public(team), tenant=team.tenant_id)
    # Emptiness checked again as it goes; deleted with its audit entry (an error: nothing changed).
    if not await stores.tenancy.delete_team(team.tenant_id, team.id, audited=deleted):
        # Read again: another delete that came first leaves nothing to delete (404, as for any
        # team that is gone); a team still there gained a member or a key meanwhile.
        await team_in_reach(access, stores, team_id)
        raise conflict("the team gained a member or a key while it was being deleted; try again")
    # Token callers' tenancy is cached as "every key": dropped, a token naming the deleted team is
    # refused from its next verification (access/residency.py).
    await request.app.state.services.key_cache().changed(ALL)
    return {"id": team.id, "object": "team", "deleted": True}
