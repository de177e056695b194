"""One Redis client per process (a connection pool), checked with a PING when opened."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

from switchboard.config.urls import redact
from switchboard.deps import REDIS, unsupported
from switchboard.stores.errors import StoreError

CONNECT_TIMEOUT = 5.0
# Connections per process. Beyond them a command waits (up to POOL_WAIT seconds) for one to be
# free instead of failing: redis-py's default pool raises at once when all 100 are in use, which
# a burst of a few hundred concurrent requests reaches.
#
# A pool wait that runs out (redis-py's ConnectionError "No connection available", which callers
# treat as Redis unreachable) does not mark the client silent (stores/redis/silence.py), on
# purpose: a pool can be exhausted by a burst on a Redis that answers (every batch of a
# ``rediss://`` URL takes a pooled connection), and the mark would then fail every guarded call
# (budgets closed: 503) until the next PING. When the connections are stuck on a silent Redis
# instead, the first guarded call among them sets the mark when its reply timeout (10 s) runs
# out, and from then on guarded calls fail before taking a connection, so the pool drains.
MAX_CONNECTIONS = 256
POOL_WAIT = 5.0

# Every key the gateway writes starts with this, so a shared Redis stays readable.
PREFIX = "sb:"

# The start of a Lua script that works in milliseconds: ``now`` is ARGV[1] when given (tests
# pass a clock), else the Redis server's time, so every instance agrees on windows and expiries.
LUA_NOW = """
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""


async def connect(url: str) -> Redis:
    # The wire and the silence probe use redis-py's internals: an unsupported release is named
    # here, as the store opens at start, rather than failing on the first request.
    problems = unsupported(REDIS)
    if problems:
        raise StoreError(problems[0])
    try:
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=POOL_WAIT,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=10.0,
            health_check_interval=15,
            decode_responses=False,
        )
    except ValueError as exc:  # a rediss:// TLS option's value the client cannot parse
        raise StoreError(f"redis at {redact(url)}: {exc}") from None
    client = Redis.from_pool(pool)  # the client owns the pool: aclose() closes both
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(f"cannot reach redis at {redact(url)}: {reason}") from None
    return client
