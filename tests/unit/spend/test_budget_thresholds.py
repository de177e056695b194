"""Threshold alerts at settlement: each threshold fires on the settlement that takes the budget's
total across it, once; settlements that stay below the lowest threshold (what almost every one
finds, told by one comparison in the book) fire nothing, and a budget without thresholds never
does."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from switchboard.config.schema import BudgetsConfig
from switchboard.context import Principal, Spent
from switchboard.spend.budgets.book import BudgetBook
from switchboard.spend.budgets.webhooks import WebhookSender
from switchboard.stores.memory.budgets import MemoryBudgetCounters
from tests.unit.spend.test_budget_boundary import Clock, Ledger, Store

OWNER = Principal(id="key_1", role="developer", key_id="key_1", tenant_id="t1",
                  max_budget_usd=Decimal("0.000010"), budget_period="monthly")  # 10_000 nano-USD


def _book(config: BudgetsConfig, store: Store) -> BudgetBook:
    clock = Clock(datetime(2026, 1, 15, tzinfo=UTC))
    return BudgetBook(config, store, MemoryBudgetCounters(clock=clock), Ledger(Decimal(0)), None,  # type: ignore[arg-type]
                      WebhookSender(None), clock=clock)


async def _settle_each(book: BudgetBook, amounts: list[int]) -> list[list[int]]:
    """Settle each amount in turn (each call reserved a token's worth: a call may cost more than
    its reservation); the thresholds claimed after each settlement."""
    budgets = await book.in_force(OWNER)
    store: Store = book._store  # type: ignore[assignment]
    claimed: list[list[int]] = []
    for i, amount in enumerate(amounts):
        charges = book.charges(budgets, [1])
        assert (await book.reserve(f"req_{i}", budgets, charges, 600.0)).refused is None
        before = len(store.claimed)
        await book.settle(f"req_{i}", budgets, charges, Spent(amount, 10, 10))
        await asyncio.gather(*list(book._alerts))
        claimed.append([threshold for _, _, threshold in store.claimed[before:]])
    return claimed


async def test_each_threshold_fires_on_the_settlement_that_crosses_it() -> None:
    book = _book(BudgetsConfig(), Store())  # thresholds 50, 80 and 100 %
    # 40 %, 49.99 %, exactly 50 %, 79.99 %, 85 % and 105 % of the budget, in turn.
    assert await _settle_each(book, [4000, 999, 1, 2999, 501, 2000]) == [[], [], [50], [], [80], [100]]


async def test_one_settlement_across_several_thresholds_fires_each() -> None:
    book = _book(BudgetsConfig(), Store())
    assert await _settle_each(book, [100, 9900]) == [[], [50, 80, 100]]


async def test_a_budget_without_thresholds_fires_none() -> None:
    book = _book(BudgetsConfig(thresholds=[]), Store())
    assert await _settle_each(book, [6000, 5000]) == [[], []]


async def test_the_event_time_always_carries_milliseconds() -> None:
    # As the alert events' times do: a clock on a whole second must not drop the fraction
    # (isoformat() would), or receivers parsing one fixed format fail on about one event in a million.
    book = _book(BudgetsConfig(thresholds=[50]), Store())
    events: list[dict[str, Any]] = []
    book.listeners.append(events.append)
    assert await _settle_each(book, [6000]) == [[50]]
    [event] = events
    assert event["created_at"] == "2026-01-15T00:00:00.000+00:00"
