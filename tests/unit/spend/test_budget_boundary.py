"""A call that takes its budget charge just before a period boundary and whose later work (the
counter's rebuild from the ledger, the threshold alert at settlement) runs after it: that work
belongs to the period the charge was made in, whatever the clock says by then. The charge itself
is made in the period the call started in, where its ledger record is dated. The clock is
injected, so the boundary is crossed without waiting for it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from switchboard.config.schema import BudgetsConfig
from switchboard.context import Principal, Spent
from switchboard.pipeline.budgets import _refusal
from switchboard.spend.budgets.book import BudgetBook
from switchboard.spend.budgets.periods import counter_key, key_start, window
from switchboard.spend.budgets.plan import in_force
from switchboard.spend.budgets.webhooks import WebhookSender
from switchboard.stores.memory.budgets import MemoryBudgetCounters
from switchboard.stores.protocols.budgets import Charge

JANUARY = datetime(2026, 1, 1, tzinfo=UTC)
FEBRUARY = datetime(2026, 2, 1, tzinfo=UTC)
LAST_MS_OF_JANUARY = datetime(2026, 1, 31, 23, 59, 59, 999000, tzinfo=UTC)
OWNER = Principal(id="key_1", role="developer", key_id="key_1", tenant_id="t1",
                  max_budget_usd=Decimal("0.000010"), budget_period="monthly")  # 10_000 nano-USD


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at.timestamp()

    def __call__(self) -> float:
        return self.at


class Ledger:
    """What was spent in January (only a read from January 1st sees it), and the reads made."""

    def __init__(self, january: Decimal) -> None:
        self.january = january
        self.since: list[datetime] = []

    async def total(self, tenant_id: str, scope: str, subject: str, since: datetime, unit: str) -> Decimal:
        self.since.append(since)
        return self.january if since <= JANUARY else Decimal(0)


class Store:
    def __init__(self) -> None:
        self.claimed: list[tuple[str, datetime, int]] = []

    async def list_budgets(self, tenant_id: str) -> list[Any]:
        return []

    async def claim_alert(self, budget_id: str, period_start: datetime, threshold: int, limit: int) -> bool:
        if (budget_id, period_start, threshold) in self.claimed:  # one amount in these tests
            return False
        self.claimed.append((budget_id, period_start, threshold))
        return True


def _book(clock: Clock, ledger: Ledger, store: Store) -> tuple[BudgetBook, MemoryBudgetCounters]:
    counters = MemoryBudgetCounters(clock=clock)
    book = BudgetBook(BudgetsConfig(), store, counters, ledger, None, WebhookSender(None),  # type: ignore[arg-type]
                      clock=clock)
    return book, counters


def test_key_start_reads_back_the_start_of_counter_key() -> None:
    for start in (JANUARY, FEBRUARY, datetime(2028, 2, 28, 23, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC)):
        assert key_start(counter_key("bud:with:colons", start)) == start


def test_the_last_millisecond_of_a_month_counts_in_that_month() -> None:
    assert window("monthly", UTC, LAST_MS_OF_JANUARY) == (JANUARY, FEBRUARY)
    assert window("monthly", UTC, FEBRUARY) == (FEBRUARY, datetime(2026, 3, 1, tzinfo=UTC))
    leap_day_end = datetime(2028, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)
    leap_day = datetime(2028, 2, 29, tzinfo=UTC)
    assert window("daily", UTC, leap_day_end) == (leap_day, datetime(2028, 3, 1, tzinfo=UTC))
    new_year = datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert window("monthly", UTC, new_year)[1] == datetime(2027, 1, 1, tzinfo=UTC)
    # 2027-01-01 is a Friday: its ISO week began on Monday 2026-12-28.
    assert window("weekly", UTC, datetime(2027, 1, 1, tzinfo=UTC))[0] == datetime(2026, 12, 28, tzinfo=UTC)


async def test_a_counter_charged_before_the_boundary_and_rebuilt_after_it_holds_that_periods_spend() -> None:
    clock = Clock(LAST_MS_OF_JANUARY)
    ledger = Ledger(january=Decimal("0.000010"))  # January's budget is used up
    book, _ = _book(clock, ledger, Store())
    budgets = await book.in_force(OWNER)
    charges = book.charges(budgets, [1000])
    assert key_start(charges[0].key) == JANUARY
    clock.at = FEBRUARY.timestamp() + 5  # the rebuild's waits took the call past midnight
    reserved = await book.reserve("req_1", budgets, charges, 60.0)
    assert ledger.since == [JANUARY]
    assert reserved.refused == 0  # January had nothing left: refused, not let through
    assert reserved.used == [10_000]


async def test_a_threshold_crossed_by_a_call_settled_after_the_boundary_is_alerted_in_its_period() -> None:
    clock = Clock(LAST_MS_OF_JANUARY)
    store = Store()
    book, _ = _book(clock, Ledger(january=Decimal(0)), store)
    events: list[dict[str, Any]] = []
    book.listeners.append(events.append)
    budgets = await book.in_force(OWNER)
    charges = book.charges(budgets, [9000])
    assert (await book.reserve("req_1", budgets, charges, 600.0)).refused is None
    clock.at = FEBRUARY.timestamp() + 90  # a long stream ends in February
    await book.settle("req_1", budgets, charges, Spent(9000, 10, 10))
    await asyncio.gather(*list(book._alerts))
    assert store.claimed == [(budgets[0].id, JANUARY, 50), (budgets[0].id, JANUARY, 80)]
    assert [e["data"]["period_start"] for e in events] == [JANUARY.isoformat()] * 2
    assert {e["data"]["period_end"] for e in events} == {FEBRUARY.isoformat()}
    # February's own 50 % is still alerted when February crosses it.
    february = book.charges(budgets, [6000])
    assert key_start(february[0].key) == FEBRUARY
    assert (await book.reserve("req_2", budgets, february, 600.0)).refused is None
    await book.settle("req_2", budgets, february, Spent(6000, 10, 10))
    await asyncio.gather(*list(book._alerts))
    assert store.claimed[2:] == [(budgets[0].id, FEBRUARY, 50)]


async def test_a_request_that_started_before_the_boundary_is_charged_in_that_period() -> None:
    # Its ledger record is dated at its start (pipeline/usage.py): a charge in the period it
    # reached the budget stage in would leave the live counters one request away from a
    # rebuild from the ledger, in both periods.
    clock = Clock(FEBRUARY)
    clock.at += 0.2
    ledger = Ledger(january=Decimal("0.000010"))  # January's budget is used up
    book, _ = _book(clock, ledger, Store())
    budgets = await book.in_force(OWNER)
    [january] = book.charges(budgets, [1000], started_ago=0.5)  # arrived at 23:59:59.7
    assert key_start(january.key) == JANUARY
    assert january.ttl == FEBRUARY.timestamp() + 2 * 86_400 - clock.at  # January's counter, kept 2 days
    [february] = book.charges(budgets, [1000], started_ago=0.1)  # arrived at 00:00:00.1
    assert key_start(february.key) == FEBRUARY
    assert key_start(book.charges(budgets, [1000], started_ago=0.5)[0].key) == JANUARY
    assert key_start(book.charges(budgets, [1000])[0].key) == FEBRUARY  # February stays the cached one
    reserved = await book.reserve("req_1", budgets, [january], 60.0)
    assert ledger.since == [JANUARY]  # the counter is January's, rebuilt from January's records
    assert reserved.refused == 0 and reserved.used == [10_000]
    assert (await book.reserve("req_2", budgets, [february], 60.0)).refused is None


def test_a_refusal_in_a_period_that_has_ended_says_to_retry_at_once() -> None:
    # A request charged in the period it started in, refused there after that period ended: the
    # next period has room now, not a month from now.
    [budget] = in_force(OWNER, {}, BudgetsConfig())
    ended = _refusal(budget, Charge(counter_key(budget.id, JANUARY), budget.limit, 1000, 60.0), 10_000)
    assert ended.status == 429 and ended.headers["retry-after"] == "1"
    now = datetime.now(UTC)
    start, end = window("monthly", UTC, now)
    current = _refusal(budget, Charge(counter_key(budget.id, start), budget.limit, 1000, 60.0), 10_000)
    assert end is not None
    assert abs(int(current.headers["retry-after"]) - (end - now).total_seconds()) <= 2
