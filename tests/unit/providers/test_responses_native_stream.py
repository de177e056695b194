"""The Responses API relayed to an OpenAI upstream as it came (openai_responses.NativeDecoder):
members of the wrong JSON type in its events are relayed, not read, and never a 500."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchboard.config.schema import Timeouts
from switchboard.errors import GatewayError, UpstreamBadGateway
from switchboard.providers import openai
from switchboard.providers.openai_responses import NativeDecoder
from switchboard.providers.target import Target

TARGET = Target("m", "gpt-x", "up", "openai", "http://up/v1", openai.SPEC.options(), Timeouts())
USAGE = {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}


def sse(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


def decoder() -> NativeDecoder:
    return NativeDecoder(TARGET, lambda text: text)


@pytest.mark.parametrize("kind", [["response.created"], {"type": "x"}, 5])
def test_an_event_type_of_the_wrong_type_is_relayed_not_read(kind: Any) -> None:
    stream = decoder()
    odd = {"type": kind, "delta": "x"}
    chunks = stream.feed(sse(odd) + sse({"type": "response.completed", "response": {"usage": USAGE}}))
    chunks += stream.close()
    assert chunks[0] == {"native": odd}
    assert [NativeDecoder.says_nothing(c) for c in chunks] == [False, False]
    assert chunks[1]["usage"]["total_tokens"] == 5


DELTA = {"type": "response.output_text.delta", "delta": "Hi"}


@pytest.mark.parametrize("response", ["done", 5, ["x"]])
def test_a_final_response_of_the_wrong_type_has_no_usage(response: Any) -> None:
    stream = decoder()
    [chunk] = stream.feed(sse({"type": "response.completed", "response": response}))
    assert chunk == {"native": {"type": "response.completed", "response": response}}
    assert stream.close() == []
    stream = decoder()  # a failed response, after some output: relayed, then the stream fails
    chunks = stream.feed(sse(DELTA) + sse({"type": "response.failed", "response": response}))
    assert chunks[1] == {"native": {"type": "response.failed", "response": response}}
    with pytest.raises(UpstreamBadGateway, match=r"failed mid-stream: error$"):
        stream.close()


def test_a_failed_response_after_output_is_relayed_with_its_usage_then_the_stream_fails() -> None:
    stream = decoder()
    failed = {"type": "response.failed", "response": {
        "status": "failed", "usage": USAGE, "error": {"code": "server_error", "message": "overloaded"}}}
    later = {"type": "response.output_text.delta", "delta": "after the end"}
    chunks = stream.feed(sse(DELTA) + sse(failed) + sse(later))
    assert [c["native"] for c in chunks] == [DELTA, failed]  # nothing after it
    assert chunks[1]["usage"]["total_tokens"] == 5
    with pytest.raises(UpstreamBadGateway, match=r"failed mid-stream: overloaded$"):
        stream.close()


@pytest.mark.parametrize("together", [True, False])
def test_a_failed_response_before_any_output_is_not_relayed(together: bool) -> None:
    # Only the opening events came first: the failure is raised as an error event's is, so the
    # stream is retried or answered as an error status (the client has nothing yet).
    stream = decoder()
    opening = sse({"type": "response.created", "response": {}}) + sse({"type": "response.in_progress"})
    failed = sse({"type": "response.failed", "response": {"error": {"message": "overloaded"}}})
    if together:
        chunks = stream.feed(opening + failed)
        assert all(NativeDecoder.says_nothing(c) for c in chunks) and len(chunks) == 2
        with pytest.raises(UpstreamBadGateway, match=r"failed mid-stream: overloaded$"):
            stream.close()
    else:
        assert len(stream.feed(opening)) == 2
        with pytest.raises(UpstreamBadGateway, match=r"failed mid-stream: overloaded$"):
            stream.feed(failed)


@pytest.mark.parametrize(("event", "says"), [
    ({"type": "error", "error": "overloaded"}, "overloaded"),
    ({"type": "error", "error": {"message": "overloaded"}}, "overloaded"),
    ({"type": "error", "error": 5}, "error"),
    ({"type": "error", "error": {"message": {"text": "x"}}}, "error"),  # not quoted as Python writes it
    ({"type": "error", "message": ["x"], "error": {"message": "overloaded"}}, "overloaded"),
    ({"type": "error"}, "error"),
])
def test_an_error_event_of_any_shape_is_a_502(event: dict[str, Any], says: str) -> None:
    with pytest.raises(UpstreamBadGateway, match=f"failed mid-stream: {says}"):
        decoder().feed(sse(event))


@pytest.mark.parametrize(("event", "status", "code"), [
    ({"type": "error", "code": "rate_limit_exceeded", "message": "slow down"}, 429, "rate_limit_exceeded"),
    ({"type": "error", "code": "invalid_prompt", "message": "no"}, 400, "invalid_prompt"),
    ({"type": "error", "error": {"code": "vector_store_timeout", "message": "slow"}}, 504, None),
    ({"type": "error", "code": ["x"], "message": "odd"}, 502, None),
    ({"type": "error", "code": "server_error", "message": "overloaded"}, 502, None),
])
def test_an_error_event_is_mapped_by_its_code(event: dict[str, Any], status: int, code: str | None) -> None:
    with pytest.raises(GatewayError) as err:
        decoder().feed(sse(event))
    assert err.value.status == status and "failed mid-stream" in err.value.message
    if code is not None:
        assert err.value.code == code
