"""How the gateway reads an upstream's text, end to end, on every provider format that answers in
text (the mock's ``bom=1`` starts the answer with a UTF-8 byte order mark).

A UTF-8 byte order mark before a JSON reply or an event stream is allowed and ignored (RFC 8259
lets a parser ignore it, the WHATWG event-stream rules require it; the official SDKs accept
both): the caller gets the whole reply, not a 502, and a stream's first event is not lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.servers import MASTER_KEY, Gateway, Mock, start_gateway

TEXT = "héllo 😀 中文"
REPLY = f"Hello from the Switchboard mock. You said: {TEXT} mock:bom=1"


def _config(mock: Mock) -> dict[str, Any]:
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
        "router": {"num_retries": 0},
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
    }


@pytest.fixture(scope="module")
def gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(_config(mock_upstream), tmp_path_factory.mktemp("upstream-text"))
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
