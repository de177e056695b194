"""``/admin/v1/users`` and ``/admin/v1/service-accounts``: the people of a tenant and the
service accounts standing for its applications, one resource ("user") in the permission table.

A user has a role (any but the platform admin's) and usually a team. Nobody gives a role above
their own, nor changes or deletes a user whose role is above their own (403 permission_denied).
Team admins manage their own team's members only; a developer reads only itself; anything out of
reach answers 404 ``user_not_found`` (``service_account_not_found``).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import ConfigDict, field_validator

from switchboard.access.roles import DEVELOPER, PLATFORM_ADMIN, RANK, ROLES, TEAM_ADMIN, Reach, may_grant
from switchboard.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from switchboard.http.admin import audit, keys
from switchboard.http.admin.authz import Access, allow
from switchboard.http.admin.body import AdminBody
from switchboard.http.admin.one_writer import one_writer
from switchboard.http.admin.query import query_params
from switchboard.http.admin.scoping import (
    CHANGE_ATTEMPTS,
    After,
    Email,
    Ident,
    Limit,
    Name,
    TenantQuery,
    conflict,
    new_id,
    page,
    team_in_reach,
    tenant_in_reach,
    unchanged,
    user_in_reach,
)
from switchboard.stores import SERVICE_ACCOUNT, USER, KeyQuery, KeyRecord, Stores, User, UserQuery
from switchboard.stores.protocols import AuditEntry

Role = Literal["tenant_admin", "team_admin", "developer", "viewer"]
assert set(Role.__args__) == set(ROLES) - {PLATFORM_ADMIN}  # type: ignore[attr-defined]


class UserCreate(AdminBody):
    model_config = ConfigDict(extra="forbid")

    name: Name
    email: Email | None = None
    role: Role = DEVELOPER
    team: Ident | None = None
    tenant: Ident | None = None  # the platform admin only


class UserUpdate(AdminBody):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    email: Email | None = None
    role: Role | None = None
    team: Ident | None = None

    @field_validator("name", "role")
    @classmethod
    def _given(cls, value: object) -> object:
        # Left out: unchanged. Given: it must be a value; these fields are required on creation.
        if value is None:
            raise ValueError("may not be null")
        return value


def public(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "object": user.kind,
        "tenant": user.tenant_id,
        "team": user.team_id,
        "role": user.role,
        "name": user.name,
        "email": user.email,
        "created_at": user.created_at.isoformat(),
        "created_by": user.created_by,
    }


def _stores(request: Request) -> Stores:
    stores: Stores = request.app.state.services.stores()
    return stores


def _may_grant(access: Access, role: str) -> None:
    if not may_grant(access.principal.role, role):
        raise PermissionDenied(f"the role '{access.principal.role}' may not give or manage the role '{role}'",
                               code="permission_denied")


async def _team(access: Access, stores: Stores, tenant: str, team_id: str | None) -> str | None:
    """The team a created or updated user belongs to: it must exist in the tenant and be within
    reach; a team admin's members are always in their own team."""
    if access.reach <= Reach.TEAM:
        own = access.principal.team_id
        if own is None or (team_id is not None and team_id != own):
            raise NotFound(f"no team '{(team_id or '')[:64]}'", code="team_not_found")
        return own
    if team_id is None:
        return None
    team = await team_in_reach(access, stores, team_id)
    if team.tenant_id != tenant:
        raise NotFound(f"no team '{team_id[:64]}'", code="team_not_found")
    return team.id


def _check_team_role(role: str, team: str | None) -> None:
    if role == TEAM_ADMIN and team is None:
        raise InvalidRequest("team: a team admin needs a team", param="team", code="invalid_value")


