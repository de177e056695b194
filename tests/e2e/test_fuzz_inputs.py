"""Malformed request bodies found by mutating valid ones (wrong types at a JSON path, values
nested deeper than the gateway can write): each is a 400 in the shape of the API it came in on,
never a 500, whatever provider type the model is served by. The last test mutates valid bodies
itself, a bounded and derandomized run of the same invariant."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.mcp_servers import McpUpstream, start_mcp_server
from tests.servers import MASTER_KEY, UPSTREAM_KEY, Gateway, Mock, captured, new_marker, start_gateway

OPENAI = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
ANTHROPIC = {"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01", "Content-Type": "application/json"}
GOOGLE = {"x-goog-api-key": MASTER_KEY, "Content-Type": "application/json"}
# Arrays and objects nested past what the gateway reads (128 levels) and below orjson's own
# parse limit (1,024): read, then failing wherever the gateway wrote them.
TOO_DEEP = 300
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def nested(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.fixture(scope="module")
def mcp_math() -> Iterator[McpUpstream]:
    server = start_mcp_server("math")
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def gw(mock_upstream: Mock, mcp_math: McpUpstream,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    key = {"api_key": "${UPSTREAM_KEY}"}
    config: dict[str, Any] = {
        "providers": [
            {"name": "oa", "type": "openai", "api_base": f"{mock_upstream.url}/v1", **key},
            {"name": "claude", "type": "anthropic", "api_base": mock_upstream.url, **key},
            {"name": "studio", "type": "gemini", "api_base": mock_upstream.url, **key},
            {"name": "co", "type": "cohere", "api_base": mock_upstream.url, **key},
            {"name": "aws", "type": "bedrock", "api_base": mock_upstream.url, "aws_access_key_id": "AKIDTEST",
             "aws_secret_access_key": "${UPSTREAM_KEY}", "aws_region": "us-east-1"},
        ],
        "models": [
            {"name": "gpt", "provider": "oa", "model": "gpt-4o-mini"},
            {"name": "claude", "provider": "claude", "model": "claude-sonnet-4-5"},
            {"name": "gemini", "provider": "studio", "model": "gemini-2.5-flash"},
            {"name": "cohere", "provider": "co", "model": "command-a-reasoning-08-2025"},
            {"name": "bedrock", "provider": "aws", "model": "anthropic.claude-3-7-sonnet-20250219-v1:0"},
            {"name": "embed", "provider": "oa", "model": "text-embedding-3-small"},
            {"name": "bedrock-embed", "provider": "aws", "model": "cohere.embed-english-v3"},
            {"name": "cohere-embed", "provider": "co", "model": "embed-v4.0"},
        ],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "mcp_servers": [{"name": "math", "url": mcp_math.url}],
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


CITY = {"city": {"type": "string"}}
# Parts of a tool's JSON schema of the wrong kind, which Gemini's schema translation read as if
# they had the right one: each is passed over (as an unknown type name is), the rest translated.
MALFORMED_SCHEMAS = {
    "a type list holding an object": {"type": "object",
                                      "properties": {"city": {"type": [{"a": 1}, "string"]}}},
    "required a number": {"type": "object", "properties": CITY, "required": 5},
    "$defs an array": {"type": "object", "properties": CITY, "$defs": [1]},
    "definitions a string": {"type": "object", "properties": CITY, "definitions": "x"},
    "allOf over properties that are an array": {"type": "object", "properties": ["city"],
                                                "allOf": [{"properties": CITY}]},
    "allOf over required a number": {"type": "object", "properties": CITY, "required": 5,
                                     "allOf": [{"required": ["city"]}]},
}


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("schema", list(MALFORMED_SCHEMAS.values()), ids=list(MALFORMED_SCHEMAS))
def test_a_gemini_tool_schema_with_a_part_of_the_wrong_kind_is_served(
        client: openai.OpenAI, schema: dict[str, Any], strict: bool) -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": schema, "strict": strict}}
    reply = client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "weather?"}],
                                           tools=[tool])  # type: ignore[list-item]
    assert reply.choices[0].message.tool_calls


@pytest.mark.parametrize("model", ["bedrock", "cohere"])
def test_a_reasoning_effort_that_is_an_array_is_a_400_naming_it(client: openai.OpenAI, model: str) -> None:
    # Looked up in the provider's table of budgets as it came: an array raised TypeError.
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                       reasoning_effort=["low"])  # type: ignore[arg-type]
    assert err.value.param == "reasoning_effort" and err.value.code == "invalid_value"


@pytest.mark.parametrize("value", [["search_query"], 5, {"type": "search_query"}, "poetry"])
@pytest.mark.parametrize("model", ["bedrock-embed", "cohere-embed"])
def test_a_cohere_embedding_input_type_cohere_does_not_take_is_a_400_naming_it(
        client: openai.OpenAI, mock_upstream: Mock, model: str, value: Any) -> None:
    # Cohere's models take one of four names as a string, on Cohere's API and on Bedrock alike:
    # anything else is refused the same way on both, before any call (not replaced by the
    # default, nor looked up in a table as it came).
    marker = new_marker()
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model=model, input=f"hi mock:capture={marker}",
                                 extra_body={"input_type": value})
    assert err.value.param == "input_type" and err.value.code == "invalid_value"
    assert "search_document" in err.value.message
    assert captured(mock_upstream, marker, timeout=0) == []
    # One of the four goes as sent.
    marker = new_marker()
    client.embeddings.create(model=model, input=f"hi mock:capture={marker}",
                             extra_body={"input_type": "clustering"})
    assert captured(mock_upstream, marker)[-1]["body"]["input_type"] == "clustering"


def test_a_body_nested_too_deeply_is_a_400_on_every_inbound_api(gw: Gateway) -> None:
    deep_tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": nested(TOO_DEEP)}}}}
    for model in ("gpt", "claude", "gemini", "bedrock"):
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "tools": [deep_tool]}
        resp = httpx.post(f"{gw.base_url}/chat/completions", headers=OPENAI, json=body, timeout=30)
        error = openai_error(resp)
        assert error["code"] == "invalid_json"
        assert error["message"] == "the request body nests deeper than 128 levels of arrays and objects"
    # Past the JSON parser's own bound (1,024 levels) the answer is the same, not the parser's.
    deeper = b'{"model": "gpt", "messages": [], "metadata": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    resp = httpx.post(f"{gw.base_url}/chat/completions", headers=OPENAI, content=deeper, timeout=30)
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


def test_an_mcp_tool_call_nested_too_deeply_is_an_invalid_request(gw: Gateway) -> None:
    # The arguments, checked against the tool's schema and then written on to the server.
    headers = {**OPENAI, "Accept": "application/json, text/event-stream"}

    def rpc(message: dict[str, Any], session: str | None = None) -> httpx.Response:
        extra = {"mcp-session-id": session} if session else {}
        return httpx.post(f"{gw.url}/mcp", headers={**headers, **extra}, json=message, timeout=30)

    opened = rpc({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    assert opened.status_code == 200, opened.text
    session = opened.headers.get("mcp-session-id")
    rpc({"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "math__add", "arguments": {"a": nested(TOO_DEEP), "b": 2}}}
    answer = rpc(call, session).json()
    assert answer["id"] == 7 and answer["error"]["code"] == -32600, answer
    assert answer["error"]["message"] == "the message nests deeper than 128 levels of arrays and objects"


def test_an_admin_body_nested_too_deeply_is_a_400(gw: Gateway) -> None:
    # Stored or measured with orjson: a prompt's schema, a provider's options.
    prompt = {"name": "deep", "model": "gpt", "messages": [{"role": "user", "content": "hi"}],
              "output_schema": nested(TOO_DEEP)}
    provider = {"name": "deep", "type": "openai", "options": {"organization": nested(TOO_DEEP)}}
    for path, body in (("/admin/v1/prompts", prompt), ("/admin/v1/providers", provider)):
        resp = httpx.post(f"{gw.url}{path}", headers=OPENAI, json=body, timeout=30)
        assert openai_error(resp)["code"] == "invalid_json", path


# -- the bounded mutation run --------------------------------------------------------------------

def chat_body(model: str) -> dict[str, Any]:
    return {"model": model, "max_tokens": 20, "temperature": 0.5, "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]}


def messages_body(model: str) -> dict[str, Any]:
    return {"model": model, "max_tokens": 20, "system": "be brief", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "18C"}]}],
        "tools": [{"name": "get_weather", "input_schema": SCHEMA}]}


def gemini_body(model: str) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": "weather?"}]},
                         {"role": "model", "parts": [{"functionCall": {"name": "get_weather",
                                                                       "args": {"city": "Paris"}}}]},
                         {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                                          "response": {"t": "18C"}}}]}],
            "tools": [{"functionDeclarations": [{"name": "get_weather", "parameters": {
                "type": "OBJECT", "properties": {"city": {"type": "STRING"}}}}]}],
            "generationConfig": {"maxOutputTokens": 20}}


def responses_body(model: str) -> dict[str, Any]:
    return {"model": model, "store": False, "max_output_tokens": 20, "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "18C"}],
        "tools": [{"type": "function", "name": "get_weather", "parameters": SCHEMA}]}


# (api, path, headers, valid body)
APIS = [
    ("openai", "/v1/chat/completions", OPENAI, chat_body),
    ("openai", "/v1/responses", OPENAI, responses_body),
    ("anthropic", "/v1/messages", ANTHROPIC, messages_body),
    ("google", "/v1beta/models/{model}:generateContent", GOOGLE, gemini_body),
]
MODELS = ["gpt", "claude", "gemini", "bedrock"]
ODD = [None, True, 0, -1, 2**63, 1e308, "", "\ud800", "x" * 5000, [], {}, [None], {"type": None},
       ["user"], {"a": [{}]}, nested(TOO_DEEP)]


def paths(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [at]
    if isinstance(value, dict):
        found += [p for k, v in value.items() for p in paths(v, (*at, k))]
    elif isinstance(value, list):
        found += [p for i, v in enumerate(value) for p in paths(v, (*at, i))]
    return found


def replaced(body: dict[str, Any], at: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    parent: Any = out
    for key in at[:-1]:
        parent = parent[key]
    parent[at[-1]] = value
    return out


def error_in_shape(api: str, resp: httpx.Response) -> bool:
    body = resp.json()
    if api == "anthropic":
        return body.get("type") == "error" and isinstance(body["error"].get("message"), str)
    if api == "google":
        return body["error"].get("code") == resp.status_code and isinstance(body["error"].get("status"), str)
    return set(body["error"]) == {"message", "type", "param", "code"}


@settings(max_examples=100, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_a_valid_body_with_one_value_replaced_is_never_a_server_error(
        gw: Gateway, data: st.DataObject) -> None:
    api, path, headers, build = data.draw(st.sampled_from(APIS))
    model = data.draw(st.sampled_from(MODELS))
    valid = build(model)
    at = data.draw(st.sampled_from(paths(valid)[1:]))
    body = replaced(valid, at, data.draw(st.sampled_from(ODD)))
    # Python's writer: it escapes the lone surrogate as a client may (orjson refuses to write
    # one) and writes past orjson's 254 levels.
    raw = json.dumps(body).encode()
    resp = httpx.post(f"{gw.url}{path.format(model=model)}", headers=headers, content=raw, timeout=30)
    assert resp.status_code < 500, (api, model, at, resp.text)
    if resp.status_code >= 400:
        assert error_in_shape(api, resp), (api, model, at, resp.text)


def test_the_gateway_serves_after_the_run(client: openai.OpenAI, gw: Gateway) -> None:
    assert gw.process.proc.poll() is None
    reply = client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    assert UPSTREAM_KEY not in gw.process.output
