"""Records cached in process memory for the request path, kept honest across instances.

The request path makes no database query for a record it has seen lately (including "there is
none"). Every change is published on the change feed under the cache's topic, and every
instance drops that entry when the message arrives (milliseconds on Redis pub/sub). The feed is
at most once (a message can be lost while Redis reconnects), so every entry also expires after
its TTL: the bound on staleness when a message is lost.

One store query per key at a time, however many requests ask (single flight). A lookup that
races with an invalidation does not cache what it read (a generation counter), so a revoked
record cannot be put back by a read that started before the revocation; nor is it shared with
the requests that ask after the invalidation: they wait for a query of their own (a request
made after a key's revocation was answered never gets the record as it was before).

``stale_if_error``: while the store cannot be reached (stores/unavailable.py), a record whose
entry expired less than that long ago is served as it was rather than failing every request for
it. Nothing can change in a store that cannot be written, and a change published on the feed
still drops the entry, so only what the TTL guards against (a lost message) waits longer.
Once a read has failed so, the retries (at most one a second) run without holding the requests
for that record: they are served the stale record at once.

``read_timeout``: the longest a read may take (the request path's caches set it). A database
that accepts connections and never answers would otherwise hold a request until the driver's
own timeouts end it (an opened connection's is a minute), and the driver's TimeoutError says
nothing of a store: past the bound the read is :class:`StoreTimeout`, unreachable like a refused
connection (a 503, or the stale record). While the last read of a gateway's caches (those
sharing its change feed) ran out its bound, every one of them serves a record it may serve
stale at once and reads it again behind the request: a request reads several (the caller, its
limits, its budgets), and would otherwise wait out the bound once per cache.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

from switchboard.stores.protocols import EVERYTHING, ChangeFeed, Subscription
from switchboard.stores.unavailable import OutageLog, StoreTimeout, unavailable

log = logging.getLogger("switchboard.access")

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
D = TypeVar("D")

ALL = EVERYTHING  # the message that drops every entry (also sent by a feed that reconnected)

# The caches started in this process, by topic: a change published here drops their entries at
# once, before the change feed's message comes back (Redis pub/sub takes a moment).
_LIVE: dict[str, weakref.WeakSet[Any]] = {}
# The change feeds (one per gateway) of caches whose last read ran out its bound (read_timeout).
_SILENT: weakref.WeakSet[Any] = weakref.WeakSet()


async def publish(feed: ChangeFeed, topic: str, message: str) -> None:
    """Tell every instance (this one included, at once) that what ``message`` names changed."""
    for cache in list(_LIVE.get(topic, ())):
        cache.drop(message)
    await feed.publish(topic, message)


# While a stale record is served, the store is asked again at most this often per key.
STALE_RETRY_SECONDS = 1.0
# The request path's bound on one read: as long as opening a connection may take
# (stores/sql/engine.py, CONNECT_TIMEOUT), for a read that needs a new one.
STORE_READ_SECONDS = 10.0


@dataclass(slots=True)
class _Entry(Generic[V]):
    value: V | None
    expires: float
    stale_until: float = 0.0  # while the store is unreachable, served until then
    stale: bool = False  # served stale after a failed read: retries do not hold requests


class FeedCache(Generic[K, V]):
    """``load(key)`` results by key; None (nothing found) is cached for ``negative_ttl``.

    ``encode`` turns a key into its change-feed message and ``decode`` back (None: a message this
    version does not understand, which drops every entry to be safe). ``also``: more topics
    whose messages are handed to :meth:`drop` (for values built from records of several kinds)."""

    def __init__(
        self,
        topic: str,
        load: Callable[[K], Awaitable[V | None]],
        feed: ChangeFeed,
        *,
        encode: Callable[[K], str],
        decode: Callable[[str], K | None],
        ttl: float = 10.0,
        negative_ttl: float | None = None,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        also: tuple[str, ...] = (),
        stale_if_error: float = 0.0,
        read_timeout: float | None = None,
    ) -> None:
        self._topic = topic
        self._topics = (topic, *also)
        self._load = load
        self._feed = feed
        self._encode = encode
        self._decode = decode
        self._ttl = ttl
        self._negative_ttl = ttl if negative_ttl is None else negative_ttl
        self._max = max_entries
        self._stale_if_error = stale_if_error
        self._read_timeout = read_timeout
        self._outage = OutageLog(log, f"reading {topic} from the store")
        self._clock = clock
        self._entries: dict[K, _Entry[V]] = {}
        self._pending: dict[K, asyncio.Task[V | None]] = {}
        # Reads an invalidation took out of ``_pending`` and that still run (their callers wait
        # on them): cancelled at close like the others.
        self._dropped: set[asyncio.Task[V | None]] = set()
        self._generation = 0
        self._subscriptions: list[Subscription] = []
        self.lookups = 0  # store queries made, for tests and metrics

    async def start(self) -> None:
        for topic in self._topics:
            self._subscriptions.append(await self._feed.subscribe(topic, self._on_change))
            _LIVE.setdefault(topic, weakref.WeakSet()).add(self)

    async def close(self) -> None:
        for topic in self._topics:
            live = _LIVE.get(topic)
            if live is not None:
                live.discard(self)
        for task in [*self._pending.values(), *self._dropped]:
            task.cancel()
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            await subscription.close()

    def peek(self, key: K, default: D) -> V | D | None:
        """The cached value if its entry is fresh (None: nothing found), else ``default``; no
        store query, no waiting (the request path's synchronous fast path)."""
        entry = self._entries.get(key)
        if entry is not None and entry.expires > self._clock():
            return entry.value
        return default

    async def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        now = self._clock()
        if entry is not None and entry.expires > now:
            return entry.value
        task = self._pending.get(key)
        if task is None:
            # The query is the cache's own task, so a caller that is cancelled does not cancel
            # it for the others waiting on it.
            task = asyncio.get_running_loop().create_task(self._lookup(key))
            self._pending[key] = task
            task.add_done_callback(partial(self._finished, key))
        if entry is not None and now < entry.stale_until and (entry.stale or self._feed in _SILENT):
            return entry.value  # the store did not answer last time: retried without waiting on it
        return await asyncio.shield(task)

    async def _read(self, key: K) -> V | None:
        if self._read_timeout is None:
            return await self._load(key)
        try:
            async with asyncio.timeout(self._read_timeout):
                return await self._load(key)
        except TimeoutError as exc:  # this bound's, or the driver's connect or command timeout
            raise StoreTimeout(self._read_timeout) from exc

    async def _lookup(self, key: K) -> V | None:
        generation = self._generation
        self.lookups += 1
        try:
            value = await self._read(key)
        except Exception as exc:
            if isinstance(exc, StoreTimeout) and self._feed is not None:  # (None: a test's)
                _SILENT.add(self._feed)
            stale = self._stale(key, exc, generation)
            if stale is None:
                raise
            self._outage.failed(exc, f"; records read before are served up to {self._stale_if_error:g} s "
                                     "past their expiry meanwhile")
            return stale
        self._outage.succeeded()
        if self._feed is not None:
            _SILENT.discard(self._feed)
        if generation == self._generation:  # no invalidation arrived meanwhile
            if len(self._entries) >= self._max and key not in self._entries:
                del self._entries[next(iter(self._entries))]  # the oldest entry
            now = self._clock()
            if value is None:
                self._entries[key] = _Entry(value, now + self._negative_ttl)
            else:
                self._entries[key] = _Entry(value, now + self._ttl, now + self._ttl + self._stale_if_error)
        return value

    def _stale(self, key: K, exc: Exception, generation: int) -> V | None:
        """The expired record of ``key`` when the store could not be reached and the record may
        still be served (``stale_if_error``); kept a moment longer so that requests for it do
        not each wait on the store."""
        entry = self._entries.get(key)
        if (entry is None or entry.value is None or generation != self._generation
                or not unavailable(exc)):
            return None
        now = self._clock()
        if now >= entry.stale_until:
            return None
        entry.expires = min(now + STALE_RETRY_SECONDS, entry.stale_until)
        entry.stale = True
        return entry.value

    def _finished(self, key: K, task: asyncio.Task[V | None]) -> None:
        if self._pending.get(key) is task:  # (not a lookup started after an invalidation)
            del self._pending[key]
        if not task.cancelled() and task.exception() is not None:
            log.debug("%s lookup failed: %r", self._topic, task.exception())

    def drop(self, message: str) -> None:
        """Forget the entry a change-feed message names (``ALL``: every entry)."""
        self._generation += 1
        key = None if message == ALL else self._decode(message)
        # A lookup under way read what may just have changed: later callers start their own.
        if key is None:
            self._entries.clear()
            self._forget(list(self._pending))
        else:
            self._entries.pop(key, None)
            self._forget([key])

    def drop_where(self, matches: Callable[[K], bool]) -> None:
        """Forget every entry whose key ``matches``: for a cache whose messages name a group of
        keys (all of a tenant's, every reference of one prompt) rather than one. A lookup under
        way meanwhile does not cache what it read, as after :meth:`drop`."""
        self._generation += 1
        for key in [k for k in self._entries if matches(k)]:
            del self._entries[key]
        self._forget([k for k in self._pending if matches(k)])

    def _forget(self, keys: list[K]) -> None:
        """Take the reads under way for ``keys`` out of ``_pending`` (later callers start their
        own), kept until they end so that a close still cancels them."""
        for key in keys:
            task = self._pending.pop(key, None)
            if task is not None and not task.done():
                self._dropped.add(task)
                task.add_done_callback(self._dropped.discard)

    async def changed(self, key: K) -> None:
        """The record of ``key`` changed here: forget it now (with every other cache of this
        process hearing the topic), and tell every other instance."""
        message = self._encode(key)
        self.drop(message)
        await publish(self._feed, self._topic, message)

    async def _on_change(self, topic: str, message: str) -> None:
        self.drop(message)
