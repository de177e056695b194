"""BudgetCounters contract: reservations all-or-nothing across budgets, exact under concurrency
and across instances, settled exactly, lapsing when never settled; a counter that is not loaded
says so and reserves nothing; a settlement tried again after a failed try counts once."""

from __future__ import annotations

import asyncio
import math

import pytest

from switchboard.stores.clock import ManualClock
from switchboard.stores.memory.budgets import MemoryBudgetCounters
from switchboard.stores.protocols import Again, Charge
from switchboard.stores.redis.budgets import counter_key
from switchboard.stores.redis.client import connect
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")

DOLLAR = 10**9
CENT = DOLLAR // 100


def charge(key: str, limit: int, amount: int, ttl: float = math.inf) -> Charge:
    return Charge(key, limit, amount, ttl)


async def test_a_counter_not_loaded_is_reported_and_nothing_is_reserved(backend: Backend) -> None:
    counters = backend.stores.budget_counters
    await counters.load(charge("b1:0", DOLLAR, 0), 0)
    got = await counters.reserve("r1", [charge("b1:0", DOLLAR, CENT), charge("b2:0", DOLLAR, CENT)], 60)
    assert got.missing == (1,) and got.refused is None
    assert await counters.usage("b1:0") == (0, 0)  # nothing reserved on the loaded one either
    assert await counters.usage("b2:0") is None


async def test_a_new_periods_counter_is_its_own_and_starts_unloaded(backend: Backend) -> None:
    """A budget's counter is per period: after many reservations and settlements in one period,
    the next period's key is a counter of its own, not loaded until it is."""
    counters = backend.stores.budget_counters
    june, july = charge("bud:1780272000", DOLLAR, CENT), charge("bud:1782864000", DOLLAR, CENT)
    await counters.load(june, 0)
    for n in range(3):
        assert (await counters.reserve(f"r{n}", [june], 60)).refused is None
        assert await counters.settle(f"r{n}", [(june.key, 2 * CENT)]) == [2 * CENT * (n + 1)]
    assert (await counters.reserve("r3", [july], 60)).missing == (0,)
    await counters.load(july, 0)
    assert (await counters.reserve("r4", [july], 60)).used == [0]
    assert await counters.settle("r4", [(july.key, CENT)]) == [CENT]
    assert await counters.usage(june.key) == (6 * CENT, 0)


async def test_load_never_overwrites_a_counter(backend: Backend) -> None:
    counters = backend.stores.budget_counters
    await counters.load(charge("c:0", DOLLAR, 0), 5 * CENT)
    await counters.load(charge("c:0", DOLLAR, 0), 0)
    assert await counters.usage("c:0") == (5 * CENT, 0)


async def test_reserve_is_all_or_nothing_and_settles_to_what_was_spent(backend: Backend) -> None:
    counters = backend.stores.budget_counters
    small, large = charge("small:0", 10 * CENT, 6 * CENT), charge("large:0", DOLLAR, 6 * CENT)
    for c in (small, large):
        await counters.load(c, 0)
    first = await counters.reserve("r1", [large, small], 60)
    assert first.refused is None and first.used == [0, 0]
    second = await counters.reserve("r2", [large, small], 60)
    assert second.refused == 1 and second.used == [6 * CENT, 6 * CENT]
    assert await counters.usage("large:0") == (0, 6 * CENT)  # r2 took nothing from the large one
    totals = await counters.settle("r1", [("large:0", 4 * CENT), ("small:0", 4 * CENT)])
    assert totals == [4 * CENT, 4 * CENT]
    assert await counters.usage("small:0") == (4 * CENT, 0)
    third = await counters.reserve("r3", [large, small], 60)
    assert third.refused is None and third.used == [4 * CENT, 4 * CENT]


async def test_a_refusal_says_what_every_budget_used_and_names_the_first_refusing(backend: Backend) -> None:
    """A budget after the refusing one is read all the same (its downgrade threshold decides
    whether the request goes to a cheaper model): nothing is reserved on any of them."""
    counters = backend.stores.budget_counters
    small, other, large = (charge("f-small:0", 10 * CENT, 6 * CENT), charge("f-other:0", 10 * CENT, 6 * CENT),
                           charge("f-large:0", DOLLAR, 6 * CENT))
    for c, spent in ((small, 5 * CENT), (other, 5 * CENT), (large, 7 * CENT)):
        await counters.load(c, spent)
    got = await counters.reserve("r1", [small, other, large], 60)
    assert got.refused == 0 and got.used == [5 * CENT, 5 * CENT, 7 * CENT]
    assert [await counters.usage(c.key) for c in (small, other, large)] == [
        (5 * CENT, 0), (5 * CENT, 0), (7 * CENT, 0)]


async def test_settling_a_counter_that_is_gone_leaves_it_to_the_ledger(backend: Backend) -> None:
    counters = backend.stores.budget_counters
    assert await counters.settle("r1", [("gone:0", CENT)]) == [-1]
    assert await counters.usage("gone:0") is None


