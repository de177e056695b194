"""Request fields of the current SDKs mean the same on every provider: passed where the provider
has them, translated where it has an exact equivalent, refused by name otherwise (dropped only
under ``drop_params``), never dropped in silence.

- Chat Completions ``moderation``, ``prompt_cache_options`` and ``prompt_cache_retention`` (openai
  SDK): passed to an OpenAI upstream, refused by Anthropic and Gemini; a content part's
  ``prompt_cache_breakpoint``: passed to OpenAI, not sent to Gemini (implicit caching), refused by
  Anthropic (its breakpoints do not keep OpenAI's lifetimes).
- Messages ``output_config.effort`` (anthropic SDK): as sent to an ``anthropic`` upstream (the
  pass-through), ``reasoning_effort`` elsewhere; ``service_tier`` and top-level ``cache_control``
  (cost hints) reach an ``anthropic`` upstream and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, start_gateway

FIELDS: dict[str, Any] = {
    "moderation": {"model": "omni-moderation-latest", "policy": {"output": {"mode": "block"}}},
    "prompt_cache_options": {"mode": "explicit", "ttl": "30m"},
    "prompt_cache_retention": "24h",
}
TRANSLATED = ["via-claude", "via-gemini"]


@pytest.fixture(scope="module")
def gw(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    key = "${UPSTREAM_KEY}"
    config = {
        "providers": [
            {"name": "up-openai", "type": "openai", "api_base": f"{mock_upstream.url}/v1", "api_key": key},
            {"name": "up-anthropic", "type": "anthropic", "api_base": mock_upstream.url, "api_key": key},
            {"name": "up-gemini", "type": "gemini", "api_base": mock_upstream.url, "api_key": key},
            {"name": "up-cohere", "type": "cohere", "api_base": mock_upstream.url, "api_key": key},
        ],
        "models": [
            {"name": "via-openai", "provider": "up-openai", "model": "gpt-5-mini"},
            {"name": "via-claude", "provider": "up-anthropic", "model": "claude-sonnet-4-5"},
            {"name": "via-gemini", "provider": "up-gemini", "model": "gemini-2.5-flash"},
            {"name": "via-cohere", "provider": "up-cohere", "model": "command-a-03-2025"},
        ],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
    }
    gateway = start_gateway(config, tmp_path_factory.mktemp("request-fields"))
    yield gateway
    gateway.process.stop()


@pytest.fixture
def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=30)


@pytest.fixture
def claude(gw: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def chat(client: openai.OpenAI, model: str, marker: str, **fields: Any) -> Any:
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": f"hi mock:capture={marker}"}], **fields
    )


def sent(mock: Mock, marker: str) -> dict[str, Any]:
    records = captured(mock, marker)
    assert len(records) == 1, records
    body: dict[str, Any] = records[0]["body"]
    return body


def nothing_sent(mock: Mock, marker: str) -> bool:
    return captured(mock, marker, count=1, timeout=0.5) == []


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_openai_gets_the_field_as_sent(client: openai.OpenAI, mock_upstream: Mock, field: str) -> None:
    marker = new_marker()
    reply = chat(client, "via-openai", marker, **{field: FIELDS[field]})
    assert reply.choices[0].message.content
    assert sent(mock_upstream, marker)[field] == FIELDS[field]


@pytest.mark.parametrize("model", TRANSLATED)
@pytest.mark.parametrize("field", sorted(FIELDS))
def test_translated_providers_refuse_the_field_by_name(
    client: openai.OpenAI, mock_upstream: Mock, field: str, model: str
) -> None:
    marker = new_marker()
    with pytest.raises(openai.BadRequestError) as info:
        chat(client, model, marker, **{field: FIELDS[field]})
    assert info.value.status_code == 400
    error = info.value.body
    assert isinstance(error, dict) and error["param"] == field, error
    assert f"parameter '{field}' is not supported" in error["message"] and "drop_params" in error["message"]
    assert nothing_sent(mock_upstream, marker)


@pytest.mark.parametrize("model", TRANSLATED)
def test_drop_params_removes_the_fields(client: openai.OpenAI, mock_upstream: Mock, model: str) -> None:
    marker = new_marker()
    reply = chat(client, model, marker, **FIELDS, extra_body={"drop_params": True})
    assert reply.choices[0].message.content
    assert not set(FIELDS) & set(sent(mock_upstream, marker))


BREAKPOINT = {"mode": "explicit", "ttl": "30m"}


def with_breakpoint(marker: str) -> list[Any]:
    return [{"role": "user", "content": [{"type": "text", "text": f"hi mock:capture={marker}",
                                          "prompt_cache_breakpoint": BREAKPOINT}]}]


def test_openai_gets_a_prompt_cache_breakpoint_as_sent(client: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    client.chat.completions.create(model="via-openai", messages=with_breakpoint(marker))
    assert sent(mock_upstream, marker)["messages"][0]["content"][0]["prompt_cache_breakpoint"] == BREAKPOINT


def test_gemini_caches_by_itself_so_the_breakpoint_is_not_sent(
    client: openai.OpenAI, mock_upstream: Mock
) -> None:
    marker = new_marker()
    reply = client.chat.completions.create(model="via-gemini", messages=with_breakpoint(marker))
    assert reply.choices[0].message.content
    assert "prompt_cache_breakpoint" not in str(sent(mock_upstream, marker))


def test_anthropic_refuses_a_breakpoint_it_cannot_keep(client: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="via-claude", messages=with_breakpoint(marker))
    assert "prompt_cache_breakpoint" in info.value.message
    assert nothing_sent(mock_upstream, marker)


def ask_claude(claude: anthropic.Anthropic, model: str, marker: str, **fields: Any) -> Any:
    messages = [{"role": "user", "content": f"hi mock:capture={marker}"}]
    return claude.messages.create(model=model, max_tokens=64, messages=messages, **fields)


def test_effort_and_cost_hints_reach_anthropic_as_sent(
    claude: anthropic.Anthropic, mock_upstream: Mock
) -> None:
    marker = new_marker()
    reply = ask_claude(claude, "via-claude", marker, output_config={"effort": "low"}, service_tier="auto",
                       cache_control={"type": "ephemeral"})
    assert reply.content
    body = sent(mock_upstream, marker)
    assert body["output_config"] == {"effort": "low"}
    assert body["service_tier"] == "auto" and body["cache_control"] == {"type": "ephemeral"}


def test_effort_becomes_reasoning_effort_on_openai(claude: anthropic.Anthropic, mock_upstream: Mock) -> None:
    marker = new_marker()
    ask_claude(claude, "via-openai", marker, output_config={"effort": "low"}, service_tier="auto",
               cache_control={"type": "ephemeral"})
    body = sent(mock_upstream, marker)
    assert body["reasoning_effort"] == "low"
    # Cost hints of Anthropic's own (priority capacity, automatic caching): not sent elsewhere.
    assert "service_tier" not in body and "cache_control" not in body and "output_config" not in body


def test_effort_becomes_gemini_thinking(claude: anthropic.Anthropic, mock_upstream: Mock) -> None:
    marker = new_marker()
    ask_claude(claude, "via-gemini", marker, output_config={"effort": "medium"})
    config = sent(mock_upstream, marker)["generationConfig"]
    assert config["thinkingConfig"] == {"thinkingBudget": 8192, "includeThoughts": True}


def test_effort_high_is_the_default_everywhere(claude: anthropic.Anthropic, mock_upstream: Mock) -> None:
    marker = new_marker()
    ask_claude(claude, "via-openai", marker, output_config={"effort": "high"})
    assert "reasoning_effort" not in sent(mock_upstream, marker)


def test_an_effort_above_gemini_s_highest_is_its_highest(
    claude: anthropic.Anthropic, mock_upstream: Mock
) -> None:
    marker = new_marker()
    ask_claude(claude, "via-gemini", marker, output_config={"effort": "max"})
    config = sent(mock_upstream, marker)["generationConfig"]
    assert config["thinkingConfig"] == {"thinkingBudget": 24576, "includeThoughts": True}


def test_an_effort_the_provider_lacks_is_refused_by_its_name(
    claude: anthropic.Anthropic, mock_upstream: Mock
) -> None:
    marker = new_marker()
    with pytest.raises(anthropic.BadRequestError) as info:
        ask_claude(claude, "via-cohere", marker, output_config={"effort": "max"})
    body = info.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "invalid_request_error", body
    assert "output_config.effort" in body["error"]["message"], body
    assert nothing_sent(mock_upstream, marker)
