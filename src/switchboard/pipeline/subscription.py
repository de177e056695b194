"""Subscription approval: a model that needs approval serves a team only once a tenant admin has
approved the team's subscription to it.

Runs after routing (the route says whether the model needs approval). The platform admin is
never held back. Every other caller needs an approved subscription of its key's team; a key
without a team has none. The state comes from an in-process cache kept honest by the change
feed (``access/subscriptions.py``), so the request path makes no database query.
"""

from __future__ import annotations

from collections.abc import Callable

from switchboard.access.roles import PLATFORM_ADMIN
from switchboard.access.subscriptions import SubscriptionCache
from switchboard.context import Principal, RequestContext, Result
from switchboard.errors import PermissionDenied
from switchboard.pipeline.chain import Handler

DEFAULT_TENANT = "default"

# What a caller is told, by the state of its team's subscription (None: there is none).
_REFUSALS: dict[str | None, tuple[str, str]] = {
    None: ("subscription_required", "needs an approved subscription: subscribe your team first "
           "(POST /admin/v1/subscriptions)"),
    "pending": ("subscription_pending",
                "needs approval: your team's subscription is waiting for a tenant admin"),
    "rejected": ("subscription_rejected", "needs approval: your team's subscription was rejected"),
    "revoked": ("subscription_revoked", "needs approval: your team's subscription was revoked"),
}


class SubscriptionStage:
    name = "subscription"

    def __init__(self, cache: Callable[[], SubscriptionCache | None]) -> None:
        # The cache is built when the stores open, after the chains are folded.
        self._cache = cache

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        route = ctx.route
        if route is None or not route.target.require_approval:
            return await call_next(ctx)
        cache = self._cache()
        assert cache is not None, "the gateway has started"
        await require_approved(cache, ctx.principal, route.target.name, f"the model '{route.target.name}'")
        return await call_next(ctx)


async def require_approved(cache: SubscriptionCache, principal: Principal | None, subject: str,
                           shown: str) -> None:
    """Raise 403 unless ``principal`` is a platform admin or its team's subscription to
    ``subject`` (a model name, or "<kind>:<name>" for APIs and services) is approved."""
    if principal is not None and principal.role == PLATFORM_ADMIN:
        return
    status: str | None = None
    if principal is not None and principal.team_id is not None:
        tenant = principal.tenant_id or DEFAULT_TENANT
        status = await cache.status(tenant, principal.team_id, subject)
    if status == "approved":
        return
    code, why = _REFUSALS.get(status, _REFUSALS[None])
    raise PermissionDenied(f"{shown} {why}", param="model", code=code)
