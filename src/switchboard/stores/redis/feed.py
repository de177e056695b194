"""The change feed over Redis pub/sub: one subscriber connection per process, one reader task.

``subscribe`` returns once Redis has confirmed the subscription, so a message published by any
instance after that is delivered. Pub/sub is at most once (nothing is replayed after a
reconnect): whatever a message invalidates must also expire on its own.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from switchboard.background import stop_task
from switchboard.stores.protocols import Callback
from switchboard.stores.redis.client import PREFIX

log = logging.getLogger("switchboard.stores")

CHANNEL = PREFIX + "feed:"
SUBSCRIBE_TIMEOUT = 10.0
# How long a publish may wait for Redis (redis.publish_timeout_seconds). The change is already
# stored when it is published and the others catch up by their caches' TTL, so an admin answer
# must not wait the client's 10 s socket timeout for a Redis that accepts and never replies.
PUBLISH_TIMEOUT = 1.0


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
        self._publish_timeout = publish_timeout
        self._pubsub = client.pubsub()
        self._subs: dict[str, list[_RedisSubscription]] = {}
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def publish(self, topic: str, message: str) -> None:
        """Best effort, like the feed itself: a change already stored is not refused because the
        other instances cannot be told right now (they catch up within their caches' TTL)."""
        try:
            # A timeout cancels the command; redis-py then drops that connection (its reply may
            # still come), so the pool never hands out one with a reply pending.
            async with asyncio.timeout(self._publish_timeout):
                await self._client.publish(CHANNEL + topic, message.encode())
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
            await self._pubsub.unsubscribe(sub.channel)

    async def _read(self) -> None:
        backoff = 0.1
        while True:
            if not self._pubsub.subscribed:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # redis-py reconnects and re-subscribes on the next read; messages sent meanwhile are lost.
                log.warning("change feed: redis read failed (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            if message is not None:
                await self._dispatch(message)

    async def _dispatch(self, message: dict[str, object]) -> None:
        raw_channel = message.get("channel")
        channel = raw_channel.decode() if isinstance(raw_channel, bytes) else str(raw_channel)
        kind = message.get("type")
        if kind == "subscribe":
            confirmed = self._confirmed.pop(channel, None)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
            return
        if kind != "message":
            return
        data = message.get("data")
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
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
