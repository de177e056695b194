"""``/admin/v1/keys``: issue, list and revoke the gateway's API keys (changing one in place,
``PATCH``, is key_update.py).

Minimal contract (other tools depend on it): ``POST /admin/v1/keys`` with ``{"models": [...]}``
(optional ``team``, ``user``, ``expires_at``, ``metadata``, ``name``, ``rpm_limit``, ``tpm_limit``,
``max_budget_usd``, ``budget_period``) answers 201 with the new
key's ``id`` and ``key`` (shown this once, never again); ``GET /admin/v1/keys`` lists keys
without their secrets; ``DELETE /admin/v1/keys/{id}`` revokes. Rotation
(``POST /admin/v1/keys/{id}/rotate``) issues a new key with the same settings and the same
lineage (its budgets, spend and limits carry on) and lets the old one work for a grace period;
a revoked, expired or already rotated key is not rotated (400). Every change is published on the
change feed, so every instance stops (or starts) accepting the key at once.

Scoping: every route sees only the keys within the caller's reach (``access/roles.py``): a key
out of reach answers 404 ``key_not_found``. A created key's role must be one the creator may
grant, its models ones the creator may use itself (:func:`grantable`), and its MCP tool rule,
expiry, rate limits, own budget and regions within the creator's key's own
(:func:`tools_grantable`, :func:`expiry_within`, :func:`limit_within`, :func:`budget_within`,
:func:`regions_within`; each left out, it gets the creator's); team
admins issue keys for their team only, developers for themselves only. A named
``user``/``service_account``/``team`` must exist in the tenant and be within reach, except for the
platform admin, who may name owners that have no record (as before tenancy existed).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, field_validator

from switchboard.access import keys as keyfmt
from switchboard.access import tool_rules
from switchboard.access.roles import DEFAULT_KEY_ROLE, RANK, ROLES, Reach, may_grant
from switchboard.access.rules import within
from switchboard.config.mcp import McpToolRule
from switchboard.context import Principal
from switchboard.errors import Conflict, GatewayError, InvalidRequest, NotFound, PermissionDenied
from switchboard.http.admin import audit
from switchboard.http.admin.authz import Access, allow
from switchboard.http.admin.body import LINE, AdminBody
from switchboard.http.admin.budgets import Period, UsdAmount, quantize_usd, revoke_with
from switchboard.http.admin.limits import RpmLimit, TokenLimit
from switchboard.http.admin.one_writer import one_writer
from switchboard.http.admin.query import Limit, TrueOrFalse, query_params
from switchboard.http.admin.scoping import (
    CHANGE_ATTEMPTS,
    Regions,
    TenantQuery,
    UtcTime,
    made_here,
    tenant_in_reach,
)
from switchboard.stores import SERVICE_ACCOUNT, Stores, User
from switchboard.stores.protocols import AuditEntry, KeyQuery, KeyRecord
from switchboard.stores.protocols.access import NO_TEAM, ROTATED_TO

router = APIRouter(prefix="/admin/v1/keys", tags=["keys"])

Name = Annotated[str, StringConstraints(min_length=1, max_length=200), LINE]
Ident = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@=/-]+$")]
Role = Annotated[str, StringConstraints(max_length=32)]
MetaValue = Annotated[str, StringConstraints(max_length=1000)] | int | float | bool | None
# Metadata the gateway writes on rotation: a retired key is known by ROTATED_TO.
ROTATED_FROM = "rotated_from"


def _future(value: datetime) -> datetime:
    if value <= datetime.now(UTC):
        raise ValueError("must be in the future")
    return value


def _not_the_gateways(value: dict[str, Any]) -> dict[str, Any]:
    for name in (ROTATED_FROM, ROTATED_TO):
        if name in value:
            raise ValueError(f"'{name}' is set by the gateway when a key is rotated")
    return value


# The settings a key is issued with and may later be changed to (key_update.py): one definition,
# so both validate alike.
Models = Annotated[list[Name], Field(min_length=1, max_length=1000)]
Expiry = Annotated[UtcTime, AfterValidator(_future)]
Metadata = Annotated[dict[Name, MetaValue], Field(max_length=50), AfterValidator(_not_the_gateways)]
Tags = Annotated[list[Tag], Field(max_length=20)]
MODELS_DOC = "Model names or `*` patterns the key may use; `[\"*\"]` for every model."
EXPIRY_DOC = "RFC 3339 with a time zone, in the future."
REGIONS_DOC = "Regions its requests may be served in, within its team's and tenant's."
BOUND_DOC = " At most the caller's key's own, if any (left out: the caller's; docs/access.md)."
MCP_TOOLS_DOC = "MCP tool permissions: {allow: [patterns] | null, deny: [patterns]} (docs/mcp.md)."


class KeyCreate(AdminBody):
    model_config = ConfigDict(extra="forbid")

    models: Models = Field(description=MODELS_DOC)
    name: Name | None = None
    team: Ident | None = None
    user: Ident | None = None
    expires_at: Expiry | None = Field(default=None, description=EXPIRY_DOC)
    metadata: Metadata = Field(default_factory=dict)
    role: Role | None = Field(default=None, description="Default developer; at most the creator's role.")
    service_account: Ident | None = None
    tags: Tags = Field(default_factory=list)
    tenant: Ident | None = Field(default=None, description="Another tenant (platform admin only).")
    rpm_limit: RpmLimit | None = Field(default=None, description="Requests per minute." + BOUND_DOC)
    tpm_limit: TokenLimit | None = Field(default=None, description="Tokens per minute." + BOUND_DOC)
    max_budget_usd: UsdAmount | None = Field(default=None, description="Its own budget in USD." + BOUND_DOC)
    budget_period: Period | None = Field(default=None, description="Its period; default total.")
    allowed_regions: Regions | None = Field(default=None, description=REGIONS_DOC)
    mcp_tools: McpToolRule | None = Field(default=None, description=MCP_TOOLS_DOC)

    @field_validator("role")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        if value is not None and value not in ROLES:
            raise ValueError("must be one of " + ", ".join(ROLES))
        return value


def stored_regions(value: list[str] | None) -> tuple[str, ...] | None:
    """A key's regions as stored: sorted, each once; None (anywhere within its team's) stays."""
    return None if value is None else tuple(sorted(set(value)))


def stored_tools(rule: McpToolRule | None) -> dict[str, Any] | None:
    return None if rule is None else rule.model_dump()


def stores_of(request: Request) -> Stores:
    stores: Stores = request.app.state.services.stores()
    return stores


def _visible(access: Access, record: KeyRecord) -> bool:
    """Within reach: by tenant, team, owner (user or service account), or the caller's own key."""
    owner = record.user_id or record.service_account_id
    if access.owner_team is not None and (record.team_id or NO_TEAM) != access.owner_team:
        owner = None  # a key reaches its user's keys of its own team only
    return access.sees(record.tenant_id, record.team_id, owner) or access.sees(
        record.tenant_id, record.team_id, record.id)


