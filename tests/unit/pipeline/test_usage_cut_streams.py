"""A stream cut before its final usage event, in the usage stage and the settlement: the tokens
recorded (the upstream's usage so far, the output estimated from what was relayed), the
``estimated`` flag, and the token buckets corrected to that record. Driven with the real
same-dialect decoders and the terminal's usage bookkeeping, in process."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncGenerator
from types import SimpleNamespace
from typing import Any

import orjson

from switchboard import tokens
from switchboard.catalog import ModelInfo
from switchboard.context import Chunk, RequestContext, Result, Spent, StreamReply
from switchboard.errors import UpstreamBadGateway
from switchboard.http.anthropic.messages import MESSAGES
from switchboard.pipeline.invoke import _note_usage
from switchboard.pipeline.settle import Settlement
from switchboard.pipeline.usage import UsageStage
from switchboard.providers.anthropic import AnthropicAdapter
from switchboard.providers.anthropic.native import NativeStream
from switchboard.providers.openai_responses import NativeDecoder
from switchboard.providers.sse import MAX_EVENT_BYTES
from switchboard.stores.protocols import Bucket, BucketState

INFO = ModelInfo(model="claude-x", provider_types=("anthropic",), input_cost_per_mtok=1.0,
                 output_cost_per_mtok=2.0, cached_input_cost_per_mtok=0.1)
WORDS = ["Hello", " there,", " how", " are", " you", " today?"]
# Row columns (stores/protocols USAGE_ROW): prompt, completion, metadata, cache reads.
PROMPT, COMPLETION, METADATA, CACHE_READ = 8, 9, 13, 14


class Prices:
    def of_route(self, route: Any) -> ModelInfo:
        return INFO

    def priced(self, route: Any) -> tuple[ModelInfo, bool]:
        return INFO, True


class Writer:
    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def spool(self, row: tuple[Any, ...]) -> None:
        self.rows.append(row)


def sse(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"


def anthropic_events(final: bool) -> list[bytes]:
    usage = {"input_tokens": 3, "cache_read_input_tokens": 10, "cache_creation_input_tokens": 0,
             "output_tokens": 1}
    events = [sse("message_start", {"message": {"id": "msg_1", "model": "claude-x", "content": [],
                                                "usage": usage}}),
              sse("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})]
    events += [sse("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": w}})
               for w in WORDS]
    if final:
        events.append(sse("message_delta", {"delta": {"stop_reason": "end_turn"},
                                            "usage": {"output_tokens": 40}}))
    return events


def responses_events() -> list[bytes]:
    events = [sse("response.created", {"response": {"id": "r", "status": "in_progress", "usage": None}})]
    events += [sse("response.output_text.delta", {"item_id": "m", "delta": w}) for w in WORDS]
    events.append(sse("response.output_text.done", {"item_id": "m", "text": "".join(WORDS)}))
    return events


def target() -> Any:
    return SimpleNamespace(name="claude", provider="anth", model="claude-x", provider_type="anthropic",
                           max_event_bytes=MAX_EVENT_BYTES)


async def run(decoder: Any, events: list[bytes], fail: bool = False, to_end: bool = False
              ) -> tuple[RequestContext, Writer]:
    """Each event one upstream read; the client reads every batch, then the stream is cut: the
    upstream fails (``fail``) or the client leaves; or (``to_end``) it ends as the upstream's did."""
    ctx = RequestContext("rid-1", "chat", MESSAGES, {}, b"{}", time.perf_counter())
    # The adapter reads the unparsed events an estimate needs (ProviderAdapter.output_text).
    ctx.route = SimpleNamespace(target=target(), deployment="d", entry=None,  # type: ignore[assignment]
                                adapter=AnthropicAdapter())
    ctx.stream = True
    ctx.prompt_tokens = 50  # the offline estimate limits and budgets took
    writer = Writer()

    async def relay() -> AsyncGenerator[list[Chunk], None]:
        for event in events:  # as the terminal does (pipeline/invoke.py)
            batch = decoder.feed(event)
            _note_usage(ctx, batch)
            yield batch
        if fail:
            raise UpstreamBadGateway("the upstream failed mid-stream")
        if to_end and (batch := decoder.close()):
            yield batch

    async def terminal(c: RequestContext) -> Result:
        return StreamReply(relay(), native=True)

    stage = UsageStage(Prices(), lambda: writer, refuse_unpriced=False)  # type: ignore[arg-type]
    result = await stage(ctx, terminal)
    assert isinstance(result, StreamReply)
    try:
        for _ in events:
            await anext(result.chunks)
        if fail or to_end:
            async for _ in result.chunks:
                pass
    except UpstreamBadGateway:
        assert fail
    await result.aclose()
    ctx.outcome.status, ctx.outcome.stream = 200, True
    ctx.outcome.client_disconnected = not (fail or to_end)
    if (waits := ctx.run_after_response()) is not None:  # None: no callback waited
        await waits
    return ctx, writer


