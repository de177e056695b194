"""Load-balancing strategies: the order in which a group's deployments are tried.

Each strategy is a function of the group, its eligible deployments and the deployment
statistics; the first of the order is the one chosen, the rest are the retries' order.
"""

from __future__ import annotations

from switchboard.routing.groups import Group
from switchboard.routing.stats import DeploymentStats
from switchboard.routing.table import Route


def order(group: Group, eligible: list[Route], stats: DeploymentStats, strategy: str,
          prompt_tokens: int) -> list[Route]:
    """Stub: the configuration's order."""
    return eligible
