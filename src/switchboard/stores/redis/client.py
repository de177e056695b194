"""One Redis client per process (a connection pool), checked with a PING when opened."""

from __future__ import annotations

from redis.asyncio import Redis

from switchboard.config.urls import redact
from switchboard.stores.errors import StoreError

CONNECT_TIMEOUT = 5.0

# Every key the gateway writes starts with this, so a shared Redis stays readable.
PREFIX = "sb:"


async def connect(url: str) -> Redis:
    client = Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=10.0,
        health_check_interval=15,
        decode_responses=False,
    )
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(f"cannot reach redis at {redact(url)}: {reason}") from None
    return client