def _reach_of(access: Access) -> dict[str, Any]:
    """:func:`_visible` as a key query's scope, so a page holds only keys within reach."""
    p = access.principal
    if access.reach >= Reach.TENANT:
        return {}
    if access.reach >= Reach.TEAM:
        return {"team_scope": p.team_id} if p.team_id is not None else {"owners": ()}
    return {"owners": tuple(i for i in (p.user_id, p.key_id, p.id) if i is not None),
            "owner_team": access.owner_team}


async def key_in_reach(access: Access, stores: Stores, key_id: str) -> KeyRecord:
    if access.reach >= Reach.ANY:
        record = await stores.keys.find(key_id)
    else:
        record = await stores.keys.get(access.tenant, key_id)
    if record is None or not _visible(access, record):
        raise NotFound(f"no key with id '{key_id[:64]}'", code="key_not_found")
    return record


def denied(message: str) -> PermissionDenied:
    return PermissionDenied(message, code="permission_denied")


def outranks(access: Access, record: KeyRecord) -> None:
    """Rotating a key issues one of the same role, and revoking, blocking or changing it disarms
    someone: none is for a caller whose role is below the key's (it may see the key, not act on
    it)."""
    if not may_grant(access.principal.role, record.role):
        role = access.principal.role
        raise denied(f"the role '{role}' may not act on a key with the role '{record.role}'")


def grantable(access: Access, models: list[str]) -> None:
    """A caller gives a key (issued or changed) only models it may use itself: a key limited to
    some models cannot hand out others (the master key and unlimited callers may name any)."""
    own = access.principal.allowed_models
    for i, entry in enumerate(models):
        if not within(entry, own):
            raise PermissionDenied(
                f"models[{i}]: '{entry[:200]}' is beyond the models the caller may use itself "
                f"({', '.join(own or ())[:500]})", param=f"models[{i}]", code="permission_denied")


