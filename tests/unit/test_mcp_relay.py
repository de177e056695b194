"""What a tool call relays (mcp/relay.py): progress for the client's token only, cancellation of
the caller's own call only; the answers to requests a server sends (mcp/upstream.py)."""

from __future__ import annotations

import asyncio

import pytest

from switchboard.context import Principal
from switchboard.mcp.relay import Calls, Cancelled, Relay
from switchboard.mcp.upstream import server_request_reply

ALICE = Principal(id="a", role="member", key_id="key-a")
BOB = Principal(id="b", role="member", key_id="key-b")


def progress(token: object, value: float) -> dict[str, object]:
    params = {"progressToken": token, "progress": value}
    return {"jsonrpc": "2.0", "method": "notifications/progress", "params": params}


async def test_only_the_clients_progress_is_relayed() -> None:
    relay = Relay("t1")
    await relay.notify(progress("t1", 1))
    await relay.notify(progress("other", 2))
    await relay.notify({"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "log"}})
    await relay.notify({"jsonrpc": "2.0", "method": "notifications/progress", "params": "bad"})
    assert relay.queue.qsize() == 1
    assert relay.queue.get_nowait()["params"] == {"progressToken": "t1", "progress": 1}


async def test_a_call_is_cancelled_by_its_caller_only() -> None:
    calls = Calls()
    started = asyncio.Event()

    async def call() -> str:
        with calls.running(ALICE, 7):
            started.set()
            await asyncio.sleep(60)
        return "done"

    task = asyncio.create_task(call())
    await started.wait()
    assert not calls.cancel(BOB, 7)  # another caller's id: nothing happens
    assert not calls.cancel(ALICE, 8) and not calls.cancel(ALICE, True) and not calls.cancel(ALICE, None)
    assert calls.cancel(ALICE, 7)
    with pytest.raises(Cancelled) as info:
        await task
    assert info.value.code == "mcp_cancelled"
    assert not calls.cancel(ALICE, 7)  # over: forgotten


async def test_other_cancellations_pass_through() -> None:
    calls = Calls()

    async def call() -> None:
        with calls.running(ALICE, 1):
            await asyncio.sleep(60)

    task = asyncio.create_task(call())
    await asyncio.sleep(0)
    task.cancel()  # e.g. the client went away: a plain cancellation
    with pytest.raises(asyncio.CancelledError):
        await task


def test_requests_from_a_server_are_answered_at_once() -> None:
    assert server_request_reply({"jsonrpc": "2.0", "id": 3, "method": "ping"}) == {
        "jsonrpc": "2.0", "id": 3, "result": {}}
    refused = server_request_reply({"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage"})
    assert refused["id"] == "s1" and refused["error"]["code"] == -32601
    assert "sampling/createMessage" in refused["error"]["message"]
