"""Server tools billed per request: the web searches an Anthropic model reports
(``usage.server_tool_use.web_search_requests``; the mock's ``mock:web_searches=N``) are charged
at the model's ``web_search_request_cost`` on top of its tokens, and counted in the record's
``metadata.units``: through the OpenAI SDK (/v1/chat/completions) and the Anthropic SDK
(/v1/messages), streamed and not, read back from the request log. Embedded (SQLite) and cluster
(PostgreSQL + Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import anthropic
import pytest

from tests.e2e.sdk import ask
from tests.e2e.test_logs_api import lookup
from tests.ledger import Metered
from tests.servers import MASTER_KEY, Mock, openai_config, start_gateway
from tests.services import with_cluster

PRICES = {"input_cost_per_mtok": 3.0, "output_cost_per_mtok": 15.0, "web_search_request_cost": 0.01}
MTOK = Decimal(1_000_000)
SEARCHES = 3


def server_tools_config(mock: Mock) -> dict[str, Any]:
    config = openai_config(mock)
    config["providers"].append(
        {"name": "claude", "type": "anthropic", "api_base": mock.url, "api_key": "${UPSTREAM_KEY}"})
    config["models"] = [
        {"name": "claude-search", "provider": "claude", "model": "claude-sonnet-4-5", "info": dict(PRICES)},
        # the shipped catalog's price: $10 per 1,000 searches
        {"name": "claude-shipped", "provider": "claude", "model": "claude-sonnet-4-5"},
    ]
    config["spend"] = {"flush_seconds": 0.1}
    return config


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def world(request: pytest.FixtureRequest, mock_upstream: Mock,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Metered]:
    config = with_cluster(server_tools_config(mock_upstream), request, "srvtools")
    tmp = tmp_path_factory.mktemp(f"srvtools-{request.param}")
    gw = start_gateway(config, tmp)
    yield Metered(config, gw, tmp, MASTER_KEY, timeout=60)
    gw.process.stop()


def expected(prompt: int, completion: int, searches: int) -> Decimal:
    return (prompt * Decimal(3) + completion * Decimal(15)) / MTOK + searches * Decimal("0.01")


def check(world: Metered, rid: str, prompt: int, completion: int, searches: int) -> None:
    record = lookup(world.gateway.url, rid)  # the request log (GET /admin/v1/logs)
    assert Decimal(record["cost_usd"]) == expected(prompt, completion, searches)
    assert record["metadata"].get("units") == ({"web_search_requests": searches} if searches else None)


@pytest.mark.parametrize("model", ["claude-search", "claude-shipped"])
@pytest.mark.parametrize("searches", [SEARCHES, 0])
def test_chat_completion_web_searches_are_charged(world: Metered, model: str, searches: int) -> None:
    text = f"look it up mock:web_searches={searches}" if searches else "no search"
    raw = world.client.chat.completions.with_raw_response.create(
        model=model, messages=ask(text), max_tokens=50)
    usage = raw.parse().usage
    assert usage is not None
    cost = expected(usage.prompt_tokens, usage.completion_tokens, searches)
    assert Decimal(raw.headers["x-switchboard-cost-usd"]) == cost
    check(world, raw.headers["x-request-id"], usage.prompt_tokens, usage.completion_tokens, searches)


def test_streamed_chat_completion_web_searches_are_charged(world: Metered) -> None:
    with world.client.chat.completions.with_streaming_response.create(
        model="claude-search", messages=ask(f"look it up mock:web_searches={SEARCHES}"), max_tokens=50,
        stream=True, stream_options={"include_usage": True},
    ) as raw:
        chunks = list(raw.parse())
        rid = raw.headers["x-request-id"]
    usage = chunks[-1].usage
    assert usage is not None
    check(world, rid, usage.prompt_tokens, usage.completion_tokens, SEARCHES)


@pytest.mark.parametrize("stream", [False, True])
def test_messages_web_searches_are_charged(world: Metered, stream: bool) -> None:
    client = anthropic.Anthropic(base_url=world.gateway.url, api_key=MASTER_KEY, max_retries=0)
    messages: Any = [{"role": "user", "content": f"look it up mock:web_searches={SEARCHES}"}]
    if stream:
        with client.messages.with_streaming_response.create(
                model="claude-search", max_tokens=50, messages=messages, stream=True) as raw:
            rid = raw.headers["x-request-id"]
            events = list(raw.parse())
        start = next(e for e in events if e.type == "message_start").message.usage
        final = next(e for e in events if e.type == "message_delta").usage
        prompt, completion = start.input_tokens, final.output_tokens
        assert final.server_tool_use is not None and final.server_tool_use.web_search_requests == SEARCHES
    else:
        raw_reply = client.messages.with_raw_response.create(
            model="claude-search", max_tokens=50, messages=messages)
        rid = raw_reply.headers["x-request-id"]
        usage = raw_reply.parse().usage
        prompt, completion = usage.input_tokens, usage.output_tokens
        assert usage.server_tool_use is not None and usage.server_tool_use.web_search_requests == SEARCHES
    check(world, rid, prompt, completion, SEARCHES)