def tools_grantable(access: Access, rule: Mapping[str, Any] | None) -> None:
    """A caller gives a key (issued or changed) MCP tool permissions only within its own key's:
    a key an admin restricted cannot lift its restriction by changing itself or issuing another
    (the master key and callers whose key has no rule may give any)."""
    found = tool_rules.beyond(rule, access.principal.key_mcp_tools)
    if found is not None:
        where, why = found
        param = f"mcp_tools.{where}" if where else "mcp_tools"
        raise PermissionDenied(f"{param}: {why}", param=param, code="permission_denied")


def inherited_tools(access: Access) -> dict[str, Any] | None:
    """The MCP tool rule of a key issued without one: the issuer's own, when it has one."""
    own = access.principal.key_mcp_tools
    return dict(own) if tool_rules.restricts(own) and own is not None else None


def _beyond(param: str, why: str) -> PermissionDenied:
    return PermissionDenied(f"{param}: {why}", param=param, code="permission_denied")


def expiry_within(access: Access, value: datetime | None, *, cleared: bool = False) -> datetime | None:
    """A key (issued or changed) expires no later than the caller's own key: issued without an
    expiry it gets the caller's; ``cleared`` (``null`` on a change) is refused to such a caller."""
    own = access.principal.key_expires_at
    if own is None or (value is None and not cleared):
        return own if value is None else value
    if value is None or value > own:
        shown = "no expiry" if value is None else value.isoformat()
        raise _beyond("expires_at", f"{shown} is later than the caller's own key's expiry "
                      f"({own.isoformat()})")
    return value


def limit_within(access: Access, param: str, value: int | None, *, cleared: bool = False) -> int | None:
    """A key's ``rpm_limit`` or ``tpm_limit`` no higher than the caller's key's own (its own
    when left out; ``cleared``: none is refused to such a caller)."""
    own: int | None = getattr(access.principal, param)
    if value is None and not cleared:
        return own
    if own is not None and (value is None or value > own):
        shown = f"no {param}" if value is None else str(value)
        raise _beyond(param, f"{shown} is above the caller's own key's {param} ({own})")
    return value


def budget_within(access: Access, amount: Decimal | None, period: str | None, *, cleared: bool = False
                  ) -> tuple[Decimal | None, str | None]:
    """A key's own budget (amount, period) within the caller's key's: left out, the caller's
    (``cleared``: none is refused to a caller with one);
    given, no higher, for the same period or ``total`` (a total of at most the caller's amount
    is within any period; another period is refused, as not certainly within)."""
    p = access.principal
    if amount is None and not cleared:
        return p.max_budget_usd, p.budget_period
    if p.max_budget_usd is None:
        return amount, None if amount is None else period or "total"
    own = f"{format(p.max_budget_usd.normalize(), 'f')} USD, {p.budget_period}"
    if amount is None:  # cleared: none is beyond the caller's
        raise _beyond("max_budget_usd", f"no budget is above the caller's own key's budget ({own})")
    period = period or "total"
    if period not in (p.budget_period, "total"):
        raise _beyond("budget_period", f"'{period}' is not within the caller's own key's budget ({own}): "
                      f"use '{p.budget_period}' or 'total'")
    if amount > p.max_budget_usd:
        raise _beyond("max_budget_usd", f"{format(amount.normalize(), 'f')} is above the caller's own key's "
                      f"budget ({own})")
    return amount, period


def regions_within(access: Access, regions: list[str] | None, *, cleared: bool = False
                   ) -> tuple[str, ...] | None:
    """A key's ``allowed_regions`` (as stored) among the caller's key's own: left out, the
    caller's; ``cleared`` (``null`` on a change) is refused to such a caller."""
    own = access.principal.key_regions
    if own is None or (regions is None and not cleared):
        return own if regions is None else stored_regions(regions)
    if regions is None:
        raise _beyond("allowed_regions", "anywhere is beyond the caller's own key's regions "
                      f"({', '.join(own)[:500]})")
    for i, region in enumerate(regions):
        if region not in own:
            raise _beyond(f"allowed_regions[{i}]", f"'{region}' is beyond the caller's own key's regions "
                          f"({', '.join(own)[:500]})")
    return stored_regions(regions)


