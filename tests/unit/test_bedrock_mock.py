"""The Bedrock mock upstream is strict like the real service: SigV4, validation, error shapes, faults."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient
from yarl import URL

from switchboard.config.schema import Timeouts
from switchboard.mock.app import create_mock_app
from switchboard.providers.bedrock import SPEC, BedrockOptions
from switchboard.providers.target import Target
from switchboard.upstream.eventstream import EventStreamDecoder
from switchboard.upstream.sigv4 import Credentials, sign_headers

SECRET = "mock-secret-key"
MODEL_PATH = "/model/anthropic.claude-3-haiku-20240307-v1:0"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nrest").decode()


@pytest.fixture(scope="module")
def http() -> Iterator[TestClient]:
    with TestClient(create_mock_app(api_key=SECRET), base_url="http://bedrock.test") as client:
        yield client


def post(http: TestClient, path: str, body: Any, secret: str = SECRET, when: datetime | None = None,
         headers: dict[str, str] | None = None) -> Any:
    raw = orjson.dumps(body)
    base = {"Content-Type": "application/json", **(headers or {})}
    signed = sign_headers("POST", f"http://bedrock.test{path}", base, raw, Credentials("AKIDTEST", secret),
                          "us-east-1", "bedrock", when or datetime.now(UTC))
    return http.post(path, content=raw, headers={**base, **signed})


def ask(text: str = "hello") -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": [{"text": text}]}]}


def error_of(resp: Any) -> tuple[int, str, str]:
    return resp.status_code, resp.headers["x-amzn-ErrorType"].split(":")[0], resp.json()["message"]


def test_signed_converse_answers(http: TestClient) -> None:
    resp = post(http, f"{MODEL_PATH}/converse", ask("hello mock"))
    assert resp.status_code == 200
    body = resp.json()
    assert body["output"]["message"] == {"role": "assistant", "content": [
        {"text": "Hello from the Switchboard mock. You said: hello mock"}]}
    assert body["stopReason"] == "end_turn"
    assert body["usage"]["totalTokens"] == body["usage"]["inputTokens"] + body["usage"]["outputTokens"]


def test_adapter_requests_signed_by_the_auth_scheme_are_accepted(http: TestClient) -> None:
    target = Target("c", "anthropic.claude-3-haiku-20240307-v1:0", "p", "bedrock", "http://bedrock.test",
                    BedrockOptions(aws_region="us-east-1"), Timeouts())
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    request = SPEC.adapter.chat_request(chat, target)
    credentials = Credentials("AKIDTEST", SECRET, "session-token")
    signed = sign_headers(request.method, request.url, request.headers, request.body, credentials,
                          "us-east-1", "bedrock", datetime.now(UTC))
    # Send the path exactly as aiohttp would put it on the wire (yarl's normalised form).
    resp = http.post(URL(request.url).raw_path, content=request.body, headers={**request.headers, **signed})
    assert resp.status_code == 200, resp.text
    assert resp.json()["stopReason"] == "max_tokens"


@pytest.mark.parametrize(("kwargs", "kind"), [
    ({"secret": "wrong"}, "InvalidSignatureException"),
    ({"when": datetime.now(UTC) - timedelta(hours=1)}, "InvalidSignatureException"),
])
def test_bad_signatures_are_rejected(http: TestClient, kwargs: dict[str, Any], kind: str) -> None:
    status, got, _ = error_of(post(http, f"{MODEL_PATH}/converse", ask(), **kwargs))
    assert (status, got) == (403, kind)


def test_missing_and_bearer_credentials(http: TestClient) -> None:
    resp = http.post(f"{MODEL_PATH}/converse", json=ask())
    assert error_of(resp)[:2] == (403, "MissingAuthenticationTokenException")
    resp = http.post(f"{MODEL_PATH}/converse", json=ask(), headers={"Authorization": f"Bearer {SECRET}"})
    assert resp.status_code == 200
    resp = http.post(f"{MODEL_PATH}/converse", json=ask(), headers={"Authorization": "Bearer nope"})
    assert error_of(resp)[:2] == (403, "UnrecognizedClientException")


def test_tampered_body_breaks_the_signature(http: TestClient) -> None:
    raw = orjson.dumps(ask())
    signed = sign_headers("POST", f"http://bedrock.test{MODEL_PATH}/converse", {}, raw,
                          Credentials("AKIDTEST", SECRET), "us-east-1", "bedrock", datetime.now(UTC))
    resp = http.post(f"{MODEL_PATH}/converse", content=raw + b" ", headers=signed)
    assert error_of(resp)[:2] == (403, "InvalidSignatureException")


USER_A = {"role": "user", "content": [{"text": "a"}]}
TOOL_USE = {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": "f", "input": {}}}]}
TOOL_RESULT = {"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": [{"text": "1"}]}}]}


@pytest.mark.parametrize(("body", "needle"), [
    ({"messages": [{"role": "system", "content": [{"text": "x"}]}]}, "enum value set: [user, assistant]"),
    ({"messages": [{"role": "assistant", "content": [{"text": "x"}]}]}, "must start with a user message"),
    ({"messages": [USER_A, {"role": "user", "content": [{"text": "b"}]}]}, "must alternate"),
    ({"messages": [{"role": "user", "content": [{"text": "  "}]}]}, "is blank"),
    ({"messages": []}, "messages field is required"),
    ({}, "messages field is required"),
    ({**ask(), "model": "x"}, "extraneous key [model]"),
    ({**ask(), "inferenceConfig": {"temperature": 1.5}}, "less than or equal to 1"),
    ({**ask(), "inferenceConfig": {"topK": 5}}, "extraneous key [inferenceConfig.topK]"),
    ({"messages": [{"role": "user", "content": [
        {"image": {"format": "png", "source": {"bytes": base64.b64encode(b"GIF89a").decode()}}}]}]},
     "not a valid png image"),
    ({"messages": [USER_A, TOOL_USE, TOOL_RESULT]}, "toolConfig field must be defined"),
    ({**ask(), "toolConfig": {"tools": [{"toolSpec": {"name": "bad.name", "inputSchema": {"json": {}}}}]}},
     "regular expression pattern"),
])
def test_validation_errors(http: TestClient, body: dict[str, Any], needle: str) -> None:
    status, kind, message = error_of(post(http, f"{MODEL_PATH}/converse", body))
    assert (status, kind) == (400, "ValidationException")
    assert needle in message


def test_unmatched_tool_result_is_rejected(http: TestClient) -> None:
    tools = {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}]}
    body = {"toolConfig": tools, "messages": [
        {"role": "user", "content": [{"text": "a"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t2", "content": [{"text": "1"}]}}]},
    ]}
    assert "does not match a toolUse" in error_of(post(http, f"{MODEL_PATH}/converse", body))[2]


def test_tools_and_images_are_answered(http: TestClient) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    body = {**ask("weather?"), "toolConfig": {"tools": [{"toolSpec": {"name": "get_weather",
                                                                     "inputSchema": {"json": schema}}}]}}
    out = post(http, f"{MODEL_PATH}/converse", body).json()
    assert out["stopReason"] == "tool_use"
    assert out["output"]["message"]["content"][0]["toolUse"]["input"] == {"city": "Paris"}
    image = {"messages": [{"role": "user", "content": [
        {"text": "what is it"}, {"image": {"format": "png", "source": {"bytes": PNG}}}]}]}
    assert post(http, f"{MODEL_PATH}/converse", image).status_code == 200


def test_json_schema_output_config(http: TestClient) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    body = {**ask(), "outputConfig": {"textFormat": {"type": "json_schema", "structure": {
        "jsonSchema": {"schema": orjson.dumps(schema).decode(), "name": "x"}}}}}
    out = post(http, f"{MODEL_PATH}/converse", body).json()
    assert orjson.loads(out["output"]["message"]["content"][0]["text"]) == {"n": 1}


def test_stop_sequences_cut_the_answer(http: TestClient) -> None:
    body = {**ask("abc"), "inferenceConfig": {"stopSequences": ["mock"]}}
    out = post(http, f"{MODEL_PATH}/converse", body).json()
    assert out["stopReason"] == "stop_sequence"
    assert out["output"]["message"]["content"][0]["text"] == "Hello from the Switchboard "


def frames(resp: Any) -> list[Any]:
    decoder = EventStreamDecoder()
    messages = decoder.feed(resp.content)
    decoder.close()
    return messages


def test_stream_frames_have_valid_crcs_and_the_converse_events(http: TestClient) -> None:
    resp = post(http, f"{MODEL_PATH}/converse-stream", ask("one two"))
    assert resp.headers["content-type"] == "application/vnd.amazon.eventstream"
    events = [m.header(":event-type") for m in frames(resp)]
    assert events[0] == "messageStart" and events[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    assert set(events[1:-3]) == {"contentBlockDelta"}


def test_stream_fail_after_sends_an_exception_frame(http: TestClient) -> None:
    prompt = ask("mock:fail_after=2 mock:error_code=throttlingException")
    resp = post(http, f"{MODEL_PATH}/converse-stream", prompt)
    last = frames(resp)[-1]
    assert last.header(":message-type") == "exception"
    assert last.header(":exception-type") == "throttlingException"
    assert len(frames(resp)) == 3


@pytest.mark.parametrize(("directive", "status", "kind"), [
    ("mock:status=429", 429, "ThrottlingException"),
    ("mock:status=503", 503, "ServiceUnavailableException"),
    ("mock:status=500", 500, "InternalServerException"),
    ("mock:status=400 mock:error_code=context_length_exceeded", 400, "ValidationException"),
])
def test_injected_faults_use_bedrock_errors(http: TestClient, directive: str, status: int, kind: str) -> None:
    assert error_of(post(http, f"{MODEL_PATH}/converse", ask(directive)))[:2] == (status, kind)


def test_injected_429_carries_retry_after_when_asked(http: TestClient) -> None:
    resp = post(http, f"{MODEL_PATH}/converse", ask("mock:status=429 mock:retry_after=7"))
    assert resp.headers["retry-after"] == "7"


def test_titan_and_cohere_embeddings(http: TestClient) -> None:
    titan = "/model/amazon.titan-embed-text-v2:0/invoke"
    out = post(http, titan, {"inputText": "hi", "dimensions": 256}).json()
    assert len(out["embedding"]) == 256 and out["inputTextTokenCount"] == 1
    resp = post(http, titan, {"inputText": "hi", "texts": ["x"]})
    assert error_of(resp)[:2] == (400, "ValidationException")
    cohere = "/model/cohere.embed-english-v3/invoke"
    out = post(http, cohere, {"texts": ["a", "b"], "input_type": "search_query"})
    assert len(out.json()["embeddings"]) == 2
    resp = post(http, cohere, {"texts": ["a"]})
    assert "input_type" in error_of(resp)[2]
    resp = post(http, "/model/meta.llama3-8b-instruct-v1:0/invoke", {"prompt": "x"})
    assert error_of(resp)[:2] == (400, "ValidationException")


# ---- thinking, caching, stop sequences, request metadata ----

THINKING = {"additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 1024}},
            "inferenceConfig": {"maxTokens": 4000}}


def test_thinking_answers_with_a_signed_reasoning_block_to_send_back_unchanged(http: TestClient) -> None:
    out = post(http, f"{MODEL_PATH}/converse", {**ask("think"), **THINKING}).json()
    reasoning, text = out["output"]["message"]["content"]
    signed = reasoning["reasoningContent"]["reasoningText"]
    assert signed["text"] and signed["signature"] and text["text"].endswith("think")
    history = [ask("think")["messages"][0], {"role": "assistant", "content": [reasoning, text]},
               {"role": "user", "content": [{"text": "again"}]}]
    assert post(http, f"{MODEL_PATH}/converse", {"messages": history, **THINKING}).status_code == 200
    signed["signature"] = "Zm9yZ2Vk"
    resp = post(http, f"{MODEL_PATH}/converse", {"messages": history, **THINKING})
    assert error_of(resp)[:2] == (400, "ValidationException") and "signature" in error_of(resp)[2]


TOOLS = {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}]}
ADAPTIVE = {"thinking": {"type": "adaptive"}}


@pytest.mark.parametrize("fields", [THINKING["additionalModelRequestFields"], ADAPTIVE])
@pytest.mark.parametrize(("body", "needle"), [
    ({**ask(), "inferenceConfig": {"maxTokens": 4000, "temperature": 0.5}},
     "`temperature` may only be set to 1"),
    ({**ask(), "inferenceConfig": {"maxTokens": 4000, "topP": 0.5}}, "`top_p` must be greater than or equal"),
    ({**ask(), "toolConfig": {**TOOLS, "toolChoice": {"any": {}}}}, "tool_choice forces tool use"),
    ({**ask(), "toolConfig": {**TOOLS, "toolChoice": {"tool": {"name": "f"}}}},
     "tool_choice forces tool use"),
    ({"messages": [USER_A, TOOL_USE, TOOL_RESULT], "toolConfig": TOOLS},
     "Expected `thinking` or `redacted_thinking`, but found `toolUse`"),
])
def test_claude_refuses_what_does_not_go_with_thinking(
    http: TestClient, fields: dict[str, Any], body: dict[str, Any], needle: str
) -> None:
    # As Bedrock relays Claude's own refusals: with thinking on (a budget or adaptive), only
    # temperature 1, top_p from 0.95, the model's own tool choice, and a tool loop whose assistant
    # turn opens with its reasoning. The same requests without thinking are answered.
    thinking = {**body, "additionalModelRequestFields": fields,
                "inferenceConfig": {"maxTokens": 4000, **body.get("inferenceConfig", {})}}
    status, kind, message = error_of(post(http, f"{MODEL_PATH}/converse", thinking))
    assert (status, kind) == (400, "ValidationException") and needle in message, message
    assert post(http, f"{MODEL_PATH}/converse", body).status_code == 200


def test_a_tool_loop_keeping_its_reasoning_block_thinks_on(http: TestClient) -> None:
    out = post(http, f"{MODEL_PATH}/converse", {**ask("weather?"), **THINKING, "toolConfig": TOOLS}).json()
    turn = out["output"]["message"]
    assert list(turn["content"][0]) == ["reasoningContent"] and "toolUse" in turn["content"][-1]
    use = turn["content"][-1]["toolUse"]["toolUseId"]
    result = {"role": "user", "content": [{"toolResult": {"toolUseId": use, "content": [{"text": "1"}]}}]}
    body = {"messages": [*ask("weather?")["messages"], turn, result], **THINKING, "toolConfig": TOOLS}
    assert post(http, f"{MODEL_PATH}/converse", body).status_code == 200


def test_thinking_streams_reasoning_then_its_signature(http: TestClient) -> None:
    messages = frames(post(http, f"{MODEL_PATH}/converse-stream", {**ask("think"), **THINKING}))
    deltas = [orjson.loads(m.payload)["delta"] for m in messages
              if m.header(":event-type") == "contentBlockDelta"]
    reasoning = [d["reasoningContent"] for d in deltas if "reasoningContent" in d]
    assert "text" in reasoning[0] and list(reasoning[-1]) == ["signature"]
    assert "text" in deltas[-1]


def test_a_cache_point_is_written_then_read(http: TestClient) -> None:
    system = [{"text": "a long stable prefix for mock-cache-unit"}, {"cachePoint": {"type": "default"}}]
    body = {"system": system, **ask("first")}
    first = post(http, f"{MODEL_PATH}/converse", body).json()["usage"]
    assert first["cacheWriteInputTokens"] > 0 and first["cacheReadInputTokens"] == 0
    second = post(http, f"{MODEL_PATH}/converse", {**body, **ask("second")}).json()["usage"]
    assert second["cacheReadInputTokens"] == first["cacheWriteInputTokens"]
    assert second["cacheWriteInputTokens"] == 0
    bad = {**body, "system": [{"cachePoint": {"type": "forever"}}]}
    assert error_of(post(http, f"{MODEL_PATH}/converse", bad))[0] == 400


def test_claude_reports_the_matched_stop_sequence_when_asked(http: TestClient) -> None:
    body = {**ask("abc"), "inferenceConfig": {"stopSequences": ["zzz", "mock"]},
            "additionalModelResponseFieldPaths": ["/stop_sequence"]}
    out = post(http, f"{MODEL_PATH}/converse", body).json()
    assert out["additionalModelResponseFields"] == {"stop_sequence": "mock"}


def test_request_metadata_is_bounded(http: TestClient) -> None:
    ok = post(http, f"{MODEL_PATH}/converse", {**ask(), "requestMetadata": {"user": "u-1"}})
    assert ok.status_code == 200
    resp = post(http, f"{MODEL_PATH}/converse", {**ask(), "requestMetadata": {"user": "x" * 257}})
    assert error_of(resp)[:2] == (400, "ValidationException")
