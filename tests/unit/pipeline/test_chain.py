"""The stage interface: composition order, short-circuits and the result helpers."""

from __future__ import annotations

from typing import Any

import pytest

from switchboard.context import Reply, RequestContext, Result
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


async def test_map_result_on_a_stream_transforms_batches_and_reports_the_end() -> None:
    source = FakeStream([[chunk("a")], [chunk("drop")], [chunk("b")]])
    ends: list[Any] = []

    def batch(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [c for c in items if c["choices"][0]["delta"]["content"] != "drop"]

    result = map_result(source.reply(), batch=batch, done=ends.append)
    texts = [[c["choices"][0]["delta"]["content"] for c in b] async for b in result.chunks]  # type: ignore[union-attr]
    assert texts == [["a"], ["b"]]
    assert ends == [None]
    assert source.closed == 1


async def test_map_result_reports_a_stream_error_and_closes_the_source() -> None:
    source = FakeStream([[chunk("a")]], fail=RuntimeError("upstream broke"))
    ends: list[Any] = []
    result = map_result(source.reply(), done=ends.append)
    seen = []
    with pytest.raises(RuntimeError):
        async for b in result.chunks:  # type: ignore[union-attr]
            seen.append(b)
    assert len(seen) == 1
    assert isinstance(ends[0], RuntimeError)
    assert source.closed == 1


async def test_closing_a_mapped_stream_early_closes_the_source() -> None:
    source = FakeStream([[chunk("a")], [chunk("b")]])
    result = map_result(source.reply(), done=lambda e: None)
    assert not isinstance(result, Reply)
    await result.chunks.__anext__()
    await result.aclose()
    assert source.closed == 1


async def test_closing_a_stream_that_never_started_releases_its_source() -> None:
    source = FakeStream([[chunk("a")]])
    reply = source.reply()
    await reply.aclose()
    await reply.aclose()  # idempotent
    assert source.closed == 1
