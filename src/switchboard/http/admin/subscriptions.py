"""``/admin/v1/subscriptions``: teams ask to use models that need approval; tenant admins decide.

A model with ``require_approval: true`` serves a team's keys only once the team's subscription
to it is approved (``pipeline/subscription.py``). ``POST`` asks (pending), ``/approve``,
``/reject`` and ``/revoke`` decide; ``/withdraw`` is the team taking back its own pending request.
A rejected, revoked or withdrawn team may ask again. Every change is
audited and published on the change feed, so every instance applies it within moments.
What each role may do is the ``subscription`` rows of the permission table (``access/roles.py``);
a subscription outside the caller's reach is 404.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field, StringConstraints

from switchboard.access.roles import Reach
from switchboard.errors import Conflict, InvalidRequest, NotFound
from switchboard.http.admin import audit
from switchboard.http.admin.authz import Access, allow
from switchboard.http.admin.body import PROSE, AdminBody
from switchboard.http.admin.query import Limit, query_params
from switchboard.http.admin.scoping import tenant_in_reach
from switchboard.stores.protocols import (
    AuditEntry,
    SubscriptionExists,
    SubscriptionQuery,
    SubscriptionRecord,
)
from switchboard.stores.protocols.access import RevokeAudited

router = APIRouter(prefix="/admin/v1/subscriptions", tags=["subscriptions"])

Ident = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=1000), PROSE]
Status = Literal["pending", "approved", "rejected", "revoked", "withdrawn"]


# What else than models a team can subscribe to: a kind ("api", "service") and a resolver
# (request, tenant, name, team) -> whether the team needs approval to call it, None when the
# tenant has no such thing. The subject is stored as "<kind>:<name>" (the request path checks
# the same string).
Resolver = Callable[[Request, str, str, str], Awaitable[bool | None]]
SUBJECT_KINDS: dict[str, Resolver] = {}


def register_subject(kind: str, resolver: Resolver) -> None:
    """Let teams subscribe to ``kind`` (POST body field of that name), e.g. published APIs."""
    SUBJECT_KINDS[kind] = resolver


def subject_of(kind: str, name: str) -> str:
    return f"{kind}:{name}"


class SubscriptionCreate(AdminBody):
    model_config = ConfigDict(extra="forbid")

    model: ModelName | None = Field(default=None,
                                    description="A model that needs approval (`require_approval: true`).")
    api: ModelName | None = Field(default=None, description="A published prompt API that needs approval.")
    service: ModelName | None = Field(default=None, description="A REST service that needs approval.")
    team: Ident | None = Field(default=None, description="The subscribing team; default: the caller's.")
    tenant: Ident | None = Field(default=None, description="Platform admin only; default: the caller's.")
    reason: Reason | None = Field(default=None, description="Why the team needs the model.")


class Decision(AdminBody):
    model_config = ConfigDict(extra="forbid")

    reason: Reason | None = None


class Rejection(AdminBody):
    model_config = ConfigDict(extra="forbid")

    reason: Reason = Field(description="Told to the team (GET shows it).")


def _kind_of(subject: str) -> tuple[str, str]:
    """(kind, name) of a stored subject: "<kind>:<name>" for APIs and services, else a model."""
    kind, sep, name = subject.partition(":")
    if sep and kind in ("api", "service", *SUBJECT_KINDS):
        return kind, name
    return "model", subject


def _public(record: SubscriptionRecord) -> dict[str, Any]:
    kind, name = _kind_of(record.model)
    return {
        "id": record.id,
        "object": "subscription",
        "tenant": record.tenant_id,
        "team": record.team_id,
        "model": record.model,
        # What the team subscribed to: kind (model, api, service) and name.
        "kind": kind,
        "name": name,
        "status": record.status,
        "reason": record.reason,
        "requested_by": record.requested_by,
        "created_at": record.created_at.isoformat(),
        "decided_by": record.decided_by,
        "decided_at": record.decided_at.isoformat() if record.decided_at else None,
    }


def _new_id() -> str:
    """Ids sort by creation time, so a list in id order is oldest first and pages are stable."""
    return f"sub_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(6)}"


def _needs_approval(request: Request, model: str) -> bool | None:
    """Whether the model needs approval; None when the deployment has no such model. Read from
    the live model table (the YAML's models and those added at run time), as the subscription
    stage reads it; an alias is no model of its own."""
    routing = request.app.state.services.routing
    if routing is None:  # no live table: the configured models
        flags = [m.require_approval for m in request.app.state.services.settings.models if m.name == model]
        return any(flags) if flags else None  # any deployment of the group: as the stage decides
    group = routing.current.groups.get(model)
    if group is None or group.name != model:
        return None
    return group.require_approval


async def _team_known(request: Request, access: Access, tenant: str, team: str) -> bool:
    """A team named for a subscription must be one of the tenant's, as for keys, users and
    limits. The caller's own team passes without a record (a key's or a token's team may have
    none), and the platform admin names teams by id as it does when issuing keys."""
    if team == access.principal.team_id or access.reach >= Reach.ANY:
        return True
    return await request.app.state.services.stores().tenancy.get_team(tenant, team) is not None


def _subject(body: SubscriptionCreate) -> tuple[str, str, str]:
    """(kind, name, stored subject) of what the body asks for: exactly one of its fields."""
    fields = (("model", body.model), ("api", body.api), ("service", body.service))
    given = [(kind, name) for kind, name in fields if name is not None]
    if len(given) != 1:
        raise InvalidRequest("give exactly one of model, api, service", param="model",
                             code="missing_required_parameter" if not given else "invalid_value")
    kind, name = given[0]
    if kind != "model" and kind not in SUBJECT_KINDS:
        raise InvalidRequest(f"{kind}: this gateway has no {kind}s to subscribe to", param=kind,
                             code="invalid_value")
    return kind, name, name if kind == "model" else subject_of(kind, name)


def revoke_audited(request: Request) -> RevokeAudited:
    """The ``subscription.revoke`` entry of each subscription revoked with what it was to (a
    service deleted, a model removed), for the store to write in the removal's transaction."""

    def entry(before: SubscriptionRecord, after: SubscriptionRecord) -> AuditEntry:
        return audit.entry(request, "subscription.revoke", "subscription", after.id,
                           before=_public(before), after=_public(after), tenant=after.tenant_id)

    return entry


