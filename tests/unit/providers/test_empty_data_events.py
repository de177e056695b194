"""An event whose data holds nothing (``data:`` or ``data: `` then a blank line): the event-stream
rules dispatch it, with empty data, but it carries nothing, so every decoder that reads its events'
data as JSON skips it and decodes the rest of the stream as if it had not come; an event whose
data is not JSON (``data: hello``) is still an invalid event (502)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from switchboard.config.schema import Timeouts
from switchboard.errors import UpstreamBadGateway
from switchboard.providers import anthropic, azure, cohere, gemini, mistral, openai, openai_compatible
from switchboard.providers.anthropic.native import NativeStream
from switchboard.providers.base import StreamDecoder
from switchboard.providers.openai_responses import NativeDecoder
from switchboard.providers.spec import ProviderSpec
from switchboard.providers.sse import empty_data
from switchboard.providers.target import Target


def target(spec: ProviderSpec) -> Target:
    return Target("m", "model-1", "up", spec.type, "http://up", spec.options(), Timeouts())


def chat(spec: ProviderSpec) -> Callable[[], StreamDecoder]:
    return lambda: spec.adapter.chat_stream({}, target(spec))


def data(obj: dict[str, Any], name: str | None = None) -> bytes:
    head = b"event: " + name.encode() + b"\n" if name else b""
    return head + b"data: " + orjson.dumps(obj) + b"\n\n"


def openai_chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return data({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "model-1",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


OPENAI = [
    openai_chunk({"role": "assistant", "content": "Hel"}), openai_chunk({"content": "lo"}),
    openai_chunk({}, "stop"),
    data({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "model-1", "choices": [],
          "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}),
    b"data: [DONE]\n\n",
]
ANTHROPIC = [data(event, event["type"]) for event in (
    {"type": "message_start", "message": {"id": "msg_1", "model": "model-1",
                                          "usage": {"input_tokens": 3, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}},
    {"type": "message_stop"},
)]
COHERE = [data(event, event["type"]) for event in (
    {"type": "message-start", "id": "r1"},
    {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Hel"}}}},
    {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "lo"}}}},
    {"type": "message-end", "delta": {"finish_reason": "COMPLETE",
                                      "usage": {"billed_units": {"input_tokens": 3, "output_tokens": 2}}}},
)]
GEMINI = [data({"responseId": "r1", "modelVersion": "model-1", "candidates": [
    {"index": 0, "content": {"role": "model", "parts": [{"text": text}]}, **finish}]})
    for text, finish in (("Hel", {}), ("lo", {"finishReason": "STOP"}))]
RESPONSES = [data(event, event["type"]) for event in (
    {"type": "response.created", "response": {"id": "resp_1"}},
    {"type": "response.output_text.delta", "delta": "Hello"},
    {"type": "response.completed", "response": {"id": "resp_1", "usage": {
        "input_tokens": 3, "output_tokens": 2, "total_tokens": 5}}},
)]

DECODERS: dict[str, tuple[Callable[[], StreamDecoder], list[bytes]]] = {
    "openai": (chat(openai.SPEC), OPENAI),
    "openai-compatible": (chat(openai_compatible.SPEC), OPENAI),
    "azure": (chat(azure.SPEC), OPENAI),
    "mistral": (chat(mistral.SPEC), OPENAI),
    "anthropic": (chat(anthropic.SPEC), ANTHROPIC),
    "anthropic-native": (lambda: NativeStream(target(anthropic.SPEC)), ANTHROPIC),
    "cohere": (chat(cohere.SPEC), COHERE),
    "gemini": (chat(gemini.SPEC), GEMINI),  # vertex streams through the same decoder
    "responses": (lambda: NativeDecoder(target(openai.SPEC), lambda text: text), RESPONSES),
}
# Events that carry nothing. (The same-dialect Anthropic relay reads only the events named in
# native._READ, or unnamed: any other it relays as sent, unparsed, whatever its data.)
EMPTY = [b"data: \n\n", b"data:\n\n", b"data:  \n\n", b"data:\ndata:\n\n", b"data: \r\n\r\n",
         b"event: message_start\ndata: \n\n", b"event: message_delta\ndata:\n\n"]


def decode(make: Callable[[], StreamDecoder], reads: list[bytes]) -> list[Any]:
    decoder = make()
    out = [chunk for read in reads for chunk in decoder.feed(read)]
    out += decoder.close()
    for chunk in out:  # the time the decoder was made at, which two decoders need not share
        chunk.pop("created", None)
    return out


def with_each(events: list[bytes], extra: bytes) -> list[bytes]:
    """``extra`` after every event of ``events`` (the first included)."""
    return [piece for event in events for piece in (event, extra)]


@pytest.mark.parametrize("empty", EMPTY)
@pytest.mark.parametrize("name", DECODERS)
def test_an_event_with_empty_data_is_skipped(name: str, empty: bytes) -> None:
    make, events = DECODERS[name]
    whole = decode(make, events)
    assert whole
    # Read event by event, and all in one read (the OpenAI decoder's fast path splits such a read
    # on its own), and with the empty event first and last.
    assert decode(make, with_each(events, empty)) == whole
    assert decode(make, [b"".join(with_each(events, empty))]) == whole
    assert decode(make, [empty, *events, empty]) == whole


@pytest.mark.parametrize("name", DECODERS)
def test_an_event_whose_data_is_not_json_is_still_invalid(name: str) -> None:
    make, events = DECODERS[name]
    decoder = make()
    for event in events[:1]:
        decoder.feed(event)
    with pytest.raises(UpstreamBadGateway, match="sent an invalid stream event"):
        decoder.feed(b"data: hello\n\n")


@pytest.mark.parametrize(("value", "empty"), [
    ("", True), (" ", True), ("\n", True), (" \t\n ", True), (b"", True), (b" \n", True),
    ("hello", False), ("{}", False), ("\u00a0", False), (b"0", False), (b"\xff", False),
])
def test_empty_data_is_data_of_spaces_only(value: str | bytes, empty: bool) -> None:
    assert empty_data(value) is empty
