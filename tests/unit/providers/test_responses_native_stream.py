"""The Responses API relayed to an OpenAI upstream as it came (openai_responses.NativeDecoder):
members of the wrong JSON type in its events are relayed, not read, and never a 500."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchboard.config.schema import Timeouts
from switchboard.errors import UpstreamBadGateway
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


@pytest.mark.parametrize("response", ["done", 5, ["x"]])
def test_a_final_response_of_the_wrong_type_has_no_usage(response: Any) -> None:
    stream = decoder()
    for kind in ("response.completed", "response.failed"):
        [chunk] = stream.feed(sse({"type": kind, "response": response}))
        assert chunk == {"native": {"type": kind, "response": response}}
    assert stream.close() == []


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
