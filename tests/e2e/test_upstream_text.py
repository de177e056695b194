"""Text on the wire between the gateway and upstreams, end to end.

- A UTF-8 byte order mark before a JSON reply or an event stream (the mock's ``bom=1``) is
  allowed and ignored (RFC 8259 lets a parser ignore it, the WHATWG event-stream rules require
  it; the official SDKs accept both), on every provider format that answers in text: the caller
  gets the whole reply, not a 502, and a stream's first event is not lost.
- A caller's header value that the gateway relays (``anthropic-beta`` and ``anthropic-version``
  on a same-dialect call, every header of a service call) arrives with the bytes it was sent
  with when they are UTF-8, not re-encoded into something else.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.e2e.test_services import Upstream, start_upstream
from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, start_gateway

TEXT = "héllo 😀 中文"
REPLY = f"Hello from the Switchboard mock. You said: {TEXT} mock:bom=1"


def _config(mock: Mock, service: Upstream) -> dict[str, Any]:
    key = "${UPSTREAM_KEY}"
    providers = [
        {"name": "oa", "type": "openai", "api_base": f"{mock.url}/v1", "api_key": key},
        {"name": "az", "type": "azure", "api_base": mock.url, "api_key": key},
        {"name": "mi", "type": "mistral", "api_base": f"{mock.url}/mistral/v1", "api_key": key},
        {"name": "oc", "type": "openai-compatible", "api_base": f"{mock.url}/v1", "api_key": key},
        {"name": "an", "type": "anthropic", "api_base": mock.url, "api_key": key},
        {"name": "ge", "type": "gemini", "api_base": mock.url, "api_key": key},
        {"name": "co", "type": "cohere", "api_base": mock.url, "api_key": key},
    ]
    upstream = {"oa": "gpt-4o-mini", "az": "gpt-4o-mini", "mi": "mistral-small-latest", "oc": "gpt-4o-mini",
                "an": "claude-3-5-haiku-latest", "ge": "gemini-1.5-flash", "co": "command-r"}
    return {
        "providers": providers,
        "models": [{"name": f"m-{p}", "provider": p, "model": m} for p, m in upstream.items()],
        "services": [{"name": "echo", "url": service.url}],
        "router": {"num_retries": 0},
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
    }


@pytest.fixture(scope="module")
def service() -> Iterator[Upstream]:
    up = start_upstream()
    yield up
    up.process.stop()


@pytest.fixture(scope="module")
def gateway(
    mock_upstream: Mock, service: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gw = start_gateway(_config(mock_upstream, service), tmp_path_factory.mktemp("upstream-text"))
    yield gw
    gw.process.stop()


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


MODELS = ["m-oa", "m-az", "m-mi", "m-oc", "m-an", "m-ge", "m-co"]


@pytest.mark.parametrize("model", MODELS)
def test_a_reply_that_starts_with_a_byte_order_mark_is_read(client: openai.OpenAI, model: str) -> None:
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": f"{TEXT} mock:bom=1"}])
    assert reply.choices[0].message.content == REPLY
    assert reply.usage is not None and reply.usage.completion_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_a_stream_that_starts_with_a_byte_order_mark_loses_no_event(
    client: openai.OpenAI, model: str
) -> None:
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": f"{TEXT} mock:bom=1"}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    # The first event (a role, or already some of the text) is there like every other.
    assert deltas[0].role == "assistant"
    assert "".join(d.content or "" for d in deltas) == REPLY
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_the_anthropic_api_reads_a_reply_that_starts_with_a_byte_order_mark(gateway: Gateway) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    for model in ("m-an", "m-ge"):  # same dialect (passed through) and translated
        message = client.messages.create(
            model=model, max_tokens=100, messages=[{"role": "user", "content": f"{TEXT} mock:bom=1"}])
        assert message.content[0].type == "text" and message.content[0].text == REPLY
        with client.messages.stream(model=model, max_tokens=100,
                                    messages=[{"role": "user", "content": f"{TEXT} mock:bom=1"}]) as stream:
            assert "".join(stream.text_stream) == REPLY
            assert stream.get_final_message().usage.output_tokens > 0


# A header value in UTF-8, as a client writes it (raw bytes: HTTP has no other encoding).
UTF8_VALUE = "café-2025 中文 😀".encode()
DISPOSITION = 'attachment; filename="résumé.txt"'.encode()


def as_received(value: bytes) -> str:
    """How the mock and the test service show a header value: its bytes read as latin-1."""
    return value.decode("latin-1")


def test_a_relayed_anthropic_header_reaches_the_upstream_with_its_bytes(
    gateway: Gateway, mock_upstream: Mock
) -> None:
    marker = new_marker()
    body = {"model": "m-an", "max_tokens": 50,
            "messages": [{"role": "user", "content": f"hi mock:capture={marker}"}]}
    resp = httpx.post(f"{gateway.url}/v1/messages", json=body, timeout=30, headers=[
        (b"x-api-key", MASTER_KEY.encode()), (b"anthropic-version", b"2023-06-01"),
        (b"anthropic-beta", b"tools-2024-04-04," + UTF8_VALUE)])
    assert resp.status_code == 200, resp.text
    sent = captured(mock_upstream, marker)[-1]["headers"]
    assert sent["anthropic-beta"] == as_received(b"tools-2024-04-04," + UTF8_VALUE)


def test_a_service_call_relays_a_utf8_header_value_as_it_came(gateway: Gateway) -> None:
    resp = httpx.get(f"{gateway.url}/services/echo/hello", timeout=30, headers=[
        (b"authorization", f"Bearer {MASTER_KEY}".encode()), (b"x-name", UTF8_VALUE),
        (b"content-disposition", DISPOSITION)])
    assert resp.status_code == 200, resp.text
    sent = resp.json()["headers"]
    assert sent["x-name"] == as_received(UTF8_VALUE)
    assert sent["content-disposition"] == as_received(DISPOSITION)


@pytest.mark.parametrize("model", ["m-oa", "m-an"])
def test_a_stream_request_answered_with_json_that_starts_with_a_byte_order_mark(
    client: openai.OpenAI, model: str
) -> None:
    """An upstream that answers a stream request with JSON, BOM first, is read as JSON: its error
    keeps its own status; a whole answer is refused as it is without the BOM."""
    failing = [{"role": "user", "content": "mock:bom=1 mock:stream_json=1 mock:status=429"}]
    with pytest.raises(openai.RateLimitError):
        list(client.chat.completions.create(model=model, messages=failing, stream=True))
    whole = [{"role": "user", "content": "mock:bom=1 mock:stream_json=1"}]
    with pytest.raises(openai.InternalServerError) as refused:
        list(client.chat.completions.create(model=model, messages=whole, stream=True))
    assert "answered a stream request with a JSON body" in refused.value.message
