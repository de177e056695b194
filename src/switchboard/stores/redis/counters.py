"""Fixed-window counters in Redis: one Lua script, one round trip, atomic on the server.

A counter is a hash ``{w: window index, c: count}`` under one key per (scope, name, window),
hash-tagged by scope (``sb:ctr:{scope}:...``) so all of a scope's counters share a Redis Cluster
slot and a later script can check several at once. The window index comes from the Redis
server's clock, so every instance agrees on where a window starts; tests may pass a clock.
"""

from __future__ import annotations

from redis.asyncio import Redis

from switchboard.stores.clock import Clock
from switchboard.stores.redis.client import PREFIX

_NOW = """
local now
if ARGV[3] ~= '' then
  now = tonumber(ARGV[3])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local index = math.floor(now / tonumber(ARGV[1]))
"""

INCR = (
    _NOW
    + """
local stored = redis.call('HGET', KEYS[1], 'w')
local count
if stored and tonumber(stored) == index then
  count = redis.call('HINCRBY', KEYS[1], 'c', ARGV[2])
else
  redis.call('HSET', KEYS[1], 'w', index, 'c', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[1]))
  count = tonumber(ARGV[2])
end
return count
"""
)

GET = (
    _NOW
    + """
local stored = redis.call('HMGET', KEYS[1], 'w', 'c')
if stored[1] and tonumber(stored[1]) == index then
  return tonumber(stored[2])
end
return 0
"""
)


def _window_ms(window: float) -> int:
    ms = round(window * 1000)
    if ms < 1:
        raise ValueError("window must be at least 1 ms")
    return ms


def counter_key(scope: str, name: str, window_ms: int) -> str:
    return f"{PREFIX}ctr:{{{scope}}}:{name}:{window_ms}"


class RedisCounters:
    def __init__(self, client: Redis, clock: Clock | None = None) -> None:
        self._clock = clock
        self._incr = client.register_script(INCR)
        self._get = client.register_script(GET)

    def _now(self) -> str:
        return "" if self._clock is None else str(int(self._clock() * 1000))

    async def incr(self, scope: str, name: str, *, window: float, amount: int = 1) -> int:
        ms = _window_ms(window)
        return int(await self._incr(keys=[counter_key(scope, name, ms)], args=[ms, amount, self._now()]))

    async def get(self, scope: str, name: str, *, window: float) -> int:
        ms = _window_ms(window)
        return int(await self._get(keys=[counter_key(scope, name, ms)], args=[ms, 0, self._now()]))
