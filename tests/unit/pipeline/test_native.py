"""The same-dialect pass-through in the pipeline: which attempts take it, that the ``native`` flag
survives the stages that wrap a stream, and that the Anthropic encoder writes a native reply as
it came."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from types import SimpleNamespace
from typing import Any

import orjson

from switchboard.context import Chunk, Reply, RequestContext, StreamReply
from switchboard.errors import UpstreamUnavailable
from switchboard.http import openai_api
from switchboard.http.anthropic.count_tokens import COUNT_TOKENS
from switchboard.http.anthropic.messages import MESSAGES
from switchboard.pipeline.attempts import AttemptStage
from switchboard.pipeline.chain import map_result
from switchboard.pipeline.native import AnthropicMessages, exchange_for
from switchboard.providers.base import WIRE
from tests.unit.pipeline.attempts_fakes import FakeRouter


def ctx(inbound: Any = MESSAGES) -> RequestContext:
    return RequestContext("rid-1", inbound.operation, inbound, {}, b"", 0.0)


def route(provider_type: str) -> Any:
    return SimpleNamespace(deployment="d", target=SimpleNamespace(name="g", provider_type=provider_type))


def test_only_anthropic_messages_to_an_anthropic_deployment_is_passed_through() -> None:
    assert isinstance(exchange_for(ctx(), route("anthropic")), AnthropicMessages)
    assert exchange_for(ctx(), route("bedrock")) is None  # Claude on Bedrock: translated
    assert exchange_for(ctx(), route("openai")) is None
    assert exchange_for(ctx(openai_api.CHAT), route("anthropic")) is None
    assert exchange_for(ctx(COUNT_TOKENS), route("anthropic")) is None


async def _batches(*batches: list[Chunk], fail: Exception | None = None) -> AsyncGenerator[list[Chunk], None]:
    for batch in batches:
        yield batch
    if fail is not None:
        raise fail


def test_stages_that_wrap_a_stream_keep_the_flag() -> None:
    async def run() -> None:
        native = StreamReply(_batches([{WIRE: b"event: ping\n\n"}]), native=True)
        wrapped = map_result(native, batch=lambda b: b)
        assert isinstance(wrapped, StreamReply) and wrapped.native
        stage = AttemptStage(FakeRouter({}))
        primed = await stage._primed(ctx(), route("anthropic"), wrapped, 0.0, None)
        assert primed.native
        assert [b async for b in primed.chunks] == [[{WIRE: b"event: ping\n\n"}]]
        plain = map_result(StreamReply(_batches([{"choices": []}])), batch=lambda b: b)
        assert isinstance(plain, StreamReply) and not plain.native
        await plain.aclose()

    asyncio.run(run())


def test_a_native_message_is_written_as_it_came() -> None:
    message = {
        "id": "msg_up",
        "type": "message",
        "model": "claude-x",
        "content": [],
        "usage": {"service_tier": "s"},
    }
    assert MESSAGES.encode(ctx(), message, native=True) == orjson.dumps(message)
    # The same body read as canonical would have been rebuilt: the flag is what keeps it whole.
    assert orjson.loads(MESSAGES.encode(ctx(), message))["id"] != "msg_up"
    assert Reply(message).native is False


def test_a_native_stream_is_relayed_and_a_failure_ends_it_with_an_error_event() -> None:
    events = [b"event: message_start\ndata: {}\n\n", b"event: ping\ndata: {}\n\n"]

    async def written(fail: Exception | None) -> bytes:
        source = _batches([{WIRE: events[0], "usage": {}}], [{WIRE: events[1]}], fail=fail)
        return b"".join([piece async for piece in MESSAGES.encode_stream(ctx(), source, native=True)])

    assert asyncio.run(written(None)) == b"".join(events)
    failed = asyncio.run(written(UpstreamUnavailable("provider 'anth' is overloaded")))
    assert failed.startswith(b"".join(events))
    name, data = failed[len(b"".join(events)) :].strip().split(b"\n")
    assert name == b"event: error"
    assert orjson.loads(data.removeprefix(b"data: "))["error"]["type"] == "overloaded_error"
