"""A refusal of a translated request is named in its caller's spelling, and recorded as sent.

A ``/v1/responses`` or ``/v1/messages`` request is served in the chat form, so an adapter or an
OpenAI-type upstream refuses ``messages[k]...``; the client is told the field it sent
(``input[1].call_id``, ``messages.0.content``). The request log keeps the error its client got:
read through ``GET /admin/v1/logs``, its ``param`` and ``message`` are what the SDK raised. An
upstream's param is read in every form OpenAI-type servers write it: ``messages[1].content``,
OpenAI's own ``messages.[1].content`` and vLLM's ``messages.1.content``; the message's mentions
of it are renamed in any of those forms, and an older refusal's path at the end of its message
(it has no param) is read as its param. A Gemini API caller (``/v1beta``) is told the content and
part it sent (``contents[0].parts[1].inlineData``), at the head of the message when the refusal
did not name it there: Google's error has no param.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.servers import MASTER_KEY, Gateway, Mock, start_gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
# The text directive of a mock upstream answering 400 with this param: percent-encoded, as the
# text form takes no brackets (a header would do, but one of 20 characters is scrubbed from
# upstream errors as a credential would be).
REFUSE = "mock:status=400 mock:error_param={}"
# An OpenAI-type upstream's names of the first message after the system prompt's.
FORMS = {"openai": "messages.%5B1%5D.content", "vllm": "messages.1.content",
         "brackets": "messages%5B1%5D.content"}


@pytest.fixture(scope="module")
def gw(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    key = "${UPSTREAM_KEY}"
    providers = [
        {"name": "up-openai", "type": "openai", "api_base": f"{mock_upstream.url}/v1", "api_key": key},
        {"name": "up-anthropic", "type": "anthropic", "api_base": mock_upstream.url, "api_key": key},
    ]
    models = [
        {"name": "via-openai", "provider": "up-openai", "model": "gpt-4o-mini"},
        {"name": "via-anthropic", "provider": "up-anthropic", "model": "claude-3-5-haiku-latest"},
    ]
    config = {"providers": providers, "models": models, "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
              "request_log": {"bodies": [{"model": "via-*"}], "flush_seconds": 0.1}}
    gateway = start_gateway(config, tmp_path_factory.mktemp("refusal-names"))
    yield gateway
    gateway.process.stop()


def logged_error(gw: Gateway, rid: str, timeout: float = 20.0) -> dict[str, Any]:
    """The error the request log kept for a request (its body is written behind the response)."""
    deadline = time.monotonic() + timeout
    while True:
        resp = httpx.get(f"{gw.url}/admin/v1/logs", params={"request_id": rid, "include_bodies": "true"},
                         headers=ADMIN, timeout=10)
        assert resp.status_code == 200, resp.text
        found = [r for r in resp.json()["data"] if "response" in r]
        if found:
            return dict(json.loads(found[0]["response"])["error"])
        assert time.monotonic() < deadline, f"no body logged for {rid}"
        time.sleep(0.1)


def refused_response(gw: Gateway, model: str, given: list[Any]) -> tuple[openai.BadRequestError, str]:
    client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    rid = f"names-{uuid.uuid4().hex}"
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=model, instructions="Be brief.", input=given,  # type: ignore[arg-type]
                                tools=[WEATHER], extra_headers={"x-request-id": rid})  # type: ignore[list-item]
    return err.value, rid


def refused_message(gw: Gateway, text: str) -> tuple[anthropic.BadRequestError, str]:
    client = anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    rid = f"names-{uuid.uuid4().hex}"
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model="via-openai", max_tokens=64, system="Be brief.",
                               messages=[{"role": "user", "content": text}],
                               extra_headers={"x-request-id": rid})
    return err.value, rid


def test_an_adapters_refusal_of_an_input_item_is_logged_as_its_client_was_told(gw: Gateway) -> None:
    # An answer to no call: the adapter refuses chat messages[2].tool_call_id (the instructions
    # are messages[0]), the caller's second input item.
    err, rid = refused_response(gw, "via-anthropic", [
        {"role": "user", "content": "x"}, {"type": "function_call_output", "call_id": "nope", "output": "r"}])
    assert err.param == "input[1].call_id"
    assert isinstance(err.body, dict) and "messages[" not in err.body["message"]
    logged = logged_error(gw, rid)
    assert (logged["param"], logged["message"]) == (err.param, err.body["message"])
    assert (logged["type"], logged["code"]) == (err.body["type"], err.body["code"])


@pytest.mark.parametrize("form", FORMS)
def test_an_openai_type_upstreams_refusal_names_the_input_item(gw: Gateway, form: str) -> None:
    err, rid = refused_response(gw, "via-openai", [{"role": "user", "content": REFUSE.format(FORMS[form])}])
    assert err.param == "input[0].content"
    assert isinstance(err.body, dict)
    logged = logged_error(gw, rid)
    assert (logged["param"], logged["message"]) == (err.param, err.body["message"])


@pytest.mark.parametrize("form", FORMS)
def test_an_openai_type_upstreams_refusal_names_the_messages_field(gw: Gateway, form: str) -> None:
    # Anthropic's error body has no param: the message starts with the field, as Anthropic's own do.
    err, rid = refused_message(gw, REFUSE.format(FORMS[form]))
    assert isinstance(err.body, dict)
    told = err.body["error"]["message"]
    assert told == "messages.0.content: mock: injected error 400"
    logged = logged_error(gw, rid)
    assert (logged["param"], logged["message"]) == ("messages.0.content", told)


# OpenAI's refusal names the message one way in param and another in its text:
# param "messages.[1].content", message "Invalid type for 'messages[1].content': ...".
INVALID_TYPE = ("mock:status=400 mock:error_param=messages.%5B1%5D.content mock:error_message="
                "Invalid%20type%20for%20%27messages%5B1%5D.content%27:%20expected%20a%20string")
# Older OpenAI and Azure refusals carry no param: the path ends the message, as jsonschema writes it.
REQUIRED = ("mock:status=400 mock:error_message="
            "%27content%27%20is%20a%20required%20property%20-%20%27messages.1%27")


def test_an_upstreams_message_quoting_the_chat_path_names_the_input_item(gw: Gateway) -> None:
    err, rid = refused_response(gw, "via-openai", [{"role": "user", "content": INVALID_TYPE}])
    assert isinstance(err.body, dict)
    assert (err.param, err.body["message"]) == ("input[0].content",
                                                "Invalid type for 'input[0].content': expected a string")
    logged = logged_error(gw, rid)
    assert (logged["param"], logged["message"]) == (err.param, err.body["message"])


def test_an_upstreams_message_quoting_the_chat_path_names_the_messages_field(gw: Gateway) -> None:
    err, rid = refused_message(gw, INVALID_TYPE)
    assert isinstance(err.body, dict)
    told = err.body["error"]["message"]
    assert told == "Invalid type for 'messages.0.content': expected a string"
    logged = logged_error(gw, rid)
    assert (logged["param"], logged["message"]) == ("messages.0.content", told)


def test_an_upstreams_path_at_the_end_of_its_message_names_the_input_item(gw: Gateway) -> None:
    err, rid = refused_response(gw, "via-openai", [{"role": "user", "content": REQUIRED}])
    assert isinstance(err.body, dict)
    assert (err.param, err.body["message"]) == ("input[0]", "'content' is a required property - 'input[0]'")
    logged = logged_error(gw, rid)
    assert (logged["param"], logged["message"]) == (err.param, err.body["message"])


def test_an_upstreams_path_at_the_end_of_its_message_names_the_messages_field(gw: Gateway) -> None:
    err, rid = refused_message(gw, REQUIRED)
    assert isinstance(err.body, dict)
    told = err.body["error"]["message"]
    assert told == "'content' is a required property - 'messages.0'"
    logged = logged_error(gw, rid)
    assert (logged["param"], logged["message"]) == ("messages.0", told)


def test_an_upstreams_path_at_the_end_of_its_message_is_the_chat_callers_param(gw: Gateway) -> None:
    # The chat caller sent the chat form: the path is told as the upstream wrote it, now as param too.
    client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="via-openai", messages=[
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": REQUIRED}])
    assert isinstance(err.value.body, dict)
    assert (err.value.param, err.value.body["message"]) == (
        "messages.1", "'content' is a required property - 'messages.1'")


# Some OpenAI-compatible hosts wrap the param in quotes: "param": "'messages.[1].content'".
QUOTED = REFUSE.format("%27messages.%5B1%5D.content%27")


def test_an_upstreams_quoted_param_names_the_input_item(gw: Gateway) -> None:
    err, rid = refused_response(gw, "via-openai", [{"role": "user", "content": QUOTED}])
    assert err.param == "input[0].content"
    assert isinstance(err.body, dict)
    logged = logged_error(gw, rid)
    assert (logged["param"], logged["message"]) == (err.param, err.body["message"])


def test_an_upstreams_quoted_param_names_the_messages_field(gw: Gateway) -> None:
    err, _ = refused_message(gw, QUOTED)
    assert isinstance(err.body, dict)
    assert err.body["error"]["message"] == "messages.0.content: mock: injected error 400"


def test_an_upstreams_quoted_param_reaches_a_chat_caller_unquoted(gw: Gateway) -> None:
    client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="via-openai", messages=[
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": QUOTED}])
    assert err.value.param == "messages.[1].content"


def refused_gemini(gw: Gateway, model: str, parts: list[dict[str, Any]],
                   method: str = "generateContent") -> tuple[dict[str, Any], str]:
    """A generateContent (or ``method``) request, after a system instruction and a model turn,
    refused: Google's error object, and the request id."""
    rid = f"names-{uuid.uuid4().hex}"
    body = {"systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [{"role": "user", "parts": [{"text": "hello"}]},
                         {"role": "model", "parts": [{"text": "hi"}]}, {"role": "user", "parts": parts}]}
    resp = httpx.post(f"{gw.url}/v1beta/models/{model}:{method}?alt=sse", json=body,
                      headers={"x-goog-api-key": MASTER_KEY, "x-request-id": rid}, timeout=30)
    assert resp.status_code == 400, resp.text
    return dict(resp.json()["error"]), rid