def public(record: KeyRecord) -> dict[str, Any]:
    """A key as the API shows it: never the key or its hash."""
    return {
        "id": record.id,
        "object": "api_key",
        "prefix": record.prefix,
        "name": record.name,
        "models": list(record.allowed_models) if record.allowed_models is not None else None,
        "tenant": record.tenant_id,
        "team": record.team_id,
        "user": record.user_id,
        "role": record.role,
        "enabled": record.enabled and not record.blocked,  # false: revoked, or blocked
        "revoked": not record.enabled,
        "expires_at": record.expires_at.isoformat() if record.expires_at else None,
        "created_at": record.created_at.isoformat(),
        "created_by": record.created_by,
        "last_used_at": record.last_used_at.isoformat() if record.last_used_at else None,
        "metadata": dict(record.metadata),
        "tags": list(record.tags),
        "service_account": record.service_account_id,
        "rpm_limit": record.rpm_limit,
        "tpm_limit": record.tpm_limit,
        "max_budget_usd": None if record.max_budget_usd is None else float(record.max_budget_usd),
        "budget_period": record.budget_period,
        "allowed_regions": None if record.allowed_regions is None else list(record.allowed_regions),
        "mcp_tools": None if record.mcp_tools is None else dict(record.mcp_tools),
        "lineage": record.lineage,
        # false: issued before keys had a check; while one is live, made-up keys cost a query.
        "checked": record.checked,
        "updated_at": record.updated_at.isoformat() if record.updated_at else None,
    }


def _lacks(p: Principal, what: str, for_a_key: str) -> str:
    """Why a caller without a user (or team) may not issue keys, naming what it presented: a JWT
    caller has no key, and its issuer's claims mapping takes no such claim."""
    issuer = (p.metadata or {}).get("issuer") if p.key_id is None else None
    if not isinstance(issuer, str):
        return for_a_key
    return (f"a token of the issuer {issuer} carries no {what} (the issuer's claims mapping takes "
            f"none): the role '{p.role}' issues keys only for its own {what}")


@dataclass
class _Owner:
    tenant: str
    team: str | None
    user: str | None
    service_account: str | None
    role: str
    # The owners read as records ("tenant", "team", "user"): the key is stored only while they
    # still are. Others may have no record (an owner named by the platform admin, a token's).
    records: frozenset[str] = frozenset()


