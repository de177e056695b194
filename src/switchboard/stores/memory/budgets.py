"""Budget counters in process memory (one instance: other processes do not see them).

A counter is what one budget has spent in one period plus the reservations of the requests in
flight, each under its own id so settling one is exact and a lapsed one (its process died, or
it was never settled) stops counting. Check-and-reserve over every charge has no ``await``
inside, so it is atomic on the event loop. See ``stores/redis/budgets.py`` for the cluster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from switchboard.stores.clock import Clock, system_clock
from switchboard.stores.protocols import Again, Charge, Reserved

SWEEP_EVERY = 10_000  # reservations between two sweeps of expired counters


class _Counter:
    __slots__ = ("expires", "held", "lapse", "loaded", "reserved", "spent")

    def __init__(self, spent: int, expires: float, loaded: float) -> None:
        self.spent = spent
        self.expires = expires
        self.loaded = loaded  # when it was loaded from the ledger
        self.held: dict[str, tuple[int, float]] = {}  # reservation -> (amount, lapses at)
        self.reserved = 0  # the sum of the amounts held
        self.lapse = math.inf  # no reservation lapses before this instant

    def used(self, now: float) -> int:
        if now >= self.lapse:
            held = self.held
            for r in [r for r, (_, until) in held.items() if until <= now]:
                del held[r]
            self.reserved = sum(amount for amount, _ in held.values())
            self.lapse = min((until for _, until in held.values()), default=math.inf)
        return self.spent + self.reserved


class MemoryBudgetCounters:
    def __init__(self, clock: Clock = system_clock) -> None:
        self._clock = clock
        self._counters: dict[str, _Counter] = {}
        self._calls = 0

    def _live(self, key: str, now: float) -> _Counter | None:
        counter = self._counters.get(key)
        if counter is not None and counter.expires <= now:
            del self._counters[key]
            return None
        return counter

    async def reserve(self, reservation: str, charges: Sequence[Charge], hold: float) -> Reserved:
        return self.reserve_now(reservation, charges, hold)

    def reserve_now(self, reservation: str, charges: Sequence[Charge], hold: float) -> Reserved:
        """``reserve`` without a coroutine: nothing here waits (the request path calls this)."""
        now = self._clock()
        self._calls += 1
        if self._calls % SWEEP_EVERY == 0:
            self._sweep(now)
        counters: list[_Counter] = []
        used: list[int] = []
        missing: list[int] | None = None
        refused: int | None = None
        live = self._counters
        for i, charge in enumerate(charges):
            # ``_live`` written out: one call less per charge on every request.
            counter = live.get(charge.key)
            if counter is not None and counter.expires <= now:
                del live[charge.key]
                counter = None
            if counter is None:
                missing = [i] if missing is None else [*missing, i]
                continue
            counters.append(counter)
            total = counter.spent + counter.reserved if now < counter.lapse else counter.used(now)
            used.append(total)
            if refused is None and total + charge.amount > charge.limit:
                refused = i
        if missing is not None:
            return Reserved([], missing=tuple(missing))
        if refused is not None:
            return Reserved(used, refused=refused)
        until = now + hold
        # Each charge's counter read by its position (one per charge, by construction): no zip,
        # whose object, iterators and tuples cost more than the loop's body here.
        i = 0
        for charge in charges:
            counter = counters[i]
            i += 1  # noqa: SIM113 (no enumerate either: an object per call)
            held = counter.held
            if reservation in held:  # reserved again under the same id: replaces the first
                counter.reserved -= held[reservation][0]
            held[reservation] = (charge.amount, until)
            counter.reserved += charge.amount
            if until < counter.lapse:
                counter.lapse = until
        return tuple.__new__(Reserved, (used, None, ()))

    async def load(self, charge: Charge, spent: int) -> None:
        now = self._clock()
        if self._live(charge.key, now) is None:
            self._counters[charge.key] = _Counter(spent, now + charge.ttl, now)

    async def settle(self, reservation: str, spent: Sequence[tuple[str, int]],
                     again: Again | None = None) -> list[int]:
        return self.settle_now(reservation, spent, again)

    def settle_now(self, reservation: str, spent: Sequence[tuple[str, int]],
                   again: Again | None = None) -> list[int]:
        """``settle`` without a coroutine, as ``reserve_now``."""
        # A settlement here cannot fail, so is never tried again; ``again`` is honoured as in
        # Redis all the same (the contract is one).
        now = self._clock()
        out: list[int] = []
        live = self._counters
        for key, amount in spent:
            counter = live.get(key)  # ``_live`` written out, as in ``reserve``
            if counter is not None and counter.expires <= now:
                del live[key]
                counter = None
            if counter is None:
                out.append(-1)
                continue
            held = counter.held.pop(reservation, None)
            if held is not None:
                counter.reserved -= held[0]
            elif again is not None:
                reserved = now - again.age
                if now < reserved + again.hold or counter.loaded > reserved:
                    out.append(-1)  # settled by the earlier try, or loaded from the ledger since
                    continue
            counter.spent += amount
            out.append(counter.spent)
        return out

    async def lost_ago(self) -> float | None:
        return None  # lost only with this process, whose ledger writer replays its spool first

    async def usage(self, key: str) -> tuple[int, int] | None:
        now = self._clock()
        counter = self._live(key, now)
        if counter is None:
            return None
        used = counter.used(now)
        return counter.spent, used - counter.spent

    def _sweep(self, now: float) -> None:
        for key in [k for k, c in self._counters.items() if c.expires <= now]:
            del self._counters[key]

    async def close(self) -> None:
        self._counters.clear()


