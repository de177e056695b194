"""What the admin API asks of the running budgets: forget a tenant's cached budgets after a
change, and the live status of one budget in its current period."""

from __future__ import annotations

from typing import Any, Protocol

from switchboard.stores.protocols import BudgetRecord


class BudgetService(Protocol):
    async def changed(self, tenant_id: str) -> None:
        """A tenant's budgets changed here: forget them now, and tell every other instance."""

    async def status(self, record: BudgetRecord, *, alert: bool = False) -> dict[str, Any]:
        """The budget's current period: ``period_start``, ``period_end`` (ISO 8601, UTC; None
        for a total budget), ``spent``, ``reserved`` and ``remaining`` (strings of USD for a
        USD budget, integers for a token budget), ``percent_used``. TimeoutError when the
        counters do not answer within a short bound (about a second). ``alert``: also send the
        threshold alerts its spend is at or past and that were not sent for its amount."""

    async def forget_alerts(self, record: BudgetRecord) -> None:
        """The budget's amount or thresholds changed: the thresholds claimed at another amount,
        or no longer listed, are forgotten, so they alert again if the budget is set back."""

    async def release_alerts(self, budget_id: str) -> None:
        """Every threshold claim of the budget is forgotten, here and on every instance: a key
        chain's own budget, once the chain is brought back after no key of it could spend."""
