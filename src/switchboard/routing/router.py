"""The request path's one handle on routing: the group a model name resolves to, the order in
which its deployments are tried, and what each attempt reports back (statistics, health).

The route stage (pipeline/route.py) asks for a plan; the attempts stage (pipeline/attempts.py)
walks it, reporting every attempt here, and asks for a fallback group's plan when it runs out.
"""

from __future__ import annotations

import time
from typing import NamedTuple, Protocol

from switchboard.errors import GatewayError, UpstreamUnavailable
from switchboard.routing import prerouting, strategies
from switchboard.routing.groups import Group
from switchboard.routing.health import Health
from switchboard.routing.live import Snapshot
from switchboard.routing.stats import DeploymentStats
from switchboard.routing.table import Route


class Table(Protocol):
    current: Snapshot


class Needs(NamedTuple):
    """What a request asks of the deployment that serves it (computed by the route stage)."""

    regions: frozenset[str] | None = None  # where it may be served (data residency); None: anywhere
    tokens: int | None = None  # prompt plus the output bound, for context windows; None: unchecked
    prompt_tokens: int = 0  # the prompt estimate, for the cost and headroom strategies


ANYWHERE = Needs()


class Router:
    def __init__(
        self, table: Table, stats: DeploymentStats | None = None, health: Health | None = None
    ) -> None:
        self._table = table
        self.stats = stats if stats is not None else DeploymentStats()
        self.health = health if health is not None else Health()

    def group(self, name: str) -> Group | None:
        return self._table.current.groups.get(name)

    def plan(self, group: Group, needs: Needs = ANYWHERE, strategy: str | None = None) -> list[Route]:
        """``group``'s deployments that may serve a request, in the order to try them; empty
        when none may (then :meth:`refusal` says why). ``strategy``: a caller's pinned one
        instead of the group's."""
        now = time.monotonic()
        single = group.single
        if single is not None and needs is ANYWHERE and self.health.available(single, now):
            return [single]
        eligible = [r for r in prerouting.eligible(group.deployments, needs.regions, needs.tokens)
                    if self.health.available(r, now)]
        output = None if needs.tokens is None else max(needs.tokens - needs.prompt_tokens, 0)
        return strategies.order(group, eligible, self.stats, strategy or group.strategy,
                                needs.prompt_tokens, output)

    def refusal(self, group: Group, needs: Needs = ANYWHERE) -> GatewayError:
        """The error for a request no deployment of ``group`` (nor of its fallbacks) may serve."""
        return UpstreamUnavailable(f"no deployment of the model '{group.name}' is available",
                                   code="no_deployment_available")

    def started(self, route: Route, tokens: int = 0) -> None:
        """An attempt on ``route`` begins; ``tokens``: its prompt estimate (headroom)."""
        self.stats.started(route, tokens)

    def finished(self, route: Route, error: GatewayError | None, seconds: float,
                 first_byte: float | None = None) -> None:
        self.stats.finished(route, error is None, seconds, first_byte, None if error is None else error.code)
        if error is None:
            self.health.succeeded(route)
        else:
            self.health.failed(route, error)
