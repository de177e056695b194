"""The trace stages in process, with an in-memory exporter: sampling, streams that end every way,
W3C trace-context edge cases, and the GenAI names of our providers and operations."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncGenerator
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from switchboard.config.schema import TracingConfig
from switchboard.context import Chunk, Reply, RequestContext, Result, StreamReply
from switchboard.errors import UpstreamUnavailable
from switchboard.observability import logs, tracing
from switchboard.pipeline.chain import Handler, build_chain
from switchboard.pipeline.trace import AttemptSpanStage, TraceStage
from tests.unit.pipeline.fakes import context

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def route(provider_type: str = "anthropic", api_base: str = "https://api.anthropic.com/v1") -> Any:
    target = SimpleNamespace(model="claude-x", name="grp", provider="p1", provider_type=provider_type,
                             api_base=api_base)
    return SimpleNamespace(target=target, deployment="d1")


class World:
    def __init__(self, **config: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracing = tracing.Tracing(TracingConfig(enabled=True, **config), exporter=self.exporter)
        self.sent: list[dict[str, str] | None] = []  # ctx.upstream_headers as the terminal saw them

    def chain(self, answer: Handler, attempts: int = 1) -> Handler:
        async def retrying(ctx: RequestContext, call_next: Handler) -> Result:
            for _ in range(attempts - 1):
                try:
                    return await call_next(ctx)
                except UpstreamUnavailable:
                    continue
            return await call_next(ctx)

        async def terminal(ctx: RequestContext) -> Result:
            self.sent.append(ctx.upstream_headers)
            return await answer(ctx)

        return build_chain([TraceStage(self.tracing), retrying, AttemptSpanStage(self.tracing)], terminal)

    def spans(self) -> list[ReadableSpan]:
        self.tracing.provider.force_flush()
        return list(self.exporter.get_finished_spans())


def ctx_for(headers: dict[str, str] | None = None) -> RequestContext:
    ctx = context(headers)
    ctx.request = {"model": "claude", "messages": [{"role": "user", "content": "secret words"}],
                   "max_completion_tokens": 7, "temperature": 0}
    ctx.route = route()
    return ctx


async def finish(ctx: RequestContext, status: int = 200) -> None:
    ctx.outcome.status = status
    if (waits := ctx.run_after_response()) is not None:  # None: no callback waited
        await waits


async def test_reply_spans_and_attributes() -> None:
    world = World()

    async def answer(ctx: RequestContext) -> Result:
        ctx.usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        return Reply({"id": "msg_1", "model": "claude-x-2025", "choices": [{"finish_reason": "length"}]})

    ctx = ctx_for({"traceparent": f"00-{TRACE_ID}-{PARENT}-01"})
    await world.chain(answer)(ctx)
    await finish(ctx, {})
    server, client = sorted(world.spans(), key=lambda s: s.kind != SpanKind.SERVER)
    assert server.kind == SpanKind.SERVER and client.kind == SpanKind.CLIENT
    assert server.name == "chat claude" and client.name == "chat claude-x"
    assert f"{server.context.trace_id:032x}" == TRACE_ID and f"{server.parent.span_id:016x}" == PARENT
    assert client.parent.span_id == server.context.span_id
    assert logs.CURRENT.get() == ("rid-1", TRACE_ID)  # the trace id on the request's log lines
    a = client.attributes
    assert a["gen_ai.provider.name"] == "anthropic"
    assert a["gen_ai.request.max_tokens"] == 7 and a["gen_ai.request.temperature"] == 0
    assert a["gen_ai.response.finish_reasons"] == ("length",)
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (3, 2)
    assert (a["server.address"], a["server.port"]) == ("api.anthropic.com", 443)
    assert world.sent == [{"traceparent": f"00-{TRACE_ID}-{client.context.span_id:016x}-01"}]
    assert ctx.upstream_headers is None  # only while the attempt is under way
    assert "secret words" not in repr([dict(s.attributes) for s in (server, client)])


async def test_each_attempt_is_a_child_and_a_failure_is_an_error() -> None:
    world = World()
    calls = 0

    async def answer(ctx: RequestContext) -> Result:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise UpstreamUnavailable("boom")
        return Reply({"model": "m"})

    ctx = ctx_for()
    await world.chain(answer, attempts=2)(ctx)
    await finish(ctx, {})
    spans = world.spans()
    server = next(s for s in spans if s.kind == SpanKind.SERVER)
    first, second = sorted((s for s in spans if s.kind == SpanKind.CLIENT), key=lambda s: s.start_time or 0)
    assert first.parent.span_id == second.parent.span_id == server.context.span_id
    assert first.status.status_code == StatusCode.ERROR
    assert first.attributes["error.type"] == UpstreamUnavailable.code
    assert "gen_ai.usage.input_tokens" not in first.attributes
    assert second.status.status_code == StatusCode.UNSET
    # Two attempts, two different parents named upstream.
    assert world.sent[0] != world.sent[1]


async def test_sampled_out_exports_nothing_but_still_propagates() -> None:
    world = World(sample_ratio=0)

    async def answer(ctx: RequestContext) -> Result:
        return Reply({})

    ctx = ctx_for()
    await world.chain(answer)(ctx)
    await finish(ctx, {})
    assert world.spans() == []
    assert logs.CURRENT.get() is None
    (sent,) = world.sent
    assert sent is not None and int(sent["traceparent"].rsplit("-", 1)[1], 16) & 1 == 0


async def test_a_callers_unsampled_trace_is_not_recorded() -> None:
    world = World(sample_ratio=1)

    async def answer(ctx: RequestContext) -> Result:
        return Reply({})

    ctx = ctx_for({"traceparent": f"00-{TRACE_ID}-{PARENT}-00"})
    await world.chain(answer)(ctx)
    await finish(ctx, {})
    assert world.spans() == []
    assert world.sent[0] is not None and TRACE_ID in world.sent[0]["traceparent"]


@pytest.mark.parametrize("header", ["garbage", f"00-{'0' * 32}-{PARENT}-01", f"ff-{TRACE_ID}-{PARENT}-01"])
async def test_an_invalid_traceparent_starts_a_new_trace(header: str) -> None:
    world = World()

    async def answer(ctx: RequestContext) -> Result:
        return Reply({})

    ctx = ctx_for({"traceparent": header})
    await world.chain(answer)(ctx)
    await finish(ctx, {})
    server = next(s for s in world.spans() if s.kind == SpanKind.SERVER)
    assert server.parent is None and f"{server.context.trace_id:032x}" != TRACE_ID


def stream(batches: list[list[Chunk]], fail: Exception | None = None) -> StreamReply:
    async def chunks() -> AsyncGenerator[list[Chunk], None]:
        for batch in batches:
            yield batch
        if fail is not None:
            raise fail

    return StreamReply(chunks())


async def test_a_stream_span_ends_with_the_stream() -> None:
    world = World()

    async def answer(ctx: RequestContext) -> Result:
        ctx.usage = {"prompt_tokens": 1, "completion_tokens": 4}
        return stream([[{"id": "c1", "model": "m", "choices": [{"delta": {}}]}],
                       [{"id": "c1", "choices": [{"finish_reason": "stop"}]}]])

    ctx = ctx_for()
    result = await world.chain(answer)(ctx)
    assert isinstance(result, StreamReply)
    assert world.spans() == []  # nothing ends before the stream does
    batches = [batch async for batch in result.chunks]
    assert len(batches) == 2
    await finish(ctx, {})
    client = next(s for s in world.spans() if s.kind == SpanKind.CLIENT)
    assert client.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert client.attributes["gen_ai.response.id"] == "c1"
    assert client.attributes["gen_ai.usage.output_tokens"] == 4


async def test_a_stream_failing_midway_or_closed_unread_ends_as_an_error() -> None:
    world = World()

    async def failing(ctx: RequestContext) -> Result:
        return stream([[{"choices": []}]], fail=UpstreamUnavailable("cut"))

    ctx = ctx_for()
    result = await world.chain(failing)(ctx)
    assert isinstance(result, StreamReply)
    with pytest.raises(UpstreamUnavailable):
        async for _ in result.chunks:
            pass
    await finish(ctx, 200)
    client = next(s for s in world.spans() if s.kind == SpanKind.CLIENT)
    assert client.attributes["error.type"] == UpstreamUnavailable.code

    world = World()

    async def unread(ctx: RequestContext) -> Result:
        return stream([[{"choices": []}]])

    ctx = ctx_for()
    result = await world.chain(unread)(ctx)
    assert isinstance(result, StreamReply)
    await result.aclose()  # never iterated
    await finish(ctx, 200)
    spans = world.spans()
    assert len(spans) == 2
    client = next(s for s in spans if s.kind == SpanKind.CLIENT)
    assert client.status.status_code == StatusCode.ERROR and client.attributes["error.type"] == "closed"


async def test_the_server_span_is_an_error_on_5xx_only() -> None:
    for status, expected in ((429, StatusCode.UNSET), (502, StatusCode.ERROR)):
        world = World()

        async def answer(ctx: RequestContext) -> Result:
            return Reply({})

        ctx = ctx_for()
        await world.chain(answer)(ctx)
        ctx.outcome.error_code = "some_code"
        await finish(ctx, status)
        server = next(s for s in world.spans() if s.kind == SpanKind.SERVER)
        assert server.status.status_code == expected
        assert server.attributes["error.type"] == "some_code"
        assert server.attributes["http.response.status_code"] == status


@pytest.mark.parametrize(("ours", "convention"), [
    ("openai", "openai"), ("azure", "azure.ai.openai"), ("anthropic", "anthropic"),
    ("gemini", "gcp.gemini"), ("vertex", "gcp.vertex_ai"), ("bedrock", "aws.bedrock"),
    ("cohere", "cohere"), ("mistral", "mistral_ai"), ("openai-compatible", "openai-compatible"),
])
def test_provider_names_follow_the_conventions(ours: str, convention: str) -> None:
    assert tracing.provider_name(ours) == convention


def test_operation_names_and_server_addresses() -> None:
    assert [tracing.operation_name(op) for op in ("chat", "embeddings", "completions")] == [
        "chat", "embeddings", "text_completion"]
    assert tracing.server_address("http://127.0.0.1:9001/v1") == ("127.0.0.1", 9001)
    assert tracing.server_address("https://example.com") == ("example.com", 443)
    assert tracing.server_address("http://[::1]:bad/") == (None, None)


def test_shutdown_flushes_once() -> None:
    world = World(export_interval_seconds=60)
    span = world.tracing.tracer.start_span("x")
    span.end()
    world.tracing.shutdown()
    world.tracing.shutdown()
    assert [s.name for s in world.exporter.get_finished_spans()] == ["x"]


def test_nothing_of_the_sdk_is_loaded_when_tracing_is_off() -> None:
    """Free when off: building every chain of a gateway without tracing loads neither the
    OpenTelemetry SDK nor the exporter nor our trace modules (a fresh interpreter)."""
    code = """
import sys
from switchboard.app import create_app
from switchboard.settings.loader import validate
settings = validate({"providers": [{"name": "p", "type": "openai", "api_base": "http://127.0.0.1:9/v1"}],
                     "models": [{"name": "m", "provider": "p", "model": "m"}],
                     "auth": {"master_key": "sk-abcdefgh12345678"}}, "t", env={})
create_app(settings)
print(sorted(m for m in sys.modules if m.startswith(
    ("opentelemetry.sdk", "opentelemetry.exporter", "switchboard.observability.tracing",
     "switchboard.pipeline.trace"))))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_usage_counts_a_span_cannot_carry_are_left_off() -> None:
    """A passed-through usage is as the upstream wrote it: a count past a signed 64-bit integer,
    a negative one, a float or a boolean is no span attribute (the exporter would refuse it)."""
    assert tracing.usage_attributes({"prompt_tokens": 12, "completion_tokens": 3}) == {
        "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 3}
    for bad in (1 << 64, -1, 1.5, True, "12", None):
        assert tracing.usage_attributes({"prompt_tokens": bad, "completion_tokens": bad}) == {}, bad
