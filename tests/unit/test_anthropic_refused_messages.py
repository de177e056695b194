"""How a refusal's chat ``param`` is named for a ``/v1/messages`` caller (http/anthropic/sources.py),
for the names the end-to-end tests cannot make an upstream give (tests/e2e/
test_anthropic_refused_messages.py drives the refusals themselves)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchboard.http.anthropic.request import messages_request
from switchboard.http.anthropic.sources import message_param

BODY: dict[str, Any] = {
    "model": "m", "max_tokens": 10,
    "system": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
    "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "calling"},
            {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
            {"type": "tool_use", "id": "t2", "name": "f", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "x"},
            {"type": "tool_result", "tool_use_id": "t2", "is_error": True, "content": [
                {"type": "text", "text": "y"},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/i.png"}},
            ]},
            {"type": "text", "text": "go on"},
        ]},
    ],
}


@pytest.mark.parametrize(("param", "named"), [
    ("messages[0].content[1].text", "system.1.text"),
    ("messages[0]", "system"),
    ("messages[1].content", "messages.0.content"),
    ("messages[2].tool_calls[1].function.arguments", "messages.1.content.2.input"),
    ("messages[2].tool_calls[0].id", "messages.1.content.1.id"),
    ("messages[3].tool_call_id", "messages.2.content.0.tool_use_id"),
    ("messages[4].is_error", "messages.2.content.1.is_error"),
    # The user message after the tool messages: the result's image first, then the text.
    ("messages[5].content[0].image_url.url", "messages.2.content.1.content.1.source"),
    ("messages[5].content[1].text", "messages.2.content.2.text"),
    ("messages[6]", None),  # a message the request did not come with (the tool loop's)
    # An OpenAI-type upstream's forms: OpenAI's own, vLLM's (its validation error's location).
    ("messages.[1].content", "messages.0.content"),
    ("messages.[2].tool_calls.[1].function.arguments", "messages.1.content.2.input"),
    ("messages.[5].content.[0].image_url.url", "messages.2.content.1.content.1.source"),
    ("messages.3.tool_call_id", "messages.2.content.0.tool_use_id"),
    ("messages.5.content.1.text", "messages.2.content.2.text"),
    ("messages.6", None),
    ("tools[0].function.name", None),
])
def test_a_chat_param_is_named_by_the_block_it_came_from(param: str, named: str | None) -> None:
    sources: list[Any] = []
    request = messages_request(orjson.dumps(BODY), None, sources)
    assert [m["role"] for m in request["messages"]] == ["system", "user", "assistant", "tool", "tool", "user"]
    # The upstream forms are read in an upstream's error only: the gateway's own refusals name a
    # message in the chat form, or already as the Messages API's caller spells it.
    upstream = not param.startswith("messages[")
    assert message_param(param, request["messages"], sources, upstream=upstream) == named
    if upstream:
        assert message_param(param, request["messages"], sources) is None
