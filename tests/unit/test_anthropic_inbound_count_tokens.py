"""The offline input-token estimate behind POST /v1/messages/count_tokens."""

from __future__ import annotations

import orjson

from switchboard.http.anthropic.request import count_tokens_request
from switchboard.pipeline.count_tokens import (
    CHARS_PER_TOKEN,
    TOKENS_PER_IMAGE,
    TOKENS_PER_MESSAGE,
    estimate_tokens,
)


def count(body: dict[str, object]) -> int:
    return estimate_tokens(count_tokens_request(orjson.dumps({"model": "m", **body})))


def test_text_is_four_characters_per_token_plus_message_overhead() -> None:
    text = "x" * 400
    assert (
        count({"messages": [{"role": "user", "content": text}]})
        == 400 // CHARS_PER_TOKEN + TOKENS_PER_MESSAGE
    )


def test_rounds_up() -> None:
    assert count({"messages": [{"role": "user", "content": "hello"}]}) == 2 + TOKENS_PER_MESSAGE


def test_system_tools_and_tool_traffic_count() -> None:
    base = count({"messages": [{"role": "user", "content": "hi"}]})
    with_system = count({"system": "s" * 80, "messages": [{"role": "user", "content": "hi"}]})
    assert with_system == 1 + 20 + 2 * TOKENS_PER_MESSAGE
    tool = {"name": "get_weather", "description": "d" * 100, "input_schema": {"type": "object"}}
    assert count({"tools": [tool], "messages": [{"role": "user", "content": "hi"}]}) > base + 25
    round_trip = count(
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"q": "x" * 40}}],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t", "content": "y" * 40}],
                },
            ]
        }
    )
    assert round_trip > base + 20


def test_images_have_a_flat_cost() -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    n = count({"messages": [{"role": "user", "content": [image, image, {"type": "text", "text": "what"}]}]})
    assert n == 2 * TOKENS_PER_IMAGE + 1 + TOKENS_PER_MESSAGE