@pytest.mark.parametrize(("model", "part", "told"), [
    # A part the provider cannot take: messages[3].content[1].
    ("via-anthropic", {"inlineData": {"mimeType": "image/bmp", "data": "aGk="}},
     "contents[2].parts[1].inlineData: image type 'image/bmp' is not supported by provider type 'anthropic'"),
    ("via-openai", {"fileData": {"fileUri": "https://example.com/a.wav", "mimeType": "audio/wav"}},
     "contents[2].parts[1].fileData.fileUri: provider type 'openai' takes files only inline"),
])
def test_a_gateway_refusal_of_a_part_names_the_gemini_part(
    gw: Gateway, model: str, part: dict[str, Any], told: str,
) -> None:
    error, rid = refused_gemini(gw, model, [{"text": "look"}, part])
    assert error["message"].startswith(told), error["message"]
    assert "messages[" not in error["message"]
    logged = logged_error(gw, rid)
    assert logged["message"] == error["message"]


@pytest.mark.parametrize("method", ["generateContent", "streamGenerateContent"])
def test_an_openai_type_upstreams_refusal_names_the_gemini_part(gw: Gateway, method: str) -> None:
    # messages.[3].content: the third content's lone text part.
    parts = [{"text": REFUSE.format("messages.%5B3%5D.content")}]
    error, rid = refused_gemini(gw, "via-openai", parts, method)
    assert error["message"] == "contents[2].parts[0].text: mock: injected error 400"
    logged = logged_error(gw, rid)
    assert (logged["param"], logged["message"]) == ("contents[2].parts[0].text", error["message"])


def test_an_upstreams_message_quoting_the_chat_path_names_the_gemini_part(gw: Gateway) -> None:
    text = INVALID_TYPE.replace("%5B1%5D", "%5B3%5D")
    error, _ = refused_gemini(gw, "via-openai", [{"text": "look"}, {"text": text}])
    assert error["message"] == "Invalid type for 'contents[2].parts': expected a string"


def test_a_refused_system_instruction_names_it(gw: Gateway) -> None:
    error, _ = refused_gemini(gw, "via-openai", [{"text": REFUSE.format("messages.0.content")}])
    assert error["message"] == "systemInstruction: mock: injected error 400"
