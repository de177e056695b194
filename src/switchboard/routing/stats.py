"""What each deployment is doing, as this instance sees it: requests in flight, moving
averages of latency and time to first token, recent errors. In-process and approximate by
design (each instance balances its own traffic); the strategies read it (routing/strategies.py).
"""

from __future__ import annotations

from switchboard.routing.table import Route


class DeploymentStats:
    """Stub: filled in with the strategies."""

    def started(self, route: Route) -> None:
        """A request to ``route`` is being sent."""

    def finished(self, route: Route, ok: bool, seconds: float, first_byte: float | None) -> None:
        """It ended: answered (``ok``) or failed, after ``seconds``, its first byte after
        ``first_byte`` seconds (streams; None otherwise)."""
