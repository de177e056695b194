"""Costs known only after a request (a finished batch's): the check that refuses a new batch
while a budget is exhausted, without reserving, and the count of the batch's ledger row in the
budgets of its owner, in the period it belongs to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from switchboard.config.schema import BudgetsConfig
from switchboard.context import Principal, Spent
from switchboard.spend.budgets.book import BudgetBook
from switchboard.spend.budgets.webhooks import WebhookSender
from switchboard.stores.memory.budgets import MemoryBudgetCounters

NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)
OWNER = Principal(id="key_1", role="developer", key_id="key_1", tenant_id="t1",
                  max_budget_usd=Decimal("0.000002"), budget_period="monthly")


class Ledger:
    def __init__(self, total: Decimal = Decimal(0)) -> None:
        self.amount = total
        self.asked = 0

    async def total(self, tenant_id: str, scope: str, subject: str, since: datetime, unit: str) -> Decimal:
        self.asked += 1
        return self.amount


class Store:
    async def list_budgets(self, tenant_id: str) -> list[Any]:
        return []


def _book(ledger: Ledger, counters: MemoryBudgetCounters) -> BudgetBook:
    clock = NOW.timestamp
    return BudgetBook(BudgetsConfig(), Store(), counters, ledger, None, WebhookSender(None),  # type: ignore[arg-type]
                      clock=clock)


async def test_an_exhausted_budget_is_found_without_reserving() -> None:
    counters = MemoryBudgetCounters(clock=NOW.timestamp)
    book = _book(Ledger(), counters)
    budgets = await book.in_force(OWNER)
    assert await book.exhausted(budgets) is None  # the counter loaded from the ledger: 0 spent
    [charge] = book.charges(budgets, [0])
    assert await counters.usage(charge.key) == (0, 0)  # nothing reserved
    await book.add(OWNER, "batch_1", NOW - timedelta(hours=1), Spent(2250, 15, 10, 5))
    assert await counters.usage(charge.key) == (2250, 0)
    assert await book.exhausted(budgets) == (0, 2250)


async def test_a_cost_is_counted_only_in_the_period_it_belongs_to_and_only_in_loaded_counters() -> None:
    counters = MemoryBudgetCounters(clock=NOW.timestamp)
    ledger = Ledger()
    book = _book(ledger, counters)
    budgets = await book.in_force(OWNER)
    [charge] = book.charges(budgets, [0])
    # Not loaded: not counted here (loading it later reads the row from the ledger).
    await book.add(OWNER, "batch_0", NOW, Spent(2250, 15))
    assert await counters.usage(charge.key) is None and ledger.asked == 0
    assert await book.exhausted(budgets) is None
    # A batch that finished last month is in last month's spend, not this month's.
    await book.add(OWNER, "batch_1", datetime(2026, 5, 31, 23, tzinfo=UTC), Spent(5000, 15))
    assert await counters.usage(charge.key) == (0, 0)
