"""A model table of real routes for the routing unit tests, and a clock the tests move."""

from __future__ import annotations

import math
from typing import Any

from switchboard import catalog
from switchboard.routing.groups import Group
from switchboard.routing.live import LiveRouting
from switchboard.routing.router import Router
from switchboard.routing.stats import DeploymentStats
from switchboard.routing.table import Route
from switchboard.settings.loader import validate


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def table(models: list[dict[str, Any]], router: dict[str, Any] | None = None) -> LiveRouting:
    """The live table of ``models`` (each on its own provider unless it names one)."""
    providers = sorted({m.get("provider", "p") for m in models})
    settings = validate({
        "providers": [{"name": p, "type": "openai", "api_base": "http://127.0.0.1:9/v1"} for p in providers],
        "models": [{"provider": "p", "model": "gpt-4o-mini", **m} for m in models],
        "router": router or {},
        "auth": {"master_key": "sk-master-key-for-tests"},
    }, "test.yaml", env={})
    return LiveRouting(settings, catalog.build(settings))


def group(models: list[dict[str, Any]], router: dict[str, Any] | None = None, name: str = "g") -> Group:
    g = table(models, router).current.groups[name]
    return g


def router_of(models: list[dict[str, Any]], router: dict[str, Any] | None = None,
              clock: Clock | None = None) -> Router:
    return Router(table(models, router), DeploymentStats(clock or Clock()))


def names(routes: list[Route]) -> list[str]:
    return [r.deployment for r in routes]


def within(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    """Whether ``count`` successes in ``n`` draws are within ``sigmas`` standard deviations of
    the binomial(n, p) mean (for p = 0 or 1: exactly)."""
    sd = math.sqrt(n * p * (1 - p))
    return abs(count - n * p) <= sigmas * sd + 1e-9
