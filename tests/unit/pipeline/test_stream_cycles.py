"""A stream leaves nothing for the cyclic garbage collector: the stages' maps and callbacks close
over the reply that holds them, and are let go once the stream has ended or been closed. A cycle
left per stream made the collector's passes (over a few hundred streams' worth at a time) stall
the event loop for milliseconds, the tail latency of every stream served meanwhile."""

from __future__ import annotations

import gc
from collections.abc import AsyncGenerator

from switchboard.context import Batches, StreamReply
from switchboard.pipeline.chain import map_result


async def _batches() -> AsyncGenerator[list[dict[str, object]], None]:
    yield [{"choices": [{"delta": {"content": "a"}}]}]
    yield [{"choices": [{"delta": {"content": "b"}, "finish_reason": "stop"}]}]


def _mapped(told: list[BaseException | None]) -> StreamReply:
    """A stream with a map and a callback closing over the reply, as the usage stage's do."""
    reply = StreamReply(_batches())

    def relayed(batch: list[dict[str, object]]) -> list[dict[str, object]]:
        assert reply.chunks is not None
        return batch

    def ended(error: BaseException | None) -> None:
        told.append(error)
        assert reply.chunks is not None

    map_result(reply, batch=relayed, done=ended)
    return reply


def _collected(garbage: list[object]) -> list[str]:
    start = len(gc.garbage)
    gc.collect()
    garbage.extend(gc.garbage[start:])
    return [type(o).__name__ for o in garbage if isinstance(o, StreamReply | Batches)]


async def test_a_stream_read_to_its_end_leaves_no_cycle(garbage: list[object]) -> None:
    told: list[BaseException | None] = []
    reply = _mapped(told)
    read = [batch async for batch in reply.chunks]
    await reply.aclose()
    assert len(read) == 2 and told == [None]
    del reply
    assert _collected(garbage) == []


async def test_a_stream_closed_half_way_leaves_no_cycle(garbage: list[object]) -> None:
    told: list[BaseException | None] = []
    reply = _mapped(told)
    assert await reply.chunks.__anext__()
    await reply.aclose()
    assert len(told) == 1 and isinstance(told[0], GeneratorExit)
    del reply
    assert _collected(garbage) == []


async def test_a_stream_closed_unread_leaves_no_cycle(garbage: list[object]) -> None:
    told: list[BaseException | None] = []
    reply = _mapped(told)
    await reply.aclose()
    assert told == []  # never started: never told (map_result's contract)
    del reply
    assert _collected(garbage) == []


async def test_a_callback_added_after_the_end_is_told_at_once() -> None:
    told: list[BaseException | None] = []
    reply = _mapped(told)
    assert len([batch async for batch in reply.chunks]) == 2
    map_result(reply, done=told.append)
    assert told == [None, None]
    await reply.aclose()