async def test_a_settlement_tried_again_while_its_reservation_is_held_counts_once(backend: Backend) -> None:
    counters = backend.stores.budget_counters
    c = charge("again:0", DOLLAR, 5 * CENT)
    await counters.load(c, 0)
    assert (await counters.reserve("r1", [c], 60)).refused is None
    # The first try failed before reaching the counters: the next one settles.
    assert await counters.settle("r1", [("again:0", CENT)], Again(2, 60)) == [CENT]
    # That one's answer was lost: tried again, it finds the reservation gone within its hold.
    assert await counters.settle("r1", [("again:0", CENT)], Again(3, 60)) == [-1]
    assert await counters.usage("again:0") == (CENT, 0)


async def test_a_settlement_tried_again_after_its_reservation_lapsed_still_counts(backend: Backend) -> None:
    # Redis was down for longer than the reservation's hold: the reservation lapsed unsettled,
    # and what the call cost is added when Redis answers again.
    counters = backend.stores.budget_counters
    c = charge("lapsed:0", DOLLAR, 5 * CENT)
    await counters.load(c, 2 * CENT)
    assert (await counters.reserve("r1", [c], 30)).refused is None
    backend.clock.advance(31)
    assert await counters.usage("lapsed:0") == (2 * CENT, 0)  # lapsed, and swept
    assert await counters.settle("r1", [("lapsed:0", CENT)], Again(31, 30)) == [3 * CENT]
    assert await counters.usage("lapsed:0") == (3 * CENT, 0)


async def test_a_settlement_tried_again_skips_a_counter_reloaded_from_the_ledger(cluster: Backend) -> None:
    # Redis lost the counter while the call ran and it was loaded again from the ledger, which
    # holds the call: adding it again would count it twice.
    counters = cluster.stores.budget_counters
    c = charge("reloaded:0", DOLLAR, 5 * CENT)
    await counters.load(c, 0)
    assert (await counters.reserve("r1", [c], 30)).refused is None
    assert cluster.redis is not None
    client = await connect(cluster.redis)
    try:
        await client.delete(counter_key("reloaded:0"))
    finally:
        await client.aclose()
    cluster.clock.advance(40)
    await counters.load(c, CENT)  # the ledger, the call included
    assert await counters.settle("r1", [("reloaded:0", CENT)], Again(40, 30)) == [-1]
    assert await counters.usage("reloaded:0") == (CENT, 0)


async def test_200_concurrent_reservations_on_two_instances_never_overshoot(backend: Backend) -> None:
    peer = await backend.peer()
    both = [backend.stores.budget_counters, peer.budget_counters]
    c = charge("k:0", DOLLAR, CENT)
    await both[0].load(c, 0)
    results = await asyncio.gather(*(both[i % 2].reserve(f"r{i}", [c], 60) for i in range(200)))
    admitted = [i for i, r in enumerate(results) if r.refused is None]
    assert len(admitted) == 100
    assert await both[1].usage("k:0") == (0, DOLLAR)
    await asyncio.gather(*(both[i % 2].settle(f"r{i}", [("k:0", CENT)]) for i in admitted))
    assert await both[0].usage("k:0") == (DOLLAR, 0)


async def test_a_reservation_never_settled_lapses_after_its_hold(backend: Backend) -> None:
    counters = backend.stores.budget_counters
    c = charge("lapse:0", 2 * CENT, CENT)
    await counters.load(c, 0)
    assert (await counters.reserve("r1", [c], 30)).refused is None
    assert (await counters.reserve("r2", [c], 30)).refused is None
    assert (await counters.reserve("r3", [c], 30)).refused == 0
    backend.clock.advance(31)
    assert await counters.usage("lapse:0") == (0, 0)
    assert (await counters.reserve("r3", [c], 30)).refused is None


async def test_a_period_counter_expires_with_its_ttl_in_memory() -> None:
    clock = ManualClock()
    counters = MemoryBudgetCounters(clock)
    await counters.load(charge("day:0", DOLLAR, 0, ttl=100), 7)
    assert await counters.usage("day:0") == (7, 0)
    clock.advance(101)
    assert await counters.usage("day:0") is None
    assert (await counters.reserve("r", [charge("day:0", DOLLAR, 1)], 10)).missing == (0,)


async def test_a_settlement_tried_again_skips_a_counter_loaded_since_in_memory() -> None:
    clock = ManualClock()
    counters = MemoryBudgetCounters(clock)
    await counters.load(charge("day:0", DOLLAR, 0, ttl=100), 0)
    assert (await counters.reserve("r1", [charge("day:0", DOLLAR, CENT)], 30)).refused is None
    clock.advance(101)  # gone, and loaded again from the ledger, the call included
    await counters.load(charge("day:0", DOLLAR, 0, ttl=100), CENT)
    assert await counters.settle("r1", [("day:0", CENT)], Again(101, 30)) == [-1]
    assert await counters.usage("day:0") == (CENT, 0)
