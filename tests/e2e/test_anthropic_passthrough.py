"""Same dialect in, same dialect out: the anthropic SDK through an ``anthropic`` upstream.

The gateway passes the Messages body through (only ``model`` rewritten) and relays the reply as
it came, so extended thinking, prompt caching, system blocks, documents, tool_result details and
the ``anthropic-beta`` header reach the upstream unchanged (read from the mock's capture), and
thinking blocks, stop sequences, refusals and cache counts come back as the upstream said them.
A group whose anthropic deployment fails falls back to an OpenAI deployment, translated as usual.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from switchboard.mock.anthropic import signature_of
from switchboard.stores.protocols import UsageRecord
from tests import ledger
from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, start_gateway

UPSTREAM_MODEL = "claude-sonnet-4-5"
BETA = "prompt-caching-2024-07-31,pdfs-2024-09-25"
THINKING = {"type": "enabled", "budget_tokens": 1024}
PNG = base64.b64encode(
    base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    )
).decode()
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
RUN = uuid.uuid4().hex[:8]  # the mock counts faults per header value: this run's own


def _config(mock: Mock) -> dict[str, Any]:
    upstream = {"type": "anthropic", "api_base": mock.url, "api_key": "${UPSTREAM_KEY}"}
    return {
        "providers": [
            {"name": "anth", **upstream},
            {"name": "anth-down", **upstream, "headers": {"x-mock-faults": f"rate=1;kinds=500;run={RUN}"}},
            {"name": "oai", "type": "openai", "api_base": f"{mock.url}/v1", "api_key": "${UPSTREAM_KEY}"},
        ],
        "models": [
            {"name": "claude-native", "provider": "anth", "model": UPSTREAM_MODEL},
            {"name": "claude-lenient", "provider": "anth", "model": UPSTREAM_MODEL, "drop_params": True},
            {"name": "claude-down", "provider": "anth-down", "model": UPSTREAM_MODEL},
            {"name": "gpt-backup", "provider": "oai", "model": "gpt-4o-mini"},
        ],
        "router": {
            "fallbacks": {"claude-down": ["gpt-backup"]},
            "fallback_on": ["server_error"],
            "groups": {"claude-down": {"num_retries": 0}},
        },
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "spend": {"flush_seconds": 0.1},
    }


@dataclass
class World:
    gateway: Gateway
    mock: Mock
    database: str

    def record(self, request_id: str) -> UsageRecord:
        return ledger.wait_for(self.database, {request_id})[request_id]


@pytest.fixture(scope="module")
def world(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    config = _config(mock_upstream)
    tmp: Path = tmp_path_factory.mktemp("anthropic-passthrough")
    gateway = start_gateway(config, tmp)
    yield World(gateway, mock_upstream, ledger.database_of(config, tmp))
    gateway.process.stop()


@pytest.fixture(scope="module")
def client(world: World) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=world.gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def create(client: anthropic.Anthropic, stream: bool, **params: Any) -> Any:
    """The final Message, streamed or not."""
    if not stream:
        return client.messages.create(**params)
    with client.messages.stream(**params) as events:
        return events.get_final_message()


def blocks(message: Any) -> list[dict[str, Any]]:
    return [b.model_dump(exclude_none=True) for b in message.content]


def only(mock: Mock, marker: str) -> dict[str, Any]:
    records = captured(mock, marker, outcome="completed")
    assert len(records) == 1, records
    return records[0]


def every_feature(marker: str) -> dict[str, Any]:
    """A Messages body using each feature the canonical round trip used to lose."""
    thought = "The user wants the weather; the tool will tell."
    return {
        "model": "claude-native",
        "max_tokens": 2000,
        "thinking": THINKING,
        "cache_control": {"type": "ephemeral"},
        "metadata": {"user_id": "user-42"},
        "service_tier": "auto",
        "system": [
            {"type": "text", "text": "You report the weather.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": f"Be brief. mock:capture={marker}"},
        ],
        "tools": [{**WEATHER, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "Paris: sunny, 24C."},
                        "title": "Forecast",
                        "context": "Issued this morning",
                        "citations": {"enabled": True},
                    },
                    {"type": "text", "text": "Weather in Paris?", "cache_control": {"type": "ephemeral"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": thought, "signature": signature_of(thought)},
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01",
                        "is_error": True,
                        "content": [
                            {"type": "text", "text": "sensor offline"},
                            {
                                "type": "image",
                                "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                            },
                        ],
                        "cache_control": {"type": "ephemeral"},
                    }
                ],
            },
        ],
    }


# -- what the upstream receives -------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_every_field_and_the_beta_header_arrive_unchanged(
    client: anthropic.Anthropic, world: World, stream: bool
) -> None:
    marker = new_marker()
    body = every_feature(marker)
    message = create(client, stream, **body, extra_headers={"anthropic-beta": BETA})
    record = only(world.mock, marker)
    expected = {**body, "model": UPSTREAM_MODEL}
    if stream:
        expected["stream"] = True
    assert record["body"] == expected
    assert record["headers"]["anthropic-beta"] == BETA
    sdk_version = client.default_headers["anthropic-version"]
    assert sdk_version != "2023-06-01"  # not the provider's default: the caller's was forwarded
    assert record["headers"]["anthropic-version"] == sdk_version
    # The reply, thinking first, as the upstream made it.
    first, answer = blocks(message)
    assert first["type"] == "thinking" and first["signature"] == signature_of(first["thinking"])
    assert answer["type"] == "text" and answer["text"].startswith("The tool returned:")
    assert message.model == UPSTREAM_MODEL and message.stop_reason == "end_turn"


def test_the_provider_version_when_the_caller_sends_none(world: World) -> None:
    marker = new_marker()
    body = {
        "model": "claude-native",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": f"hi mock:capture={marker}"}],
    }
    resp = httpx.post(
        f"{world.gateway.url}/v1/messages", headers={"x-api-key": MASTER_KEY}, json=body, timeout=30
    )
    assert resp.status_code == 200, resp.text
    record = only(world.mock, marker)
    assert record["headers"]["anthropic-version"] == "2023-06-01"
    assert "anthropic-beta" not in record["headers"]
    assert record["headers"]["x-api-key"] == "<redacted>"  # the provider's key, not the caller's
    # The upstream's Message as it came: the mock's usage carries fields a translation never wrote.
    reply = resp.json()
    assert reply["id"].startswith("msg_") and reply["model"] == UPSTREAM_MODEL
    assert reply["usage"]["service_tier"] == "standard" and "cache_creation" in reply["usage"]
    # The gateway's own headers are there as on any answer.
    assert resp.headers["request-id"] == resp.headers["x-request-id"]
    assert resp.headers["x-switchboard-deployment"] == f"anth/{UPSTREAM_MODEL}"


def test_stream_events_are_relayed_as_the_upstream_sent_them(world: World) -> None:
    body = {
        "model": "claude-native",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with httpx.stream(
        "POST", f"{world.gateway.url}/v1/messages", headers={"x-api-key": MASTER_KEY}, json=body, timeout=30
    ) as resp:
        assert resp.status_code == 200
        events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in events][:3] == ["message_start", "content_block_start", "ping"]
    assert events[0]["message"]["usage"]["service_tier"] == "standard"  # the upstream's own start event
    assert events[-1] == {"type": "message_stop"}


# -- what the client gets back --------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_cache_write_then_read_reported_and_recorded(
    client: anthropic.Anthropic, world: World, stream: bool
) -> None:
    system = [
        {
            "type": "text",
            "text": f"Rules {uuid.uuid4()} " + "word " * 60,
            "cache_control": {"type": "ephemeral"},
        }
    ]
    ids = [f"cache-{uuid.uuid4().hex}" for _ in range(2)]
    usages = []
    for rid in ids:
        message = create(
            client,
            stream,
            model="claude-native",
            max_tokens=50,
            system=system,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-request-id": rid},
        )
        usages.append(message.usage)
    write, read = usages
    assert write.cache_creation_input_tokens > 0 and not write.cache_read_input_tokens
    assert read.cache_read_input_tokens == write.cache_creation_input_tokens
    assert not read.cache_creation_input_tokens
    first, second = (world.record(rid) for rid in ids)
    assert first.cache_write_5m_tokens == write.cache_creation_input_tokens and first.cache_read_tokens == 0
    assert first.prompt_tokens == write.input_tokens + write.cache_creation_input_tokens
    assert second.cache_read_tokens == read.cache_read_input_tokens and second.cache_write_5m_tokens == 0
    assert second.prompt_tokens == read.input_tokens + read.cache_read_input_tokens
    assert second.completion_tokens == read.output_tokens > 0
    assert second.upstream_model == UPSTREAM_MODEL and second.stream is stream


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_thinking_signature_survives_a_tool_round_trip(
    client: anthropic.Anthropic, world: World, stream: bool
) -> None:
    marker = new_marker()
    history: list[dict[str, Any]] = [{"role": "user", "content": f"Weather in Paris? mock:capture={marker}"}]
    params = {"model": "claude-native", "max_tokens": 2000, "thinking": THINKING, "tools": [WEATHER]}
    first = create(client, stream, **params, messages=history)
    assert first.stop_reason == "tool_use"
    content = blocks(first)
    assert [b["type"] for b in content] == ["thinking", "text", "tool_use"]
    thinking = content[0]
    assert thinking["signature"] == signature_of(thinking["thinking"])
    call = content[2]
    history += [
        {"role": "assistant", "content": content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "24C"}]},
    ]
    second = create(client, stream, **params, messages=history)  # the mock checks the signature
    assert second.stop_reason == "end_turn" and blocks(second)[-1]["text"] == "The tool returned: 24C"
    sent = captured(world.mock, marker, count=2)[1]["body"]["messages"][1]["content"][0]
    assert sent == thinking


# Anthropic refuses these while thinking (temperature other than 1, top_p below 0.95, any top_k).
# The installed SDK has no arguments for them: sent as extra fields of the body.
CONFLICTING = {"temperature": 0.5, "top_p": 0.9, "top_k": 40}


def sent_upstream(client: anthropic.Anthropic, world: World, model: str, sampling: dict[str, Any],
                  stream: bool = False, **params: Any) -> dict[str, Any]:
    """The body the upstream got for a Messages request to ``model`` with ``sampling`` (the
    SDK's error when it was refused)."""
    marker = new_marker()
    message = create(client, stream, model=model, max_tokens=2000, extra_body=sampling,
                     messages=[{"role": "user", "content": f"hi mock:capture={marker}"}], **params)
    assert message.stop_reason == "end_turn"
    body: dict[str, Any] = only(world.mock, marker)["body"]
    return body


@pytest.mark.parametrize("thinking", [THINKING, {"type": "adaptive"}], ids=["enabled", "adaptive"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_drop_params_drops_the_sampling_settings_thinking_refuses(
    client: anthropic.Anthropic, world: World, stream: bool, thinking: dict[str, Any]
) -> None:
    sent = sent_upstream(client, world, "claude-lenient", CONFLICTING, stream, thinking=thinking)
    assert not set(CONFLICTING) & set(sent)
    assert sent["thinking"] == thinking and sent["model"] == UPSTREAM_MODEL


def test_drop_params_keeps_the_sampling_settings_thinking_allows(
    client: anthropic.Anthropic, world: World
) -> None:
    allowed = {"temperature": 1, "top_p": 0.95}
    sent = sent_upstream(client, world, "claude-lenient", allowed, thinking=THINKING)
    assert {k: sent[k] for k in allowed} == allowed


@pytest.mark.parametrize("thinking", [None, {"type": "disabled"}], ids=["absent", "disabled"])
def test_drop_params_keeps_the_sampling_settings_without_thinking(
    client: anthropic.Anthropic, world: World, thinking: dict[str, Any] | None
) -> None:
    extra = {} if thinking is None else {"thinking": thinking}
    sent = sent_upstream(client, world, "claude-lenient", CONFLICTING, **extra)
    assert {k: sent[k] for k in CONFLICTING} == CONFLICTING


@pytest.mark.parametrize("name", list(CONFLICTING))
def test_without_drop_params_anthropics_own_refusal_comes_back(
    client: anthropic.Anthropic, world: World, name: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as refused:
        sent_upstream(client, world, "claude-native", {name: CONFLICTING[name]}, thinking=THINKING)
    error = refused.value.body
    assert isinstance(error, dict) and error["error"]["type"] == "invalid_request_error"
    message = error["error"]["message"]
    assert message.startswith(f"`{name}`") and "thinking is enabled" in message
    assert refused.value.response.status_code == 400


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_stop_sequence_and_refusal_as_the_upstream_said(client: anthropic.Anthropic, stream: bool) -> None:
    stopped = create(
        client,
        stream,
        model="claude-native",
        max_tokens=50,
        stop_sequences=["Switchboard"],
        messages=[{"role": "user", "content": "hi"}],
    )
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "Switchboard")
    assert blocks(stopped)[0]["text"] == "Hello from the "
    refused = create(
        client,
        stream,
        model="claude-native",
        max_tokens=50,
        messages=[{"role": "user", "content": "mock:refuse"}],
    )
    assert refused.stop_reason == "refusal"


def test_upstream_error_mid_stream_reaches_the_client_as_an_error_event(world: World) -> None:
    body = {
        "model": "claude-native",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "hello there mock:fail_after=4"}],
    }
    with httpx.stream(
        "POST", f"{world.gateway.url}/v1/messages", headers={"x-api-key": MASTER_KEY}, json=body, timeout=30
    ) as resp:
        assert resp.status_code == 200
        events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in events] == [
        "message_start", "content_block_start", "ping", "content_block_delta", "error"]
    assert events[-1]["error"]["type"] == "overloaded_error"
    assert "Overloaded" in events[-1]["error"]["message"]


