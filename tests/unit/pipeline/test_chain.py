"""The stage interface: composition order, short-circuits and the result helpers."""

from __future__ import annotations

from typing import Any

import pytest

from switchboard.context import Reply, RequestContext, Result, StreamReply
from switchboard.pipeline.chain import Handler, build_chain, map_result
from tests.unit.pipeline.fakes import FakeStream, chunk, context


class Recorder:
    def __init__(self, name: str, log: list[str], short_circuit: Result | None = None) -> None:
        self.name = name
        self.log = log
        self.short_circuit = short_circuit

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        self.log.append(f"{self.name}:before")
        if self.short_circuit is not None:
            return self.short_circuit
        result = await call_next(ctx)
        self.log.append(f"{self.name}:after")
        return result


async def test_stages_run_outermost_first_and_unwind_in_reverse() -> None:
    log: list[str] = []

    async def terminal(ctx: RequestContext) -> Result:
        log.append("terminal")
        return Reply({"ok": True})

    chain = build_chain([Recorder("a", log), Recorder("b", log), Recorder("c", log)], terminal)
    result = await chain(context())
    assert isinstance(result, Reply) and result.body == {"ok": True}
    assert log == ["a:before", "b:before", "c:before", "terminal", "c:after", "b:after", "a:after"]


async def test_a_stage_can_short_circuit() -> None:
    log: list[str] = []

    async def terminal(ctx: RequestContext) -> Result:
        log.append("terminal")
        return Reply({})

    cached = Reply({"cached": True})
    stages = [Recorder("a", log), Recorder("b", log, short_circuit=cached), Recorder("c", log)]
    chain = build_chain(stages, terminal)
    assert await chain(context()) is cached
    assert log == ["a:before", "b:before", "a:after"]


async def test_an_error_raised_by_a_stage_propagates_past_the_outer_ones() -> None:
    log: list[str] = []

    class Boom:
        name = "boom"

        async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
            raise ValueError("no")

    async def terminal(ctx: RequestContext) -> Result:
        raise AssertionError("not reached")

    with pytest.raises(ValueError):
        await build_chain([Recorder("a", log), Boom()], terminal)(context())
    assert log == ["a:before"]


async def test_map_result_on_a_complete_reply() -> None:
    ends: list[Any] = []
    result = map_result(Reply({"n": 1}), body=lambda b: {**b, "seen": True}, done=ends.append)
    assert isinstance(result, Reply) and result.body == {"n": 1, "seen": True}
    assert ends == [None]


def streamed(result: Result) -> StreamReply:
    assert isinstance(result, StreamReply)
    return result