async def revoked_with(
    request: Request, revoked: list[tuple[SubscriptionRecord, SubscriptionRecord]]
) -> None:
    """Announce the subscriptions revoked with what they were to (stored and audited with the
    removal), as a revoke through the API is: every instance drops its cached approval."""
    subscriptions = request.app.state.services.subscriptions()
    for _, after in revoked:
        await subscriptions.changed((after.tenant_id, after.team_id, after.model))


async def _approval(request: Request, kind: str, tenant: str, name: str, team: str) -> bool | None:
    if kind == "model":
        return _needs_approval(request, name)
    return await SUBJECT_KINDS[kind](request, tenant, name, team)


async def _visible(
    request: Request, access: Access, subscription_id: str, tenant: str | None
) -> SubscriptionRecord:
    store = request.app.state.services.stores().subscriptions
    record = await store.get(access.tenant_for(tenant), subscription_id)
    if record is None or not access.sees(record.tenant_id, record.team_id):
        raise NotFound(f"no subscription with id '{subscription_id[:64]}'", code="subscription_not_found")
    return record


TenantQuery = Annotated[Ident | None, Query(description="Platform admin only: another tenant.")]
_LIST_PARAMS = frozenset({"status", "team", "model", "tenant", "after", "limit"})


@router.post("", status_code=201, summary="Subscribe a team to a model that needs approval (pending)")
async def create_subscription(
    body: SubscriptionCreate,
    request: Request,
    access: Annotated[Access, Depends(allow("subscription", "create"))],
) -> JSONResponse:
    # The tenant goes in the body here: a `?tenant=` (as a decision takes it) ignored would
    # subscribe the team in the caller's own tenant.
    query_params(request, ())
    services = request.app.state.services
    kind, name, subject = _subject(body)
    tenant = await tenant_in_reach(access, services.stores(), body.tenant)
    team = body.team or access.principal.team_id
    if team is None:
        raise InvalidRequest(
            "team: required (this key belongs to no team)", param="team", code="team_required"
        )
    if not access.sees(tenant, team) or not await _team_known(request, access, tenant, team):
        raise NotFound(f"no team '{team}'", code="team_not_found")
    needs = await _approval(request, kind, tenant, name, team)
    if needs is None:
        raise InvalidRequest(f"{kind}: no {kind} '{name[:200]}'", param=kind, code=f"{kind}_not_found")
    if not needs:
        raise InvalidRequest(
            f"{kind}: the team '{team}' needs no approval for '{name}' (it needs none, or the team "
            "owns it): every key of the team allowed to use it may call it",
            param=kind,
            code="approval_not_required",
        )
    record = SubscriptionRecord(
        id=_new_id(), tenant_id=tenant, team_id=team, model=subject,
        requested_by=access.principal.id, reason=body.reason,
    )

    def audited(stored: SubscriptionRecord, reopened: SubscriptionRecord | None) -> AuditEntry:
        # A rejected, revoked or withdrawn subscription asked for again is the same one
        # reopened: its entry shows it as it was.
        return audit.entry(request, "subscription.request", "subscription", stored.id,
                           before=None if reopened is None else _public(reopened), after=_public(stored),
                           tenant=stored.tenant_id)

    try:  # stored with its audit entry: an error answered means nothing was asked for
        stored, _ = await services.stores().subscriptions.request_over(record, audited=audited)
    except SubscriptionExists as exc:
        raise Conflict(
            f"team '{team}' already has a {exc.existing.status} subscription to '{name}' "
            f"({exc.existing.id})",
            param=kind,
            code="subscription_exists",
        ) from None
    await services.subscriptions().changed((tenant, team, subject))
    return JSONResponse(_public(stored), status_code=201)


