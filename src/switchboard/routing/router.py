"""The request path's one handle on routing: the group a model name resolves to, the order in
which its deployments are tried, and what each attempt reports back (statistics, health).

The route stage (pipeline/route.py) asks for a plan; the attempts stage (pipeline/attempts.py)
walks it, reporting every attempt here, and asks for a fallback group's plan when it runs out.
"""

from __future__ import annotations

import time
from typing import Protocol

from switchboard.errors import GatewayError
from switchboard.routing import prerouting, strategies
from switchboard.routing.groups import Group
from switchboard.routing.health import Health
from switchboard.routing.live import Snapshot
from switchboard.routing.stats import DeploymentStats
from switchboard.routing.table import Route


class Table(Protocol):
    current: Snapshot


class Router:
    def __init__(
        self, table: Table, stats: DeploymentStats | None = None, health: Health | None = None
    ) -> None:
        self._table = table
        self.stats = stats if stats is not None else DeploymentStats()
        self.health = health if health is not None else Health()

    def group(self, name: str) -> Group | None:
        return self._table.current.groups.get(name)

    def plan(self, group: Group, regions: frozenset[str] | None = None, needed_tokens: int | None = None,
             prompt_tokens: int = 0) -> list[Route]:
        """``group``'s deployments that may serve a request, in the order to try them; empty
        when none may. ``regions``: where the caller may be served (None: anywhere);
        ``needed_tokens``: its prompt plus output bound, for the context windows."""
        now = time.monotonic()
        single = group.single
        if single is not None and regions is None and needed_tokens is None \
                and self.health.available(single, now):
            return [single]
        eligible = [r for r in prerouting.eligible(group.deployments, regions, needed_tokens)
                    if self.health.available(r, now)]
        return strategies.order(group, eligible, self.stats, group.strategy, prompt_tokens)

    def started(self, route: Route) -> None:
        self.stats.started(route)

    def finished(self, route: Route, error: GatewayError | None, seconds: float,
                 first_byte: float | None = None) -> None:
        self.stats.finished(route, error is None, seconds, first_byte)
        if error is None:
            self.health.succeeded(route)
        else:
            self.health.failed(route, error)