async def test_map_result_on_a_stream_transforms_batches_and_reports_the_end() -> None:
    source = FakeStream([[chunk("a")], [chunk("drop")], [chunk("b")]])
    ends: list[Any] = []

    def batch(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [c for c in items if c["choices"][0]["delta"]["content"] != "drop"]

    result = streamed(map_result(source.reply(), batch=batch, done=ends.append))
    texts = [[c["choices"][0]["delta"]["content"] for c in b] async for b in result.chunks]
    assert texts == [["a"], ["b"]]
    assert ends == [None]
    await result.aclose()  # the edge closes every stream it was given
    assert source.closed == 1
    assert ends == [None]  # the end is reported once


async def test_map_result_reports_a_stream_error_and_closes_the_source() -> None:
    source = FakeStream([[chunk("a")]], fail=RuntimeError("upstream broke"))
    ends: list[Any] = []
    result = streamed(map_result(source.reply(), done=ends.append))
    seen = []
    with pytest.raises(RuntimeError):
        async for b in result.chunks:
            seen.append(b)
    assert len(seen) == 1
    assert len(ends) == 1 and isinstance(ends[0], RuntimeError)
    await result.aclose()
    assert source.closed == 1
    assert len(ends) == 1


async def test_closing_a_mapped_stream_early_closes_the_source() -> None:
    source = FakeStream([[chunk("a")], [chunk("b")]])
    result = streamed(map_result(source.reply(), done=lambda e: None))
    await result.chunks.__anext__()
    await result.aclose()
    assert source.closed == 1


async def test_closing_a_stream_that_never_started_releases_its_source() -> None:
    source = FakeStream([[chunk("a")]])
    reply = source.reply()
    await reply.aclose()
    await reply.aclose()  # idempotent
    assert source.closed == 1


async def test_maps_run_innermost_first_and_a_dropped_batch_skips_the_rest() -> None:
    source = FakeStream([[chunk("a")], [chunk("b")]])
    seen: list[str] = []

    def inner(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen.append("inner")
        return [] if items[0]["choices"][0]["delta"]["content"] == "a" else items

    def outer(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen.append("outer")
        return items

    result = streamed(map_result(map_result(source.reply(), batch=inner), batch=outer))
    batches = [b async for b in result.chunks]
    assert [b[0]["choices"][0]["delta"]["content"] for b in batches] == ["b"]
    assert seen == ["inner", "inner", "outer"]


async def test_a_batch_read_ahead_goes_through_the_maps_added_after_it() -> None:
    # The attempts stage reads a stream's first batch before the stages outside it add theirs.
    source = FakeStream([[chunk("a")], [chunk("b")]])
    reply = streamed(map_result(source.reply(), batch=lambda b: [*b, chunk("inner")]))
    first = await anext(reply.chunks)
    reply.chunks.unread(first)
    map_result(reply, batch=lambda b: [*b, chunk("outer")])
    texts = [[c["choices"][0]["delta"]["content"] for c in b] async for b in reply.chunks]
    assert texts == [["a", "inner", "outer"], ["b", "inner", "outer"]]


async def test_the_end_is_reported_once_and_only_for_a_stream_that_started() -> None:
    untouched = FakeStream([[chunk("a")]])
    ends: list[Any] = []
    never = streamed(map_result(untouched.reply(), done=ends.append))
    await never.aclose()
    assert ends == [] and untouched.closed == 1

    left = FakeStream([[chunk("a")], [chunk("b")]])
    cut = streamed(map_result(left.reply(), done=ends.append))
    await anext(cut.chunks)
    await cut.aclose()
    await cut.aclose()
    assert len(ends) == 1 and isinstance(ends[0], GeneratorExit)
    with pytest.raises(StopAsyncIteration):  # closed: nothing more, even the batch not read
        await anext(cut.chunks)


async def test_a_failing_map_ends_the_stream_with_its_error() -> None:
    source = FakeStream([[chunk("a")], [chunk("b")]])
    ends: list[Any] = []

    def broken(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise ValueError("map failed")

    result = streamed(map_result(source.reply(), batch=broken, done=ends.append))
    with pytest.raises(ValueError):
        await anext(result.chunks)
    assert len(ends) == 1 and isinstance(ends[0], ValueError)
    await result.aclose()
    assert source.closed == 1 and len(ends) == 1


async def test_a_map_failing_on_a_batch_read_ahead_ends_the_stream_with_its_error() -> None:
    source = FakeStream([[chunk("a")], [chunk("b")]])
    ends: list[Any] = []
    reply = streamed(map_result(source.reply(), done=ends.append))
    reply.chunks.unread(await anext(reply.chunks))

    def broken(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise ValueError("map failed")

    map_result(reply, batch=broken)
    with pytest.raises(ValueError):
        await anext(reply.chunks)
    await reply.aclose()
    assert len(ends) == 1 and isinstance(ends[0], ValueError)


async def test_an_end_callback_added_after_the_end_is_told_at_once() -> None:
    # The attempts stage waits for the first batch; a stream that ends before any has ended by
    # the time the stages outside it add their callbacks.
    source = FakeStream([])
    reply = source.reply()
    with pytest.raises(StopAsyncIteration):
        await anext(reply.chunks)
    ends: list[Any] = []
    map_result(reply, done=ends.append)
    assert ends == [None]
    assert [b async for b in reply.chunks] == []
    await reply.aclose()
    assert ends == [None] and source.closed == 1
