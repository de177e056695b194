"""The change feed over Redis pub/sub: one subscriber connection per process, one reader task.

``subscribe`` returns once Redis has confirmed the subscription, so a message published by any
instance after that is delivered. Pub/sub is at most once (nothing is replayed after a
reconnect): whatever a message invalidates must also expire on its own.

When the connection is lost (Redis restarted, failed over, a dropped connection), the reader
tries again at least every second; redis-py reconnects and subscribes again. What was published
meanwhile is lost, so once Redis confirms a topic again its subscribers are handed
``EVERYTHING``: they drop what they hold, and a change made while this process was not
listening (a key revoked elsewhere) is read from the database at once rather than when a cached
copy expires. One warning when the connection is lost, one line when it is back.

A connection can also die silently (a network path or a NAT entry dropped, no reset sent): the
socket then just stays quiet, as a feed with nothing published does. So after ``PING_AFTER``
seconds without a word from Redis the reader sends a PING on the subscriber connection, and when
no answer has come ``PONG_WITHIN`` seconds later it drops the connection and takes the reconnect
path above. A dead subscriber is noticed within about ``PING_AFTER + PONG_WITHIN + 1`` seconds,
at the cost of one PING per ``PING_AFTER`` seconds of silence per process.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from switchboard.background import stop_task
from switchboard.stores.protocols import EVERYTHING, Callback
from switchboard.stores.redis.client import PREFIX
from switchboard.stores.redis.silence import silence_for

log = logging.getLogger("switchboard.stores")

CHANNEL = PREFIX + "feed:"
SUBSCRIBE_TIMEOUT = 10.0
# How long a publish may wait for Redis (redis.publish_timeout_seconds). The change is already
# stored when it is published and the others catch up by their caches' TTL, so an admin answer
# must not wait the client's 10 s socket timeout for a Redis that accepts and never replies.
PUBLISH_TIMEOUT = 1.0
# While Redis cannot be reached the reader tries again this often at most (doubling from 0.1 s):
# what is published before it listens again is lost, so it must not sleep long past the moment
# Redis is back. A refused connection costs next to nothing.
RECONNECT_MOST = 1.0
# Seconds without any message from Redis after which the reader checks the connection with a
# PING, and seconds its answer may take before the connection is taken for dead (redis-py's own
# health check sends a PING too, but never waits for its answer).
PING_AFTER = 2.0
PONG_WITHIN = 2.0
PING_MESSAGE = b"switchboard-feed"


class _RedisSubscription:
    def __init__(self, feed: RedisFeed, channel: str, callback: Callback) -> None:
        self._feed = feed
        self.channel = channel
        self.callback = callback

    async def close(self) -> None:
        await self._feed.unsubscribe(self)


class RedisFeed:
    def __init__(self, client: Redis, publish_timeout: float = PUBLISH_TIMEOUT) -> None:
        self._client = client
        # The client's "Redis is silent" mark (stores/redis/silence.py): while it is set, a
        # publish fails at once instead of waiting its timeout each time (an admin revoking keys
        # one after the other, a cooldown published from the request path).
        self._silence = silence_for(client)
        self._publish_timeout = publish_timeout
        self._pubsub = client.pubsub()
        self._subs: dict[str, list[_RedisSubscription]] = {}
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lost_at: float | None = None  # when the connection was lost, until it is back
        self._heard = time.monotonic()  # when Redis last said anything on the connection
        self._pinged: float | None = None  # when a PING went out, until something comes back
        self._unsubscribe_failed = False  # warned once: at shutdown every topic's fails alike

    async def publish(self, topic: str, message: str) -> None:
        """Best effort, like the feed itself: a change already stored is not refused because the
        other instances cannot be told right now (they catch up within their caches' TTL).
        While Redis is marked silent it is not asked at all. A publish unanswered within
        ``publish_timeout`` does not set the mark: that bound (1 s by default) is shorter than
        the reply timeout that does, and a Redis slow for a second is not a silent one."""
        try:
            # A timeout cancels the command; redis-py then drops that connection (its reply may
            # still come), so the pool never hands out one with a reply pending.
            async with asyncio.timeout(self._publish_timeout):
                await self._silence.call(lambda: self._client.publish(CHANNEL + topic, message.encode()))
        except TimeoutError:
            log.warning("change feed: redis did not answer a publish on %r within %.1fs; other "
                        "instances apply the change when their cached copy expires", topic,
                        self._publish_timeout)
        except (RedisError, OSError) as exc:
            log.warning("change feed: publishing on %r failed (%s); other instances apply the change "
                        "when their cached copy expires", topic, type(exc).__name__)

    async def subscribe(self, topic: str, callback: Callback) -> _RedisSubscription:
        channel = CHANNEL + topic
        sub = _RedisSubscription(self, channel, callback)
        first = channel not in self._subs
        self._subs.setdefault(channel, []).append(sub)
        if first:
            self._confirmed[channel] = asyncio.get_running_loop().create_future()
            await self._pubsub.subscribe(channel)
            if self._task is None:
                self._task = asyncio.create_task(self._read(), name="switchboard-change-feed")
            self._wake.set()
        confirmed = self._confirmed.get(channel)
        if confirmed is not None:
            await asyncio.wait_for(asyncio.shield(confirmed), SUBSCRIBE_TIMEOUT)
        return sub

    async def unsubscribe(self, sub: _RedisSubscription) -> None:
        subs = self._subs.get(sub.channel, [])
        if sub in subs:
            subs.remove(sub)
        if not subs and sub.channel in self._subs:
            del self._subs[sub.channel]
            self._confirmed.pop(sub.channel, None)
            try:
                await self._pubsub.unsubscribe(sub.channel)
            except (RedisError, OSError) as exc:
                # Redis gone (at shutdown, mostly): nothing to undo there, as a lost connection
                # ends its subscriptions; one warning, so the shutdown goes on and completes.
                if not self._unsubscribe_failed:
                    self._unsubscribe_failed = True
                    log.warning("change feed: unsubscribing failed (%s); the connection to redis is "
                                "lost, which ends its subscriptions", type(exc).__name__)

    async def _read(self) -> None:
        backoff = 0.1
        while True:
            if not self._pubsub.subscribed:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self._check()
                message = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # redis-py reconnects and re-subscribes on the next read; messages sent meanwhile
                # are lost (made up for when the subscriptions are confirmed again: _dispatch).
                self._lost(exc)
                self._pinged = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RECONNECT_MOST)
                continue
            backoff = 0.1
            if message is not None:
                self._heard = time.monotonic()
                self._pinged = None
                await self._dispatch(message)  # a PONG is a message of its own, not dispatched

    async def _check(self) -> None:
        """PING a connection quiet for ``PING_AFTER`` seconds; drop it (raising, for the
        reconnect path) when that PING has gone unanswered for ``PONG_WITHIN`` seconds."""
        now = time.monotonic()
        if self._pinged is None:
            if now - self._heard >= PING_AFTER:
                # Bounded: a write can block too when the other side stopped reading.
                async with asyncio.timeout(PONG_WITHIN):
                    await self._pubsub.ping(PING_MESSAGE)
                self._pinged = now
        elif now - self._pinged >= PONG_WITHIN:
            connection = self._pubsub.connection
            if connection is not None:
                await connection.disconnect()  # the next read connects and subscribes again
            self._heard = now
            raise ConnectionError(f"no answer to a PING within {PONG_WITHIN:.0f} s")

    def _lost(self, exc: Exception) -> None:
        """One warning per outage; the tries that fail while it lasts are debug lines."""
        if self._lost_at is None:
            self._lost_at = time.monotonic()
            log.warning("change feed: lost its redis connection (%s); reconnecting. Changes published "
                        "meanwhile are missed: cached copies are dropped once it listens again", exc)
        else:
            log.debug("change feed: redis still unreachable (%s)", exc)

    async def _dispatch(self, message: dict[str, object]) -> None:
        raw_channel = message.get("channel")
        channel = raw_channel.decode() if isinstance(raw_channel, bytes) else str(raw_channel)
        kind = message.get("type")
        if kind == "subscribe":
            confirmed = self._confirmed.pop(channel, None)
            if confirmed is not None:  # the first subscription: subscribe() waits for it
                if not confirmed.done():
                    confirmed.set_result(None)
                return
            # Subscribed again after a reconnect: what was published while this process was not
            # listening is lost, so the topic's subscribers drop everything they hold.
            if self._lost_at is not None:
                log.info("change feed: listening again after %.1f s without redis; cached copies "
                         "dropped", time.monotonic() - self._lost_at)
                self._lost_at = None
            await self._deliver(channel, EVERYTHING)
            return
        if kind != "message":
            return
        data = message.get("data")
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        await self._deliver(channel, text)

    async def _deliver(self, channel: str, text: str) -> None:
        topic = channel.removeprefix(CHANNEL)
        for sub in list(self._subs.get(channel, ())):
            try:
                await sub.callback(topic, text)
            except Exception:
                log.exception("change feed subscriber for %r failed", topic)

    async def close(self) -> None:
        await stop_task(self._task)
        self._task = None
        self._subs.clear()
        await self._pubsub.aclose()