def make_router(kind: str) -> APIRouter:
    path = "users" if kind == USER else "service-accounts"
    prefix = "user" if kind == USER else "sa"
    what = "user" if kind == USER else "service account"
    router = APIRouter(prefix=f"/admin/v1/{path}", tags=[path])
    # /users reads people and service accounts alike (filter with ?kind=); /service-accounts only those.
    read_kind = None if kind == USER else SERVICE_ACCOUNT

    @router.post("", status_code=201, summary=f"Create a {what}")
    async def create(
        body: UserCreate, request: Request, access: Annotated[Access, Depends(allow("user", "create"))]
    ) -> dict[str, Any]:
        stores = _stores(request)
        _may_grant(access, body.role)
        requested = body.tenant
        if requested is None and body.team is not None and access.reach >= Reach.ANY:
            # The platform admin names a team by id (unique across tenants): its tenant is meant.
            named = await stores.tenancy.find_team(body.team)
            requested = named.tenant_id if named is not None else None
        tenant = await tenant_in_reach(access, stores, requested)
        team = await _team(access, stores, tenant, body.team)
        _check_team_role(body.role, team)
        user = User(id=new_id(prefix), tenant_id=tenant, role=body.role, kind=kind, team_id=team,
                    name=body.name, email=body.email, created_by=access.principal.id)
        # A team read as a record is held by the insert: one deleted meanwhile keeps no member.
        held = team is not None and access.reach > Reach.TEAM
        # Stored with its audit entry: an error answered means no user.
        created = audit.entry(request, f"{kind}.create", kind, user.id, after=public(user), tenant=tenant)
        if not await stores.tenancy.create_user(user, team_held=held, audited=created):
            raise NotFound(f"no team '{team}'", code="team_not_found")
        return public(user)

    @router.get("", summary=f"List {what}s within reach")
    async def list_users(
        request: Request,
        access: Annotated[Access, Depends(allow("user", "read"))],
        tenant: TenantQuery = None,
        team: Annotated[str | None, Query(max_length=64)] = None,
        role: Role | None = None,
        kind: Literal["user", "service_account"] | None = None,
        limit: Limit = 100,
        after: After = None,
    ) -> dict[str, Any]:
        query_params(request, ("tenant", "team", "role", "kind", "limit", "after"))  # no filter ignored
        stores = _stores(request)
        tenant_id = await tenant_in_reach(access, stores, tenant)
        p = access.principal
        query = UserQuery(team_id=team, role=role, kind=read_kind or kind, after=after, limit=limit + 1)
        if access.reach == Reach.TEAM:
            if p.team_id is None or (team is not None and team != p.team_id):
                return page([], limit, public, lambda u: u.id)
            query = replace(query, team_id=p.team_id)
        if access.reach <= Reach.SELF:
            me = None if p.user_id is None else await stores.tenancy.get_user(tenant_id, p.user_id)
            found = [me] if me is not None and _matches(me, query) else []
        else:
            found = await stores.tenancy.list_users(tenant_id, query)
        return page(found, limit, public, lambda u: u.id)

    @router.get("/{user_id}", summary=f"One {what}")
    async def get(
        user_id: str, request: Request, access: Annotated[Access, Depends(allow("user", "read"))]
    ) -> dict[str, Any]:
        query_params(request, ())  # misspelt or repeated: a 400, never ignored
        return public(await user_in_reach(access, _stores(request), user_id, read_kind))

    @router.patch("/{user_id}", summary=f"Change a {what}'s name, email, role or team")
    async def update(
        user_id: str, body: UserUpdate, request: Request,
        access: Annotated[Access, Depends(allow("user", "update"))],
    ) -> dict[str, Any]:
        stores = _stores(request)
        async with one_writer("user", user_id):
            for _ in range(CHANGE_ATTEMPTS):
                before = await user_in_reach(access, stores, user_id, read_kind)
                _may_grant(access, before.role)
                changes = body.model_dump(exclude_unset=True)
                if "role" in changes:
                    if body.role is None:
                        raise InvalidRequest("role: must be a role", param="role", code="invalid_value")
                    _may_grant(access, body.role)
                if "team" in changes:
                    changes["team_id"] = await _team(access, stores, before.tenant_id, changes.pop("team"))
                wanted = replace(before, **changes)
                _check_team_role(wanted.role, wanted.team_id)
                if unchanged(before, changes):
                    return public(before)  # nothing to change: nothing written, nothing audited
                # The keys follow in the user's own transaction (keys_above), each with its
                # key.update entry: a write that fails midway leaves neither changed, and the
                # retry does both. Read first, to tell every instance which may have changed.
                demoted = RANK[wanted.role] < RANK[before.role]
                above = [role for role in ROLES if RANK[role] > RANK[wanted.role]] if demoted else []
                held = await _keys_of(stores, before) if demoted or wanted.team_id != before.team_id else []
                def audited(after: User, before: User = before) -> AuditEntry:
                    return audit.entry(request, f"{before.kind}.update", before.kind, user_id,
                                       before=public(before), after=public(after), tenant=before.tenant_id)

                # Only the fields given are written, so a concurrent change of another field stays;
                # the role and team, checked together, only while they are still the ones read. Its
                # audit entry is written with it (an error answered: nothing changed).
                stored = await stores.tenancy.update_user(
                    wanted, changes, read=before, keys_above=above, audited=audited,
                    keys_audited=partial(_key_followed, request))
                if stored is not None:
                    after = stored
                    break
            else:
                raise Conflict(f"the {what} kept changing while it was being updated: try again",
                               code="user_changed")
        await _keys_followed(request, held)
        return public(after)

    @router.delete("/{user_id}", summary=f"Delete a {what} that holds no unrevoked key")
    async def delete(
        user_id: str, request: Request, access: Annotated[Access, Depends(allow("user", "delete"))]
    ) -> dict[str, Any]:
        stores = _stores(request)
        user = await user_in_reach(access, stores, user_id, read_kind)
        _may_grant(access, user.role)
        held = [k for k in await _keys_of(stores, user) if k.enabled]
        if held:
            raise conflict(f"the {what} still holds {len(held)} unrevoked key(s): revoke them first")
        # Keys checked again as it goes; deleted with its audit entry (an error: nothing changed).
        deleted = audit.entry(request, f"{user.kind}.delete", user.kind, user.id, before=public(user),
                              tenant=user.tenant_id)
        if not await stores.tenancy.delete_user(user.tenant_id, user.id, audited=deleted):
            if await stores.tenancy.get_user(user.tenant_id, user.id) is None:  # another delete was first
                raise NotFound(f"no {what} '{user_id[:64]}'", code=f"{what.replace(' ', '_')}_not_found")
            raise conflict(f"the {what} was given a key while it was being deleted: revoke it first")
        return {"id": user.id, "object": user.kind, "deleted": True}

    return router


