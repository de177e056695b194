"""Malformed request bodies found by mutating valid ones (wrong types at a JSON path, values
nested deeper than the gateway can write): each is a 400 in the shape of the API it came in on,
never a 500, whatever provider type the model is served by."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.servers import MASTER_KEY, UPSTREAM_KEY, Gateway, Mock, start_gateway

OPENAI = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
ANTHROPIC = {"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01", "Content-Type": "application/json"}
GOOGLE = {"x-goog-api-key": MASTER_KEY, "Content-Type": "application/json"}
# Arrays and objects nested past what the gateway reads (128 levels) and below orjson's own
# parse limit (1,024): read, then failing wherever the gateway wrote them.
TOO_DEEP = 300


def nested(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.fixture(scope="module")
def gw(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    key = {"api_key": "${UPSTREAM_KEY}"}
    config: dict[str, Any] = {
        "providers": [
            {"name": "oa", "type": "openai", "api_base": f"{mock_upstream.url}/v1", **key},
            {"name": "claude", "type": "anthropic", "api_base": mock_upstream.url, **key},
            {"name": "studio", "type": "gemini", "api_base": mock_upstream.url, **key},
            {"name": "aws", "type": "bedrock", "api_base": mock_upstream.url, "aws_access_key_id": "AKIDTEST",
             "aws_secret_access_key": "${UPSTREAM_KEY}", "aws_region": "us-east-1"},
        ],
        "models": [
            {"name": "gpt", "provider": "oa", "model": "gpt-4o-mini"},
            {"name": "claude", "provider": "claude", "model": "claude-sonnet-4-5"},
            {"name": "gemini", "provider": "studio", "model": "gemini-2.5-flash"},
            {"name": "bedrock", "provider": "aws", "model": "anthropic.claude-3-7-sonnet-20250219-v1:0"},
            {"name": "embed", "provider": "oa", "model": "text-embedding-3-small"},
        ],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
    }
    gateway = start_gateway(config, tmp_path_factory.mktemp("fuzz-inputs"))
    yield gateway
    gateway.process.stop()


@pytest.fixture
def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def openai_error(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 400, resp.text
    error: dict[str, Any] = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    return error


@pytest.mark.parametrize("role", [["user"], {"type": "user"}])
def test_a_chat_message_whose_role_is_an_array_or_object_is_a_400_naming_it(
        client: openai.OpenAI, role: Any) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="gpt", messages=[{"role": role, "content": "hi"}])  # type: ignore[misc, list-item]
    assert err.value.param == "messages[0].role" and err.value.code == "invalid_value"


@pytest.mark.parametrize("role", [["assistant"], {"type": "object"}])
def test_a_responses_input_item_whose_role_is_an_array_or_object_is_a_400_naming_it(
        client: openai.OpenAI, role: Any) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="gpt", store=False, input=[  # type: ignore[misc, list-item]
            {"role": "user", "content": "hi"}, {"role": role, "content": "ok"}])
    assert err.value.param == "input[1].role" and err.value.code == "invalid_value"


def test_a_batch_whose_endpoint_is_an_array_is_a_400_naming_it(gw: Gateway) -> None:
    body = {"input_file_id": "file-abc", "endpoint": ["/v1/chat/completions"], "completion_window": "24h"}
    resp = httpx.post(f"{gw.base_url}/batches", headers=OPENAI, json=body, timeout=30)
    error = openai_error(resp)
    assert (error["param"], error["code"]) == ("endpoint", "invalid_value")


def test_a_gemini_schema_type_list_holding_an_object_is_served(client: openai.OpenAI) -> None:
    # Gemini's schema translation looked each listed type up in a set: an object in the list broke
    # it. It is no type, so it is passed over as an unknown type name is.
    schema = {"type": "object", "properties": {"city": {"type": [{"a": 1}, "string"]}}}
    reply = client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "weather?"}],
                                           tools=[{"type": "function", "function": {
                                               "name": "get_weather", "parameters": schema}}])
    assert reply.choices[0].message.tool_calls


def test_a_body_nested_too_deeply_is_a_400_on_every_inbound_api(gw: Gateway) -> None:
    deep_tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": nested(TOO_DEEP)}}}}
    for model in ("gpt", "claude", "gemini", "bedrock"):
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "tools": [deep_tool]}
        resp = httpx.post(f"{gw.base_url}/chat/completions", headers=OPENAI, json=body, timeout=30)
        error = openai_error(resp)
        assert error["code"] == "invalid_json"
        assert error["message"] == "the request body nests deeper than 128 levels of arrays and objects"
    # A tool call's input, quoted back as the arguments of an OpenAI call.
    call = {"type": "tool_use", "id": "t1", "name": "f", "input": nested(TOO_DEEP)}
    messages = {"model": "gpt", "max_tokens": 16, "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": [call]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}]}
    resp = httpx.post(f"{gw.url}/v1/messages", headers=ANTHROPIC, json=messages, timeout=30)
    assert resp.status_code == 400, resp.text
    assert resp.json()["type"] == "error" and resp.json()["error"]["type"] == "invalid_request_error"
    # The Gemini API quoted a value of the wrong type in its message.
    gemini = {"contents": [{"role": "user", "parts": [{"text": nested(TOO_DEEP)}]}]}
    resp = httpx.post(f"{gw.url}/v1beta/models/gpt:generateContent", headers=GOOGLE, json=gemini, timeout=30)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["status"] == "INVALID_ARGUMENT"
    # As deep as allowed is served.
    shallow = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "metadata_": nested(120)}
    resp = httpx.post(f"{gw.base_url}/chat/completions", headers=OPENAI, json=shallow, timeout=30)
    assert resp.status_code == 200, resp.text


def test_an_admin_body_nested_too_deeply_is_a_400(gw: Gateway) -> None:
    # Stored or measured with orjson: a prompt's schema, a provider's options.
    prompt = {"name": "deep", "model": "gpt", "messages": [{"role": "user", "content": "hi"}],
              "output_schema": nested(TOO_DEEP)}
    provider = {"name": "deep", "type": "openai", "options": {"organization": nested(TOO_DEEP)}}
    for path, body in (("/admin/v1/prompts", prompt), ("/admin/v1/providers", provider)):
        resp = httpx.post(f"{gw.url}{path}", headers=OPENAI, json=body, timeout=30)
        assert openai_error(resp)["code"] == "invalid_json", path


def test_the_gateway_serves_after_the_run(client: openai.OpenAI, gw: Gateway) -> None:
    assert gw.process.proc.poll() is None
    reply = client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    assert UPSTREAM_KEY not in gw.process.output