async def _owner(body: KeyCreate, access: Access, stores: Stores) -> _Owner:
    """Whose key this is and with which role, as far as the creator may reach."""
    p = access.principal
    platform = access.reach >= Reach.ANY
    if body.user is not None and body.service_account is not None:
        raise InvalidRequest("name either a user or a service account", param="service_account",
                             code="invalid_value")
    if body.role is not None and not may_grant(p.role, body.role):
        raise denied(f"the role '{p.role}' may not issue keys with the role '{body.role}'")
    tenant = access.tenant_for(body.tenant)
    if platform and body.tenant is None:
        # The platform admin names owners by id, which are unique across tenants: the key
        # belongs to the owner's tenant.
        named_id = body.user or body.service_account
        found = await stores.tenancy.find_user(named_id) if named_id else None
        team_found = await stores.tenancy.find_team(body.team) if body.team and not found else None
        tenant = found.tenant_id if found else team_found.tenant_id if team_found else tenant
    records = set()
    if platform:
        if await stores.tenancy.get_tenant(tenant) is None:
            raise NotFound(f"no tenant '{tenant[:64]}'", code="tenant_not_found")
        records.add("tenant")
    named, kind_code = body.user, "user_not_found"
    if body.service_account is not None:
        named, kind_code = body.service_account, "service_account_not_found"
    team = body.team
    if access.reach <= Reach.SELF:  # developers: keys for themselves only
        if p.user_id is None:
            raise denied(_lacks(p, "user", "only a key that belongs to a user or a service account "
                                           "may issue keys"))
        if named is not None and named != p.user_id:
            raise NotFound(f"no such owner '{named[:64]}'", code=kind_code)
        if team is not None and team != p.team_id:
            raise NotFound(f"no team '{team[:64]}'", code="team_not_found")
        named, team = p.user_id, p.team_id
    elif access.reach == Reach.TEAM:  # team admins: keys of their team only
        if p.team_id is None:
            raise denied(_lacks(p, "team", "only a key that belongs to a team may issue keys for it"))
        if team is not None and team != p.team_id:
            raise NotFound(f"no team '{team[:64]}'", code="team_not_found")
        team = p.team_id
    elif team is not None:
        # The master key may name a team without a record, but not one of ours that is gone.
        if await stores.tenancy.get_team(tenant, team) is not None:
            records.add("team")
        elif not platform or made_here(team, "team"):
            raise NotFound(f"no team '{team[:64]}'", code="team_not_found")

    user: User | None = None
    if named is not None:
        user = await stores.tenancy.get_user(tenant, named)
        wrong_kind = user is not None and body.service_account is not None and user.kind != SERVICE_ACCOUNT
        if user is None or wrong_kind or not access.sees(user.tenant_id, user.team_id, user.id):
            # The platform admin may name an owner without a record; a developer's own key (or
            # token, from an identity provider) may belong to one (issued before users existed).
            # Not a deleted one, though: a key issued meanwhile would outlive its owner.
            deleted = platform and (made_here(named, "user") or made_here(named, "sa"))
            if not (platform or access.reach <= Reach.SELF) or wrong_kind or deleted:
                raise NotFound(f"no such owner '{named[:64]}'", code=kind_code)
            user = None
    role = body.role or DEFAULT_KEY_ROLE
    if user is not None:
        # A key reaches its owner's other keys, request log and usage (to read, whatever its own
        # role): a key for a user above the caller's role would show the caller that user's.
        if user.id != p.user_id and not may_grant(p.role, user.role):
            raise denied(f"the role '{p.role}' may not issue keys owned by a user whose role is "
                         f"'{user.role}'")
        if body.team is not None and user.team_id is not None and body.team != user.team_id:
            raise InvalidRequest(f"team: the owner belongs to the team '{user.team_id}'", param="team",
                                 code="invalid_value")
        team = team or user.team_id
        if RANK[role] > RANK[user.role]:
            if body.role is not None:
                raise denied(f"a key may not have a role above its owner's ('{user.role}')")
            role = user.role
        checked = frozenset(records | {"user"})
        if user.kind == SERVICE_ACCOUNT:
            return _Owner(tenant, team, None, user.id, role, checked)
        return _Owner(tenant, team, user.id, None, role, checked)
    if body.service_account is not None and named == body.service_account:
        return _Owner(tenant, team, None, named, role, frozenset(records))
    return _Owner(tenant, team, named, None, role, frozenset(records))


@router.post("", status_code=201, summary="Issue a key (the key is shown once, in this answer)")
async def create_key(
    body: KeyCreate, request: Request, access: Annotated[Access, Depends(allow("key", "create"))]
) -> JSONResponse:
    services = request.app.state.services
    if services.hashing is None:
        raise GatewayError("keys cannot be issued: no server secret (auth.secret_key)", status=503)
    if body.budget_period is not None and body.max_budget_usd is None:
        raise InvalidRequest("budget_period: a period needs max_budget_usd", param="budget_period",
                             code="invalid_value")
    stores = stores_of(request)
    owner = await _owner(body, access, stores)
    grantable(access, body.models)
    mcp_tools = stored_tools(body.mcp_tools) if body.mcp_tools is not None else inherited_tools(access)
    tools_grantable(access, mcp_tools)
    # Nor does it outlast, outpace, outspend or leave the caller's own key (left out: the caller's).
    expires_at = expiry_within(access, body.expires_at)
    rpm_limit = limit_within(access, "rpm_limit", body.rpm_limit)
    tpm_limit = limit_within(access, "tpm_limit", body.tpm_limit)
    amount = None if body.max_budget_usd is None else quantize_usd(body.max_budget_usd)
    budget, period = budget_within(access, amount, body.budget_period)
    regions = regions_within(access, body.allowed_regions)
    key = keyfmt.new_key(services.hashing)
    record = KeyRecord(
        id="key_" + secrets.token_hex(8),
        key_hash=keyfmt.key_hash(key, services.hashing),
        prefix=keyfmt.prefix_of(key),
        tenant_id=owner.tenant,
        team_id=owner.team,
        user_id=owner.user,
        service_account_id=owner.service_account,
        role=owner.role,
        allowed_models=tuple(body.models),
        expires_at=expires_at,
        metadata=body.metadata,
        tags=tuple(body.tags),
        name=body.name,
        created_by=access.principal.id,
        rpm_limit=rpm_limit,
        tpm_limit=tpm_limit,
        max_budget_usd=budget,
        budget_period=period,
        allowed_regions=regions,
        mcp_tools=mcp_tools,
        checked=True,
    )
    # Stored only while its owners are (a delete of one may be under way): the store checks. Its
    # audit entry is written with it: an error answered means no key.
    created = audit.entry(request, "key.create", "api_key", record.id, after=public(record),
                          tenant=record.tenant_id)
    if not await stores.keys.issue(record, owner.records, audited=(created,)):
        raise NotFound("the key's tenant, team, user or service account was deleted meanwhile",
                       code="owner_not_found")
    await services.key_cache().changed(record.key_hash)  # forget a cached "no such key" anywhere
    return JSONResponse({**public(record), "key": key}, status_code=201)


