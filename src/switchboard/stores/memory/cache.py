"""A bounded TTL cache in process memory; the oldest entries go first when it is full."""

from __future__ import annotations

from collections import OrderedDict

from switchboard.stores.clock import Clock, system_clock


class MemoryCache:
    def __init__(self, clock: Clock = system_clock, max_entries: int = 10_000) -> None:
        self._clock = clock
        self._max = max_entries
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        # ``add_counted``'s groups: their keys, and each such key's group (dropped with the key).
        self._groups: dict[str, set[str]] = {}
        self._group_of: dict[str, str] = {}

    async def get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if self._clock() >= expires:
            del self._data[key]
            self._ungroup(key)
            return None
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be > 0 seconds")
        self._data.pop(key, None)
        self._data[key] = (self._clock() + ttl, bytes(value))
        while len(self._data) > self._max:
            self._ungroup(self._data.popitem(last=False)[0])

    async def touch(self, key: str, ttl: float, prefix: bytes = b"",
                    group: str | None = None) -> bytes | None:
        # (A group counts its keys that hold a value: nothing of it to extend here.)
        value = await self.get(key)
        if value is not None and value.startswith(prefix):
            await self.set(key, value, ttl)
        return value

    async def add_counted(self, key: str, value: bytes, ttl: float, group: str, limit: int) -> bool:
        keys = self._groups.get(group, ())
        # get() drops an expired key (from its group too): a copy is iterated.
        live = sum([await self.get(k) is not None for k in list(keys)])
        if live >= limit:
            return False
        await self.set(key, value, ttl)
        self._ungroup(key)
        self._group_of[key] = group
        self._groups.setdefault(group, set()).add(key)
        return True

    def _ungroup(self, key: str) -> None:
        group = self._group_of.pop(key, None)
        if group is not None:
            keys = self._groups[group]
            keys.discard(key)
            if not keys:
                del self._groups[group]

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)
        self._ungroup(key)

    # No ``await`` inside either: atomic on the event loop.
    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        if await self.get(key) is not None:
            return False
        await self.set(key, value, ttl)
        return True

    async def take(self, key: str) -> bytes | None:
        value = await self.get(key)
        self._data.pop(key, None)
        self._ungroup(key)
        return value

    async def close(self) -> None:
        self._data.clear()
        self._groups.clear()
        self._group_of.clear()
