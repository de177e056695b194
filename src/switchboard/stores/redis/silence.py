"""One "Redis is silent" mark per client, shared by every Redis call on or near the request path.

A Redis that accepts connections and never answers (a process frozen, a path that drops
everything) would hold each call for the whole reply timeout, each request anew. So once a call
got no answer in time (redis-py's ``TimeoutError``, from a reply or a connect) the client is
*silent*: guarded calls fail at once with the same error (Redis unreachable, as a refused
connection is; stores/unavailable.py) while a PING on a fresh connection is tried in the
background every ``PROBE_SECONDS``; the first one answered ends it. Only the calls in flight when
Redis went quiet wait out the timeout.

The mark is the client's, not one connection's: the request path's own connection
(stores/redis/wire.py), redis-py's pipeline (TLS) and the single redis-py calls (a budget
counter's rebuild, the shared deployment health's reports and probe claims, a script run alone
after NOSCRIPT, a change-feed publish) all stop waiting once any of them timed out. While the mark
is not set a guarded call costs one attribute read.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio import ConnectionPool, Redis
from redis.commands.core import AsyncScript
from redis.exceptions import TimeoutError as ReplyTimeout

log = logging.getLogger("switchboard.stores")

T = TypeVar("T")

# While silent, how often a PING on a fresh connection asks whether Redis answers again.
PROBE_SECONDS = 1.0

_SILENCES: weakref.WeakKeyDictionary[Redis, Silence] = weakref.WeakKeyDictionary()


class Silence:
    """Whether Redis stopped answering; if so, the background task asking it again."""

    def __init__(self, ping: Callable[[], Awaitable[object]]) -> None:
        self.ping = ping  # a PING on a fresh connection, raising unless answered
        self._probe: asyncio.Task[None] | None = None
        self._since = 0.0

    @property
    def silent(self) -> bool:
        return self._probe is not None

    def check(self) -> None:
        """Fail at once, as a reply timeout, while Redis is silent."""
        if self._probe is not None:
            raise ReplyTimeout(f"redis has not answered for {time.monotonic() - self._since:.0f} s")

    def went_silent(self) -> None:
        """A call got no answer in time: start asking again in the background (once)."""
        if self._probe is None:
            self._since = time.monotonic()
            self._probe = asyncio.get_running_loop().create_task(
                self._ask_again(), name="switchboard-redis-probe")

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """``make()``'s answer, unless Redis is silent (then fail at once); a timeout marks it."""
        self.check()
        try:
            return await make()
        except ReplyTimeout:
            self.went_silent()
            raise

    async def _ask_again(self) -> None:
        while True:
            await asyncio.sleep(PROBE_SECONDS)
            try:
                await self.ping()
            except Exception as exc:  # still silent, refused, or down: calls keep failing at once
                log.debug("redis still silent (%s)", type(exc).__name__)
                continue
            self._probe = None
            return

    async def close(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()


def silence_for(client: Redis) -> Silence:
    """The one mark of this client (shared by its wire, its pipeline and its single calls).
    Its probe is redis-py's connection (TLS included) unless the client has a wire."""
    silence = _SILENCES.get(client)
    if silence is None:
        pool = client.connection_pool  # not the client: the mark must not keep its key alive
        silence = _SILENCES[client] = Silence(lambda: _ping(pool))
    return silence


async def _ping(pool: ConnectionPool) -> None:
    """PING on a connection of its own (same class and settings as the pool's: TLS, AUTH,
    database), closed after; bounded as a connect and a reply are, retries included."""
    kw = pool.connection_kwargs
    bound = (kw.get("socket_connect_timeout") or 5.0) + (kw.get("socket_timeout") or 10.0)
    connection = pool.connection_class(**kw)
    try:
        async with asyncio.timeout(bound):
            await connection.connect()
            await connection.send_command("PING")
            await connection.read_response()
    finally:
        await connection.disconnect()


def guarded(client: Redis, script: AsyncScript) -> Callable[..., Awaitable[Any]]:
    """``script`` called as ``(keys=, args=)``, failing at once while ``client``'s Redis is silent."""
    silence = silence_for(client)

    async def run(keys: Sequence[Any], args: Sequence[Any]) -> Any:
        return await silence.call(lambda: script(keys=keys, args=args))

    return run