def relayed_tokens() -> int:
    """The estimate of the relayed words for a model without an OpenAI encoding."""
    return math.ceil(tokens.count_text("".join(WORDS), "o200k_base") * tokens.OTHER_PROVIDER_FACTOR)


def test_a_messages_stream_cut_before_message_delta_is_estimated_from_what_was_relayed() -> None:
    for fail in (False, True):
        ctx, writer = asyncio.run(run(NativeStream(target()), anthropic_events(final=False), fail))
        [row] = writer.rows
        # The prompt as message_start reported it (its cache reads kept), not the estimate of 50.
        assert (row[PROMPT], row[CACHE_READ]) == (13, 10)
        assert row[COMPLETION] == relayed_tokens() > 1  # not message_start's 1
        assert row[METADATA]["estimated"] is True
        assert ctx.usage is None and ctx.spent is not None and ctx.spent.estimated
        assert ctx.spent.tokens == 13 + relayed_tokens()


def test_the_usage_so_far_counts_when_nothing_was_relayed() -> None:
    _, writer = asyncio.run(run(NativeStream(target()), anthropic_events(final=False)[:1]))
    [row] = writer.rows
    assert (row[PROMPT], row[COMPLETION], row[METADATA]["estimated"]) == (13, 1, True)


def test_once_message_delta_came_its_usage_is_final() -> None:
    ctx, writer = asyncio.run(run(NativeStream(target()), anthropic_events(final=True)))
    [row] = writer.rows
    assert (row[PROMPT], row[COMPLETION]) == (13, 40)
    assert "estimated" not in row[METADATA] and ctx.spent is not None and not ctx.spent.estimated


def test_a_stream_that_ends_without_its_final_usage_is_estimated_too() -> None:
    stop = sse("message_stop", {})  # message_delta never came: the decoder accepts the end
    _, writer = asyncio.run(run(NativeStream(target()), [*anthropic_events(final=False), stop], to_end=True))
    [row] = writer.rows
    assert (row[PROMPT], row[COMPLETION], row[METADATA]["estimated"]) == (13, relayed_tokens(), True)
    assert "client_disconnected" not in row[METADATA]


def test_a_responses_stream_cut_before_its_final_event_is_estimated() -> None:
    for fail in (False, True):
        _, writer = asyncio.run(run(NativeDecoder(target(), lambda s: s), responses_events(), fail))
        [row] = writer.rows
        # The deltas only: the .done event repeats the text.
        assert (row[PROMPT], row[COMPLETION]) == (50, relayed_tokens())
        assert row[METADATA]["estimated"] is True


class Limiter:
    adjust_now = None  # a limiter that waits (Redis): the settlement awaits ``adjust``

    def __init__(self) -> None:
        self.adjusted: list[int] = []

    async def adjust(self, buckets: list[Bucket], slots: list[int]) -> None:
        self.adjusted += [b.amount for b in buckets]


def settled(spent: Spent | None, usage: dict[str, Any] | None, status: int) -> list[int]:
    """The correction a 1,000-token reservation gets."""
    limiter = Limiter()
    settlement = Settlement()
    settlement.limiter = limiter  # type: ignore[assignment]
    settlement.buckets = [Bucket("key:k:tpm", 5000, 60.0, 1000)]
    settlement.states = [BucketState(5000, 1000, 60.0, 7)]
    settlement.indexes = [0]
    settlement.reserved = 1000
    ctx = RequestContext("rid-1", "chat", MESSAGES, {}, b"{}", 0.0)
    ctx.usage, ctx.spent, ctx.outcome.status = usage, spent, status
    asyncio.run(settlement(ctx))
    return limiter.adjusted


def test_token_buckets_settle_to_a_cut_streams_estimate() -> None:
    assert settled(Spent(5, 120, 100, 20, estimated=True), None, 200) == [120 - 1000]
    assert settled(Spent(5, 120, 100, 20, estimated=True), None, 502) == [120 - 1000]
    # Unchanged: the reported usage; no usage on a failure (nothing back) or a success (kept).
    assert settled(Spent(5, 30), {"total_tokens": 30}, 200) == [30 - 1000]
    assert settled(Spent(0, 0), None, 502) == [-1000]
    assert settled(Spent(0, 0), None, 200) == []
