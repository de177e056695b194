"""Long-context surcharges: a call whose prompt is over the model's long-context threshold costs,
all its tokens, the model's long-context prices, in the cost header and the usage ledger, through
the OpenAI SDK to a Gemini and an Anthropic deployment; a prompt under the threshold costs the
standard prices; a budget reserves at the long-context prices for a prompt estimated over it.
Embedded (SQLite) and cluster (PostgreSQL + Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.sdk import ask
from tests.ledger import Metered
from tests.servers import MASTER_KEY, Mock, openai_config, start_gateway
from tests.services import with_cluster

THRESHOLD = 1000  # small, so that a prompt over it stays a small request
PRICES = {
    "input_cost_per_mtok": 1.25, "output_cost_per_mtok": 10.0,
    "long_context_threshold_tokens": THRESHOLD,
    "long_context_input_cost_per_mtok": 2.5, "long_context_output_cost_per_mtok": 15.0,
}
MTOK = Decimal(1_000_000)


def expected(prompt: int, completion: int) -> Decimal:
    inp, out = (Decimal("2.5"), Decimal(15)) if prompt > THRESHOLD else (Decimal("1.25"), Decimal(10))
    return (prompt * inp + completion * out) / MTOK


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def world(request: pytest.FixtureRequest, mock_upstream: Mock,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Metered]:
    config = openai_config(mock_upstream)
    config["providers"] += [
        {"name": "studio", "type": "gemini", "api_base": mock_upstream.url, "api_key": "${UPSTREAM_KEY}"},
        {"name": "claude", "type": "anthropic", "api_base": mock_upstream.url, "api_key": "${UPSTREAM_KEY}"},
    ]
    config["models"] = [
        {"name": "gemini-long", "provider": "studio", "model": "gemini-2.5-pro", "info": dict(PRICES)},
        {"name": "claude-long", "provider": "claude", "model": "claude-sonnet-4-5-20250929",
         "info": {**PRICES, "context_window": 1_000_000}},
    ]
    config["spend"] = {"flush_seconds": 0.1}
    config = with_cluster(config, request, "longctx")
    tmp = tmp_path_factory.mktemp(f"longctx-{request.param}")
    gw = start_gateway(config, tmp)
    yield Metered(config, gw, tmp, MASTER_KEY, timeout=60)
    gw.process.stop()


def long_prompt() -> str:
    return "word " * (THRESHOLD + 200)


@pytest.mark.parametrize("model", ["gemini-long", "claude-long"])
@pytest.mark.parametrize("size", ["long", "short"])
def test_a_prompt_over_the_threshold_is_priced_at_the_long_context_prices(
        world: Metered, model: str, size: str) -> None:
    text = long_prompt() if size == "long" else "a short question"
    raw = world.client.chat.completions.with_raw_response.create(
        model=model, messages=ask(text), max_tokens=50)
    reply = raw.parse()
    assert reply.usage is not None
    prompt, completion = reply.usage.prompt_tokens, reply.usage.completion_tokens
    assert (prompt > THRESHOLD) == (size == "long")
    cost = expected(prompt, completion)
    assert Decimal(raw.headers["x-switchboard-cost-usd"]) == cost > 0
    assert world.record(raw.headers["x-request-id"]).cost_usd == cost


@pytest.mark.parametrize("model", ["gemini-long", "claude-long"])
def test_a_stream_over_the_threshold_is_priced_at_the_long_context_prices(world: Metered, model: str) -> None:
    with world.client.chat.completions.with_streaming_response.create(
        model=model, messages=ask(long_prompt()), max_tokens=50, stream=True,
        stream_options={"include_usage": True},
    ) as raw:
        chunks = list(raw.parse())
        rid = raw.headers["x-request-id"]
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens > THRESHOLD
    assert world.record(rid).cost_usd == expected(usage.prompt_tokens, usage.completion_tokens)


def test_a_budget_reserves_at_the_long_context_prices(world: Metered) -> None:
    """A prompt of some 1,200 tokens and 100 output tokens is at most $0.0025 at the standard
    prices, $0.0045 at the long-context ones: past a $0.0035 budget, as larger than it. A short
    prompt ($0.001) passes."""
    created = httpx.post(f"{world.gateway.url}/admin/v1/keys",
                         json={"models": ["*"], "max_budget_usd": 0.0035},
                         headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10)
    assert created.status_code == 201, created.text
    client = openai.OpenAI(base_url=world.gateway.base_url, api_key=created.json()["key"], max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="gemini-long", messages=ask(long_prompt()), max_tokens=100)
    body: Any = refused.value.body
    assert body["code"] == "request_exceeds_budget"
    reply = client.chat.completions.create(model="gemini-long", messages=ask("short"), max_tokens=100)
    assert reply.usage is not None and reply.usage.prompt_tokens < THRESHOLD
