"""Rate-limit windows in Redis: one Lua script per request checks and takes from every bucket
at once (all or nothing), so N instances share exact limits and a refused request takes nothing.

The algorithm is the in-memory one (``stores/memory/limits.py``): each bucket is a hash of slot
index -> units under ``sb:rl:{rl}:<key>:<slot ms>``; slots older than the window are deleted as
they are read. Every key carries the same hash tag, so one script may touch all of them on a
Redis Cluster too. Time is the Redis server's (``TIME``), so every instance agrees on the
window; tests may pass a clock. A correction (``adjust``) Redis does not take, because it is
down as a call ends, waits in this process and is tried again until Redis answers, for as long
as its slot still counts (``Retries``): the tokens a stream used are not lost to a short outage.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Sequence
from typing import Any, NamedTuple

from redis.asyncio import Redis

from switchboard.background import Retries
from switchboard.stores.clock import Clock
from switchboard.stores.memory.limits import slot_ms
from switchboard.stores.protocols import LIMIT_SLOTS, Acquired, Bucket, BucketState
from switchboard.stores.redis.batch import batch_for
from switchboard.stores.redis.client import LUA_NOW, PREFIX
from switchboard.stores.redis.wire import ENCODED, encoded, number, values

_NOW = LUA_NOW + """
local n = tonumber(ARGV[2])
"""

# ARGV: now ('' = server time), slots, then per bucket: slot ms, capacity, amount.
# Returns {refused index (0 = none), retry ms (-1 = never), then per bucket used, reset ms, slot}:
# a refusal takes nothing and its states are the buckets' as they stand (none when the amount
# exceeds a capacity itself).
ACQUIRE = _NOW + """
local live = {}
local used = {}
local refused = 0
local retry = 0
for i, key in ipairs(KEYS) do
  local g = tonumber(ARGV[3 * i])
  local cap = tonumber(ARGV[3 * i + 1])
  local amount = tonumber(ARGV[3 * i + 2])
  local cur = math.floor(now / g)
  local raw = redis.call('HGETALL', key)
  local slots = {}
  local total = 0
  local stale = {}
  for j = 1, #raw, 2 do
    local idx = tonumber(raw[j])
    local v = tonumber(raw[j + 1])
    if idx < cur - n then
      stale[#stale + 1] = raw[j]
    else
      slots[#slots + 1] = {idx, v}
      total = total + v
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  if refused == 0 and total + amount > cap then
    if amount > cap then return {i, -1} end
    table.sort(slots, function(a, b) return a[1] < b[1] end)
    local freed = 0
    retry = g
    for _, s in ipairs(slots) do
      freed = freed + s[2]
      if total - freed + amount <= cap then
        retry = math.max(1, (s[1] + n + 1) * g - now)
        break
      end
    end
    refused = i
  end
  live[i] = slots
  used[i] = total
end
local out = {refused, retry}
for i, key in ipairs(KEYS) do
  local g = tonumber(ARGV[3 * i])
  local amount = 0
  if refused == 0 then amount = tonumber(ARGV[3 * i + 2]) end
  local cur = math.floor(now / g)
  local newest = nil
  for _, s in ipairs(live[i]) do
    if s[2] > 0 and (newest == nil or s[1] > newest) then newest = s[1] end
  end
  if amount ~= 0 then
    redis.call('HINCRBY', key, cur, amount)
    redis.call('PEXPIRE', key, (n + 2) * g)
    if amount > 0 and (newest == nil or cur > newest) then newest = cur end
  end
  local reset = 0
  if newest ~= nil then reset = (newest + n + 1) * g - now end
  out[#out + 1] = used[i] + amount
  out[#out + 1] = reset
  out[#out + 1] = cur
end
return out
"""

# ARGV: now, slots, then per bucket: slot ms, amount, slot index.
ADJUST = _NOW + """
for i, key in ipairs(KEYS) do
  local g = tonumber(ARGV[3 * i])
  local amount = tonumber(ARGV[3 * i + 1])
  local idx = tonumber(ARGV[3 * i + 2])
  if idx >= math.floor(now / g) - n then
    local v = redis.call('HINCRBY', key, idx, amount)
    if v <= 0 then
      redis.call('HDEL', key, idx)
    elseif redis.call('PTTL', key) < 0 then
      redis.call('PEXPIRE', key, (n + 2) * g)
    end
  end
end
return 0
"""


log = logging.getLogger("switchboard.limits")

# Corrections waiting for Redis: at most this many (each matters only while its slot counts).
PENDING_MAX = 10_000
_WARN_SECONDS = 60.0


# Redis keys kept per bucket key: at most this many (a key's buckets are asked on every request).
KEYS_MAX = 4096


def bucket_key(key: str, g: int) -> str:
    return f"{PREFIX}rl:{{rl}}:{key}:{g}"


# Arguments the same on every call, as RESP bulk strings: the server's time ('') and the slots.
NO_NOW = encoded("")
SLOTS = encoded(LIMIT_SLOTS)


class _Kept(NamedTuple):
    """A bucket key's Redis key and arguments, encoded once (RESP bulk strings): its window and
    capacity say whether they still hold (a change in configuration misses)."""

    window: float
    capacity: int
    key: bytes  # the Redis key
    slot: bytes  # the slot ms
    slot_capacity: bytes  # the slot ms and the capacity: ``ACQUIRE``'s first two per bucket


class RedisRateLimiter:
    # Every call waits for Redis: no plain forms (``RateLimiter.acquire_now``, ``adjust_now``).
    acquire_now = None
    adjust_now = None

    def __init__(self, client: Redis, clock: Clock | None = None) -> None:
        batch = batch_for(client)  # the request path's scripts: one pipeline per pass
        self._clock = clock
        self._acquire = batch.script(ACQUIRE, skippable=True)
        self._adjust = batch.script(ADJUST)
        # A call joins the batch by ``add`` itself, not through the script's ``__call__``: one
        # Python call less on each of the two calls a request.
        self._add = batch.add
        self.pending = Retries("rate-limit corrections", PENDING_MAX, max_age=86_400.0)
        self._warned = -_WARN_SECONDS
        # Per bucket key: its Redis key and its arguments that repeat, encoded. A bucket's key,
        # window and capacity are the same from request to request (its plan is cached): they
        # are formatted and encoded once, not on every call.
        self._keys: dict[str, _Kept] = {}

    def _now(self) -> bytes:
        return NO_NOW if self._clock is None else encoded(str(int(self._clock() * 1000)))

    def _kept(self, b: Bucket) -> _Kept:
        """What is kept for ``b``'s key, made again when its window or capacity changed."""
        found = self._keys.get(b.key)
        if found is None or found[0] != b.window or found[1] != b.capacity:
            found = self._key(b)
        return found

    def _key(self, b: Bucket) -> _Kept:
        g = slot_ms(b.window)
        slot = encoded(g)
        if len(self._keys) >= KEYS_MAX:
            self._keys.clear()
        found = self._keys[b.key] = _Kept(b.window, b.capacity, encoded(bucket_key(b.key, g)), slot,
                                          slot + encoded(b.capacity))
        return found

    def packed(self, buckets: Sequence[Bucket]) -> tuple[list[bytes], list[bytes], int]:
        """``ACQUIRE``'s keys and arguments for ``buckets`` as RESP bulk strings, and the count
        of the arguments (a piece may hold two); also the first part of
        stores/redis/admission.py's script."""
        keys: list[bytes] = []
        args = [NO_NOW if self._clock is None else self._now(), SLOTS]
        known = self._keys
        cache = ENCODED  # ``number`` inline: a dictionary read, no call, for a kept amount
        for b in buckets:
            found = known.get(b.key)  # ``_kept`` inline: the request's first call, every bucket
            if found is None or found[0] != b.window or found[1] != b.capacity:
                found = self._key(b)
            keys.append(found[2])
            args.append(found[4])
            amount = b.amount
            args.append((cache.get(amount) if type(amount) is int else None) or number(amount))
        return keys, args, 2 + 3 * len(keys)

    async def acquire(self, buckets: Sequence[Bucket]) -> Acquired:
        if not buckets:
            return Acquired([])
        keys, args, count = self.packed(buckets)
        n = len(keys)
        keys += args
        # The script's Lua numbers are Redis integers: hiredis and redis-py hand back ints.
        return acquired(buckets, await self._add(self._acquire, n, n + count, keys))

    def adjust(self, buckets: Sequence[Bucket], slots: Sequence[int]) -> Awaitable[None]:
        """The correction joins this pass's batch now, as it is called (a budget settlement
        asked for next, in the same pass, leaves in the same round trip); the awaitable waits
        for Redis's answer and keeps a correction Redis did not take for another try."""
        keys: list[bytes] = []
        args = [NO_NOW if self._clock is None else self._now(), SLOTS]
        window = 0.0
        cache = ENCODED  # ``number`` inline, as in ``packed``
        # Plain zip: the slots are the acquired states', one per bucket (strict=True would parse
        # its keyword on every request).
        for b, index in zip(buckets, slots):  # noqa: B905
            amount = b.amount
            if amount == 0:
                continue
            found = self._kept(b)  # the token buckets only: one a request, as a rule
            keys.append(found[2])
            args.append(found[3])
            args.append((cache.get(amount) if type(amount) is int else None) or number(amount))
            args.append((cache.get(index) if type(index) is int else None) or number(index))
            if b.window > window:
                window = b.window
        if not keys:
            return _nothing()
        n = len(keys)
        count = n + len(args)
        return self._adjusted(self._add(self._adjust, n, count, keys + args), keys, args, window)

    async def _adjusted(self, sent: asyncio.Future[Any], keys: list[bytes], args: list[bytes],
                        window: float) -> None:
        try:
            await sent
            return
        except Exception as exc:
            now = time.monotonic()
            if now - self._warned >= _WARN_SECONDS:
                self._warned = now
                log.warning("rate limiter: a token correction failed (%s); trying again until redis "
                            "answers", type(exc).__name__)
        # Tried again with the same slots (the script skips one that no longer counts); once the
        # window has passed there is nothing left to correct. A failed try may have been made:
        # a correction may then count twice, for one window at most.
        until = time.monotonic() + window

        async def again() -> None:
            if time.monotonic() < until:
                sent = values([*keys, self._now(), *args[1:]])  # the same, at this time
                await self._adjust(sent[:len(keys)], sent[len(keys):])

        self.pending.add(again, "a rate-limit token correction")

    async def close(self) -> None:
        await self.pending.close()


def acquired(buckets: Sequence[Bucket], raw: list[Any]) -> Acquired:
    """``ACQUIRE``'s reply as the protocol's answer."""
    states: list[BucketState] = []
    if len(raw) > 2:
        # One loop, each state built as the tuple it is: no comprehension's function call and
        # no namedtuple ``__new__`` in Python (as the rate-limit stage builds its buckets).
        i = 2
        for b in buckets:
            states.append(tuple.__new__(BucketState, (b.capacity, raw[i], raw[i + 1] / 1000, raw[i + 2])))
            i += 3
    if raw[0]:
        retry = math.inf if raw[1] < 0 else raw[1] / 1000
        return Acquired(states, refused=raw[0] - 1, retry_after=retry)
    return tuple.__new__(Acquired, (states, None, 0.0))  # admitted: the defaults


async def _nothing() -> None:
    return None
