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


def test_error_event_after_chunks_in_one_read_keeps_the_chunks() -> None:
    dec = OpenAIStreamDecoder(TARGET)
    out = dec.feed(event(chunk("a")) + event(chunk("b")) + event({"error": {"message": "boom"}}))
    assert len(out) == 2
    with pytest.raises(UpstreamBadGateway, match="boom"):
        dec.feed(b"")


def test_invalid_json_event_is_502() -> None:
    with pytest.raises(UpstreamBadGateway, match="invalid stream event"):
        OpenAIStreamDecoder(TARGET).feed(b"data: {not json\n\n")


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
        assert err.headers == {"retry-after": "3"}
    if status == 400:
        assert err.code == "context_length_exceeded" and err.param == "messages"


def test_invalid_response_body_is_502() -> None:
    with pytest.raises(UpstreamBadGateway):
        ADAPTER.chat_response(b"[]", TARGET)
