"""The bad-input table: each malformed request gets its documented status and an OpenAI error
body, and the gateway keeps serving afterwards."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from tests.servers import MASTER_KEY, Gateway

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
JSON = {**AUTH, "Content-Type": "application/json"}
MSGS = [{"role": "user", "content": "hi"}]


def chat(**fields: Any) -> bytes:
    return orjson.dumps({"model": "gpt-4o-mini", "messages": MSGS, **fields})


def nested(depth: int) -> bytes:
    return b'{"model":"gpt-4o-mini","messages":' + b"[" * depth + b"]" * depth + b"}"


# (id, path, headers, body, status, expected param or None)
CASES: list[tuple[str, str, dict[str, str], bytes, int, str | None]] = [
    ("invalid-json", "/chat/completions", JSON, b'{"model": "gpt-4o-mini", "messages": [', 400, None),
    ("json-array-body", "/chat/completions", JSON, b"[1, 2]", 400, None),
    ("empty-body", "/chat/completions", JSON, b"", 400, None),
    ("non-utf8", "/chat/completions", JSON, b'{"model": "\xff\xfe", "messages": []}', 400, None),
    ("deeply-nested", "/chat/completions", JSON, nested(5000), 400, None),
    ("missing-model", "/chat/completions", JSON, orjson.dumps({"messages": MSGS}), 400, "model"),
    ("model-not-string", "/chat/completions", JSON, chat(model=42), 400, "model"),
    ("missing-messages", "/chat/completions", JSON, orjson.dumps({"model": "gpt-4o-mini"}), 400, "messages"),
    ("messages-not-array", "/chat/completions", JSON, chat(messages="hi"), 400, "messages"),
    ("empty-messages", "/chat/completions", JSON, chat(messages=[]), 400, "messages"),
    ("message-not-object", "/chat/completions", JSON, chat(messages=["hi"]), 400, "messages[0]"),
    ("missing-role", "/chat/completions", JSON, chat(messages=[{"content": "x"}]), 400, "messages[0].role"),
    (
        "unknown-role",
        "/chat/completions",
        JSON,
        chat(messages=[{"role": "wizard", "content": "x"}]),
        400,
        "messages[0].role",
    ),
    (
        "content-wrong-type",
        "/chat/completions",
        JSON,
        chat(messages=[{"role": "user", "content": 5}]),
        400,
        "messages[0].content",
    ),
    (
        "tool-without-call-id",
        "/chat/completions",
        JSON,
        chat(messages=[{"role": "tool", "content": "x"}]),
        400,
        "messages[0].tool_call_id",
    ),
    (
        "assistant-without-content",
        "/chat/completions",
        JSON,
        chat(messages=[*MSGS, {"role": "assistant"}, *MSGS]),
        400,
        "messages[1].content",
    ),
    (
        "assistant-audio-without-id",
        "/chat/completions",
        JSON,
        chat(messages=[*MSGS, {"role": "assistant", "audio": {"format": "wav"}}, *MSGS]),
        400,
        "messages[1].audio.id",
    ),
    ("negative-max-tokens", "/chat/completions", JSON, chat(max_tokens=-5), 400, "max_tokens"),
    ("max-tokens-string", "/chat/completions", JSON, chat(max_tokens="10"), 400, "max_tokens"),
    ("temperature-too-high", "/chat/completions", JSON, chat(temperature=9), 400, "temperature"),
    ("stream-not-bool", "/chat/completions", JSON, chat(stream="yes"), 400, "stream"),
    ("n-zero", "/chat/completions", JSON, chat(n=0), 400, "n"),
    ("tools-not-array", "/chat/completions", JSON, chat(tools={"type": "function"}), 400, "tools"),
    (
        "tool-without-name",
        "/chat/completions",
        JSON,
        chat(tools=[{"type": "function", "function": {}}]),
        400,
        "tools[0].function.name",
    ),
    ("bad-tool-choice", "/chat/completions", JSON, chat(tool_choice="sometimes"), 400, "tool_choice"),
    (
        "bad-response-format",
        "/chat/completions",
        JSON,
        chat(response_format={"type": "yaml"}),
        400,
        "response_format.type",
    ),
    ("too-many-stops", "/chat/completions", JSON, chat(stop=["a", "b", "c", "d", "e"]), 400, "stop"),
    (
        "stream-options-without-stream",
        "/chat/completions",
        JSON,
        chat(stream_options={"include_usage": True}),
        400,
        "stream_options",
    ),
    (
        "embeddings-empty-input",
        "/embeddings",
        JSON,
        orjson.dumps({"model": "text-embedding-3-small", "input": ""}),
        400,
        "input",
    ),
    (
        "embeddings-missing-input",
        "/embeddings",
        JSON,
        orjson.dumps({"model": "text-embedding-3-small"}),
        400,
        "input",
    ),
    (
        "completions-missing-prompt",
        "/completions",
        JSON,
        orjson.dumps({"model": "gpt-3.5-turbo-instruct"}),
        400,
        "prompt",
    ),
    ("wrong-content-type", "/chat/completions", {**AUTH, "Content-Type": "text/plain"}, chat(), 415, None),
    (
        "form-content-type",
        "/chat/completions",
        {**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
        b"model=gpt-4o-mini",
        415,
        None,
    ),
    ("unknown-model", "/chat/completions", JSON, chat(model="gpt-9"), 404, "model"),
    ("model-with-crlf", "/chat/completions", JSON, chat(model="x\r\nSet-Cookie: a=b"), 404, "model"),
    ("missing-key", "/chat/completions", {"Content-Type": "application/json"}, chat(), 401, None),
    (
        "wrong-key",
        "/chat/completions",
        {"Authorization": "Bearer nope", "Content-Type": "application/json"},
        chat(),
        401,
        None,
    ),
    (
        "basic-auth-scheme",
        "/chat/completions",
        {"Authorization": "Basic Zm9vOmJhcg==", "Content-Type": "application/json"},
        chat(),
        401,
        None,
    ),
    (
        "huge-body",
        "/chat/completions",
        JSON,
        b'{"model":"gpt-4o-mini","pad":"' + b"a" * (33 * 1024 * 1024) + b'"}',
        413,
        None,
    ),
    # A malformed include next to a field only a native deployment serves: the include is refused
    # as malformed (400), not read as a list of names (a 500 on its first object).
    *(
        (f"responses-include-{name}-with-conversation", "/responses", JSON,
         orjson.dumps({"model": "gpt-4o-mini", "input": "hi", "conversation": "conv_1", "include": [item]}),
         400, "include")
        for name, item in (("object", {}), ("array", ["reasoning.encrypted_content"]))
    ),
]


def check_error_body(resp: httpx.Response, status: int, param: str | None) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in error["message"]
    if param is not None:
        assert error["param"] == param


@pytest.fixture(scope="module")
def http(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.base_url, timeout=30) as c:
        yield c


@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "param"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input(
    http: httpx.Client, path: str, headers: dict[str, str], body: bytes, status: int, param: str | None
) -> None:
    resp = http.post(path, headers=headers, content=body)
    check_error_body(resp, status, param)
    assert "set-cookie" not in resp.headers


def test_chunked_body_over_limit_is_413(http: httpx.Client) -> None:
    def pieces() -> Iterator[bytes]:
        yield b'{"model":"gpt-4o-mini","pad":"'
        for _ in range(34):
            yield b"a" * (1024 * 1024)
        yield b'"}'

    check_error_body(http.post("/chat/completions", headers=JSON, content=pieces()), 413, None)


def test_declared_length_over_limit_is_rejected_before_body(gateway: Gateway) -> None:
    raw = raw_request(
        gateway.port,
        (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + MASTER_KEY.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n"
        ),
    )
    assert raw.startswith(b"HTTP/1.1 413")
    assert b'"code":"request_too_large"' in raw


def test_wrong_method_is_405(http: httpx.Client) -> None:
    resp = http.get("/chat/completions", headers=AUTH)
    check_error_body(resp, 405, None)
    assert resp.headers["allow"] == "POST"  # RFC 9110: a 405 names the methods the path answers
    assert http.delete(f"{gateway_url(http)}/health/live").headers["allow"] == "GET, HEAD"


def gateway_url(http: httpx.Client) -> str:
    return str(http.base_url).removesuffix("/").removesuffix("/v1")


def test_head_answers_where_get_does(http: httpx.Client) -> None:
    # Uptime checkers probe with HEAD: the GET's status and head, no body.
    resp = http.head(f"{gateway_url(http)}/health/live")
    assert resp.status_code == 200 and resp.content == b""
    assert resp.headers["content-type"].startswith("application/json") and "x-request-id" in resp.headers
    # The connection is still in step.
    assert http.get(f"{gateway_url(http)}/health/live").json() == {"status": "ok"}


def test_head_answers_where_get_does_on_routes_with_a_parameter(http: httpx.Client) -> None:
    body = orjson.dumps({"model": "gpt-4o-mini", "input": "hi"})
    stored = http.post("/responses", headers=JSON, content=body)
    assert stored.status_code == 200, stored.text
    rid = stored.json()["id"]
    for path in ("/models/gpt-4o-mini", f"/responses/{rid}", f"/responses/{rid}/input_items", "/files",
                 "/batches", "/responses/resp_none"):
        got, head = http.get(path, headers=AUTH), http.head(path, headers=AUTH)
        assert (head.status_code, head.content) == (got.status_code, b""), path
        assert head.headers["content-type"] == got.headers["content-type"], path
    assert http.head("/responses/resp_none", headers=AUTH).status_code == 404


def test_a_wrong_method_on_a_path_with_a_parameter_is_405(http: httpx.Client) -> None:
    # (POST under /v1/models/ is Gemini's native API: another method there.)
    for method, path, allow in (("POST", "/responses/resp_x", "DELETE, GET, HEAD"),
                                ("PUT", "/responses/resp_x/input_items", "GET, HEAD"),
                                ("DELETE", "/responses/resp_x/cancel", "POST"),
                                ("GET", "/responses/input_tokens/cancel", "POST"),
                                ("DELETE", "/models/gpt-4o-mini", "GET, HEAD")):
        resp = http.request(method, path, headers=JSON, content=b"{}")
        check_error_body(resp, 405, None)
        assert resp.json()["error"]["code"] == "method_not_allowed" and resp.headers["allow"] == allow, path
    check_error_body(http.post("/responses/resp_x/nope", headers=JSON, content=b"{}"), 404, None)


def test_a_wrong_method_on_the_input_token_count_is_405(http: httpx.Client) -> None:
    """``/responses/input_tokens`` answers POST only: another method is a 405 naming it, not a
    lookup of a stored response whose id would be ``input_tokens`` (404 ``response_not_found``)."""
    root = gateway_url(http)
    for path in (f"{root}/v1/responses/input_tokens", f"{root}/responses/input_tokens"):
        for method in ("GET", "DELETE"):
            resp = http.request(method, path, headers=AUTH)
            check_error_body(resp, 405, None)
            assert resp.json()["error"]["code"] == "method_not_allowed", (method, path)
            assert resp.headers["allow"] == "POST", (method, path)
        head = http.head(path, headers=AUTH)
        assert (head.status_code, head.headers["allow"], head.content) == (405, "POST", b""), path
    # A stored response's cancel likewise answers POST only.
    resp = http.get(f"{root}/v1/responses/resp_x/cancel", headers=AUTH)
    check_error_body(resp, 405, None)
    assert resp.headers["allow"] == "POST"


def test_unknown_path_is_404(http: httpx.Client) -> None:
    check_error_body(http.post("/nope", headers=JSON, content=b"{}"), 404, None)


def raw_request(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and b"}" in chunk:
                break
        return b"".join(chunks)


@pytest.mark.parametrize(
    "header",
    [
        b"X-Request-Id: abc\rInjected: yes",
        b"Authorization: Bearer k\x00ey",
        b"X-Custom: a\nInjected: yes",
    ],
)
def test_header_injection_attempts_get_json_400(gateway: Gateway, header: bytes) -> None:
    raw = raw_request(
        gateway.port,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        + header
        + b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    )
    assert raw.startswith(b"HTTP/1.1 400")
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert orjson.loads(body)["error"]["type"] == "invalid_request_error"
    assert b"Injected" not in raw


def test_unsafe_request_id_is_not_echoed(http: httpx.Client) -> None:
    resp = http.post("/chat/completions", headers={**JSON, "X-Request-Id": "a" * 300}, content=chat())
    assert resp.status_code == 200
    assert resp.headers["x-request-id"] != "a" * 300


def test_a_bad_tool_name_is_named_at_its_place(gateway: Gateway, client: openai.OpenAI) -> None:
    # The fourth tool is the bad one: each API names it as its callers spell it, keeping the code.
    schema = {"type": "object", "properties": {}}
    with pytest.raises(openai.BadRequestError) as chat_err:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSGS,  # type: ignore[arg-type]
                                       tools=[{"type": "function", "function": {"name": f"ok_{i}"}}
                                              for i in range(3)]
                                       + [{"type": "function", "function": {"name": "no spaces"}}])
    assert chat_err.value.param == "tools[3].function.name" and chat_err.value.code == "invalid_value"
    assert "'tools[3].function.name'" in chat_err.value.message
    responses_tools: list[Any] = [{"type": "function", "name": f"ok_{i}", "parameters": schema}
                                  for i in range(3)]
    with pytest.raises(openai.BadRequestError) as responses_err:
        client.responses.create(model="gpt-4o-mini", input="hi",
                                tools=[*responses_tools,
                                       {"type": "function", "name": "no spaces", "parameters": schema}])
    assert responses_err.value.param == "tools[3].name" and responses_err.value.code == "invalid_value"
    claude = anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    messages_tools: list[Any] = [{"name": f"ok_{i}", "input_schema": schema} for i in range(3)]
    with pytest.raises(anthropic.BadRequestError) as messages_err:
        claude.messages.create(model="gpt-4o-mini", max_tokens=16,
                               messages=[{"role": "user", "content": "hi"}],
                               tools=[*messages_tools, {"name": "no spaces", "input_schema": schema}])
    # Anthropic's error body has no param: its message names the place, as Anthropic spells it.
    error = messages_err.value.body["error"]  # type: ignore[index]
    assert error["type"] == "invalid_request_error" and error["message"].startswith("tools.3.name: ")


@pytest.mark.parametrize(("fields", "param"), [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": 7, "schema": {}}}},
     "response_format.json_schema.name"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
     "response_format.json_schema.name"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    ({"response_format": {"type": "yaml"}}, "response_format.type"),
    ({"response_format": "json"}, "response_format"),  # the whole value is wrong: named as a whole
    ({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),  # without stream: the whole of it
])
def test_a_bad_part_of_response_format_or_stream_options_is_named_at_its_path(
        client: openai.OpenAI, fields: dict[str, Any], param: str) -> None:
    """As OpenAI names it, the path of the offending value, not only the top-level field."""
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, **fields)  # type: ignore[arg-type]
    assert err.value.param == param and err.value.code == "invalid_value"
    assert f"'{param}'" in err.value.message


def test_a_bad_stream_option_of_a_completion_is_named_at_its_path(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="gpt-4o-mini", prompt="hi", stream=True,
                                  stream_options={"include_usage": 1})  # type: ignore[typeddict-item]
    assert err.value.param == "stream_options.include_usage" and err.value.code == "invalid_value"


def test_gateway_still_healthy_after_the_table(gateway: Gateway, client: openai.OpenAI) -> None:
    assert httpx.get(f"{gateway.url}/health/ready").status_code == 200
    assert httpx.get(f"{gateway.url}/health/live").json() == {"status": "ok"}
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)  # type: ignore[arg-type]
    assert resp.choices[0].message.content
    assert gateway.process.proc.poll() is None
