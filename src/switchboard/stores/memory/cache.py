"""A bounded TTL cache in process memory; the oldest entries go first when it is full."""

from __future__ import annotations

from collections import OrderedDict

from switchboard.stores.clock import Clock, system_clock


class MemoryCache:
    def __init__(self, clock: Clock = system_clock, max_entries: int = 10_000) -> None:
        self._clock = clock
        self._max = max_entries
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if self._clock() >= expires:
            del self._data[key]
            return None
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be > 0 seconds")
        self._data.pop(key, None)
        self._data[key] = (self._clock() + ttl, bytes(value))
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    async def touch(self, key: str, ttl: float, prefix: bytes = b"") -> bytes | None:
        value = await self.get(key)
        if value is not None and value.startswith(prefix):
            await self.set(key, value, ttl)
        return value

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    # No ``await`` inside either: atomic on the event loop.
    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        if await self.get(key) is not None:
            return False
        await self.set(key, value, ttl)
        return True

    async def take(self, key: str) -> bytes | None:
        value = await self.get(key)
        self._data.pop(key, None)
        return value

    async def close(self) -> None:
        self._data.clear()
