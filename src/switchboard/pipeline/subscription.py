"""Subscription approval: a model that needs approval serves a team only once a tenant admin has
approved the team's subscription to it.

Runs after routing (the route says whether the model needs approval). The platform admin is
never held back. Every other caller needs an approved subscription of its key's team; a key
without a team has none. A fallback group is tried only when the caller may use it as if it had
asked for it by name (``GroupGate``: the key's models and this approval); one it may not use is
skipped, never served. That covers the attempt stage's fallbacks and the context-window
fallbacks' deployments the router plans after the group's own for a request too long for it.
The state comes from an in-process cache kept honest by the change feed
(``access/subscriptions.py``), so the request path makes no database query.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from switchboard.access.roles import PLATFORM_ADMIN
from switchboard.access.rules import model_allowed
from switchboard.access.subscriptions import SubscriptionCache
from switchboard.context import Principal, RequestContext, Result
from switchboard.errors import PermissionDenied
from switchboard.pipeline.chain import Handler

if TYPE_CHECKING:
    from switchboard.routing.groups import Group
    from switchboard.routing.table import Route

DEFAULT_TENANT = "default"

# What a caller is told, by the state of its team's subscription (None: there is none).
_REFUSALS: dict[str | None, tuple[str, str]] = {
    None: ("subscription_required", "needs an approved subscription: subscribe your team first "
           "(POST /admin/v1/subscriptions)"),
    "pending": ("subscription_pending",
                "needs approval: your team's subscription is waiting for a tenant admin"),
    "rejected": ("subscription_rejected", "needs approval: your team's subscription was rejected"),
    "revoked": ("subscription_revoked", "needs approval: your team's subscription was revoked"),
    # The team took its request back: as if it had never asked.
    "withdrawn": ("subscription_required", "needs an approved subscription: your team withdrew its "
                  "request (subscribe again: POST /admin/v1/subscriptions)"),
}


class SubscriptionStage:
    name = "subscription"

    def __init__(self, cache: Callable[[], SubscriptionCache | None]) -> None:
        # The cache is built when the stores open, after the chains are folded.
        self._cache = cache

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        candidates, group = ctx.candidates, ctx.group
        if candidates and group is not None and candidates[-1].target.name != group.name:
            await self._other_groups(ctx, group, candidates)  # rare: a request too long for the group
        route = ctx.route
        if route is None:
            return await call_next(ctx)
        # The group decides, not the deployment routed first: a group whose deployments
        # disagree would otherwise serve an unsubscribed team whenever an ungated one is picked.
        own_group = group is not None and route.target.name == group.name
        gated = group.require_approval if own_group and group is not None else route.target.require_approval
        if not gated:
            return await call_next(ctx)
        cache = self._cache()
        assert cache is not None, "the gateway has started"
        await require_approved(cache, ctx.principal, route.target.name, f"the model '{route.target.name}'")
        return await call_next(ctx)

    async def _other_groups(self, ctx: RequestContext, group: Group, candidates: list[Route]) -> None:
        """Leave out of the plan the deployments of other groups (context-window fallbacks) the
        caller may not use; when none is left, the route stays the group's, as for an empty plan."""
        gate = GroupGate(self._cache)
        verdicts: dict[str, bool] = {group.name: True}
        kept: list[Route] = []
        for route in candidates:
            name = route.target.name
            if name not in verdicts:
                gated = any(r.target.require_approval for r in candidates if r.target.name == name)
                verdicts[name] = await gate.permits(ctx, name, gated)
            if verdicts[name]:
                kept.append(route)
        ctx.candidates = kept
        ctx.route = kept[0] if kept else group.deployments[0]


class GroupGate:
    """May this request be served by ``group``, a fallback of the model it asked for? The checks
    that model passed (the key's models, the team's approval), on the same in-process data: no
    store round trip once the team's state is cached."""

    def __init__(self, cache: Callable[[], SubscriptionCache | None]) -> None:
        self._cache = cache  # built when the stores open, after the chains are folded

    async def __call__(self, ctx: RequestContext, group: Group) -> bool:
        return await self.permits(ctx, group.name, group.require_approval)

    async def permits(self, ctx: RequestContext, name: str, gated: bool) -> bool:
        principal = ctx.principal
        if principal is not None and not model_allowed(name, principal.allowed_models):
            return False
        if not gated:
            return True
        cache = self._cache()
        assert cache is not None, "the gateway has started"
        try:
            await require_approved(cache, principal, name, f"the model '{name}'")
        except PermissionDenied:
            return False
        return True


async def require_approved(cache: SubscriptionCache, principal: Principal | None, subject: str,
                           shown: str, *, param: str | None = "model") -> None:
    """Raise 403 unless ``principal`` is a platform admin or its team's subscription to
    ``subject`` (a model name, or "<kind>:<name>" for APIs and services) is approved.
    ``param`` names what the caller sent that is refused: the body's ``model`` for a model, none
    for an API or a service, which the caller names in the path, not in a parameter."""
    if principal is not None and principal.role == PLATFORM_ADMIN:
        return
    status: str | None = None
    if principal is not None and principal.team_id is not None:
        tenant = principal.tenant_id or DEFAULT_TENANT
        status = await cache.status(tenant, principal.team_id, subject)
    if status == "approved":
        return
    code, why = _REFUSALS.get(status, _REFUSALS[None])
    raise PermissionDenied(f"{shown} {why}", param=param, code=code)
