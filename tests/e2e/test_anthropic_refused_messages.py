"""A refusal of a message of a translated ``/v1/messages`` request, through the ``anthropic`` SDK:
named by the caller's Messages field, not by the chat message the adapter or upstream was given
(which counts the system prompt first and each tool_result block as a message of its own)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from tests.servers import MASTER_KEY, Gateway, Mock, start_gateway

WEATHER = {"name": "get_weather", "description": "Weather",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
# The chat messages of TOOL_TURN with a system prompt: system, user, assistant (two calls), a tool
# message per tool_result block (3, 4), the user message of the rest of that turn (5).
TOOL_TURN: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "Rome"}},
    ]},
    {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_a", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "toolu_b", "content": "rain"},
        {"type": "text", "text": "Compare them."},
    ]},
]
URL_DOCUMENT = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}


def _refusing(mock: Mock, name: str, param: str) -> dict[str, Any]:
    """An OpenAI provider whose upstream answers every chat request 400 naming ``param``."""
    return {"name": name, "type": "openai", "api_base": f"{mock.url}/v1", "api_key": "${UPSTREAM_KEY}",
            "headers": {"x-mock-status": "400", "x-mock-error-param": param}}


@pytest.fixture(scope="module")
def client(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[anthropic.Anthropic]:
    providers = [
        {"name": "up-bedrock", "type": "bedrock", "api_base": mock_upstream.url,
         "aws_access_key_id": "AKIDTEST", "aws_secret_access_key": "${UPSTREAM_KEY}",
         "aws_region": "us-east-1"},
        {"name": "up-gemini", "type": "gemini", "api_base": mock_upstream.url, "api_key": "${UPSTREAM_KEY}"},
        # Header values of 20 characters or more are kept out of upstream errors (they may be
        # credentials): the names are short.
        _refusing(mock_upstream, "up-first-result", "messages[3]"),
        _refusing(mock_upstream, "up-second-result", "messages[4].content"),
    ]
    models = [
        {"name": "via-bedrock", "provider": "up-bedrock", "model": "anthropic.claude-3-haiku-20240307-v1:0"},
        {"name": "via-gemini", "provider": "up-gemini", "model": "gemini-2.0-flash"},
        {"name": "first-result", "provider": "up-first-result", "model": "gpt-4o-mini"},
        {"name": "second-result", "provider": "up-second-result", "model": "gpt-4o-mini"},
    ]
    config = {"providers": providers, "models": models, "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"}}
    gw: Gateway = start_gateway(config, tmp_path_factory.mktemp("anthropic-refused"))
    yield anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    gw.process.stop()


def _refusal(client: anthropic.Anthropic, model: str, messages: list[dict[str, Any]]) -> str:
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model=model, max_tokens=64, system="Be brief.", messages=messages,
                               tools=[WEATHER])  # type: ignore[arg-type]
    return str(err.value.message)


def test_a_refused_message_is_named_by_its_index_without_the_system_prompt(
        client: anthropic.Anthropic) -> None:
    # Converse opens with a user turn: the assistant message opening the conversation is chat
    # messages[1] (the system prompt is [0]), the caller's messages.0.
    message = _refusal(client, "via-bedrock", [{"role": "assistant", "content": "Hello."},
                                               {"role": "user", "content": "Hi"}])
    assert "'messages.0' would open the conversation with an assistant turn" in message
    assert "messages[" not in message


def test_a_refused_block_is_named_by_its_anthropic_path(client: anthropic.Anthropic) -> None:
    # Gemini fetches no documents: the URL document is chat messages[1].content[1], the caller's
    # second block of its first message.
    message = _refusal(client, "via-gemini", [{"role": "user", "content": [
        {"type": "text", "text": "Read this."},
        URL_DOCUMENT,
    ]}])
    assert message.startswith("400 messages.0.content.1.source.type: document source type 'url'"), message
    assert "messages[" not in message


def test_a_turn_of_tool_results_names_each_refused_message(client: anthropic.Anthropic) -> None:
    # The two tool_result blocks are chat messages 3 and 4, the rest of their turn message 5 (a
    # document after the text its part 1): each named by the caller's message 2 and its own block.
    # An upstream's 400 whose text does not say the field starts with it, as Anthropic's do.
    given = {"first-result": "messages.2.content.0", "second-result": "messages.2.content.1.content"}
    for model, param in given.items():
        assert _refusal(client, model, TOOL_TURN).startswith(f"400 {param}: mock: injected error 400")
    last = {**TOOL_TURN[2], "content": [*TOOL_TURN[2]["content"], URL_DOCUMENT]}
    message = _refusal(client, "via-gemini", [*TOOL_TURN[:2], last])
    assert message.startswith("400 messages.2.content.3.source.type: document source type 'url'"), message