@router.get("", summary="Subscriptions within the caller's reach, oldest first")
async def list_subscriptions(
    request: Request,
    access: Annotated[Access, Depends(allow("subscription", "read"))],
    status: Annotated[Status | None, Query()] = None,
    team: Annotated[Ident | None, Query()] = None,
    model: Annotated[ModelName | None, Query()] = None,
    tenant: TenantQuery = None,
    after: Annotated[str | None, Query(max_length=64, description="Last id of the previous page")] = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    # A misspelt or repeated filter would otherwise list what the caller did not ask for.
    query_params(request, _LIST_PARAMS)
    scope = await tenant_in_reach(access, request.app.state.services.stores(), tenant)
    if access.reach < Reach.TENANT:  # a team's members see their own team's subscriptions only
        own = access.principal.team_id
        if team is not None and team != own:
            # Another team is out of reach: 404, as the usage report, analytics and logs answer.
            raise NotFound(f"no team '{team[:64]}'", code="team_not_found")
        if own is None:
            return {"object": "list", "data": [], "has_more": False, "last_id": None}
        team = own
    query = SubscriptionQuery(status=status, team_id=team, model=model, after_id=after, limit=limit + 1)
    found = await request.app.state.services.stores().subscriptions.list_subscriptions(scope, query)
    page = found[:limit]
    return {
        "object": "list",
        "data": [_public(r) for r in page],
        "has_more": len(found) > limit,
        "last_id": page[-1].id if page else None,
    }


@router.get("/{subscription_id}", summary="One subscription")
async def get_subscription(
    subscription_id: str,
    request: Request,
    access: Annotated[Access, Depends(allow("subscription", "read"))],
    tenant: TenantQuery = None,
) -> dict[str, Any]:
    query_params(request, ("tenant",))  # misspelt or repeated: a 400, never ignored
    return _public(await _visible(request, access, subscription_id, tenant))


async def _decide(
    request: Request,
    access: Access,
    subscription_id: str,
    tenant: str | None,
    *,
    action: str,
    expect: str,
    status: str,
    reason: str | None,
) -> dict[str, Any]:
    query_params(request, ("tenant",))  # misspelt or repeated: a 400, never ignored
    services = request.app.state.services
    before = await _visible(request, access, subscription_id, tenant)
    if status == "approved" and before.status == "pending":
        # What was asked for may be gone since (a service deleted, an API retired, a model
        # removed): an approval would open whatever is registered again under the name.
        kind, name = _kind_of(before.model)
        if await _approval(request, kind, before.tenant_id, name, before.team_id) is None:
            raise Conflict(f"{kind}: no {kind} '{name[:200]}' any more; reject the subscription instead",
                           param=kind, code=f"{kind}_not_found")

    def audited(after: SubscriptionRecord) -> AuditEntry:
        return audit.entry(request, f"subscription.{action}", "subscription", after.id,
                           before=_public(before), after=_public(after), tenant=after.tenant_id)

    # Decided with its audit entry in one transaction: an error answered means nothing changed.
    after = await services.stores().subscriptions.decide(
        before.tenant_id, before.id, expect=(expect,), status=status,
        decided_by=access.principal.id, reason=reason, audited=audited,
    )
    if after is None:
        current = await _visible(request, access, subscription_id, tenant)
        raise Conflict(
            f"the subscription is {current.status}; only a {expect} subscription can be {status}",
            code=f"subscription_not_{expect}",
        )
    await services.subscriptions().changed((after.tenant_id, after.team_id, after.model))
    return _public(after)


@router.post("/{subscription_id}/approve", summary="Approve a pending subscription")
async def approve_subscription(
    subscription_id: str,
    request: Request,
    access: Annotated[Access, Depends(allow("subscription", "approve"))],
    tenant: TenantQuery = None,
    body: Annotated[Decision | None, Body()] = None,
) -> dict[str, Any]:
    return await _decide(request, access, subscription_id, tenant, action="approve", expect="pending",
                         status="approved", reason=body.reason if body else None)


@router.post("/{subscription_id}/reject", summary="Reject a pending subscription, saying why")
async def reject_subscription(
    subscription_id: str,
    request: Request,
    access: Annotated[Access, Depends(allow("subscription", "reject"))],
    tenant: TenantQuery = None,
    body: Annotated[Rejection | None, Body()] = None,
) -> dict[str, Any]:
    if body is None:
        raise InvalidRequest("reason: required to reject", param="reason", code="missing_required_parameter")
    return await _decide(request, access, subscription_id, tenant, action="reject", expect="pending",
                         status="rejected", reason=body.reason)


@router.post("/{subscription_id}/revoke", summary="Revoke an approved subscription")
async def revoke_subscription(
    subscription_id: str,
    request: Request,
    access: Annotated[Access, Depends(allow("subscription", "revoke"))],
    tenant: TenantQuery = None,
    body: Annotated[Decision | None, Body()] = None,
) -> dict[str, Any]:
    return await _decide(request, access, subscription_id, tenant, action="revoke", expect="approved",
                         status="revoked", reason=body.reason if body else None)


@router.post("/{subscription_id}/withdraw", summary="Withdraw the team's own pending request")
async def withdraw_subscription(
    subscription_id: str,
    request: Request,
    access: Annotated[Access, Depends(allow("subscription", "withdraw"))],
    tenant: TenantQuery = None,
    body: Annotated[Decision | None, Body()] = None,
) -> dict[str, Any]:
    # Whoever may ask for the team may take the request back; once decided it is the admins'.
    return await _decide(request, access, subscription_id, tenant, action="withdraw", expect="pending",
                         status="withdrawn", reason=body.reason if body else None)
