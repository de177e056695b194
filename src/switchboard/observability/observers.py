"""What watches requests once they are answered: metrics, alerts. One interface, fed by the
observe stage (pipeline/observe.py) after the response is written."""

from __future__ import annotations

from typing import Protocol

from switchboard.context import RequestContext


class Observer(Protocol):
    def observe(self, ctx: RequestContext) -> None:
        """Take note of a finished request (``ctx.outcome`` is filled in). Must be quick and
        must not raise for a request it cannot read."""