class KeyRotate(AdminBody):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: Annotated[int, Field(ge=0, le=30 * 86400)] = Field(
        default=3600, description="How long the old key keeps working (0: it stops at once)."
    )


def _rotatable(old: KeyRecord, now: datetime) -> None:
    """Only a live key is rotated: a successor of a revoked, expired or already replaced key
    would bring back a key its owner had done with (or give a second live successor)."""
    if not old.enabled:
        raise InvalidRequest("a revoked key cannot be rotated", code="key_disabled")
    if old.blocked:
        raise InvalidRequest("a blocked key cannot be rotated: unblock it first", code="key_disabled")
    successor = old.metadata.get(ROTATED_TO)
    if successor is not None:
        raise InvalidRequest(f"the key was already rotated (to '{successor}'): rotate that key instead",
                             code="key_rotated")
    if old.expires_at is not None and old.expires_at <= now:
        raise InvalidRequest("an expired key cannot be rotated", code="key_expired")


def _successor_within(access: Access, old: KeyRecord) -> None:
    """A rotation gives the caller a key with ``old``'s settings (its secret in the answer): held
    to the caller's key's bounds as a key it issues is, none of them missing, its models and MCP
    tool rule included."""
    grantable(access, ["*"] if old.allowed_models is None else list(old.allowed_models))  # None: every model
    tools_grantable(access, old.mcp_tools)
    expiry_within(access, old.expires_at, cleared=True)
    limit_within(access, "rpm_limit", old.rpm_limit, cleared=True)
    limit_within(access, "tpm_limit", old.tpm_limit, cleared=True)
    budget_within(access, old.max_budget_usd, old.budget_period, cleared=True)
    regions_within(access, None if old.allowed_regions is None else list(old.allowed_regions), cleared=True)


def _successor(request: Request, access: Access, old: KeyRecord, now: datetime, grace: timedelta
               ) -> tuple[str, KeyRecord, KeyRecord]:
    """A rotation's new key (its secret and record) and the old key as retired by it."""
    services = request.app.state.services
    grace_end = now + grace
    key = keyfmt.new_key(services.hashing)
    new = replace(
        old,
        id="key_" + secrets.token_hex(8),
        key_hash=keyfmt.key_hash(key, services.hashing),
        prefix=keyfmt.prefix_of(key),
        created_at=now,
        created_by=access.principal.id,
        last_used_at=None,
        metadata={**old.metadata, ROTATED_FROM: old.id},
        lineage_id=old.lineage,  # its budgets, spend and limits carry on
        revision=0,
        updated_at=None,
        checked=True,  # the successor of a key from before the check has one
    )
    retired = replace(
        old,
        expires_at=min(old.expires_at, grace_end) if old.expires_at else grace_end,
        metadata={**old.metadata, ROTATED_TO: new.id},
        updated_at=now,
    )
    return key, new, retired


