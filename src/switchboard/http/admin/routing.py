"""``/admin/v1/routing``: model groups as the router sees them, and run-time weights.

- ``GET /admin/v1/routing/groups``: every group (YAML groups and stored models, each a group of
  one) with its policy and each deployment's provider, upstream model, region, weight, tags,
  limits and state on this instance (health, in flight, latency averages, recent errors).
- ``GET /admin/v1/routing/groups/{group}``: one group (an alias names its group).
- ``PATCH /admin/v1/routing/groups/{group}/deployments/{deployment}`` with ``{"weight": N}``
  (``null``: back to the configured weight): stored, audited, served at once by every instance
  (routing/live.py reloads and publishes on the change feed's ``routing`` topic).
- ``GET /admin/v1/routing/splits``, ``PUT /admin/v1/routing/splits/{name}`` with
  ``{"percents": {arm: share}}`` and ``DELETE`` (back to the configured shares): the same way.

Groups are gateway-wide: only the platform admin reads or changes them (access/roles.py).
Deployment names may hold ``/`` (``<provider>/<model>``), so the PATCH path is split at its
``/deployments/``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import ConfigDict, Field, StrictInt

from switchboard.config.schema import Split
from switchboard.errors import GatewayError, InvalidRequest, NotFound
from switchboard.http.admin import audit
from switchboard.http.admin.authz import Access, allow
from switchboard.http.admin.body import AdminBody
from switchboard.http.admin.providers import routing_of
from switchboard.http.admin.query import query_params
from switchboard.routing.groups import Group, configured_weight
from switchboard.routing.live import LiveRouting
from switchboard.routing.router import Router
from switchboard.routing.splits import SplitChooser, labels, shares
from switchboard.routing.table import Route
from switchboard.stores.protocols import AuditEntry, RoutingOverride, RoutingStore, SplitOverride

router = APIRouter(prefix="/admin/v1/routing", tags=["routing"])

_SEP = "/deployments/"
MAX_WEIGHT = 1_000_000


class WeightBody(AdminBody):
    model_config = ConfigDict(extra="forbid")

    weight: Annotated[StrictInt, Field(ge=0, le=MAX_WEIGHT)] | None = Field(
        description="The deployment's share under the weighted strategy (0: only when the others "
                    "are out); null: back to the configured weight.")


def _router_of(request: Request) -> Router:
    r: Router | None = request.app.state.services.router
    if r is None:
        raise GatewayError("the router is not available", status=503)
    return r


def _store_of(request: Request) -> RoutingStore:
    store: RoutingStore | None = request.app.state.services.stores().routing
    if store is None:
        raise GatewayError("routing overrides are not available", status=503)
    return store


def _aliases(routing: LiveRouting) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, group in routing.current.groups.items():
        if name != group.name:
            out.setdefault(group.name, []).append(name)
    return out


def deployment_public(route: Route, weight: int, r: Router, routing: LiveRouting) -> dict[str, Any]:
    entry = route.entry
    return {
        "name": route.deployment,
        "object": "deployment",
        "provider": route.target.provider,
        "model": route.target.model,
        "region": entry.region if entry else None,
        "weight": weight,
        "configured_weight": configured_weight(route),
        "weight_overridden": (route.target.name, route.deployment) in routing.weights,
        "tags": list(entry.tags) if entry else [],
        "rpm": entry.rpm if entry else None,
        "tpm": entry.tpm if entry else None,
        "state": {**r.health.state(route), **r.stats.state(route)},
    }


def group_public(group: Group, aliases: list[str], r: Router, routing: LiveRouting) -> dict[str, Any]:
    return {
        "name": group.name,
        "object": "model_group",
        "aliases": sorted(aliases),
        "strategy": group.strategy,
        "num_retries": group.num_retries,
        "allow_pinning": group.allow_pinning,
        "fallbacks": list(group.fallbacks),
        "context_window_fallbacks": list(group.context_window_fallbacks),
        "deployments": [deployment_public(d, w, r, routing)
                        for d, w in zip(group.deployments, group.weights, strict=True)],
    }


def _group(routing: LiveRouting, name: str) -> Group:
    group = routing.current.groups.get(name)
    if group is None:
        raise NotFound(f"no model group named '{name[:256]}'", code="group_not_found")
    return group


def _route(routing: LiveRouting, name: str, deployment: str) -> Route | None:
    group = routing.current.groups.get(name)
    return None if group is None else group.deployment(deployment)


@router.get("/groups", summary="Model groups, their deployments and each one's state")
async def list_groups(
    request: Request, access: Annotated[Access, Depends(allow("routing", "read"))]
) -> dict[str, Any]:
    query_params(request, ())  # misspelt or repeated: a 400, never ignored
    routing, r = routing_of(request), _router_of(request)
    aliases = _aliases(routing)
    data = [group_public(g, aliases.get(name, []), r, routing)
            for name, g in sorted(routing.current.groups.items()) if g.name == name]
    return {"object": "list", "data": data}


@router.get("/groups/{name:path}", summary="One model group (an alias names its group)")
async def get_group(
    name: str, request: Request, access: Annotated[Access, Depends(allow("routing", "read"))]
) -> dict[str, Any]:
    query_params(request, ())  # misspelt or repeated: a 400, never ignored
    routing = routing_of(request)
    group = _group(routing, name)
    return group_public(group, _aliases(routing).get(group.name, []), _router_of(request), routing)


@router.patch("/groups/{path:path}", summary="Set a deployment's weight at run time, on every instance")
async def set_weight(
    path: str, body: WeightBody, request: Request,
    access: Annotated[Access, Depends(allow("routing", "update"))],
) -> dict[str, Any]:
    name, sep, deployment = path.partition(_SEP)
    if not sep:
        raise NotFound(f"no route PATCH /admin/v1/routing/groups/{path[:256]}", code="unknown_url")
    routing = routing_of(request)
    if _route(routing, name, deployment) is None:
        # Perhaps a stored model added on another instance whose change has not reached this
        # one yet: read the table as stored once rather than answer 404 for what exists.
        await routing.reload()
    group = _group(routing, name)
    route = group.deployment(deployment)
    if route is None:
        raise NotFound(f"the model group '{group.name}' has no deployment '{deployment[:256]}'",
                       code="deployment_not_found")
    configured = configured_weight(route)
    weight = body.weight if body.weight is not None else configured

    def entry(previous: RoutingOverride | None) -> AuditEntry:
        # From the override as stored, not this instance's table: another instance may have
        # changed it moments ago.
        was = configured if previous is None or previous.weight is None else previous.weight
        before = {"group": group.name, "deployment": deployment, "weight": was}
        return audit.entry(request, "routing.weight", "deployment", f"{group.name}{_SEP}{deployment}",
                           before=before, after={**before, "weight": weight})

    # Stored with its audit entry: an error answered means the weight is as it was.
    stored, previous = await _store_of(request).set_weight(group.name, deployment, body.weight, audited=entry)
    if stored is previous:  # already so: nothing written, published or audited
        return deployment_public(route, group.weight_of.get(deployment, 1), _router_of(request), routing)
    await routing.changed()
    now = _group(routing, group.name)
    weight = now.weight_of.get(deployment, 1)
    fresh = now.deployment(deployment) or route
    return deployment_public(fresh, weight, _router_of(request), routing)


# -- splits -----------------------------------------------------------------------------------

MAX_ARMS = 20


class SplitBody(AdminBody):
    model_config = ConfigDict(extra="forbid")

    percents: Annotated[
        dict[Annotated[str, Field(min_length=1, max_length=256)],
             Annotated[float, Field(ge=0, le=100, strict=True)]],
        Field(min_length=1, max_length=MAX_ARMS),
    ] = Field(description="Every arm of the split (its group or deployment name) with its share; "
                          "the shares add up to 100 (0 turns an arm off).")


def _split(request: Request, name: str) -> tuple[Split, SplitChooser]:
    routing = routing_of(request)
    for split in routing.settings.router.splits:
        if split.name == name:
            return split, routing.current.splits[split.model]
    raise NotFound(f"no split named '{name[:64]}' (splits are declared in router.splits)",
                   code="split_not_found")


def split_public(split: Split, chooser: SplitChooser) -> dict[str, Any]:
    configured = shares(split, None)
    return {
        "name": split.name,
        "object": "split",
        "model": split.model,
        "sticky": split.sticky,
        "arms": [{"name": label, "kind": "group" if arm.to is not None else "deployment",
                  "percent": chooser.percents[label], "configured_percent": configured[label]}
                 for label, arm in zip(labels(split), split.arms, strict=True)],
        "overridden": chooser.overridden,
    }


@router.get("/splits", summary="Canary and A/B splits with their current shares")
async def list_splits(
    request: Request, access: Annotated[Access, Depends(allow("routing", "read"))]
) -> dict[str, Any]:
    query_params(request, ())  # misspelt or repeated: a 400, never ignored
    routing = routing_of(request)
    data = [split_public(s, routing.current.splits[s.model]) for s in routing.settings.router.splits]
    return {"object": "list", "data": data}


@router.put("/splits/{name}", summary="Set a split's shares at run time, on every instance")
async def set_split(
    name: str, body: SplitBody, request: Request,
    access: Annotated[Access, Depends(allow("routing", "update"))],
) -> dict[str, Any]:
    split, _ = _split(request, name)
    arms = labels(split)
    if set(body.percents) != set(arms) or _repeated(await request.body()):
        raise InvalidRequest(f"percents: name every arm of the split exactly once ({', '.join(arms)})",
                             param="percents", code="invalid_arms")
    total = sum(body.percents.values())
    if abs(total - 100) > 1e-6:
        raise InvalidRequest(f"percents: the shares add up to {total:g}, not 100", param="percents",
                             code="invalid_percents")
    return await _store_split(request, split, body.percents)


def _repeated(raw: bytes) -> bool:
    """Whether the body names a key twice, an arm of ``percents`` above all (parsed JSON keeps
    only the last, which would hide the repetition)."""
    twice = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal twice
        twice = twice or len({k for k, _ in items}) < len(items)
        return dict(items)

    try:
        json.loads(raw, object_pairs_hook=pairs)  # valid JSON already: the body model took it
    except ValueError:
        return False
    return twice


@router.delete("/splits/{name}", summary="Back to the configured shares, on every instance")
async def reset_split(
    name: str, request: Request, access: Annotated[Access, Depends(allow("routing", "update"))],
) -> dict[str, Any]:
    split, _ = _split(request, name)
    return await _store_split(request, split, None)


async def _store_split(request: Request, split: Split, percents: dict[str, float] | None) -> dict[str, Any]:
    routing = routing_of(request)
    after = dict(percents) if percents is not None else shares(split, None)

    def entry(previous: SplitOverride | None) -> AuditEntry:
        # From the shares as stored, not this instance's table (see set_weight).
        before = shares(split, None if previous is None else previous.percents)
        return audit.entry(request, "routing.split", "split", split.name,
                           before={"percents": before}, after={"percents": after})

    # Stored with its audit entry: an error answered means the shares are as they were.
    stored, previous = await _store_of(request).set_split(split.name, percents, audited=entry)
    if stored is previous:  # already so: nothing written, published or audited
        return split_public(split, routing.current.splits[split.model])
    await routing.changed()
    return split_public(split, routing.current.splits[split.model])
