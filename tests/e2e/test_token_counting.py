"""``POST /v1/messages/count_tokens`` through a running gateway, on the embedded default (SQLite)
and on a cluster (PostgreSQL and Redis): exact counts for an OpenAI model, equal to tiktoken's
reference counting of the same request; the documented estimate for a Claude model."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
import tiktoken

from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway
from tests.services import Postgres, RedisServer
from tests.unit.tokens.cases import data_url, png
from tests.unit.tokens.reference import Reference, reference_encoding, seed_cache

WEATHER = {
    "name": "get_current_weather",
    "description": "Get the current weather in a given location",
    "input_schema": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
            "unit": {"type": "string", "description": "The unit", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location"],
    },
}
SYSTEM = "You are a helpful assistant that can answer questions about the weather."
QUESTION = "Wie ist das Wetter in Zürich? 今日の天気は"
IMAGE = data_url("image/png", png(1000, 500))


def _config(mock: Mock) -> dict[str, Any]:
    config = openai_config(mock)
    config["providers"].append({"name": "up-anthropic", "type": "anthropic", "api_base": mock.url,
                                "api_key": "${UPSTREAM_KEY}"})
    config["models"].append(
        {"name": "claude-haiku", "provider": "up-anthropic", "model": "claude-3-5-haiku-latest"})
    return config


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def gw(request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[Gateway]:
    config = _config(mock_upstream)
    if request.param == "cluster":
        postgres: Postgres = request.getfixturevalue("postgres")
        redis: RedisServer = request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"tokens_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
    gateway = start_gateway(config, tmp_path_factory.mktemp(f"tokens-{request.param}"))
    yield gateway
    gateway.process.stop()


@pytest.fixture(scope="module")
def o200k(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tiktoken.Encoding]:
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    seed_cache(cache)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", str(cache))
        yield reference_encoding("o200k_base")


def client(gw: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def expected(ref: Reference) -> int:
    """The same request as OpenAI chat messages, counted by the reference."""
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": [
            {"type": "text", "text": QUESTION},
            {"type": "image_url", "image_url": {"url": IMAGE}},
        ]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "t1", "type": "function", "function": {
            "name": "get_current_weather", "arguments": '{"location":"Zürich"}'}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "21°C, sunny"},
    ]
    tools = [{"type": "function", "function": {"name": WEATHER["name"], "description": WEATHER["description"],
                                               "parameters": WEATHER["input_schema"]}}]
    return ref.chat({"messages": messages, "tools": tools}, {IMAGE: (1000, 500)})


def count(gw: Gateway, model: str) -> int:
    result = client(gw).messages.count_tokens(
        model=model,
        system=SYSTEM,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": [
                {"type": "text", "text": QUESTION},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": IMAGE.split(",", 1)[1]}},
            ]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_current_weather",
                                               "input": {"location": "Zürich"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "21°C, sunny"}]},
        ],
    )
    return result.input_tokens


def test_exact_for_openai_models_and_estimated_for_others(gw: Gateway, o200k: tiktoken.Encoding) -> None:
    assert count(gw, "gpt-4o-mini") == expected(Reference(o200k, "gpt-4o-mini"))
    # Other providers: the o200k count (images at the standard 85/170 costs) times 1.2.
    assert count(gw, "claude-haiku") == math.ceil(expected(Reference(o200k, "claude")) * 1.2)


def test_bad_count_tokens_bodies_get_400_and_the_server_keeps_serving(gw: Gateway) -> None:
    url = f"{gw.url}/v1/messages/count_tokens"
    headers = {"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01"}
    hi = [{"role": "user", "content": "hi"}]
    for body in (
        {"model": "gpt-4o-mini", "messages": "hi"},
        {"model": "gpt-4o-mini", "messages": hi, "max_tokens": 5},
        {"model": "gpt-4o-mini", "messages": hi, "no_such_field": 1},
        {"model": "x" * 5000, "messages": hi},
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [{"type": "image", "source": 3}]}]},
    ):
        resp = httpx.post(url, json=body, headers=headers, timeout=10)
        assert resp.status_code in (400, 404), (body, resp.text)
        assert resp.json()["type"] == "error" and resp.json()["error"]["type"] in (
            "invalid_request_error", "not_found_error")
    ok = httpx.post(url, json={"model": "gpt-4o-mini", "messages": hi}, headers=headers, timeout=10)
    # 3 per message + "user" + "hi" + 3 for the reply priming.
    assert ok.status_code == 200 and ok.json()["input_tokens"] == 3 + 1 + 1 + 3
