"""A caller's pin: ``x-switchboard-deployment`` (one deployment of the group) or
``x-switchboard-strategy`` (a strategy instead of the group's), honoured only on a group whose
policy allows it (``router.allow_pinning``, ``router.groups.<name>.allow_pinning``).

Not allowed: 403 ``pinning_not_allowed`` (whatever the value, so deployment names do not leak).
Allowed but not valid (no such deployment, no such strategy, too long): 400 with a code. A
pinned deployment is the only candidate. One that may never serve the request (outside the
caller's regions, too small: :func:`unfit_pin`) refuses it outright, 403 ``region_not_allowed``
or 400 ``context_length_exceeded``, and no fallback group is tried: the caller asked for that
deployment. One cooling down leaves the plan empty, as for a group whose deployments all are:
the group's fallbacks, else 503 ``no_healthy_deployment``.
"""

from __future__ import annotations

from collections.abc import Mapping

from switchboard.config.schema import STRATEGIES
from switchboard.errors import GatewayError, InvalidRequest, PermissionDenied
from switchboard.routing.groups import Group
from switchboard.routing.router import Needs, Router
from switchboard.routing.table import Route

PIN_DEPLOYMENT = "x-switchboard-deployment"
PIN_STRATEGY = "x-switchboard-strategy"
_MAX = 256


def pinned(router: Router, group: Group, needs: Needs, headers: Mapping[str, str]) -> list[Route]:
    """The candidates of a request carrying a pin header."""
    if not group.allow_pinning:
        raise PermissionDenied(
            f"pinning a deployment or a strategy is not allowed on the model '{group.name}'",
            code="pinning_not_allowed",
        )
    deployment = headers.get(PIN_DEPLOYMENT)
    strategy = headers.get(PIN_STRATEGY)
    if strategy is not None and strategy not in STRATEGIES:
        shown = strategy if len(strategy) <= 64 else "(too long)"
        raise InvalidRequest(
            f"{PIN_STRATEGY}: unknown strategy '{shown}' (one of {', '.join(STRATEGIES)})",
            param=PIN_STRATEGY, code="invalid_strategy",
        )
    if deployment is None:
        return router.plan(group, needs, strategy)
    route = group.deployment(deployment) if len(deployment) <= _MAX else None
    if route is None:
        shown = deployment if len(deployment) <= _MAX else "(too long)"
        raise InvalidRequest(
            f"{PIN_DEPLOYMENT}: the model '{group.name}' has no deployment '{shown}'",
            param=PIN_DEPLOYMENT, code="deployment_not_found",
        )
    return [r for r in router.plan(group, needs) if r is route]


def unfit_pin(router: Router, group: Group, needs: Needs, headers: Mapping[str, str]) -> GatewayError | None:
    """Why the deployment a request pins may never serve it (outside the caller's regions, too
    small); None without such a pin, or when it may (a pinned plan is then empty only while the
    deployment cools down). Asked only of a pinned request whose plan is empty."""
    name = headers.get(PIN_DEPLOYMENT)
    route = group.deployment(name) if name is not None and len(name) <= _MAX else None
    return router.unfit(route, needs) if route is not None else None
