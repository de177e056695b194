"""One answer to a body that is not a JSON object, on every endpoint that takes a JSON body.

Valid JSON of another kind (``[]``, ``"x"``, ``3``), malformed JSON and an empty body are each
refused with 400 and the same words everywhere; the OpenAI-shaped endpoints (model API, media,
batches, Responses, prompt APIs, admin API) also name the same code, ``invalid_json``, and no
``param``. The Anthropic and Gemini APIs write the same message in their own error shapes, and
Cohere's rerank in its own. MCP answers JSON-RPC's own errors, and keeps them. Parsing happens
before any state is read: the embedded default suffices."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway

AUTH = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
API = "body-errors-api"
NOT_AN_OBJECT = "the request body must be a JSON object"
EMPTY = "the request body is empty; send a JSON object"
MALFORMED = "the request body is not valid JSON"

# (path, the shape of its errors)
ENDPOINTS: list[tuple[str, str]] = [
    ("/v1/chat/completions", "openai"),
    ("/v1/completions", "openai"),
    ("/v1/embeddings", "openai"),
    ("/v1/rerank", "openai"),
    ("/v1/moderations", "openai"),
    ("/v1/images/generations", "openai"),
    ("/v1/audio/speech", "openai"),
    ("/v2/rerank", "cohere"),
    ("/v1/batches", "openai"),
    ("/v1/responses", "openai"),
    (f"/apis/{API}", "openai"),
    ("/admin/v1/keys", "openai"),
    ("/v1/messages", "anthropic"),
    ("/v1/messages/count_tokens", "anthropic"),
    ("/v1beta/models/gpt-4o-mini:generateContent", "gemini"),
    ("/v1beta/models/gpt-4o-mini:streamGenerateContent?alt=sse", "gemini"),
    ("/v1beta/models/gpt-4o-mini:countTokens", "gemini"),
    ("/v1beta/models/text-embedding-3-small:embedContent", "gemini"),
    ("/v1beta/models/text-embedding-3-small:batchEmbedContents", "gemini"),
]

# (body, what the message says, whether it is the whole message)
BODIES: list[tuple[bytes, str, bool]] = [
    (b"[]", NOT_AN_OBJECT, True),
    (b'"x"', NOT_AN_OBJECT, True),
    (b"3", NOT_AN_OBJECT, True),
    (b'{"model": ', MALFORMED, False),
    (b"", EMPTY, True),
]
NAMES = ("array", "string", "number", "malformed", "empty")


@pytest.fixture(scope="module")
def gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = openai_config(mock_upstream)
    config["files"] = {"provider": "local-openai"}
    gw = start_gateway(config, tmp_path_factory.mktemp("body-errors"))
    # A published prompt API, whose body is its variables.
    prompt = {"name": API, "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hi"}],
              "variables": {"type": "object"}}
    api = {"name": API, "prompt": API, "version": 1}
    for path, body in (("/admin/v1/prompts", prompt), ("/admin/v1/apis", api)):
        made = httpx.post(gw.url + path, json=body, headers=AUTH, timeout=30)
        assert made.status_code == 201, made.text
    yield gw
    gw.process.stop()


def _error(shape: str, answer: httpx.Response) -> tuple[str, dict[str, Any]]:
    """The message, and what else the shape tells (type, code, param, status name)."""
    body = answer.json()
    if shape == "cohere":
        return body["message"], {"code": body["code"], "param": body["param"]}
    error = body["error"]
    if shape == "anthropic":
        return error["message"], {"type": error["type"]}
    if shape == "gemini":
        return error["message"], {"code": error["code"], "status": error["status"]}
    return error["message"], {"type": error["type"], "code": error["code"], "param": error["param"]}


EXPECTED = {
    "openai": {"type": "invalid_request_error", "code": "invalid_json", "param": None},
    "cohere": {"code": "invalid_json", "param": None},
    "anthropic": {"type": "invalid_request_error"},
    "gemini": {"code": 400, "status": "INVALID_ARGUMENT"},
}


# Every endpoint with every body, but a prompt API's empty body: that is a call without variables
# (test_an_empty_body_calls_a_prompt_api_without_variables).
CASES = [pytest.param(path, shape, raw, says, whole, id=f"{path}-{name}")
         for path, shape in ENDPOINTS
         for (raw, says, whole), name in zip(BODIES, NAMES, strict=True)
         if raw or not path.startswith("/apis/")]


@pytest.mark.parametrize(("path", "shape", "raw", "says", "whole"), CASES)
def test_a_body_that_is_not_a_json_object(gateway: Gateway, path: str, shape: str, raw: bytes, says: str,
                                          whole: bool) -> None:
    answer = httpx.post(gateway.url + path, content=raw, headers=AUTH, timeout=30)
    assert answer.status_code == 400, answer.text
    message, rest = _error(shape, answer)
    assert message == says if whole else message.startswith(says), message
    assert rest == EXPECTED[shape]


def test_an_empty_body_calls_a_prompt_api_without_variables(gateway: Gateway) -> None:
    answer = httpx.post(f"{gateway.url}/apis/{API}", content=b"", headers=AUTH, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == 1 and answer.json()["output"], answer.text


# MCP answers in JSON-RPC's own shape (HTTP 400, id null): not JSON is a parse error, JSON that is
# not a message (an array is a batch, which it does not take) an invalid request.
MCP_CASES = [(b"[]", -32600, "invalid_request"), (b'"x"', -32600, "invalid_request"),
             (b"3", -32600, "invalid_request"), (b'{"jsonrpc": ', -32700, "parse_error"),
             (b"", -32700, "parse_error")]


@pytest.mark.parametrize(("raw", "rpc", "code"), MCP_CASES, ids=NAMES)
def test_mcp_answers_json_rpc_errors(gateway: Gateway, raw: bytes, rpc: int, code: str) -> None:
    headers = {**AUTH, "Accept": "application/json, text/event-stream"}
    answer = httpx.post(f"{gateway.url}/mcp", content=raw, headers=headers, timeout=30)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert (body["jsonrpc"], body["id"], body["error"]["code"]) == ("2.0", None, rpc)
    assert body["error"]["data"]["code"] == code
