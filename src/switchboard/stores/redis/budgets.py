"""Budget counters in Redis: one Lua script checks every budget in force on a request and
reserves its estimate in all of them at once (all or nothing), so N instances share exact
budgets and concurrent requests cannot overshoot one.

A counter is a hash ``sb:bg:{bg}:<budget id>:<period start>`` holding ``s`` (spent, whole
units: nano-USD or tokens) and one field per reservation in flight, ``r:<request id>`` =
``<amount>|<lapses at, ms>``, and ``l``, when it was loaded (ms). Settling deletes the
reservation and adds what was spent; a reservation whose process died lapses at its time. A
settlement tried again after a failed try (``SETTLE_AGAIN``: that try may have been made, its
answer lost) adds only while the reservation is still there, or when it lapsed unsettled in a
counter loaded before it was made, so it counts once. A counter that does not exist has not
been loaded (a new period, or Redis restarted): the script says so and reserves nothing, the
caller loads it from the ledger (``load``: set only if absent) and tries again. A marker key,
set the first time a counter is rebuilt after Redis lost its data, says since when it has been
back (``lost_ago``): a rebuild waits for the other instances' ledger writers to store the calls
that ended before. Every key carries the same hash tag, so one script may touch all of them on
a Redis Cluster too.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

from redis.asyncio import Redis

from switchboard.stores.clock import Clock
from switchboard.stores.protocols import Again, Charge, Reserved
from switchboard.stores.redis.batch import batch_for
from switchboard.stores.redis.client import LUA_NOW, PREFIX
from switchboard.stores.redis.silence import guarded
from switchboard.stores.redis.wire import ENCODED, encoded, number, unique

_NOW = LUA_NOW + """
local function used(key)
  local raw = redis.call('HGETALL', key)
  local spent, held = 0, 0
  local stale = {}
  for j = 1, #raw, 2 do
    if raw[j] == 's' then
      spent = tonumber(raw[j + 1])
    elseif raw[j] ~= 'l' then
      local amount, untilms = string.match(raw[j + 1], '^(%-?%d+)|(%d+)$')
      if amount == nil or tonumber(untilms) <= now then
        stale[#stale + 1] = raw[j]
      else
        held = held + tonumber(amount)
      end
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  return spent, held
end
"""

# ARGV: now ('' = server time), reservation id, hold ms, then per key: limit, amount.
# Returns {-1, missing indexes...} | {the first refused index or 0, used per key...} (every key's
# used, refused or not: a budget past its downgrade threshold is read on a refusal too).
RESERVE = _NOW + """
local missing = {}
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 0 then missing[#missing + 1] = i end
end
if #missing > 0 then
  table.insert(missing, 1, -1)
  return missing
end
local out = {0}
for i, key in ipairs(KEYS) do
  local spent, held = used(key)
  out[i + 1] = spent + held
  if out[1] == 0 and spent + held + tonumber(ARGV[3 + 2 * i]) > tonumber(ARGV[2 + 2 * i]) then
    out[1] = i
  end
end
if out[1] ~= 0 then return out end
local field = 'r:' .. ARGV[2]
local untilms = now + tonumber(ARGV[3])
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, field, ARGV[3 + 2 * i] .. '|' .. string.format('%d', untilms))
end
return out
"""

# ARGV: reservation id, then per key: amount spent. Returns the spent totals (-1: no counter).
SETTLE = """
local field = 'r:' .. ARGV[1]
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('HDEL', key, field)
    out[i] = redis.call('HINCRBY', key, 's', ARGV[1 + i])
  else
    out[i] = -1
  end
end
return out
"""

# ARGV: reservation id. Deletes that reservation from each counter: what a caller cancelled while
# its reservation was on its way may have reserved (nothing when it was not made).
RELEASE = """
local field = 'r:' .. ARGV[1]
for _, key in ipairs(KEYS) do redis.call('HDEL', key, field) end
return 0
"""

# ARGV: now ('' = server time), reservation id, age ms (how long ago it was reserved), hold ms,
# then per key: amount spent. Returns the spent totals (-1: nothing added).
SETTLE_AGAIN = LUA_NOW + """
local field = 'r:' .. ARGV[2]
local reserved = now - tonumber(ARGV[3])
local lapsed = now >= reserved + tonumber(ARGV[4])
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 0 then
    out[i] = -1
  elseif redis.call('HDEL', key, field) == 1 then
    out[i] = redis.call('HINCRBY', key, 's', ARGV[4 + i])
  elseif lapsed and tonumber(redis.call('HGET', key, 'l') or '0') <= reserved then
    out[i] = redis.call('HINCRBY', key, 's', ARGV[4 + i])
  else
    out[i] = -1
  end
end
return out
"""

# ARGV: now ('' = server time), spent, ttl ms (0: none). Starts the counter unless it exists.
LOAD = LUA_NOW + """
if redis.call('HSETNX', KEYS[1], 's', ARGV[2]) == 1 then
  redis.call('HSET', KEYS[1], 'l', now)
  if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
end
return 0
"""

# KEYS: the marker. ARGV: now ('' = server time). Returns ms since the marker was set (0: just
# now, by this call): the marker is set the first time it is found absent, i.e. the first time
# after Redis lost its data that an instance rebuilds a counter.
LOST = LUA_NOW + """
local at = redis.call('GET', KEYS[1])
if not at then
  redis.call('SET', KEYS[1], string.format('%d', now))
  return 0
end
return math.max(0, now - tonumber(at))
"""

USAGE = _NOW + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
local spent, held = used(KEYS[1])
return {spent, held}
"""


def _heard(future: asyncio.Future[object]) -> None:
    """A release's outcome is read (a failure is not logged: the reservation lapses)."""
    if not future.cancelled():
        future.exception()


def counter_key(key: str) -> str:
    return f"{PREFIX}bg:{{bg}}:{key}"


NO_NOW = encoded("")  # the server's time: the same argument on every call, encoded once


# Set once in a Redis that has not lost its data (a counter's key always has a colon in it).
LOST_MARKER = counter_key("since")

# Redis keys kept per counter: at most this many (a counter is asked on every request in its
# budget's period; a new period's key is a new entry, and the kept ones are dropped when full).
KEYS_MAX = 4096


def reserved(raw: list[int]) -> Reserved:
    """``RESERVE``'s reply as the protocol's answer."""
    if raw[0] == -1:
        return Reserved([], missing=tuple(i - 1 for i in raw[1:]))
    if raw[0]:
        return Reserved(raw[1:], refused=raw[0] - 1)
    return tuple.__new__(Reserved, (raw[1:], None, ()))  # reserved: the defaults, no Python __new__


class RedisBudgetCounters:
    # Every call waits for Redis: no plain forms (``BudgetCounters.reserve_now``, ``settle_now``).
    reserve_now = None
    settle_now = None

    def __init__(self, client: Redis, clock: Clock | None = None) -> None:
        batch = batch_for(client)  # the request path's scripts: one pipeline per pass
        self._clock = clock
        self._reserve = batch.script(RESERVE, skippable=True)
        self._settle = batch.script(SETTLE)
        self._release = batch.script(RELEASE)
        # A call joins the batch by ``add`` itself, not through the script's ``__call__``: one
        # Python call less on each of the two calls a request.
        self._add = batch.add
        # Rare, not batched; still on or near the request path, so they fail at once too
        # while Redis is silent (stores/redis/silence.py).
        self._settle_again = guarded(client, client.register_script(SETTLE_AGAIN))
        self._load = guarded(client, client.register_script(LOAD))
        self._usage = guarded(client, client.register_script(USAGE))
        self._lost = guarded(client, client.register_script(LOST))
        # Per counter (a budget's id and period start): its Redis key as a RESP bulk string,
        # formatted and encoded once rather than on every reservation and settlement; and per
        # counter and limit, both (the limit is ``RESERVE``'s argument with each key).
        self._keys: dict[str, bytes] = {}
        self._limits: dict[str, tuple[int, bytes]] = {}

    def _now(self) -> str:
        return "" if self._clock is None else str(int(self._clock() * 1000))

    def _key(self, key: str) -> bytes:
        found = self._keys.get(key)
        if found is None:
            if len(self._keys) >= KEYS_MAX:
                self._keys.clear()
            found = self._keys[key] = encoded(counter_key(key))
        return found

    def _limit(self, c: Charge) -> tuple[int, bytes]:
        if len(self._limits) >= KEYS_MAX:
            self._limits.clear()
        found = self._limits[c.key] = (c.limit, encoded(c.limit))
        return found

    def packed(self, reservation: str, charges: Sequence[Charge], hold: float
               ) -> tuple[list[bytes], list[bytes], int]:
        """``RESERVE``'s keys and arguments as RESP bulk strings, and the count of the arguments;
        also the second part of stores/redis/admission.py's script."""
        args = [NO_NOW if self._clock is None else encoded(self._now()), unique(reservation),
                number(max(1, math.ceil(hold * 1000)))]
        keys: list[bytes] = []
        known = self._keys
        limits = self._limits
        cache = ENCODED  # ``number`` inline: a dictionary read, no call, for a kept amount
        for c in charges:
            keys.append(known.get(c.key) or self._key(c.key))
            found = limits.get(c.key)
            if found is None or found[0] != c.limit:
                found = self._limit(c)
            args.append(found[1])
            amount = c.amount
            args.append((cache.get(amount) if type(amount) is int else None) or number(amount))
        return keys, args, len(args)

    async def reserve(self, reservation: str, charges: Sequence[Charge], hold: float) -> Reserved:
        if not charges:
            return Reserved([])
        keys, args, count = self.packed(reservation, charges, hold)
        n = len(keys)
        try:
            # The script's Lua numbers are Redis integers: hiredis and redis-py hand back ints.
            # The future is not kept in a local (a cycle on an error: see admission.py).
            return reserved(await self._add(self._reserve, n, n + count, keys + args))
        except asyncio.CancelledError:  # the client left: Redis may reserve all the same
            self.release(reservation, keys)
            raise

    def release(self, reservation: str, keys: list[bytes]) -> None:
        """Delete ``reservation`` from the counters at ``keys`` (their Redis keys as RESP bulk
        strings, as ``packed`` gives them), without waiting: the caller
        that made it (or sent it: the script runs whether or not its caller still waits) was
        cancelled, and nothing will settle it. The call joins the batch after the script that
        reserved, so Redis runs it after that one, on the same connection (redis-py's pipeline,
        for a TLS URL, may use another: then the reservation may stay until it lapses, as it
        did before). After a NOSCRIPT answer the reservation is not run again for a caller that
        left (stores/redis/batch.py, ``skippable``). A release that fails leaves it to lapse too."""
        n = len(keys)
        self._add(self._release, n, n + 1, [*keys, unique(reservation)]).add_done_callback(_heard)

    async def load(self, charge: Charge, spent: int) -> None:
        ttl = 0 if math.isinf(charge.ttl) else max(1, math.ceil(charge.ttl * 1000))
        await self._load(keys=[counter_key(charge.key)], args=[self._now(), spent, ttl])

    async def settle(self, reservation: str, spent: Sequence[tuple[str, int]],
                     again: Again | None = None) -> list[int]:
        if not spent:
            return []
        if again is None:
            pieces: list[bytes] = []
            known = self._keys
            for key, _ in spent:
                pieces.append(known.get(key) or self._key(key))
            pieces.append(unique(reservation))
            cache = ENCODED  # ``number`` inline, as in ``packed``
            for _, amount in spent:
                pieces.append((cache.get(amount) if type(amount) is int else None) or number(amount))
            n = len(spent)
            # The script's Lua numbers are Redis integers: hiredis and redis-py hand back ints.
            totals: list[int] = await self._add(self._settle, n, 2 * n + 1, pieces)
            return totals
        age, hold = max(0, math.ceil(again.age * 1000)), max(0, math.ceil(again.hold * 1000))
        raw = await self._settle_again(keys=[counter_key(key) for key, _ in spent],
                                       args=[self._now(), reservation, age, hold, *(a for _, a in spent)])
        return [int(v) for v in raw]

    async def lost_ago(self) -> float | None:
        return int(await self._lost(keys=[LOST_MARKER], args=[self._now()])) / 1000

    async def usage(self, key: str) -> tuple[int, int] | None:
        spent, held = (int(v) for v in await self._usage(keys=[counter_key(key)], args=[self._now()]))
        return None if spent < 0 else (spent, held)
