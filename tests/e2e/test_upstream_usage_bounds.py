"""Token counts an upstream should never report, end to end: a count near 2**64 (a broken or
hostile upstream), a negative one, a float, a string, null. Whatever the upstream says, in the
OpenAI, Anthropic and Gemini shapes, streamed or not, translated or passed through: the caller
gets its answer, and the call's usage record is written (docs/spend.md, "Counts an upstream
reports"): a count above the bound is recorded as the bound and flagged ``usage_clamped``, a
count that is not a whole number of tokens counts as none and is flagged ``usage_invalid`` (a
missing one, null, is not). Checked in the ledger and through the usage API. An answer with no
usage at all is estimated, and its budgets and token limit count the estimate. On the embedded
default (SQLite) and on a cluster (PostgreSQL + Redis)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from switchboard.providers.counts import TOKENS_MAX
from switchboard.stores.protocols import UsageRecord
from tests import ledger
from tests.servers import MASTER_KEY, Gateway, start_gateway
from tests.services import Postgres, RedisServer
from tests.usage_upstream import ANSWER, NO_USAGE, UsageUpstream

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
PRICES = {"input_cost_per_mtok": 3.0, "output_cost_per_mtok": 15.0}
MODELS = ("gpt-usage", "claude-usage", "gemini-usage")
HUGE = 2**64 - 1  # the largest integer a JSON parser of the gateway reads as one
# Counts that are no whole number of tokens.
NOT_COUNTS: list[Any] = [-5, 12.5, "12", None]


@dataclass
class World:
    config: dict[str, Any]
    tmp: Path
    gateway: Gateway

    def records(self, ids: set[str]) -> dict[str, UsageRecord]:
        return ledger.wait_for(ledger.database_of(self.config, self.tmp), ids)

    def openai(self, rid: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30,
                             default_headers={"x-request-id": rid})

    def anthropic(self, rid: str) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30,
                                   default_headers={"x-request-id": rid})


def _config(up: UsageUpstream) -> dict[str, Any]:
    return {
        "providers": [
            {"name": "oai", "type": "openai", "api_base": f"{up.url}/v1", "api_key": "k"},
            {"name": "silent", "type": "openai-compatible", "api_base": f"{up.url}/v1", "api_key": "k"},
            {"name": "anth", "type": "anthropic", "api_base": up.url, "api_key": "k"},
            {"name": "studio", "type": "gemini", "api_base": up.url, "api_key": "k"},
        ],
        "models": [
            {"name": "gpt-usage", "provider": "oai", "model": "gpt-4o-mini", "info": PRICES},
            # A host that reports no usage at all, as some OpenAI-compatible ones do.
            {"name": "gpt-silent", "provider": "silent", "model": "gpt-4o-mini", "info": PRICES},
            {"name": "claude-usage", "provider": "anth", "model": "claude-sonnet-4-5", "info": PRICES},
            {"name": "gemini-usage", "provider": "studio", "model": "gemini-2.5-flash", "info": PRICES},
            # Priced by the catalog: $0.02 per million input tokens.
            {"name": "embed-usage", "provider": "oai", "model": "text-embedding-3-small"},
        ],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "spend": {"flush_seconds": 0.1},
    }


@pytest.fixture(scope="module")
def upstream() -> Iterator[UsageUpstream]:
    up = UsageUpstream()
    yield up
    up.stop()


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def world(request: pytest.FixtureRequest, upstream: UsageUpstream, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[World]:
    config = _config(upstream)
    if request.param == "cluster":
        postgres: Postgres = request.getfixturevalue("postgres")
        redis: RedisServer = request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"usage_bounds_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
    tmp = tmp_path_factory.mktemp(f"usage-bounds-{request.param}")
    gw = start_gateway(config, tmp)
    yield World(config, tmp, gw)
    gw.process.stop()


def _openai_call(world: World, model: str, value: Any, stream: bool) -> str:
    """One chat call through the openai SDK whose upstream reports ``value`` for every count."""
    rid = f"bounds-{uuid.uuid4().hex}"
    client = world.openai(rid)
    messages = [{"role": "user", "content": json.dumps(value)}]
    if stream:
        with client.chat.completions.create(model=model, messages=messages, stream=True,  # type: ignore[arg-type]
                                            stream_options={"include_usage": True}) as events:
            text = "".join(c.choices[0].delta.content or "" for c in events if c.choices)
    else:
        reply = client.chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]
        text = reply.choices[0].message.content or ""
    assert text == ANSWER
    return rid


def _anthropic_call(world: World, value: Any, stream: bool) -> str:
    """One Messages call passed through to the anthropic deployment."""
    rid = f"bounds-{uuid.uuid4().hex}"
    client = world.anthropic(rid)
    messages = [{"role": "user", "content": json.dumps(value)}]
    if stream:
        with client.messages.stream(model="claude-usage", max_tokens=16, messages=messages) as events:  # type: ignore[arg-type]
            text = "".join(events.text_stream)
    else:
        reply = client.messages.create(model="claude-usage", max_tokens=16, messages=messages)  # type: ignore[arg-type]
        text = "".join(b.text for b in reply.content if b.type == "text")
    assert text == ANSWER
    return rid


def _calls(world: World, value: Any) -> set[str]:
    """The value reported by every shape, streamed and not, translated and passed through."""
    ids = set()
    for stream in (False, True):
        for model in MODELS:
            ids.add(_openai_call(world, model, value, stream))
        ids.add(_anthropic_call(world, value, stream))
    return ids


def test_a_count_past_the_bound_is_recorded_as_the_bound_and_flagged(world: World) -> None:
    ids = _calls(world, HUGE)
    records = world.records(ids)
    for rid in ids:
        record = records[rid]
        assert record.status == 200
        assert record.prompt_tokens == TOKENS_MAX and record.completion_tokens == TOKENS_MAX, record
        assert record.metadata.get("usage_clamped") is True, record
        assert "usage_invalid" not in record.metadata, record
        for part in (record.cache_read_tokens, record.reasoning_tokens, record.image_input_tokens,
                     record.audio_input_tokens, record.audio_output_tokens):
            assert 0 <= part <= TOKENS_MAX
        # The cost of the bound at the model's prices: what went in and out at most. A prompt of
        # the bound is over Claude Sonnet 4.5's long-context threshold (the catalog's, 200k):
        # priced at its long-context prices ($6 / $22.50), the dearest of the models here.
        assert 0 < record.cost_usd <= (TOKENS_MAX * 6 + TOKENS_MAX * 22.5) / 1_000_000, record


# The anthropic SDK warns as it reads the float the pass-through relayed as it came.
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")
@pytest.mark.parametrize("value", NOT_COUNTS, ids=["negative", "float", "string", "null"])
def test_a_count_that_is_no_whole_number_counts_as_none(world: World, value: Any) -> None:
    ids = _calls(world, value)
    records = world.records(ids)
    for rid in ids:
        record = records[rid]
        assert record.status == 200
        assert record.prompt_tokens == 0 and record.completion_tokens == 0, record
        assert record.cost_usd == 0
        assert "usage_clamped" not in record.metadata
        # An operator finds such records by the flag; null is a count the upstream did not give.
        if value is None:
            assert "usage_invalid" not in record.metadata, record
        else:
            assert record.metadata.get("usage_invalid") is True, record


def test_the_usage_report_sums_the_bounded_counts(world: World) -> None:
    ids = _calls(world, HUGE)
    world.records(ids)
    resp = httpx.get(f"{world.gateway.url}/admin/v1/usage", params={"group_by": "model"}, headers=ADMIN,
                     timeout=30)
    assert resp.status_code == 200, resp.text
    rows = {row["model"]: row for row in resp.json()["data"]}
    for model in MODELS:
        row = rows[model]
        # Every call of every test so far is in the report; none counts past the bound.
        assert row["requests"] >= 2
        assert 0 < row["prompt_tokens"] <= row["requests"] * TOKENS_MAX
        assert 0 < row["completion_tokens"] <= row["requests"] * TOKENS_MAX


def test_an_answer_without_usage_is_estimated_and_charged_alike_everywhere(world: World) -> None:
    """An upstream that reports no usage (none in the answer, no usage chunk in the stream) is
    not a free call: the record is estimated (the prompt as limits and budgets estimate it, the
    output from the text answered) and priced, the cost header, the key's budgets and its token
    limit all count that same estimate."""
    url = world.gateway.url
    made = httpx.post(f"{url}/admin/v1/keys", json={"models": ["*"], "tpm_limit": 100_000},
                      headers=ADMIN, timeout=30)
    assert made.status_code == 201, made.text
    key = made.json()
    for unit, amount in (("usd", 10), ("tokens", 1_000_000)):
        budget = {"scope": "key", "subject": key["id"], "unit": unit, "max_amount": amount, "period": "total"}
        resp = httpx.put(f"{url}/admin/v1/budgets", json=budget, headers=ADMIN, timeout=30)
        assert resp.status_code == 200, resp.text
    client = openai.OpenAI(base_url=world.gateway.base_url, api_key=key["key"], max_retries=0, timeout=30)
    messages: Any = [{"role": "user", "content": NO_USAGE}]
    first = client.chat.completions.with_raw_response.create(model="gpt-silent", messages=messages)
    assert first.parse().choices[0].message.content == ANSWER and first.parse().usage is None
    with client.chat.completions.with_streaming_response.create(
        model="gpt-silent", messages=messages, stream=True, stream_options={"include_usage": True},
    ) as streamed:
        chunks = list(streamed.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert not any(c.usage for c in chunks)
    ids = {first.headers["x-request-id"], streamed.headers["x-request-id"]}
    records = {rid: record for rid, record in world.records(ids).items() if rid in ids}
    for record in records.values():
        assert record.metadata.get("estimated") is True
        assert record.prompt_tokens > 0 and record.completion_tokens > 0 and record.cost_usd > 0
    assert Decimal(first.headers["x-switchboard-cost-usd"]) == records[first.headers["x-request-id"]].cost_usd
    used = sum(r.prompt_tokens + r.completion_tokens for r in records.values())
    cost = sum(r.cost_usd for r in records.values())

    def spent() -> dict[str, Any]:
        data = httpx.get(f"{url}/admin/v1/budgets", params={"scope": "key"}, headers=ADMIN, timeout=30).json()
        mine = [b for b in data["data"] if b["subject"] == key["id"]]
        return {b["unit"]: Decimal(str(b["status"]["spent"])) for b in mine}

    deadline = time.monotonic() + 10  # settled after the responses, and the records written
    while (now := spent()) != {"usd": cost, "tokens": used}:
        assert time.monotonic() < deadline, f"the budgets spent {now}, the ledger {cost} USD, {used} tokens"
        time.sleep(0.05)
    # The same request again reserves what the first did: the token limit counts the two since.
    third = client.chat.completions.with_raw_response.create(model="gpt-silent", messages=messages)
    remaining = [int(r.headers["x-ratelimit-remaining-tokens"]) for r in (first, third)]
    assert remaining[0] - remaining[1] == used


def test_an_embedding_counted_only_in_its_total_is_recorded_at_that_count(world: World) -> None:
    """An embeddings host that reports only ``total_tokens`` (Voyage AI's usage): an embedding
    has no output, so that total is the input the host counted and bills. It is recorded and
    priced as counted, not replaced by the gateway's estimate, and the token limit counts the
    same number."""
    made = httpx.post(f"{world.gateway.url}/admin/v1/keys", json={"models": ["*"], "tpm_limit": 100_000},
                      headers=ADMIN, timeout=30)
    assert made.status_code == 201, made.text
    client = openai.OpenAI(base_url=world.gateway.base_url, api_key=made.json()["key"], max_retries=0,
                           timeout=30)
    texts = [json.dumps({"total_tokens": 1234}), "and a second text"]
    first = client.embeddings.with_raw_response.create(model="embed-usage", input=texts)
    assert len(first.parse().data) == 2
    rid = first.headers["x-request-id"]
    record = world.records({rid})[rid]
    assert record.status == 200 and "estimated" not in record.metadata, record
    assert record.prompt_tokens == 1234 and record.completion_tokens == 0, record
    price = Decimal("0.02") / 10**6
    assert record.cost_usd == Decimal(first.headers["x-switchboard-cost-usd"]) == 1234 * price
    second = client.embeddings.with_raw_response.create(model="embed-usage", input=texts)
    remaining = [int(r.headers["x-ratelimit-remaining-tokens"]) for r in (first, second)]
    assert remaining[0] - remaining[1] == record.prompt_tokens
