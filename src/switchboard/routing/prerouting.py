"""Which of a group's deployments may serve a request at all, before any strategy: inside the
caller's allowed regions (data residency), large enough for the request's context, not
cooling down.
"""

from __future__ import annotations

from switchboard.routing.table import Route


def eligible(deployments: tuple[Route, ...], regions: frozenset[str] | None, needed_tokens: int | None,
             ) -> list[Route]:
    """Stub: every deployment."""
    return list(deployments)
