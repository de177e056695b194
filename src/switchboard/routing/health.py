"""Cooldowns and circuit breakers: a deployment that keeps failing is taken out for a while,
then probed (half-open) before it takes full traffic again. Embedded: in-process; with Redis,
shared by every instance (docs/routing.md).
"""

from __future__ import annotations

from typing import Any

from switchboard.errors import GatewayError
from switchboard.routing.table import Route


class Health:
    """Stub: every deployment is always available."""

    def available(self, route: Route, now: float) -> bool:
        """Whether ``route`` may be sent a request now (sync: read on the hot path)."""
        return True

    def state(self, route: Route) -> dict[str, Any]:
        """What the admin API shows: ``{"status": "healthy"|"cooling_down"|"half_open",
        "until": ISO time or None}``."""
        return {"status": "healthy", "until": None}

    def succeeded(self, route: Route) -> None:
        """``route`` answered."""

    def failed(self, route: Route, error: GatewayError) -> None:
        """``route`` failed with ``error`` (classified by switchboard.errors.error_class)."""
