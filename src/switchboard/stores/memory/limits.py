"""Rate-limit windows in process memory (one instance: other processes do not see them).

The same sliding-window algorithm as the Redis script (``stores/redis/limits.py``): a window of
W seconds is kept as ``LIMIT_SLOTS`` slots of W/60; what a request takes is counted in the
current slot, and a slot counts until all of it has left the window. Check-and-take over every
bucket has no ``await`` inside, so it is atomic on the event loop.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from switchboard.stores.clock import Clock, system_clock
from switchboard.stores.protocols import LIMIT_SLOTS, Acquired, Bucket, BucketState

SWEEP_EVERY = 10_000  # acquisitions between two sweeps of idle buckets


@functools.cache
def slot_ms(window: float) -> int:
    """The length of one slot in milliseconds: rounded up, so the 60 slots span at least the
    window (a unit never comes back early). Cached: a handful of windows, asked per bucket."""
    ms = round(window * 1000)
    if ms < 1:
        raise ValueError("a limit window must be at least 1 ms")
    return -(-ms // LIMIT_SLOTS)


class MemoryRateLimiter:
    def __init__(self, clock: Clock = system_clock) -> None:
        self._clock = clock
        # (bucket key, slot length in ms) -> {slot index: units}
        self._slots: dict[tuple[str, int], dict[int, int]] = {}
        self._calls = 0

    def _live(self, key: tuple[str, int], current: int) -> dict[int, int]:
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = {}
        for index in [i for i in slots if i < current - LIMIT_SLOTS]:
            del slots[index]
        return slots

    def _sweep(self, now: int) -> None:
        """Forget buckets whose every slot has left the window (keys, models come and go)."""
        for (key, g), slots in list(self._slots.items()):
            if all(i < now // g - LIMIT_SLOTS for i in slots):
                del self._slots[(key, g)]

    async def acquire(self, buckets: Sequence[Bucket]) -> Acquired:
        now = int(self._clock() * 1000)
        self._calls += 1
        if self._calls % SWEEP_EVERY == 0:
            self._sweep(now)
        seen: list[tuple[dict[int, int], int, int]] = []
        states: list[BucketState] = []
        for n, bucket in enumerate(buckets):
            g = slot_ms(bucket.window)
            current = now // g
            slots = self._live((bucket.key, g), current)
            used = sum(slots.values())
            if used + bucket.amount > bucket.capacity:
                return Acquired([], refused=n, retry_after=_retry(slots, used, bucket, g, now))
            seen.append((slots, current, used))
            states.append(BucketState(bucket.capacity, used + bucket.amount, 0.0, current))
        out: list[BucketState] = []
        for (slots, current, _), bucket, state in zip(seen, buckets, states, strict=True):
            if bucket.amount:
                slots[current] = slots.get(current, 0) + bucket.amount
            g = slot_ms(bucket.window)
            newest = max((i for i, v in slots.items() if v > 0), default=None)
            reset = 0.0 if newest is None else ((newest + LIMIT_SLOTS + 1) * g - now) / 1000
            out.append(BucketState(state.capacity, state.used, reset, current))
        return Acquired(out)

    async def adjust(self, buckets: Sequence[Bucket], slots: Sequence[int]) -> None:
        now = int(self._clock() * 1000)
        for bucket, index in zip(buckets, slots, strict=True):
            g = slot_ms(bucket.window)
            live = self._live((bucket.key, g), now // g)
            if index < now // g - LIMIT_SLOTS:
                continue  # that slot no longer counts
            live[index] = max(0, live.get(index, 0) + bucket.amount)

    async def close(self) -> None:
        self._slots.clear()


def _retry(slots: dict[int, int], used: int, bucket: Bucket, g: int, now: int) -> float:
    """Seconds until enough of the oldest slots have left the window for ``bucket.amount``."""
    if bucket.amount > bucket.capacity:
        return math.inf
    freed = 0
    for index in sorted(slots):
        freed += slots[index]
        if used - freed + bucket.amount <= bucket.capacity:
            return max(0.001, ((index + LIMIT_SLOTS + 1) * g - now) / 1000)
    return g / 1000