def test_upstream_error_before_any_content_is_an_error_status(world: World) -> None:
    # message_start, an empty text block's start and a ping, then overloaded_error: the client was
    # given nothing of the answer, so it gets the error as a status (which the SDKs retry), and a
    # deployment with somewhere to fall back to would have been left for it.
    body = {
        "model": "claude-native",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "hello there mock:fail_after=3"}],
    }
    resp = httpx.post(f"{world.gateway.url}/v1/messages", headers={"x-api-key": MASTER_KEY}, json=body,
                      timeout=30)
    assert resp.status_code == 503
    assert resp.json()["type"] == "error" and resp.json()["error"]["type"] == "overloaded_error"


def test_sdk_raises_on_the_error_event(client: anthropic.Anthropic) -> None:
    with (
        pytest.raises(anthropic.APIStatusError) as exc,
        client.messages.stream(
            model="claude-native",
            max_tokens=50,
            messages=[{"role": "user", "content": "hi mock:fail_after=4"}],
        ) as events,
    ):
        events.get_final_message()
    assert "Overloaded" in str(exc.value)


# -- fallback to another dialect ------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_fallback_to_openai_answers_in_anthropic_format(
    client: anthropic.Anthropic, world: World, stream: bool
) -> None:
    marker = new_marker()
    params: dict[str, Any] = {
        "model": "claude-down",
        "max_tokens": 50,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": f"Say hi mock:capture={marker}"}],
    }
    if stream:
        with client.messages.with_streaming_response.create(**params, stream=True) as raw:
            headers = raw.headers
            events = [json.loads(line[6:]) for line in raw.iter_lines() if line.startswith("data: ")]
        assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
        text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    else:
        raw_reply = client.messages.with_raw_response.create(**params)
        headers = raw_reply.headers
        message = raw_reply.parse()
        assert message.type == "message" and message.stop_reason == "end_turn"
        assert message.model == "gpt-4o-mini" and message.usage.input_tokens > 0
        text = blocks(message)[0]["text"]
    assert "Say hi" in text
    assert headers["x-switchboard-deployment"] == "oai/gpt-4o-mini"
    assert headers["x-switchboard-attempts"] == "2"
    first, second = captured(world.mock, marker, count=2)
    assert first["path"] == "/v1/messages" and first["body"]["model"] == UPSTREAM_MODEL
    # The fallback was translated: an OpenAI Chat body, the system prompt a system message.
    assert second["path"] == "/v1/chat/completions" and second["body"]["model"] == "gpt-4o-mini"
    # System blocks stay apart as text parts (the canonical form; OpenAI takes them as such).
    system = {"role": "system", "content": [{"type": "text", "text": "Be brief."}]}
    assert second["body"]["messages"][0] == system


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 10}}, "thinking.budget_tokens"),
        ({"system": [{"type": "image", "text": "x"}]}, "system.0.type"),
        ({"max_tokens": "many"}, "max_tokens"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_malformed_body_is_refused_before_the_upstream(
    world: World, change: dict[str, Any], param: str
) -> None:
    marker = new_marker()
    body = {
        "model": "claude-native",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": f"hi mock:capture={marker}"}],
    }
    resp = httpx.post(
        f"{world.gateway.url}/v1/messages",
        headers={"x-api-key": MASTER_KEY},
        json={**body, **change},
        timeout=30,
    )
    assert resp.status_code == 400
    error = resp.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert param in error["error"]["message"]
    assert captured(world.mock, marker, count=0) == []  # nothing went upstream


@pytest.mark.parametrize(
    ("option", "header"),
    [("workspace_id", "anthropic-workspace-id"), ("user_profile_id", "anthropic-user-profile-id")],
)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_workspace_and_user_profile_headers_are_refused_by_name(
    client: anthropic.Anthropic, world: World, option: str, header: str, stream: bool
) -> None:
    """The SDK sends these options as headers; they pick a workspace or user profile of the
    account the gateway's shared key opens, so they are refused rather than sent or dropped."""
    marker = new_marker()
    body = {
        "model": "claude-native",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": f"hi mock:capture={marker}"}],
    }
    with pytest.raises(anthropic.BadRequestError) as refused:
        create(client, stream, **body, **{option: "wrkspc_01abc"})
    assert refused.value.status_code == 400
    error = refused.value.body
    assert isinstance(error, dict) and error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith(f"{header}: header not supported")
    assert captured(world.mock, marker, count=0) == []  # nothing went upstream


def test_count_tokens_refuses_the_workspace_header(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.count_tokens(model="claude-native", messages=[{"role": "user", "content": "hi"}],
                                     workspace_id="wrkspc_01abc")
    assert "anthropic-workspace-id" in refused.value.message


# -- documents inside a tool_result ---------------------------------------------------------------

PDF = base64.b64encode(b"%PDF-1.4\n%%EOF\n").decode()
PDF_DOCUMENT = {"type": "document", "title": "Report",
                "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}}
URL_DOCUMENT = {"type": "document", "source": {"type": "url", "url": "https://example.com/report.pdf"}}


def _tool_turns(marker: str, documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A tool round trip whose result holds ``documents`` after a line of text."""
    return [
        {"role": "user", "content": f"Summarise the report. mock:capture={marker}"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01",
                                      "content": [{"type": "text", "text": "the report:"}, *documents]}]},
    ]


def test_pdf_and_url_documents_in_a_tool_result_pass_through(world: World) -> None:
    marker = new_marker()
    body = {"model": "claude-native", "max_tokens": 50, "tools": [WEATHER],
            "messages": _tool_turns(marker, [PDF_DOCUMENT, URL_DOCUMENT])}
    resp = httpx.post(f"{world.gateway.url}/v1/messages", headers={"x-api-key": MASTER_KEY}, json=body,
                      timeout=30)
    assert resp.status_code == 200, resp.text
    assert only(world.mock, marker)["body"] == {**body, "model": UPSTREAM_MODEL}  # as Anthropic takes it


def test_documents_in_a_tool_result_elsewhere_translated_or_refused_as_documents_are(world: World) -> None:
    # OpenAI: the PDF as a file part of the user message right after the tool message.
    marker = new_marker()
    body = {"model": "gpt-backup", "max_tokens": 50, "tools": [WEATHER],
            "messages": _tool_turns(marker, [PDF_DOCUMENT])}
    resp = httpx.post(f"{world.gateway.url}/v1/messages", headers={"x-api-key": MASTER_KEY}, json=body,
                      timeout=30)
    assert resp.status_code == 200, resp.text
    sent = only(world.mock, marker)["body"]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "user"]
    assert sent[2]["content"] == "the report:"
    [part] = sent[3]["content"]
    assert part["type"] == "file" and part["file"]["file_data"] == f"data:application/pdf;base64,{PDF}"
    # A URL document: the gateway fetches no documents, refused naming it, nothing sent.
    marker = new_marker()
    body["messages"] = _tool_turns(marker, [URL_DOCUMENT])
    resp = httpx.post(f"{world.gateway.url}/v1/messages", headers={"x-api-key": MASTER_KEY}, json=body,
                      timeout=30)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and "'url'" in error["message"], error
    assert captured(world.mock, marker, count=0) == []
