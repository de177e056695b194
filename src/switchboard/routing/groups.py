"""Model groups: the deployments that answer to one model name, and the group's policy.

Several model entries with the same ``name`` form a group (docs/routing.md); a model entry
alone is a group of one. Built with the model table (routing/live.py), immutable, swapped
with it: a request keeps the group it was routed with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from switchboard.config.schema import RouterConfig
from switchboard.routing.table import Route

# Strategies that rank a group's deployments by the request's tokens (the route stage counts
# them for these whether or not a context window is known).
TOKEN_STRATEGIES = frozenset({"cost", "headroom"})


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    deployments: tuple[Route, ...]
    # Per deployment, in the same order: configured, or changed at run time (admin API).
    weights: tuple[int, ...]
    strategy: str
    num_retries: int
    allow_pinning: bool
    # Other groups to try, in order, once this one's attempts fail (router.fallbacks), and
    # larger ones for a request that fits none of its context windows.
    fallbacks: tuple[str, ...] = ()
    context_window_fallbacks: tuple[str, ...] = ()
    # Per deployment, in the same order: USD per million input and output tokens from its
    # catalog record (None: not priced), for the cost strategy.
    prices: tuple[tuple[float, float] | None, ...] = ()
    # Weight by deployment name (the strategies' lookup).
    weight_of: Mapping[str, int] = field(default_factory=dict)
    # Ordered by a strategy that needs the request's tokens (cost, headroom): precomputed, as the
    # route stage reads it on every request.
    ranks_by_tokens: bool = field(init=False, default=False)
    # A team needs an approved subscription when any deployment asks for one: whichever
    # deployment the strategy or a retry picks, the answer is the same (and a gated deployment
    # is never reached through an ungated one of its group).
    require_approval: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        if not self.weight_of:
            object.__setattr__(self, "weight_of", {r.deployment: w for r, w in zip(
                self.deployments, self.weights, strict=True)})
        object.__setattr__(self, "ranks_by_tokens",
                           self.strategy in TOKEN_STRATEGIES and len(self.deployments) > 1)
        object.__setattr__(self, "require_approval",
                           any(route.target.require_approval for route in self.deployments))

    @property
    def single(self) -> Route | None:
        """The one deployment of a group of one (the common case, routed without a strategy)."""
        return self.deployments[0] if len(self.deployments) == 1 else None

    def deployment(self, name: str) -> Route | None:
        for route in self.deployments:
            if route.deployment == name:
                return route
        return None


def configured_weight(route: Route) -> int:
    """The deployment's weight as configured (1 when its entry gives none)."""
    return route.entry.weight if route.entry else 1


def build_groups(
    routes: Iterable[Route],
    router: RouterConfig,
    weights: Mapping[tuple[str, str], int] | None = None,
    price: Callable[[Route], tuple[float, float] | None] | None = None,
) -> dict[str, Group]:
    """Groups by name, aliases included (an alias maps to its group's object). ``weights``:
    run-time overrides by (group, deployment); ``price``: a deployment's input and output price
    per million tokens (the cost strategy's; None: unpriced)."""
    members: dict[str, list[Route]] = {}
    for route in routes:
        members.setdefault(route.target.name, []).append(route)
    weights = weights or {}
    groups: dict[str, Group] = {}
    for name, deployments in members.items():
        policy = router.groups.get(name)
        groups[name] = Group(
            name=name,
            deployments=tuple(deployments),
            weights=tuple(weights.get((name, r.deployment), configured_weight(r)) for r in deployments),
            strategy=(policy.strategy if policy and policy.strategy else router.strategy),
            num_retries=(policy.num_retries if policy and policy.num_retries is not None
                         else router.num_retries),
            allow_pinning=(policy.allow_pinning if policy and policy.allow_pinning is not None
                           else router.allow_pinning),
            fallbacks=tuple(router.fallbacks.get(name, ())),
            context_window_fallbacks=tuple(router.context_window_fallbacks.get(name, ())),
            prices=tuple(price(r) if price is not None and len(deployments) > 1 else None
                         for r in deployments),
        )
    for alias, name in router.aliases.items():
        if name in groups and alias not in groups:
            groups[alias] = groups[name]
    return groups