@router.post("/{key_id}/rotate", status_code=201, summary="Replace a key after a grace period")
async def rotate_key(
    key_id: str,
    request: Request,
    access: Annotated[Access, Depends(allow("key", "rotate"))],
    body: Annotated[KeyRotate | None, Body()] = None
) -> JSONResponse:
    services = request.app.state.services
    if services.hashing is None:
        raise GatewayError("keys cannot be issued: no server secret (auth.secret_key)", status=503)
    store = stores_of(request).keys
    grace = timedelta(seconds=(body or KeyRotate()).grace_seconds)
    async with one_writer("key", key_id):
        for _ in range(CHANGE_ATTEMPTS):
            # Read (again, after a lost compare-and-set): a revoke or rotation that landed meanwhile
            # is refused as for a key read so; a PATCH that did is no reason to refuse.
            old = await key_in_reach(access, stores_of(request), key_id)
            outranks(access, old)
            _successor_within(access, old)
            now = datetime.now(UTC)
            _rotatable(old, now)
            key, new, retired = _successor(request, access, old, now, grace)
            assert retired.expires_at is not None
            # The rotation and its two entries are one transaction: an error answered changed nothing.
            audited = (audit.entry(request, "key.rotate", "api_key", old.id, before=public(old),
                                   after=public(retired), tenant=old.tenant_id),
                       audit.entry(request, "key.create", "api_key", new.id, after=public(new),
                                   tenant=new.tenant_id))
            if await store.rotate(old, new, retired.expires_at, audited=audited):
                break
        else:
            raise Conflict("the key kept changing while it was being rotated: try again", code="key_changed")
    await services.key_cache().changed(old.key_hash)
    await services.key_cache().changed(new.key_hash)
    answer = {**public(new), "key": key, "rotated_from": old.id}
    answer["previous_expires_at"] = public(retired)["expires_at"]
    return JSONResponse(answer, status_code=201)


@router.get("", summary="List the keys within reach (never their secrets)")
async def list_keys(
    request: Request,
    access: Annotated[Access, Depends(allow("key", "read"))],
    limit: Limit = 100,
    after: Annotated[str | None, Query(max_length=64, description="Last id of the previous page")] = None,
    tenant: TenantQuery = None,
    team: Annotated[str | None, Query(max_length=64)] = None,
    user: Annotated[str | None, Query(max_length=64)] = None,
    service_account: Annotated[str | None, Query(max_length=64)] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    checked: Annotated[bool | None, TrueOrFalse,
                       Query(description="false: keys issued before keys had a check")] = None,
) -> dict[str, Any]:
    # A misspelt or repeated filter would list (and invite acting on) keys nobody asked for.
    query_params(request, ("limit", "after", "tenant", "team", "user", "service_account", "tag", "checked"))
    query = KeyQuery(team_id=team, user_id=user, service_account_id=service_account, tag=tag, checked=checked,
                     after=after, limit=limit + 1, **_reach_of(access))
    scope = await tenant_in_reach(access, stores_of(request), tenant)
    try:
        records = await stores_of(request).keys.page_keys(scope, query)
    except ValueError:
        raise InvalidRequest("after: unknown cursor", param="after", code="invalid_value") from None
    page = records[:limit]
    return {
        "object": "list",
        "data": [public(r) for r in page],
        "has_more": len(records) > limit,
        "last_id": page[-1].id if page else None,
    }


@router.get("/{key_id}", summary="One key (never its secret)")
async def get_key(
    key_id: str, request: Request, access: Annotated[Access, Depends(allow("key", "read"))]
) -> dict[str, Any]:
    query_params(request, ())  # misspelt or repeated: a 400, never ignored
    return public(await key_in_reach(access, stores_of(request), key_id))


@router.delete("/{key_id}", summary="Revoke a key: it stops working on every instance")
async def revoke_key(
    key_id: str, request: Request, access: Annotated[Access, Depends(allow("key", "revoke"))]
) -> dict[str, Any]:
    services = request.app.state.services
    store = stores_of(request).keys
    record = await key_in_reach(access, stores_of(request), key_id)
    outranks(access, record)
    tenant = record.tenant_id
    answer = {"id": key_id, "object": "api_key", "deleted": True}

    def audited(revoked: KeyRecord) -> AuditEntry:
        return audit.entry(request, "key.revoke", "api_key", key_id, before=public(record),
                           after=public(revoked), tenant=tenant)

    # The revoke, its audit entry and the end of its chain's budgets are one transaction: an
    # error answered means nothing changed.
    if await revoke_with(request, record, audited) is None:
        if await store.get(tenant, key_id) is not None:  # revoked already (maybe just now): no change
            return answer
        raise NotFound(f"no key with id '{key_id[:64]}'", code="key_not_found")
    await services.key_cache().changed(record.key_hash)
    return answer
