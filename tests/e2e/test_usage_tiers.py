"""OpenAI's service tiers priced as the answer reports them: a call served in ``flex`` costs the
model's flex prices, one in ``priority`` its priority prices, in the cost header and the usage
ledger (whose record names the tier), through Chat Completions and the Responses API (translated
to chat, or passed through natively), streamed or not; a model without prices for the tier is
priced at its standard prices. Embedded (SQLite) and cluster (PostgreSQL + Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import openai
import pytest

from tests.e2e.sdk import ask
from tests.ledger import Metered
from tests.servers import MASTER_KEY, Mock, openai_config, start_gateway
from tests.services import with_cluster

STANDARD = {"input_cost_per_mtok": 0.15, "output_cost_per_mtok": 0.6}
TIERS = {
    "flex_input_cost_per_mtok": 0.075, "flex_output_cost_per_mtok": 0.3,
    "priority_input_cost_per_mtok": 0.25, "priority_output_cost_per_mtok": 1.0,
}
RATES = {  # tier -> (input, output), USD per Mtok
    "default": (Decimal("0.15"), Decimal("0.6")),
    "flex": (Decimal("0.075"), Decimal("0.3")),
    "priority": (Decimal("0.25"), Decimal("1.0")),
}
MTOK = Decimal(1_000_000)


def expected(tier: str, prompt: int, completion: int) -> Decimal:
    inp, out = RATES[tier]
    return (prompt * inp + completion * out) / MTOK


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def tiers(request: pytest.FixtureRequest, mock_upstream: Mock,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Metered]:
    config = openai_config(mock_upstream)
    config["models"] = [
        {"name": "tiered", "provider": "local-openai", "model": "gpt-4o-mini", "info": {**STANDARD, **TIERS}},
        {"name": "tiered-native", "provider": "local-openai", "model": "gpt-4o-mini", "responses": "native",
         "info": {**STANDARD, **TIERS}},
        {"name": "standard-only", "provider": "local-openai", "model": "gpt-4o-mini", "info": dict(STANDARD)},
    ]
    config["spend"] = {"flush_seconds": 0.1}
    config = with_cluster(config, request, "tiers")
    tmp = tmp_path_factory.mktemp(f"tiers-{request.param}")
    gw = start_gateway(config, tmp)
    yield Metered(config, gw, tmp, MASTER_KEY)
    gw.process.stop()


@pytest.mark.parametrize("tier", ["flex", "priority", "default"])
def test_a_chat_completion_is_priced_at_the_tier_it_was_served_in(tiers: Metered, tier: str) -> None:
    raw = tiers.client.chat.completions.with_raw_response.create(
        model="tiered", messages=ask("price me by my tier"), service_tier=tier)  # type: ignore[arg-type]
    reply = raw.parse()
    assert reply.service_tier == tier and reply.usage is not None
    cost = expected(tier, reply.usage.prompt_tokens, reply.usage.completion_tokens)
    assert Decimal(raw.headers["x-switchboard-cost-usd"]) == cost > 0
    record = tiers.record(raw.headers["x-request-id"])
    assert record.cost_usd == cost
    assert record.metadata["service_tier"] == tier


def test_a_stream_is_priced_at_the_tier_its_chunks_report(tiers: Metered) -> None:
    with tiers.client.chat.completions.with_streaming_response.create(
        model="tiered", messages=ask("stream me at priority"), service_tier="priority", stream=True,
        stream_options={"include_usage": True},
    ) as raw:
        chunks = list(raw.parse())
        rid = raw.headers["x-request-id"]
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].service_tier == "priority"
    record = tiers.record(rid)
    assert record.cost_usd == expected("priority", usage.prompt_tokens, usage.completion_tokens) > 0
    assert record.metadata["service_tier"] == "priority"


@pytest.mark.parametrize("model", ["tiered", "tiered-native"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_response_is_priced_at_the_tier_it_was_served_in(tiers: Metered, model: str, stream: bool) -> None:
    if stream:
        with tiers.client.responses.with_streaming_response.create(
            model=model, input="flex, please", service_tier="flex", store=False, stream=True,
        ) as raw:
            events = list(raw.parse())
            rid = raw.headers["x-request-id"]
        response = events[-1].response  # type: ignore[union-attr]
    else:
        got = tiers.client.responses.with_raw_response.create(
            model=model, input="flex, please", service_tier="flex", store=False)
        response, rid = got.parse(), got.headers["x-request-id"]
    assert response.service_tier == "flex" and response.usage is not None
    record = tiers.record(rid)
    assert record.cost_usd == expected("flex", response.usage.input_tokens, response.usage.output_tokens) > 0
    assert record.metadata["service_tier"] == "flex"


def test_a_model_without_prices_for_the_tier_is_priced_at_its_standard_prices(tiers: Metered) -> None:
    raw = tiers.client.chat.completions.with_raw_response.create(
        model="standard-only", messages=ask("no flex prices here"), service_tier="flex")
    reply = raw.parse()
    assert reply.service_tier == "flex" and reply.usage is not None
    cost = expected("default", reply.usage.prompt_tokens, reply.usage.completion_tokens)
    assert Decimal(raw.headers["x-switchboard-cost-usd"]) == cost > 0
    record = tiers.record(raw.headers["x-request-id"])
    assert record.cost_usd == cost and record.metadata["service_tier"] == "flex"


def test_a_stream_cut_before_its_usage_is_priced_at_the_tier_its_chunks_report(tiers: Metered) -> None:
    """Every chunk of an OpenAI stream says the tier serving it: a stream whose final usage never
    comes (the upstream dropped it, or the client left) is estimated at that tier's prices, as
    OpenAI bills what it produced."""
    dropped = tiers.client.chat.completions.with_streaming_response.create(
        model="tiered", messages=ask("mock:disconnect_after=4 mock:reply=one_two_three_four_five_six"),
        service_tier="priority", stream=True)
    with dropped as raw, pytest.raises(openai.APIError):
        rid = raw.headers["x-request-id"]
        list(raw.parse())
    rids = [rid]
    leaving = tiers.client.chat.completions.with_streaming_response.create(
        model="tiered", messages=ask("mock:chunk_delay_ms=300 mock:reply=one_two_three_four_five_six_seven"),
        service_tier="priority", stream=True)
    with leaving as raw:
        rids.append(raw.headers["x-request-id"])
        # A word arrived; then the client leaves (the response is closed with the block).
        assert any(chunk.choices and chunk.choices[0].delta.content for chunk in raw.parse())
    for rid in rids:
        record = tiers.record(rid)
        assert record.metadata.get("estimated") is True  # the upstream's usage never came
        assert record.metadata["service_tier"] == "priority"
        assert record.cost_usd == expected("priority", record.prompt_tokens, record.completion_tokens) > 0
    assert tiers.record(rids[1]).metadata.get("client_disconnected") is True
