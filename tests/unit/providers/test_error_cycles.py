"""A provider's error leaves no reference cycle: a raised error's traceback holds the frames that
raised it, so an error kept by something those frames hold (the decoder, a local of the frame
that raises it) is a cycle per failed request, left for the cyclic garbage collector, whose
passes stall the event loop.

A stream decoder's deferred error: an error event read after good events in the same read is
raised on the next call (and on every call after it), so the chunks before it still reach the
client. Every decoder with such an error is fed one read of good events and an error; then it
is called twice (the first raises) or dropped unread (the client left), and nothing of it may
be left for the collector.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable

import orjson
import pytest

from switchboard.errors import GatewayError
from switchboard.providers.anthropic.native import NativeStream
from switchboard.providers.base import StreamDecoder
from switchboard.providers.cohere.response import chat_response
from switchboard.providers.openai import OpenAIStreamDecoder
from switchboard.providers.openai_responses import NativeDecoder
from tests.unit import (
    test_anthropic_native,
    test_anthropic_stream,
    test_bedrock_stream,
    test_cohere_stream,
    test_gemini_stream,
    test_mistral_stream,
    test_openai_adapter,
)

# Each decoder, and one read holding good events then an error event.
Case = Callable[[], tuple[StreamDecoder, bytes]]


def _openai() -> tuple[StreamDecoder, bytes]:
    m = test_openai_adapter
    chunk = {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "a"}}]}
    return OpenAIStreamDecoder(m.TARGET), m.event(chunk) + m.event({"error": {"message": "boom"}})


def _openai_compatible() -> tuple[StreamDecoder, bytes]:
    m = test_mistral_stream
    error = {"object": "error", "message": "overloaded", "type": "internal_server_error"}
    read = m.event([m.delta({"content": "Hel"})]) + b"data: " + orjson.dumps(error) + b"\n\n"
    return m.SPEC.adapter.chat_stream({}, m.TARGET), read


def _gemini() -> tuple[StreamDecoder, bytes]:
    m = test_gemini_stream
    error = {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}
    return m.SPEC.adapter.chat_stream({}, m.TARGET), m.sse(m.text_event("a"), error)


def _cohere() -> tuple[StreamDecoder, bytes]:
    m = test_cohere_stream
    read = m.start() + m.text(0, "Hel") + m.end("ERROR", usage=None, error="internal failure")
    return m.SPEC.adapter.chat_stream({}, m.TARGET), read


def _bedrock() -> tuple[StreamDecoder, bytes]:
    m = test_bedrock_stream
    good = m.TEXT_STREAM[: m.TEXT_STREAM.index(m.event("contentBlockStop", {"contentBlockIndex": 0}))]
    return m.SPEC.adapter.chat_stream({}, m.TARGET), good + m.exception("throttlingException", "slow down")


def _anthropic() -> tuple[StreamDecoder, bytes]:
    m = test_anthropic_stream
    read = (m.start() + m.block_start(0, {"type": "text", "text": ""}) + m.text_delta(0, "Hel")
            + m.ev({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    return m.SPEC.adapter.chat_stream({}, m.TARGET), read


def _anthropic_native() -> tuple[StreamDecoder, bytes]:
    m = test_anthropic_native
    error = m.sse("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})
    return NativeStream(m.target()), m.START + m.BLOCK[0] + error


def _responses_native() -> tuple[StreamDecoder, bytes]:
    m = test_openai_adapter

    def event(obj: object) -> bytes:
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    read = (event({"type": "response.output_text.delta", "delta": "a"})
            + event({"type": "error", "message": "boom"}))
    return NativeDecoder(m.TARGET, lambda body: body), read


CASES: dict[str, Case] = {
    "openai": _openai, "openai-compatible": _openai_compatible, "gemini": _gemini, "cohere": _cohere,
    "bedrock": _bedrock, "anthropic": _anthropic, "anthropic-native": _anthropic_native,
    "responses-native": _responses_native,
}


def _left(garbage: list[object], kind: type) -> list[str]:
    start = len(gc.garbage)
    gc.collect()
    garbage.extend(gc.garbage[start:])
    return [type(o).__name__ for o in garbage if isinstance(o, kind | GatewayError)]


@pytest.mark.parametrize("then", ["raised", "dropped"])
@pytest.mark.parametrize("name", CASES)
def test_a_deferred_error_leaves_no_cycle(garbage: list[object], name: str, then: str) -> None:
    decoder, read = CASES[name]()
    kind = type(decoder)
    assert decoder.feed(read)  # the good events first
    if then == "raised":
        with pytest.raises(GatewayError):
            decoder.feed(b"")
        with contextlib.suppress(GatewayError):  # raised again by most (Cohere's raises it once)
            decoder.close()
    del decoder
    assert _left(garbage, kind) == []


def test_a_failed_cohere_answer_leaves_no_cycle(garbage: list[object]) -> None:
    body = orjson.dumps({"message": {"role": "assistant", "content": []}, "finish_reason": "ERROR",
                         "error": "internal failure"})
    with pytest.raises(GatewayError):
        chat_response(body, test_cohere_stream.TARGET)
    assert _left(garbage, GatewayError) == []
