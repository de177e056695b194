"""Fixed-window counters in process memory (one instance: other processes do not see them)."""

from __future__ import annotations

from switchboard.stores.clock import Clock, system_clock


class MemoryCounters:
    def __init__(self, clock: Clock = system_clock) -> None:
        self._clock = clock
        # (scope, name, window) -> (window index, count)
        self._counts: dict[tuple[str, str, float], tuple[int, int]] = {}

    def _window(self, window: float) -> int:
        if window <= 0:
            raise ValueError("window must be > 0 seconds")
        return int(self._clock() // window)

    async def incr(self, scope: str, name: str, *, window: float, amount: int = 1) -> int:
        # No await between read and write: atomic on the event loop.
        index = self._window(window)
        key = (scope, name, window)
        current, count = self._counts.get(key, (index, 0))
        count = count + amount if current == index else amount
        self._counts[key] = (index, count)
        return count

    async def get(self, scope: str, name: str, *, window: float) -> int:
        index = self._window(window)
        current, count = self._counts.get((scope, name, window), (index, 0))
        return count if current == index else 0

    async def close(self) -> None:
        self._counts.clear()
