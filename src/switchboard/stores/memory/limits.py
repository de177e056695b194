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


# ``slot_ms`` by window for the request path: a dict look-up where the cached function's call
# built an argument tuple and hashed it on every bucket (some 500 instructions a call). A
# handful of windows (the limits' minute and day); cleared if ever it grows past the bound.
_SLOT_MS: dict[float, int] = {}
_SLOT_MS_MAX = 1024


def _slot_ms(window: float) -> int:
    """``slot_ms``, kept in ``_SLOT_MS`` (the request path reads that first)."""
    if len(_SLOT_MS) >= _SLOT_MS_MAX:
        _SLOT_MS.clear()
    g = _SLOT_MS[window] = slot_ms(window)
    return g


class _Window:
    """One bucket's slots, oldest first (slots are added as time goes on), and their sum."""

    __slots__ = ("slots", "total")

    def __init__(self) -> None:
        self.slots: dict[int, int] = {}  # slot index -> units, in increasing index order
        self.total = 0

    def live(self, current: int) -> dict[int, int]:
        """The slots still in the window, the older ones dropped (from the front: oldest first)."""
        slots = self.slots
        cutoff = current - LIMIT_SLOTS
        while slots:
            first = next(iter(slots))
            if first >= cutoff:
                break
            self.total -= slots.pop(first)
        return slots

    def newest(self) -> int | None:
        for index in reversed(self.slots):
            if self.slots[index] > 0:
                return index
        return None


class MemoryRateLimiter:
    def __init__(self, clock: Clock = system_clock) -> None:
        self._clock = clock
        # (bucket key, slot length in ms) -> its window
        self._windows: dict[tuple[str, int], _Window] = {}
        self._calls = 0

    def _window(self, key: tuple[str, int]) -> _Window:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window()
        return window

    def _sweep(self, now: int) -> None:
        """Forget buckets whose every slot has left the window (keys, models come and go)."""
        for (key, g), window in list(self._windows.items()):
            if not window.live(now // g):
                del self._windows[(key, g)]

    async def acquire(self, buckets: Sequence[Bucket]) -> Acquired:
        return self.acquire_now(buckets)

    def acquire_now(self, buckets: Sequence[Bucket]) -> Acquired:
        """``acquire`` without a coroutine: nothing here waits (the request path calls this)."""
        now = int(self._clock() * 1000)
        self._calls += 1
        if self._calls % SWEEP_EVERY == 0:
            self._sweep(now)
        windows = self._windows
        # What the second pass needs of each bucket, kept by the first: no enumerate and no zip
        # (each an object, its iterators and tuples, on every request).
        seen: list[tuple[_Window, int, int, int, int]] = []
        for key, capacity, span, amount in buckets:
            g = _SLOT_MS.get(span) or _slot_ms(span)
            current = now // g
            window = windows.get((key, g))
            if window is None:
                window = windows[(key, g)] = _Window()
            elif window.slots and next(iter(window.slots)) < current - LIMIT_SLOTS:
                window.live(current)
            if window.total + amount > capacity:
                n = len(seen)
                retry = _retry(window.slots, window.total, buckets[n], g, now)
                # Refused: every bucket's state as it stands (nothing taken), for the headers.
                states = [] if math.isinf(retry) else self._states(buckets, now)
                return Acquired(states, refused=n, retry_after=retry)
            seen.append((window, current, g, capacity, amount))
        out: list[BucketState] = []
        for window, current, g, capacity, amount in seen:
            slots = window.slots
            if amount > 0:
                slots[current] = slots.get(current, 0) + amount
                window.total += amount
                newest: int | None = current  # the slot just counted in is the newest
            else:
                if amount:
                    slots[current] = slots.get(current, 0) + amount
                    window.total += amount
                newest = window.newest()
            reset = 0.0 if newest is None else ((newest + LIMIT_SLOTS + 1) * g - now) / 1000
            out.append(tuple.__new__(BucketState, (capacity, window.total, reset, current)))
        return tuple.__new__(Acquired, (out, None, 0.0))

    def _states(self, buckets: Sequence[Bucket], now: int) -> list[BucketState]:
        """Each bucket's state without taking anything (a refused request's headers)."""
        out: list[BucketState] = []
        for key, capacity, span, _ in buckets:
            g = slot_ms(span)
            current = now // g
            window = self._windows.get((key, g))
            if window is None:
                out.append(BucketState(capacity, 0, 0.0, current))
                continue
            window.live(current)
            newest = window.newest()
            reset = 0.0 if newest is None else ((newest + LIMIT_SLOTS + 1) * g - now) / 1000
            out.append(BucketState(capacity, window.total, reset, current))
        return out

    async def adjust(self, buckets: Sequence[Bucket], slots: Sequence[int]) -> None:
        self.adjust_now(buckets, slots)

    def adjust_now(self, buckets: Sequence[Bucket], slots: Sequence[int]) -> None:
        """``adjust`` without a coroutine, as ``acquire_now``."""
        now = int(self._clock() * 1000)
        windows = self._windows
        i = 0  # the bucket's slot, read by its position: no zip (as in acquire)
        for key, _, span, amount in buckets:
            index = slots[i]
            i += 1
            g = _SLOT_MS.get(span) or _slot_ms(span)
            current = now // g
            if index < current - LIMIT_SLOTS:
                continue  # that slot no longer counts
            window = windows.get((key, g))
            if window is None:
                window = windows[(key, g)] = _Window()
            live = window.slots
            if live and next(iter(live)) < current - LIMIT_SLOTS:
                window.live(current)
            old = live.get(index, 0)
            new = old + amount
            if new < 0:
                new = 0
            live[index] = new
            window.total += new - old

    async def close(self) -> None:
        self._windows.clear()


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
