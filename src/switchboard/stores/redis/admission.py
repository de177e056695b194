"""A request's rate limits and budgets in one Lua script: one round trip before the upstream call.

The rate limiter's ``ACQUIRE`` (stores/redis/limits.py) and the budget counters' ``RESERVE``
(stores/redis/budgets.py) are the two scripts a request with limits and budgets waits for before
its upstream call. Sent one after the other, the second only once the first has answered (the
budget stage runs after the rate-limit stage admitted the request), they cost two round trips and
two resumptions of the request's coroutines. Here both run in one script, each as its own
function on its own keys and arguments, unchanged: the budgets are reserved only when the limits
admitted the request, as before, so a request the limits refuse reserves nothing. A budget
refusal or a counter not loaded yet is answered as ``RESERVE`` answers it; what the limits took
stays, and the rate-limit stage gives it back as it does after a budget refusal.

The keys of both hash tags (``{rl}``, ``{bg}``) are touched by one script: fine on a single
Redis (and its replicas), which is what the gateway's client connects to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from redis.asyncio import Redis

from switchboard.stores.protocols import Acquired, Bucket, Charge, Reserved
from switchboard.stores.redis.batch import batch_for
from switchboard.stores.redis.budgets import RESERVE, RedisBudgetCounters, reserved
from switchboard.stores.redis.limits import ACQUIRE, RedisRateLimiter, acquired
from switchboard.stores.redis.wire import number

log = logging.getLogger("switchboard.budgets")

_WARN_SECONDS = 60.0  # between two warnings about the budgets' part failing
_TEXT_MAX = 300  # characters of Redis's error text in the warning

# KEYS: the limits' keys, then the budgets'. ARGV: the count of the limits' keys and of their
# arguments, the limits' arguments (ACQUIRE's), then the budgets' (RESERVE's).
# Returns {ACQUIRE's reply, RESERVE's reply}; {ACQUIRE's reply} alone when the limits refused;
# {ACQUIRE's reply, nil, the error's text} when the budgets' part failed (a script is not rolled
# back: what the limits took stays, as after two calls; the budget stage then reserves in its own
# turn and its own ``on_store_error`` judges the error, not the limits'). The text is logged here
# (``_budgets_failed``): the budget stage's own call may succeed and say nothing of it. An error
# raised by ``redis.call`` reaches ``pcall`` as a table holding it in ``err`` (Redis 7).
ADMIT = f"""
local function acquire(KEYS, ARGV)
{ACQUIRE}
end
local function reserve(KEYS, ARGV)
{RESERVE}
end
local nk, na = tonumber(ARGV[1]), tonumber(ARGV[2])
local lk, la, bk, ba = {{}}, {{}}, {{}}, {{}}
for i = 1, #KEYS do
  if i <= nk then lk[#lk + 1] = KEYS[i] else bk[#bk + 1] = KEYS[i] end
end
for i = 3, #ARGV do
  if i <= na + 2 then la[#la + 1] = ARGV[i] else ba[#ba + 1] = ARGV[i] end
end
local limits = acquire(lk, la)
if limits[1] ~= 0 then return {{limits}} end
local ok, budgets = pcall(reserve, bk, ba)
if not ok then
  if type(budgets) == 'table' and budgets.err ~= nil then budgets = budgets.err end
  return {{limits, false, tostring(budgets)}}
end
return {{limits, budgets}}
"""


class RedisAdmission:
    """``Admission`` on the rate limiter and budget counters of one Redis client (their keys
    and arguments built by them, their replies read by their own functions)."""

    def __init__(self, client: Redis, limiter: RedisRateLimiter, counters: RedisBudgetCounters) -> None:
        batch = batch_for(client)  # the one both use: the script joins the pass's pipeline
        self._script = batch.script(ADMIT, skippable=True)
        self._add = batch.add
        self._limiter = limiter
        self._counters = counters
        self._warned = -_WARN_SECONDS

    async def acquire_reserve(self, buckets: Sequence[Bucket], reservation: str, charges: Sequence[Charge],
                              hold: float) -> tuple[Acquired, Reserved | None]:
        keys, args, count = self._limiter.packed(buckets)
        spent_keys, spent_args, spent_count = self._counters.packed(reservation, charges, hold)
        n = len(keys)
        keys += spent_keys
        nk = len(keys)
        keys.append(number(n))
        keys.append(number(count))
        keys += args
        keys += spent_args
        # The script's Lua numbers are Redis integers: hiredis and redis-py hand back ints.
        try:
            # The future awaited in place, not kept in a local: the error it raises (Redis
            # unreachable) has this frame in its traceback, and the frame would hold the future,
            # which holds the error: a reference cycle with the request's frames in it.
            raw = await self._add(self._script, nk, nk + 2 + count + spent_count, keys)
        except asyncio.CancelledError:
            # The client left while the script was on its way or in Redis, which runs it all the
            # same: the budget reservation it may have made is deleted right after it. What the
            # limits took stays, as when the limiter's own call is cancelled.
            self._counters.release(reservation, spent_keys)
            raise
        n = len(raw)
        if n == 2:
            return acquired(buckets, raw[0]), reserved(raw[1])
        if n > 2:
            self._budgets_failed(raw[2])
        return acquired(buckets, raw[0]), None

    def _budgets_failed(self, error: bytes | str) -> None:
        """The budgets' part of the script failed: its text logged, once a minute at most (a
        counter Redis cannot read fails every request on it)."""
        now = time.monotonic()
        if now - self._warned < _WARN_SECONDS:
            return
        self._warned = now
        text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
        log.warning("budgets: the reservation made with the rate limits failed in redis (%s); the "
                    "budget stage reserves in its own call", text[:_TEXT_MAX])
