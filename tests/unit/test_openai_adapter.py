"""The OpenAI adapter: request building, stream decoding and error mapping, with ugly cases."""

from __future__ import annotations

import orjson
import pytest

from switchboard.config.schema import Timeouts
from switchboard.errors import GatewayError, UpstreamAuthFailed, UpstreamBadGateway, UpstreamRateLimited
from switchboard.providers.openai import OpenAIAdapter, OpenAIOptions, OpenAIStreamDecoder
from switchboard.providers.target import Target

TARGET = Target("alias", "gpt-4o-mini", "up", "openai", "http://up/v1", OpenAIOptions(), Timeouts())
ADAPTER = OpenAIAdapter()


def event(obj: object) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def chunk(content: str | None = None, finish: str | None = None) -> dict[str, object]:
    delta = {"content": content} if content is not None else {}
    return {"id": "c", "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": delta, "finish_reason": finish}]}


def test_request_replaces_model_asks_for_usage_and_keeps_unknown_fields() -> None:
    req = {"model": "alias", "messages": [], "stream": True, "drop_params": True, "vendor_x": 1}
    up = ADAPTER.chat_request(req, TARGET)
    body = orjson.loads(up.body or b"")
    assert up.url == "http://up/v1/chat/completions" and up.stream
    assert body["model"] == "gpt-4o-mini"
    assert body["stream_options"] == {"include_usage": True}
    assert body["vendor_x"] == 1 and "drop_params" not in body
    assert req["model"] == "alias"  # the caller's request is not modified


def test_stream_split_across_reads_and_done() -> None:
    dec = OpenAIStreamDecoder(TARGET)
    raw = event(chunk("Hel")) + event(chunk("lo", "stop")) + b"data: [DONE]\n\n"
    out = dec.feed(raw[:7]) + dec.feed(raw[7:40]) + dec.feed(raw[40:])
    assert [c["choices"][0]["delta"].get("content") for c in out] == ["Hel", "lo"]
    assert dec.close() == []


def test_stream_without_done_but_finished_is_complete() -> None:
    dec = OpenAIStreamDecoder(TARGET)
    assert len(dec.feed(event(chunk("a")) + event(chunk(None, "stop")))) == 2
    assert dec.close() == []


def test_stream_cut_short_is_an_error() -> None:
    dec = OpenAIStreamDecoder(TARGET)
    assert len(dec.feed(event(chunk("a")))) == 1
    with pytest.raises(UpstreamBadGateway, match="before it was complete"):
        dec.close()


def test_stream_of_done_alone_is_an_error_not_an_empty_answer() -> None:
    dec = OpenAIStreamDecoder(TARGET)
    assert dec.feed(b": keep-alive\n\n") == []
    with pytest.raises(UpstreamBadGateway, match="without sending any of the answer"):
        dec.feed(b"data: [DONE]\n\n")
    # [DONE] without its blank line, read at the end
    dec = OpenAIStreamDecoder(TARGET)
    assert dec.feed(b"data: [DONE]") == []
    with pytest.raises(UpstreamBadGateway, match="without sending any of the answer"):
        dec.close()


def test_done_in_a_later_read_than_the_chunks_is_complete() -> None:
    """A chunk in one read, [DONE] alone in the next: an answer (even with no finish_reason)."""
    dec = OpenAIStreamDecoder(TARGET)
    assert len(dec.feed(event(chunk("a")))) == 1
    assert dec.feed(b"data: [DONE]\n\n") == []
    assert dec.close() == []


def test_error_event_after_chunks_in_one_read_keeps_the_chunks() -> None:
    dec = OpenAIStreamDecoder(TARGET)
    out = dec.feed(event(chunk("a")) + event(chunk("b")) + event({"error": {"message": "boom"}}))
    assert len(out) == 2
    with pytest.raises(UpstreamBadGateway, match="boom"):
        dec.feed(b"")


def test_invalid_json_event_is_502() -> None:
    with pytest.raises(UpstreamBadGateway, match="invalid stream event"):
        OpenAIStreamDecoder(TARGET).feed(b"data: {not json\n\n")


def test_stream_events_of_every_shape_read_as_their_text() -> None:
    # The usual one-line event is parsed from the read's bytes; the others as the SSE text says.
    dec = OpenAIStreamDecoder(TARGET)
    multi = b'data: {"id": "c", "choices":\ndata: [{"index": 0, "delta": {"content": "m"}}]}\n\n'
    named = b"event: chunk\r\n" + event(chunk("n")).replace(b"\n", b"\r\n")
    spaced = b'data:{"id":"c","choices":[{"index":0,"delta":{"content":"s"}}]}\n\n'
    null_error = b'data: {"error": null, "choices": [{"index": 0, "delta": {"content": "e"}}]}\n\n'
    comment = b": keep-alive\n\n"
    out = dec.feed(multi + named + comment + spaced + null_error)
    assert [c["choices"][0]["delta"]["content"] for c in out] == ["m", "n", "s", "e"]


def test_stream_event_with_invalid_utf8_is_read_with_it_replaced() -> None:
    dec = OpenAIStreamDecoder(TARGET)
    out = dec.feed(b'data: {"choices": [{"index": 0, "delta": {"content": "a\xffb"}}]}\n\n')
    assert out[0]["choices"][0]["delta"]["content"] == "a\ufffdb"


def test_stream_last_event_without_its_blank_line_is_read_at_the_end() -> None:
    dec = OpenAIStreamDecoder(TARGET)
    assert dec.feed(event(chunk("a")) + event(chunk(None, "stop"))[:-2]) != []
    assert [c["choices"][0]["finish_reason"] for c in dec.close()] == ["stop"]


def test_nothing_after_done_is_read() -> None:
    dec = OpenAIStreamDecoder(TARGET)
    out = dec.feed(event(chunk("a", "stop")) + b"data: [DONE]\n\n" + b"data: {not json\n\n")
    assert len(out) == 1 and dec.feed(event(chunk("late"))) == []
    assert dec.close() == []


@pytest.mark.parametrize(("status", "body", "kind", "client_status"), [
    (429, b'{"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}',
     UpstreamRateLimited, 429),
    (401, b'{"error": {"message": "Incorrect API key provided: sk-abc"}}', UpstreamAuthFailed, 502),
    (500, b"<html><body>Internal Server Error</body></html>", UpstreamBadGateway, 502),
    (400, b'{"error": {"message": "too long", "code": "context_length_exceeded", "param": "messages"}}',
     GatewayError, 400),
])
def test_error_mapping(status: int, body: bytes, kind: type[GatewayError], client_status: int) -> None:
    err = ADAPTER.error(status, {"retry-after": "3"}, body, TARGET)
    assert isinstance(err, kind) and err.status == client_status
    assert "sk-abc" not in err.message
    if status == 429:
        assert err.headers == {"retry-after": "3", "x-ratelimit-scope": "upstream"}
    if status == 400:
        assert err.code == "context_length_exceeded" and err.param == "messages"


def test_invalid_response_body_is_502() -> None:
    with pytest.raises(UpstreamBadGateway):
        ADAPTER.chat_response(b"[]", TARGET)


def test_embeddings_do_not_send_the_retrieval_hints() -> None:
    # task_type and title are Google's hints: OpenAI's API has none (and refuses unknown fields).
    request = {"model": "alias", "input": ["a"], "task_type": "RETRIEVAL_DOCUMENT", "title": "T", "user": "u"}
    up = ADAPTER.embeddings_request(request, TARGET)
    assert orjson.loads(up.body or b"") == {"model": "gpt-4o-mini", "input": ["a"], "user": "u"}
