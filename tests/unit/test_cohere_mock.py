"""The Cohere v2 mock is as strict as the real API and speaks its exact formats."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from switchboard.mock.app import create_mock_app
from switchboard.providers.sse import SSEParser

KEY = "co-mock-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture(scope="module")
def mock() -> TestClient:
    return TestClient(create_mock_app(api_key=KEY))


def chat(mock: TestClient, body: Any, headers: dict[str, str] | None = None) -> Any:
    return mock.post("/v2/chat", content=orjson.dumps(body), headers={**AUTH, **(headers or {})})


def ask(text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "command-a-03-2025", "messages": [{"role": "user", "content": text}], **extra}


def events(raw: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    return [(e.event, orjson.loads(e.data)) for e in SSEParser().feed(raw)]


def assert_cohere_error(resp: Any, status: int, fragment: str) -> None:
    assert resp.status_code == status
    body = resp.json()
    assert set(body) == {"id", "message"}
    assert fragment in body["message"]


def test_non_stream_answer(mock: TestClient) -> None:
    resp = chat(mock, ask("hello"))
    assert resp.status_code == 200
    body = resp.json()
    assert body["finish_reason"] == "COMPLETE"
    assert body["message"] == {"role": "assistant", "content": [
        {"type": "text", "text": "Hello from the Switchboard mock. You said: hello"}]}
    assert body["usage"]["billed_units"] == {"input_tokens": 2, "output_tokens": 8}
    assert body["usage"]["tokens"]["input_tokens"] > body["usage"]["billed_units"]["input_tokens"]


@pytest.mark.parametrize(("headers", "status"), [({"Authorization": "Bearer wrong"}, 401),
                                                  ({"Authorization": f"bearer {KEY}"}, 200),
                                                  ({"Authorization": ""}, 401)])
def test_bearer_key_is_checked(mock: TestClient, headers: dict[str, str], status: int) -> None:
    resp = mock.post("/v2/chat", content=orjson.dumps(ask()), headers=headers)
    assert resp.status_code == status
    if status == 401:
        assert_cohere_error(resp, 401, "invalid api token")


@pytest.mark.parametrize(("body", "fragment"), [
    ({"messages": [{"role": "user", "content": "x"}]}, "model must be specified"),
    ({"model": "m"}, "messages must be a non-empty array"),
    ({"model": "m", "messages": []}, "messages must be a non-empty array"),
    (ask(top_p=0.5), "parameter top_p is not a valid field"),
    (ask(stop=["x"]), "parameter stop is not a valid field"),
    ({"model": "m", "messages": [{"role": "developer", "content": "x"}]}, "role must be one of"),
    ({"model": "m", "messages": [{"role": "user"}]}, "content is required"),
    ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "tool_call_id is required"),
    ({"model": "m", "messages": [{"role": "assistant"}]}, "must have content or tool_calls"),
    ({"model": "m", "messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {
        "url": "data:image/png;base64,AAAA"}}]}]}, "content[0].type must be one of text"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "ftp://x/y.png"}}]}]}, "must be a web URL or a base64 image data URI"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "http://127.0.0.1:1/closed-port.png"}}]}]}, "could not fetch an image"),
    ({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"type": "function"}]}]},
     "needs an id and type 'function'"),
    (ask(tool_choice="auto", tools=[TOOL]), "tool_choice must be one of REQUIRED, NONE"),
    (ask(tool_choice="REQUIRED"), "tool_choice REQUIRED needs tools"),
    (ask(tools=[{"type": "function", "function": {"name": "f"}}]), "tools[0] must be"),
    (ask(response_format={"type": "json_schema"}), "response_format.type must be one of"),
    (ask(response_format={"type": "json_object"}, tools=[TOOL]), "not supported with tools"),
    (ask(p=1.0), "p must be between 0.01 and 0.99"),
    (ask(stop_sequences=["a", "b", "c", "d", "e", "f"]), "at most 5 strings"),
    ([1, 2], "body must be a JSON object"),
])
def test_invalid_requests_are_refused_like_cohere(mock: TestClient, body: Any, fragment: str) -> None:
    assert_cohere_error(chat(mock, body), 400, fragment)


def test_stream_event_sequence(mock: TestClient) -> None:
    resp = chat(mock, ask("two words", stream=True))
    assert resp.headers["content-type"].startswith("text/event-stream")
    seq = events(resp.content)
    names = [name for name, _ in seq]
    assert names == ["message-start", "content-start", *["content-delta"] * 9, "content-end", "message-end"]
    assert all(name == data["type"] for name, data in seq)
    assert "".join(d["delta"]["message"]["content"]["text"] for n, d in seq if n == "content-delta") == (
        "Hello from the Switchboard mock. You said: two words")
    final = seq[-1][1]["delta"]
    assert final["finish_reason"] == "COMPLETE"
    assert final["usage"]["billed_units"]["output_tokens"] == 9


def test_tool_call_non_stream_and_stream(mock: TestClient) -> None:
    body = chat(mock, ask("weather?", tools=[TOOL])).json()
    assert body["finish_reason"] == "TOOL_CALL"
    call = body["message"]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert body["message"]["tool_plan"]
    seq = events(chat(mock, ask("weather?", tools=[TOOL], stream=True)).content)
    names = [name for name, _ in seq]
    assert names[0] == "message-start" and names[-1] == "message-end"
    assert names.index("tool-plan-delta") < names.index("tool-call-start") < names.index("tool-call-end")
    args = "".join(d["delta"]["message"]["tool_calls"]["function"]["arguments"] for n, d in seq
                   if n == "tool-call-delta")
    assert args == '{"city":"Paris"}'
    assert seq[-1][1]["delta"]["finish_reason"] == "TOOL_CALL"


def test_parallel_calls_directive_answers_with_several_calls(mock: TestClient) -> None:
    other = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    request = ask("weather? mock:parallel_calls=2", tools=[TOOL, other])
    calls = chat(mock, request).json()["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    seq = events(chat(mock, {**request, "stream": True}).content)
    starts = [(d["index"], d["delta"]["message"]["tool_calls"]["function"]["name"])
              for n, d in seq if n == "tool-call-start"]
    assert starts == [(0, "get_weather"), (1, "get_time")]
    assert sorted({d["index"] for n, d in seq if n == "tool-call-delta"}) == [0, 1]


def test_tool_choice_none_and_tool_result(mock: TestClient) -> None:
    assert chat(mock, ask("x", tools=[TOOL], tool_choice="NONE")).json()["finish_reason"] == "COMPLETE"
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "tool_plan": "look up", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "sunny"}]},
    ]
    body = chat(mock, {"model": "m", "messages": messages, "tools": [TOOL]}).json()
    assert body["message"]["content"][0]["text"] == "The tool returned: sunny"


def test_finish_reasons_for_limits(mock: TestClient) -> None:
    assert chat(mock, ask("x", max_tokens=2)).json()["finish_reason"] == "MAX_TOKENS"
    stopped = chat(mock, ask("x", stop_sequences=["mock"])).json()
    assert stopped["finish_reason"] == "STOP_SEQUENCE"
    assert stopped["message"]["content"][0]["text"] == "Hello from the Switchboard "


def test_injected_faults_use_cohere_error_bodies(mock: TestClient) -> None:
    limited = chat(mock, ask("mock:status=429 mock:retry_after=3"))
    assert_cohere_error(limited, 429, "Trial key")
    assert limited.headers["retry-after"] == "3"
    too_long = chat(mock, ask("mock:status=400 mock:error_code=context_length_exceeded"))
    assert_cohere_error(too_long, 400, "too many tokens: size limit exceeded")
    assert_cohere_error(chat(mock, ask("x"), {"x-mock-status": "503"}), 503, "injected error 503")


def test_fail_after_ends_with_an_error_message_end(mock: TestClient) -> None:
    seq = events(chat(mock, ask("mock:fail_after=2", stream=True)).content)
    assert [name for name, _ in seq] == ["message-start", "content-start", "message-end"]
    assert seq[-1][1]["delta"]["finish_reason"] == "ERROR"
    assert seq[-1][1]["delta"]["error"]


# ---- embed ------------------------------------------------------------------------------------


def embed(mock: TestClient, body: Any) -> Any:
    return mock.post("/v2/embed", content=orjson.dumps(body), headers=AUTH)


EMBED = {"model": "embed-v4.0", "texts": ["hello", "two words"], "input_type": "search_document",
         "embedding_types": ["float", "base64", "int8", "ubinary"], "output_dimension": 256}


def test_embed_by_type(mock: TestClient) -> None:
    body = embed(mock, EMBED).json()
    assert body["texts"] == EMBED["texts"]
    assert set(body["embeddings"]) == {"float", "base64", "int8", "ubinary"}
    assert [len(v) for v in body["embeddings"]["float"]] == [256, 256]
    assert [len(v) for v in body["embeddings"]["ubinary"]] == [32, 32]
    assert body["meta"]["billed_units"] == {"input_tokens": 3}


@pytest.mark.parametrize(("change", "fragment"), [
    ({"input_type": None}, "input_type must be one of"),
    ({"embedding_types": None}, "embedding_types must be a non-empty subset"),
    ({"texts": []}, "texts must be an array of 1 to 96"),
    ({"output_dimension": 8}, "output_dimension must be one of"),
    ({"input": "x"}, "parameter input is not a valid field"),
])
def test_embed_validation(mock: TestClient, change: dict[str, Any], fragment: str) -> None:
    body = {k: v for k, v in {**EMBED, **change}.items() if v is not None}
    assert_cohere_error(embed(mock, body), 400, fragment)
