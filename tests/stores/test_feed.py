"""ChangeFeed contract: a message published after subscribe reaches every subscriber, including
those of another instance (in cluster mode, another Redis connection); after a reconnect, the
subscribers are first told that anything may have changed (EVERYTHING)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from redis.asyncio import Redis

from switchboard.stores.protocols import EVERYTHING
from switchboard.stores.redis import feed as redis_feed
from switchboard.stores.redis.client import connect
from switchboard.stores.redis.feed import RedisFeed
from tests.services import RedisServer
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")

DEADLINE = 5.0


class Inbox:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.seen: list[tuple[str, str]] = []

    async def __call__(self, topic: str, message: str) -> None:
        self.seen.append((topic, message))
        await self.queue.put((topic, message))

    async def next(self) -> tuple[str, str]:
        return await asyncio.wait_for(self.queue.get(), DEADLINE)


async def test_message_reaches_subscribers_of_every_instance(backend: Backend) -> None:
    peer = await backend.peer()
    here, there = Inbox(), Inbox()
    await backend.stores.feed.subscribe("keys", here)
    await peer.feed.subscribe("keys", there)
    await peer.feed.publish("keys", "revoked:key-1")
    assert await here.next() == ("keys", "revoked:key-1")
    assert await there.next() == ("keys", "revoked:key-1")


async def test_topics_are_separate_and_order_is_kept(backend: Backend) -> None:
    keys, models = Inbox(), Inbox()
    await backend.stores.feed.subscribe("keys", keys)
    await backend.stores.feed.subscribe("models", models)
    for i in range(5):
        await backend.stores.feed.publish("keys", f"k{i}")
    await backend.stores.feed.publish("models", "m0")
    assert [await keys.next() for _ in range(5)] == [("keys", f"k{i}") for i in range(5)]
    assert await models.next() == ("models", "m0")
    assert keys.queue.empty()


async def test_closed_subscription_receives_nothing(backend: Backend) -> None:
    feed = backend.stores.feed
    kept, closed = Inbox(), Inbox()
    await feed.subscribe("t", kept)
    sub = await feed.subscribe("t", closed)
    await sub.close()
    await feed.publish("t", "after close")
    # Both callbacks would run for the same message, so once one has it the other is decided.
    assert await kept.next() == ("t", "after close")
    assert closed.seen == []


async def test_a_failing_subscriber_does_not_stop_the_others(backend: Backend) -> None:
    async def broken(topic: str, message: str) -> None:
        raise RuntimeError("subscriber bug")

    good = Inbox()
    await backend.stores.feed.subscribe("t", broken)
    await backend.stores.feed.subscribe("t", good)
    await backend.stores.feed.publish("t", "one")
    await backend.stores.feed.publish("t", "two")
    assert [await good.next(), await good.next()] == [("t", "one"), ("t", "two")]


async def test_cluster_feed_recovers_when_its_redis_connection_drops(cluster: Backend) -> None:
    assert cluster.redis is not None
    inbox = Inbox()
    await cluster.stores.feed.subscribe("keys", inbox)
    client = Redis.from_url(cluster.redis)
    try:
        assert await client.client_kill_filter(_type="pubsub") >= 1
        # Messages sent while it reconnects are lost (at most once); later ones arrive, after
        # EVERYTHING: what was missed is to be dropped, not waited for until it expires.
        deadline = time.monotonic() + DEADLINE
        while True:
            await client.publish("sb:feed:keys", b"after reconnect")
            try:
                while (got := await asyncio.wait_for(inbox.queue.get(), 0.2)) == ("keys", EVERYTHING):
                    pass
                assert got == ("keys", "after reconnect")
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "no message after the connection dropped"
        assert inbox.seen[0] == ("keys", EVERYTHING) and inbox.seen.count(("keys", EVERYTHING)) == 1
    finally:
        await client.aclose()


class SilentProxy:
    """A TCP proxy to Redis that can go silent: the connections open at that moment stay open
    but nothing more is forwarded either way, as when a network path is dropped without a
    reset. Connections opened later are forwarded again."""

    def __init__(self, port: int) -> None:
        self._target = port
        self._pipes: list[asyncio.Task[None]] = []
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        self._writers += [writer, up_writer]
        self._pipes += [asyncio.create_task(self._pipe(reader, up_writer)),
                        asyncio.create_task(self._pipe(up_reader, writer))]

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    def go_silent(self) -> None:
        """Stop forwarding on every connection open now, without closing any."""
        for pipe in self._pipes:
            pipe.cancel()
        self._pipes = []

    async def close(self) -> None:
        self.go_silent()
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()


async def test_a_subscriber_connection_gone_silent_is_noticed_within_seconds(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """No reset, no error: the subscriber's connection just stops carrying anything. The feed
    notices within PING_AFTER + PONG_WITHIN (+ a read's second), reconnects, tells its
    subscribers EVERYTHING, and receives what is published afterwards."""
    proxy = SilentProxy(redis_server.port)
    client = await connect(await proxy.start())
    feed = RedisFeed(client)
    direct = Redis.from_url(redis_server.url)
    inbox = Inbox()
    try:
        await feed.subscribe("silent", inbox)
        await direct.publish("sb:feed:silent", b"before")
        assert await inbox.next() == ("silent", "before")
        with caplog.at_level(logging.INFO, "switchboard.stores"):
            proxy.go_silent()
            silent_at = time.monotonic()
            bound = redis_feed.PING_AFTER + redis_feed.PONG_WITHIN + 3.0
            while True:
                got = await asyncio.wait_for(inbox.queue.get(), bound)
                if got == ("silent", EVERYTHING):
                    break
            noticed = time.monotonic() - silent_at
            assert noticed < bound, noticed
            await direct.publish("sb:feed:silent", b"after")
            assert await inbox.next() == ("silent", "after")
        lost = [r for r in caplog.records if "lost its redis connection" in r.getMessage()]
        assert len(lost) == 1 and "no answer to a PING" in lost[0].getMessage()
        assert any("listening again after" in r.getMessage() for r in caplog.records)
    finally:
        await feed.close()
        await client.aclose()
        await direct.aclose()
        await proxy.close()
