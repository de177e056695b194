"""Stop sequences beyond what the provider takes: OpenAI and Azure accept at most 4 ``stop``
entries and the Gemini API 5, so more from another inbound API (Anthropic's ``stop_sequences``,
the Gemini API's ``stopSequences``) is refused before anything is sent, naming the caller's own
parameter; a provider with a higher limit gets them all."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, start_gateway

FIVE = ["one", "two", "three", "four", "five"]


@pytest.fixture(scope="module")
def gw(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    key = "${UPSTREAM_KEY}"
    config = {
        "providers": [
            {"name": "up-openai", "type": "openai", "api_base": f"{mock_upstream.url}/v1", "api_key": key},
            {"name": "up-azure", "type": "azure", "api_base": mock_upstream.url, "api_key": key},
            {"name": "up-gemini", "type": "gemini", "api_base": mock_upstream.url, "api_key": key},
        ],
        "models": [
            {"name": "via-openai", "provider": "up-openai", "model": "gpt-4o-mini"},
            {"name": "via-azure", "provider": "up-azure", "model": "gpt-4o-mini"},
            {"name": "via-openai-dropping", "provider": "up-openai", "model": "gpt-4o-mini",
             "drop_params": True},
            {"name": "via-gemini", "provider": "up-gemini", "model": "gemini-2.5-flash"},
        ],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
    }
    gateway = start_gateway(config, tmp_path_factory.mktemp("stop-sequences"))
    yield gateway
    gateway.process.stop()


@pytest.fixture
def claude(gw: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def nothing_sent(mock: Mock, marker: str) -> bool:
    return captured(mock, marker, count=1, timeout=0.5) == []


def ask_claude(claude: anthropic.Anthropic, model: str, marker: str, stops: list[str], stream: bool) -> Any:
    params: Any = {"model": model, "max_tokens": 50, "stop_sequences": stops,
                   "messages": [{"role": "user", "content": f"hi mock:capture={marker}"}]}
    if not stream:
        return claude.messages.create(**params)
    with claude.messages.stream(**params) as events:
        return events.get_final_message()


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", ["via-openai", "via-azure"])
def test_five_stop_sequences_are_refused_for_openai_through_v1_messages(
    claude: anthropic.Anthropic, mock_upstream: Mock, model: str, stream: bool
) -> None:
    marker = new_marker()
    with pytest.raises(anthropic.BadRequestError) as info:
        ask_claude(claude, model, marker, FIVE, stream)
    body = info.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "invalid_request_error", body
    message = body["error"]["message"]
    assert "'stop_sequences' with more than 4 sequences" in message and "'stop'" not in message
    assert nothing_sent(mock_upstream, marker)


def test_four_stop_sequences_reach_openai(claude: anthropic.Anthropic, mock_upstream: Mock) -> None:
    marker = new_marker()
    ask_claude(claude, "via-openai", marker, FIVE[:4], stream=False)
    assert captured(mock_upstream, marker)[0]["body"]["stop"] == FIVE[:4]


def test_drop_params_keeps_the_first_four(claude: anthropic.Anthropic, mock_upstream: Mock) -> None:
    marker = new_marker()
    ask_claude(claude, "via-openai-dropping", marker, FIVE, stream=False)
    assert captured(mock_upstream, marker)[0]["body"]["stop"] == FIVE[:4]


def test_gemini_takes_five_and_refuses_six(claude: anthropic.Anthropic, mock_upstream: Mock) -> None:
    marker = new_marker()
    ask_claude(claude, "via-gemini", marker, FIVE, stream=False)
    assert captured(mock_upstream, marker)[0]["body"]["generationConfig"]["stopSequences"] == FIVE
    refused = new_marker()
    with pytest.raises(anthropic.BadRequestError) as info:
        ask_claude(claude, "via-gemini", refused, [*FIVE, "six"], stream=False)
    body = info.value.body
    assert isinstance(body, dict)
    assert "'stop_sequences' with more than 5 sequences" in body["error"]["message"]
    assert nothing_sent(mock_upstream, refused)


def test_five_stop_sequences_are_refused_for_openai_through_the_gemini_api(
    gw: Gateway, mock_upstream: Mock
) -> None:
    marker = new_marker()
    body = {"contents": [{"role": "user", "parts": [{"text": f"hi mock:capture={marker}"}]}],
            "generationConfig": {"stopSequences": FIVE}}
    resp = httpx.post(f"{gw.url}/v1beta/models/via-openai:generateContent", json=body,
                      headers={"x-goog-api-key": MASTER_KEY}, timeout=30)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert "'generationConfig.stopSequences' with more than 4 sequences" in error["message"]
    assert nothing_sent(mock_upstream, marker)


def test_chat_completions_keeps_openai_s_own_limit(gw: Gateway) -> None:
    sdk = openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(
            model="via-gemini", messages=[{"role": "user", "content": "hi"}], stop=FIVE)
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "stop"
