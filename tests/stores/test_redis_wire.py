"""The request path's own pipelined Redis connection (stores/redis/wire.py): on a real Redis
over TCP and a Unix socket, with a user, a password and a database number; against servers that
never answer, answer garbage or drop the connection."""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from switchboard.stores.protocols import Bucket, Charge
from switchboard.stores.redis import silence as silence_module
from switchboard.stores.redis.admission import RedisAdmission
from switchboard.stores.redis.batch import BatchedScript, batch_for
from switchboard.stores.redis.budgets import RedisBudgetCounters, counter_key
from switchboard.stores.redis.limits import RedisRateLimiter, bucket_key, slot_ms
from switchboard.stores.redis.wire import Wire, bulk, command, encoded, number, unique, values
from tests.services import RedisServer

pytestmark = pytest.mark.asyncio(loop_scope="session")

BUCKET = Bucket("key:w:rpm", 100, 60, 1)


@pytest_asyncio.fixture
async def admin(redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis_server.flush()
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def closing(client: Redis) -> None:
    await batch_for(client).close()
    await client.aclose()


async def next_pass() -> None:
    """Give the loop one pass (the batch of the previous pass leaves)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.call_soon(done.set_result, None)
    await done


async def test_commands_are_packed_as_resp_bulk_strings() -> None:
    assert command(["SET", "k", 12, b"\x00v"]) == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n$2\r\n\x00v\r\n"
    for _ in range(2):  # the second time from the cache of encoded values: equal values, other types
        assert bulk([1, 1.0, "1", "é"]) == b"$1\r\n1\r\n$3\r\n1.0\r\n$1\r\n1\r\n$2\r\n\xc3\xa9\r\n"
        # one value, as ``bulk`` packs it: a number by its own type's text, a request's id as is
        assert [number(7), number(1.0), number(True), encoded("é"), unique("req-é")] == [
            b"$1\r\n7\r\n", b"$3\r\n1.0\r\n", b"$4\r\nTrue\r\n", b"$2\r\n\xc3\xa9\r\n",
            b"$6\r\nreq-\xc3\xa9\r\n"]


async def test_a_batched_script_call_is_packed_as_its_command(redis_server: RedisServer) -> None:
    client = Redis.from_url(redis_server.url)
    try:
        script = batch_for(client).script("return #KEYS + #ARGV")
        head = ["EVALSHA", script.script.sha]
        calls: list[tuple[list[str], list[str | int | float | bytes]]] = [
            (["a", "b"], ["", 10, 1.5, b"\x00"]), (["c", "d"], ["x", 11, 2, "é"]), ([], []), (["e"], [1])]
        for _ in range(2):  # the second time each call's start is the one kept for its counts
            pieces: list[bytes] = []
            for keys, args in calls:
                script.pack_into(pieces, len(keys), len(keys) + len(args), [bulk(keys), bulk(args)])
            assert b"".join(pieces) == b"".join(command([*head, len(k), *k, *a]) for k, a in calls)
            # and read back as the values sent (the calls run again alone after a NOSCRIPT)
            assert values([bulk(k) + bulk(a) for k, a in calls[:2]]) == [
                b"a", b"b", b"", b"10", b"1.5", b"\x00", b"c", b"d", b"x", b"11", b"2", "é".encode()]
        # and Redis reads them so: each call's keys and arguments counted as sent
        assert await asyncio.gather(*(script(keys=k, args=a) for k, a in calls)) == [6, 6, 0, 2]
    finally:
        await closing(client)


async def test_the_stores_calls_are_sent_as_their_plain_commands(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limiter's, the counters' and the admission's calls, their repeating arguments kept
    encoded, are the bytes of the plain commands (keys and arguments as the scripts read them)."""
    client = Redis.from_url(redis_server.url)
    limiter, counters = RedisRateLimiter(client), RedisBudgetCounters(client)
    admission = RedisAdmission(client, limiter, counters)
    written: list[bytes] = []
    post = Wire.post

    def recorded(wire: Wire, payload: bytes, count: int, then: Any, arg: Any) -> None:
        written.append(payload)
        post(wire, payload, count, then, arg)

    monkeypatch.setattr(Wire, "post", recorded)

    def sha(script: BatchedScript) -> str:
        return script.script.sha

    buckets = [Bucket("key:k1:rpm", 100, 60, 1), Bucket("key:k1:tpm", 5000, 60, 420),
               Bucket("key:k1:tpd", 90000, 86400, 420)]
    charges = [Charge("b1:1764547200", 1_000_000, 2_500, 3600.0), Charge("b2:0", 7, 3, math.inf)]
    rl = [bucket_key(b.key, slot_ms(b.window)) for b in buckets]
    bg = [counter_key(c.key) for c in charges]
    try:
        await next_pass()  # connected: the batches below are written as they leave
        await admission.acquire_reserve(buckets, "req-1", charges, 30.0)  # no counter yet: nothing reserved
        for c in charges:
            await counters.load(c, 0)
        for _ in range(2):  # the second time from what the stores kept
            written.clear()
            acquired = await limiter.acquire(buckets)
            slots = [s.slot for s in acquired.states]
            await counters.reserve("req-2", charges, 30.0)
            await admission.acquire_reserve(buckets, "req-3", charges, 12.5)
            await limiter.adjust([b._replace(amount=-20) for b in buckets], slots)
            await counters.settle("req-3", [(c.key, 2_000) for c in charges])
            limit_args = ["", 60, *(v for b in buckets for v in (slot_ms(b.window), b.capacity, b.amount))]
            budget_args = ["", "req-3", 12500, 1_000_000, 2_500, 7, 3]
            corrections = [v for b, n in zip(buckets, slots, strict=True)
                           for v in (slot_ms(b.window), -20, n)]
            assert written == [
                command(["EVALSHA", sha(limiter._acquire), 3, *rl, *limit_args]),
                command(["EVALSHA", sha(counters._reserve), 2, *bg, "", "req-2", 30000, *budget_args[3:]]),
                command(["EVALSHA", sha(admission._script), 5, *rl, *bg, 3, len(limit_args), *limit_args,
                         *budget_args]),
                command(["EVALSHA", sha(limiter._adjust), 3, *rl, "", 60, *corrections]),
                command(["EVALSHA", sha(counters._settle), 2, *bg, "req-3", 2_000, 2_000]),
            ]
        # Redis read them so: settled twice, and req-2's reservation (made twice, one field) held
        assert await counters.usage(charges[0].key) == (4_000, 2_500)
    finally:
        await closing(client)


async def test_a_unix_socket_url_uses_the_wire(redis_server: RedisServer, admin: Redis) -> None:
    client = Redis.from_url(f"unix://{redis_server.socket_path}")
    try:
        assert batch_for(client)._wire is not None
        assert (await RedisRateLimiter(client).acquire([BUCKET])).refused is None
        assert await admin.exists(bucket_key(BUCKET.key, slot_ms(BUCKET.window)))
    finally:
        await closing(client)


async def test_a_user_a_password_and_a_database_are_honoured(redis_server: RedisServer, admin: Redis) -> None:
    await admin.execute_command("ACL", "SETUSER", "wire", "on", ">s3cret", "~*", "+@all")
    client = Redis.from_url(f"redis://wire:s3cret@127.0.0.1:{redis_server.port}/3")
    other_db = Redis.from_url(f"redis://127.0.0.1:{redis_server.port}/3")
    try:
        assert (await RedisRateLimiter(client).acquire([BUCKET])).refused is None
        key = bucket_key(BUCKET.key, slot_ms(BUCKET.window))
        assert await other_db.exists(key) and not await admin.exists(key)
    finally:
        await closing(client)
        await other_db.aclose()


async def test_a_wrong_password_reaches_the_caller(redis_server: RedisServer, admin: Redis) -> None:
    await admin.execute_command("ACL", "SETUSER", "wire2", "on", ">right", "~*", "+@all")
    client = Redis.from_url(f"redis://wire2:wrong@127.0.0.1:{redis_server.port}/0")
    try:
        with pytest.raises(AuthenticationError):
            await RedisRateLimiter(client).acquire([BUCKET])
    finally:
        await closing(client)


async def test_a_script_error_reaches_its_caller_only(admin: Redis) -> None:
    await admin.set("sb:text", "not a number")
    batch = batch_for(admin)
    incr = batch.script("return redis.call('INCR', KEYS[1])")
    bad, good = await asyncio.gather(incr(["sb:text"], []), incr(["sb:n"], []), return_exceptions=True)
    assert isinstance(bad, ResponseError) and "not an integer" in str(bad)
    assert good == 1


async def test_batches_of_several_passes_in_flight_get_their_own_replies(admin: Redis) -> None:
    incr = batch_for(admin).script("return redis.call('INCR', KEYS[1])")

    async def after(passes: int) -> list[object]:
        for _ in range(passes):
            await next_pass()
        return list(await asyncio.gather(*(incr([f"sb:p{passes}"], []) for _ in range(3))))

    results = await asyncio.gather(*(after(n) for n in range(4)))
    assert results == [[1, 2, 3]] * 4


async def test_a_dropped_connection_is_replaced(admin: Redis) -> None:
    limiter = RedisRateLimiter(admin)
    assert (await limiter.acquire([BUCKET])).refused is None
    wire = batch_for(admin)._wire
    assert wire is not None and wire._protocol is not None and wire._protocol.transport is not None
    sock = wire._protocol.transport.get_extra_info("socket")
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1  # a dead peer is found when idle
    lost = wire._protocol.closed
    await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    await asyncio.wait_for(lost, 5)
    assert (await limiter.acquire([BUCKET])).states[0].used == 2


async def fake_redis(answer: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> tuple[asyncio.Server, int]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await answer(writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_a_server_that_never_answers_times_out() -> None:
    never = asyncio.Event()

    async def silent(writer: asyncio.StreamWriter) -> None:
        await never.wait()

    server, port = await fake_redis(silent)
    client = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=0.3)
    try:
        results = await asyncio.gather(
            *(RedisRateLimiter(client).acquire([BUCKET]) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RedisTimeoutError) for r in results)
    finally:
        never.set()
        await closing(client)
        server.close()


async def test_a_silent_server_fails_calls_at_once_until_a_ping_is_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the calls in flight wait out the reply timeout; the next ones fail at once (the
    same timeout error) until a PING on a fresh connection is answered in the background."""
    monkeypatch.setattr(silence_module, "PROBE_SECONDS", 0.05)
    answering = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if answering.is_set():  # every command here is a PING
                writer.write(b"+PONG\r\n" * data.count(b"PING"))
                await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=0.3)
    try:
        with pytest.raises(RedisTimeoutError):
            await RedisRateLimiter(client).acquire([BUCKET])
        # Refused by the silence mark before anything is sent ("has not answered for"), not
        # after another reply timeout ("did not answer within"): told by the error itself, as
        # a clock bound under the 0.3 s timeout is not on a loaded machine.
        with pytest.raises(RedisTimeoutError, match="has not answered") as refused:
            await RedisRateLimiter(client).acquire([BUCKET])
        assert "did not answer within" not in str(refused.value)
        wire = batch_for(client)._wire
        assert wire is not None
        answering.set()
        async with asyncio.timeout(5):
            while wire.silence.silent:
                await asyncio.sleep(0.01)
        assert await wire.call(command(["PING"]), 1) == [b"PONG"]
    finally:
        answering.set()
        await closing(client)
        server.close()


async def test_a_garbled_reply_fails_the_batch() -> None:
    async def garbage(writer: asyncio.StreamWriter) -> None:
        writer.write(b"?not resp\r\n")
        await writer.drain()

    server, port = await fake_redis(garbage)
    client = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=5)
    try:
        with pytest.raises(RedisConnectionError, match="protocol error"):
            await RedisRateLimiter(client).acquire([BUCKET])
    finally:
        await closing(client)
        server.close()


async def test_a_server_that_hangs_up_fails_the_batch() -> None:
    async def hang_up(writer: asyncio.StreamWriter) -> None:
        writer.close()

    server, port = await fake_redis(hang_up)
    client = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=5)
    try:
        with pytest.raises(RedisConnectionError, match=r"closed the connection|connection lost"):
            await RedisRateLimiter(client).acquire([BUCKET])
    finally:
        await closing(client)
        server.close()


async def test_tls_keeps_redis_py() -> None:
    assert Wire.of(Redis.from_url("rediss://127.0.0.1:6390/0")) is None