async def _keys_of(stores: Stores, owner: User) -> list[KeyRecord]:
    """Every key the user or service account owns (as its user or as its service account), read
    a page at a time rather than every key of the tenant."""
    found: dict[str, KeyRecord] = {}
    for as_user in (True, False):
        after: str | None = None
        while True:
            query = (KeyQuery(user_id=owner.id, after=after, limit=_PAGE) if as_user
                     else KeyQuery(service_account_id=owner.id, after=after, limit=_PAGE))
            page = await stores.keys.page_keys(owner.tenant_id, query)
            found.update((k.id, k) for k in page)
            if len(page) < _PAGE:
                break
            after = page[-1].id
    return sorted(found.values(), key=lambda k: (k.created_at, k.id))


_PAGE = 500


def _key_followed(request: Request, before: KeyRecord, after: KeyRecord) -> AuditEntry:
    """The ``key.update`` entry of a key that followed its owner (moved to its new team, or down
    to its new role: a demoted user keeps no key of its former rank), written with the owner's
    change."""
    return audit.entry(request, "key.update", "api_key", before.id, before=keys.public(before),
                       after=keys.public(after), tenant=before.tenant_id)


async def _keys_followed(request: Request, held: list[KeyRecord]) -> None:
    """Every instance drops the keys ``held`` before the owner's change at once (those that did
    not follow it are read again as they are)."""
    cache = request.app.state.services.key_cache()
    for key in held:
        await cache.changed(key.key_hash)


def _matches(user: User, query: UserQuery) -> bool:
    return all(want is None or want == have for want, have in (
        (query.team_id, user.team_id), (query.role, user.role), (query.kind, user.kind))) and (
        query.after is None or user.id > query.after)


users_router = make_router(USER)
service_accounts_router = make_router(SERVICE_ACCOUNT)
