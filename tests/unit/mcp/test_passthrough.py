"""mcp/passthrough.py: sessions bound to their caller, the capability check, answers resolved
here or through the change feed by the instance holding the request, and the bounds."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from switchboard.config.mcp import McpConfig
from switchboard.context import Principal
from switchboard.mcp.passthrough import AnswerTooLarge, ClientRequests
from switchboard.stores.clock import ManualClock
from switchboard.stores.memory.cache import MemoryCache
from switchboard.stores.memory.feed import MemoryFeed

ALICE = Principal(id="k1", role="developer", key_id="k1", tenant_id="t1")
BOB = Principal(id="k2", role="developer", key_id="k2", tenant_id="t1")
SAMPLE = {"id": 1, "method": "sampling/createMessage"}
ELICITING = frozenset({"elicitation"})  # what a session declaring elicitation is looked up as
ELICIT = {"jsonrpc": "2.0", "id": 9, "method": "elicitation/create", "params": {"message": "name?"}}


async def started(cache: Any = None, feed: Any = None, **config: Any) -> ClientRequests:
    clients = ClientRequests()
    await clients.start(McpConfig(**config), cache or MemoryCache(), feed or MemoryFeed())
    return clients


async def test_a_session_is_bound_to_its_caller_and_its_declared_capabilities() -> None:
    clients = await started()
    sid = await clients.open(ALICE, {"elicitation": {}, "sampling": True, "roots": {"listChanged": True}})
    assert sid is not None
    declared = await clients.lookup(ALICE, sid)
    assert declared == {"elicitation", "roots"}
    assert await clients.lookup(BOB, sid) is None
    assert await clients.lookup(ALICE, "unknown") is None
    assert await clients.lookup(ALICE, "x" * 200) is None
    assert await clients.open(None, {"elicitation": {}}) is None
    assert await clients.open(ALICE, {"experimental": {}}) is None  # nothing to keep: no session
    assert await clients.open(ALICE, "bad") is None
    # Not declared, no session, an unknown method: not passed (the gateway refuses).
    assert await clients.ask(ALICE, sid, declared, SAMPLE, lambda m: True) is None
    assert await clients.ask(ALICE, None, declared, ELICIT, lambda m: True) is None
    assert await clients.ask(ALICE, sid, declared, {"id": 1, "method": "tools/call"}, lambda m: True) is None
    assert await clients.ask(BOB, sid, frozenset(), ELICIT, lambda m: True) is None
    await clients.close()


async def test_a_session_lives_its_time_from_its_last_use() -> None:
    clock = ManualClock()
    clients = await started(MemoryCache(clock), client_session_seconds=3600)
    sid = await clients.open(ALICE, {"elicitation": {}})
    assert sid is not None
    # Used every 50 minutes, it outlives an hour from its initialize.
    for _ in range(3):
        clock.advance(3000)
        assert await clients.lookup(ALICE, sid) == {"elicitation"}
    # Unused for longer than an hour, it is gone.
    clock.advance(3601)
    assert await clients.lookup(ALICE, sid) is None
    # Unknown, another caller's, too long an id: not a session of the caller's.
    other = await clients.open(ALICE, {"roots": {}})
    assert other is not None
    assert await clients.lookup(BOB, other) is None
    assert await clients.lookup(ALICE, "unknown") is None
    assert await clients.lookup(ALICE, "x" * 200) is None
    # Ended by its client: gone.
    await clients.end(other)
    assert await clients.lookup(ALICE, other) is None
    await clients.close()


async def test_a_session_is_not_refused_when_the_cache_cannot_tell() -> None:
    class Down(MemoryCache):
        async def touch(self, key: str, ttl: float, prefix: bytes = b"",
                        group: str | None = None) -> bytes | None:
            raise ConnectionError("the cache is unreachable")

    clients = await started(Down())
    assert await clients.lookup(ALICE, "any") == frozenset()  # served, without its session
    assert await ClientRequests().lookup(ALICE, "any") == frozenset()  # not started: no cache
    await clients.close()


async def test_an_answer_on_another_instance_reaches_the_waiting_one() -> None:
    cache, feed = MemoryCache(), MemoryFeed()  # shared, as Redis is in a cluster
    here, there = await started(cache, feed), await started(cache, feed)
    sid = await here.open(ALICE, {"elicitation": {}})
    sent: list[dict[str, Any]] = []
    waiting = asyncio.create_task(here.ask(ALICE, sid, ELICITING, ELICIT, lambda m: sent.append(m) or True))
    while not sent:
        await asyncio.sleep(0)
    gid = sent[0]["id"]
    assert sent[0] == {"jsonrpc": "2.0", "id": gid, "method": "elicitation/create",
                       "params": {"message": "name?"}}
    # Another caller's answer, or one for another session, is ignored.
    await there.answer(BOB, sid, gid, {"result": {"action": "accept"}}, 10)
    await there.answer(ALICE, "other", gid, {"result": {"action": "accept"}}, 10)
    assert not waiting.done()
    assert await there.answer(ALICE, sid, gid, {"result": {"action": "accept", "content": {"n": 1}}}, 10)
    assert await waiting == {"jsonrpc": "2.0", "id": 9, "result": {"action": "accept", "content": {"n": 1}}}
    # Not one of the gateway's ids: not routed.
    assert not await there.answer(ALICE, sid, 5, {"result": {}}, 10)
    await here.close()
    await there.close()


async def test_bounds_timeout_pending_and_answer_size() -> None:
    clients = await started(client_request_timeout_seconds=0.05, max_pending_client_requests=1,
                            max_client_answer_bytes=1024)
    sid = await clients.open(ALICE, {"elicitation": {}})
    timed_out = await clients.ask(ALICE, sid, ELICITING, ELICIT, lambda m: True)
    assert timed_out is not None
    assert "did not answer elicitation/create within 0.05 s" in timed_out["error"]["message"]
    await clients.close()
    clients = await started(client_request_timeout_seconds=30, max_pending_client_requests=1,
                            max_client_answer_bytes=1024)
    sid = await clients.open(ALICE, {"elicitation": {}})
    sent: list[dict[str, Any]] = []
    first = asyncio.create_task(clients.ask(ALICE, sid, ELICITING, ELICIT, lambda m: sent.append(m) or True))
    while not sent:
        await asyncio.sleep(0)
    second = await clients.ask(ALICE, sid, ELICITING, ELICIT, lambda m: True)
    assert second is not None and "too many requests wait" in second["error"]["message"]
    with pytest.raises(AnswerTooLarge):
        await clients.answer(ALICE, sid, sent[0]["id"], {"result": {}}, 5000)
    told = await first
    assert told is not None and "larger than 1024 bytes" in told["error"]["message"]
    full = await clients.ask(ALICE, sid, ELICITING, ELICIT, lambda m: False)  # the client's stream is full
    assert full is not None and "could not be written" in full["error"]["message"]
    await clients.close()
