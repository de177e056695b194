"""Budgets end to end, with the official SDK, on the embedded default (one instance) and on a
cluster (two instances sharing PostgreSQL and Redis, requests split across both): a hard budget
is never overshot under concurrency, reservations always balance (errors, timeouts, client
disconnects, streams), every budget in scope applies, past a threshold requests can go to a
cheaper model, counters are rebuilt from the ledger after Redis loses them, and bad input is a
clear 400."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import redis as sync_redis
import sqlalchemy as sa

from switchboard.spend.budgets.webhooks import SIGNATURE_HEADER, verify
from switchboard.stores.sql.engine import create_engine
from switchboard.stores.sql.tables import budget_alerts
from switchboard.stores.sql.urls import async_url
from tests.e2e.periods import zone_far_from_period_end
from tests.e2e.sdk import ask
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway
from tests.services import Postgres, RedisServer, start_redis
from tests.webhook_receiver import WebhookReceiver

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
PRICED = "budget-model"  # 5 output tokens (max_tokens=5) cost exactly $0.01; input is free
CHEAP = "budget-cheap"  # a tenth of that
DOWN = "budget-down"  # priced as CHEAP, its provider unreachable: falls back to PRICED
BOUNDLESS = "budget-boundless"  # priced as PRICED, no output limit known: 4,096 reserved per choice
TIERED = "budget-tiered"  # priced as CHEAP, and as PRICED in the priority tier
GATED = "budget-gated"  # priced as CHEAP, served only to a team whose subscription is approved
# Priced as PRICED, on an account taking one request a minute (each run's own), with a fallback
# priced as PRICED too: the account's minute used, the fallback serves.
ONE_A_MINUTE = "budget-one-a-minute"
SPARE = "budget-spare"
# Through the anthropic adapter, which asks for default_max_tokens (4,096) when the caller sets
# none, plus the thinking budget: the catalog's Claude (a 64,000-token output limit), and one the
# catalog does not know (no output limit).
CLAUDE = "budget-claude"
CLAUDE_UNKNOWN = "budget-claude-unknown"
# The same Claude as CLAUDE_UNKNOWN, at the same prices, on another Anthropic account whose
# default_max_tokens is 60,000 (CLAUDE_ROOMY), which CLAUDE_SPARE falls back to.
CLAUDE_SPARE = "budget-claude-spare"
CLAUDE_ROOMY = "budget-claude-roomy"
# A Claude on Bedrock the catalog does not know (no output limit): Converse is sent no maxTokens
# unless thinking is asked for, then the thinking budget plus 4,096.
BEDROCK_CLAUDE = "budget-bedrock-claude"
CALL = {"model": PRICED, "max_tokens": 5}
HOOK_SECRET = "whsec-budget-tests-0123456789"
LONG = "tell me a long story about budgets please"  # the mock's reply is longer than 5 words


def _config(mock: Mock, hooks: WebhookReceiver) -> dict[str, Any]:
    config = openai_config(mock)
    # Up to three attempts per event (the threshold test makes the first fail: retried).
    config["budgets"] = {"webhook": {"url": hooks.url, "secret": HOOK_SECRET, "max_attempts": 3},
                         # The expired key chains' tests wait for it (no alert rule configured here).
                         "expired_keys_seconds": 0.2}
    config["models"] += [
        {"name": PRICED, "provider": "local-openai", "model": "gpt-4o-mini",
         "info": {"input_cost_per_mtok": 0, "output_cost_per_mtok": 2000}},
        {"name": CHEAP, "provider": "local-openai", "model": "gpt-4o-mini",
         "info": {"input_cost_per_mtok": 0, "output_cost_per_mtok": 200}},
        {"name": BOUNDLESS, "provider": "local-openai", "model": "custom-boundless-llm",
         "info": {"input_cost_per_mtok": 0, "output_cost_per_mtok": 2000}},
        {"name": DOWN, "provider": "nowhere", "model": "gpt-4o-mini",
         "info": {"input_cost_per_mtok": 0, "output_cost_per_mtok": 200}},
        {"name": GATED, "provider": "local-openai", "model": "gpt-4o-mini", "require_approval": True,
         "info": {"input_cost_per_mtok": 0, "output_cost_per_mtok": 200}},
        {"name": TIERED, "provider": "local-openai", "model": "gpt-4o-mini",
         "info": {"input_cost_per_mtok": 0, "output_cost_per_mtok": 200,
                  "priority_input_cost_per_mtok": 0, "priority_output_cost_per_mtok": 2000}},
    ]
    config["providers"].append({"name": "anthropic-mock", "type": "anthropic", "api_base": mock.url,
                                "api_key": "${UPSTREAM_KEY}"})
    config["models"] += [
        {"name": CLAUDE, "provider": "anthropic-mock", "model": "claude-sonnet-4-5"},
        {"name": CLAUDE_UNKNOWN, "provider": "anthropic-mock", "model": "claude-house-preview",
         "info": {"input_cost_per_mtok": 3, "output_cost_per_mtok": 15}},
    ]
    config["providers"].append({"name": "anthropic-roomy", "type": "anthropic", "api_base": mock.url,
                                "api_key": "${UPSTREAM_KEY}", "default_max_tokens": 60_000})
    config["models"] += [
        {"name": name, "provider": provider, "model": "claude-house-preview",
         "info": {"input_cost_per_mtok": 3, "output_cost_per_mtok": 15}}
        for name, provider in ((CLAUDE_SPARE, "anthropic-mock"), (CLAUDE_ROOMY, "anthropic-roomy"))
    ]
    config["providers"].append({"name": "bedrock-mock", "type": "bedrock", "api_base": mock.url,
                                "aws_access_key_id": "AKIDTEST", "aws_secret_access_key": "${UPSTREAM_KEY}",
                                "aws_region": "us-east-1"})
    config["models"].append({"name": BEDROCK_CLAUDE, "provider": "bedrock-mock",
                             "model": "anthropic.claude-house-preview-v1:0",
                             "info": {"input_cost_per_mtok": 3, "output_cost_per_mtok": 15}})
    config["providers"].append({"name": f"one-a-minute-{uuid.uuid4().hex[:8]}", "type": "openai",
                                "api_base": f"{mock.url}/v1", "api_key": "${UPSTREAM_KEY}", "rpm": 1})
    config["models"] += [
        {"name": name, "provider": provider, "model": "gpt-4o-mini",
         "info": {"input_cost_per_mtok": 0, "output_cost_per_mtok": 2000}}
        for name, provider in ((ONE_A_MINUTE, config["providers"][-1]["name"]), (SPARE, "local-openai"))
    ]
    config["router"] = {"fallbacks": {DOWN: [PRICED], CLAUDE_SPARE: [CLAUDE_ROOMY], ONE_A_MINUTE: [SPARE]}}
    return config


@dataclass
class Pair:
    """Two instances of one deployment (embedded: the same instance twice)."""

    kind: str
    first: Gateway
    second: Gateway
    hooks: WebhookReceiver
    redis: RedisServer | None = None
    database: str | None = None  # cluster: PostgreSQL's URL; embedded: the data directory's SQLite file

    def admin(self, method: str, path: str, json: Any = None) -> httpx.Response:
        return httpx.request(method, f"{self.first.url}{path}", json=json, headers=ADMIN, timeout=10)

    def key(self, **extra: Any) -> dict[str, Any]:
        resp = self.admin("POST", "/admin/v1/keys", {"models": ["*"], **extra})
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def budget(self, **body: Any) -> dict[str, Any]:
        if body.get("period") in ("daily", "weekly", "monthly") and "timezone" not in body:
            body["timezone"] = zone_far_from_period_end(body["period"])
        resp = self.admin("PUT", "/admin/v1/budgets", body)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def status(self, budget_id: str) -> dict[str, Any]:
        resp = self.admin("GET", f"/admin/v1/budgets/{budget_id}")
        assert resp.status_code == 200, resp.text
        return dict(resp.json()["status"])

    def sdk(self, key: str, on: Gateway | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=(on or self.first).base_url, api_key=key, max_retries=0, timeout=30)

    def clients(self, key: str) -> list[openai.AsyncOpenAI]:
        return [openai.AsyncOpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30)
                for gw in (self.first, self.second)]

    def ledger(self, key_id: str) -> dict[str, Any]:
        resp = self.admin("GET", f"/admin/v1/usage?key={key_id}")
        assert resp.status_code == 200, resp.text
        rows = resp.json()["data"]
        return rows[0] if rows else {"requests": 0, "errors": 0, "cost_usd": "0.000000"}

    def sql(self, *statements: Any) -> Any:
        """Run ``statements`` in one transaction on the gateways' database, past the gateway; the
        last one's scalar result (None for a statement that returns no rows)."""
        return run_sql(self.database, self.first.config_path.parent / "data", *statements)

    def claims(self, budget_id: str) -> int:
        """The budget's threshold claims (``budget_alerts`` rows), read past the gateway."""
        return int(self.sql(sa.select(sa.func.count()).where(budget_alerts.c.budget_id == budget_id)))

    @contextmanager
    def audit_refused(self, *actions: str, tenant: str | None = None) -> Iterator[str]:
        """A tenant (a new one unless given) whose audit entries of ``actions`` (default
        ``budget.delete``) the database refuses while inside (a CHECK constraint on PostgreSQL, a
        trigger on SQLite): an audit write that fails."""
        if tenant is None:
            tenant = f"refuse-audit-{uuid.uuid4().hex[:8]}"
            assert self.admin("POST", "/admin/v1/tenants", {"id": tenant}).status_code == 201
        with audit_refusal(self.sql, self.kind == "cluster", tenant, actions or ("budget.delete",)):
            yield tenant

    def audited(self, tenant: str, resource_id: str, action: str = "budget.delete") -> list[str]:
        """The actors of the ``action`` entries of ``resource_id`` in ``tenant``'s audit log."""
        resp = self.admin("GET", f"/admin/v1/audit?tenant={tenant}&resource_id={resource_id}&action={action}")
        assert resp.status_code == 200, resp.text
        return [e["actor"] for e in resp.json()["data"]]

    def answered(self, key_id: str) -> int:
        """The key's requests in the ledger that were answered (refusals are recorded too)."""
        row = self.ledger(key_id)
        return int(row["requests"]) - int(row["errors"])


def run_sql(database: str | None, data_dir: Path, *statements: Any) -> Any:
    """Run ``statements`` in one transaction on a gateway's database (``database.url``, or the
    SQLite file in ``data_dir``), past the gateway; the last one's scalar result (None for a
    statement that returns no rows)."""
    url = async_url(database, data_dir)

    async def run() -> Any:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                for statement in statements:
                    result = await conn.execute(statement)
                return result.scalar_one() if result.returns_rows else None
        finally:
            await engine.dispose()

    return asyncio.run(run())


@contextmanager
def audit_refusal(sql: Callable[..., Any], cluster: bool, tenant: str, actions: tuple[str, ...]
                  ) -> Iterator[None]:
    """While inside, the database (written to through ``sql``) refuses ``tenant``'s audit
    entries of ``actions`` (a CHECK constraint on PostgreSQL, a trigger on SQLite)."""
    name = f"refuse_{uuid.uuid4().hex[:8]}"
    listed = ", ".join(f"'{action}'" for action in actions)

    def refused(row: str) -> str:
        return f"{row}tenant_id = '{tenant}' AND {row}action IN ({listed})"

    if cluster:
        # NOT VALID: the entries written before are not checked, only those to come.
        sql(sa.text(f"ALTER TABLE audit_log ADD CONSTRAINT {name} CHECK (NOT ({refused('')})) NOT VALID"))
    else:
        sql(sa.text(f"CREATE TRIGGER {name} BEFORE INSERT ON audit_log WHEN {refused('NEW.')} "
                    "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"))
    try:
        yield
    finally:
        sql(sa.text(f"ALTER TABLE audit_log DROP CONSTRAINT {name}" if cluster else f"DROP TRIGGER {name}"))


def until(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """``check()``'s first truthy value, polled with a deadline (work after a response is
    asynchronous: settlement, the ledger's batched writes)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {value!r})")
        time.sleep(0.05)


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def pair(request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Pair]:
    yield from started_pair(request, mock_upstream, tmp_path_factory)


def started_pair(request: pytest.FixtureRequest, mock_upstream: Mock,
                 tmp_path_factory: pytest.TempPathFactory,
                 configure: Callable[[dict[str, Any]], None] | None = None) -> Iterator[Pair]:
    """The gateways of a ``pair`` fixture (``request.param``: embedded or cluster), stopped after;
    ``configure`` adds to their config."""
    with WebhookReceiver() as hooks:
        config = _config(mock_upstream, hooks)
        if configure is not None:
            configure(config)
        if request.param == "embedded":
            gw = start_gateway(config, tmp_path_factory.mktemp("budgets-embedded"))
            yield Pair("embedded", gw, gw, hooks)
            gw.process.stop()
            return
        postgres, redis = request.getfixturevalue("postgres"), request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"budgets_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
        first = start_gateway(config, tmp_path_factory.mktemp("budgets-a"))
        second = start_gateway(config, tmp_path_factory.mktemp("budgets-b"))
        yield Pair("cluster", first, second, hooks, redis, config["database"]["url"])
        first.process.stop()
        second.process.stop()


async def _burst(pair: Pair, key: str, n: int, **request: Any) -> tuple[int, list[openai.APIStatusError]]:
    clients = pair.clients(key)

    async def one(i: int) -> openai.APIStatusError | None:
        try:
            await clients[i % 2].chat.completions.create(messages=ask(f"{LONG} {i}"), **{**CALL, **request})
        except openai.APIStatusError as exc:
            return exc
        return None

    try:
        results = await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        for c in clients:
            await c.close()
    refused = [r for r in results if r is not None]
    return n - len(refused), refused


def test_a_one_dollar_key_budget_admits_100_of_200_concurrent_cent_requests(pair: Pair) -> None:
    key = pair.key(max_budget_usd=1.00, budget_period="monthly")
    assert key["max_budget_usd"] == 1.0 and key["budget_period"] == "monthly"
    raw = pair.sdk(key["key"]).chat.completions.with_raw_response.create(messages=ask(LONG), **CALL)
    assert raw.headers["x-switchboard-cost-usd"] == "0.010000"  # the price the test relies on
    ok, refused = asyncio.run(_burst(pair, key["key"], 200))
    assert ok in (98, 99)  # plus the first: 99 or 100 in all
    assert len(refused) == 200 - ok
    for exc in refused:
        assert exc.status_code == 429
        body: Any = exc.body
        assert body["code"] == "budget_exceeded" and "key budget" in body["message"]
        assert exc.response.headers["x-switchboard-budget-scope"] == "key"
        assert int(exc.response.headers["retry-after"]) >= 1  # the next month
    # Every request is in the ledger, each refusal as an error that cost nothing.
    total = until(lambda: (row := pair.ledger(key["id"]))["requests"] == 201 and row)
    assert total["errors"] == len(refused)
    assert Decimal(total["cost_usd"]) <= Decimal("1.00")
    assert Decimal(total["cost_usd"]) == Decimal("0.01") * (ok + 1)


def test_requests_sharing_one_request_id_each_reserve_their_own_cost(pair: Pair) -> None:
    """A caller may send one X-Request-Id with many requests at once: each still reserves its
    own cost (held under that id, the second reservation replaced the first, and every call of
    the burst was admitted against one cent)."""
    key = pair.key(max_budget_usd=0.10)
    shared = f"burst-{uuid.uuid4().hex}"

    async def burst() -> list[bool]:
        clients = pair.clients(key["key"])

        async def one(i: int) -> bool:
            try:
                await clients[i % 2].chat.completions.create(
                    messages=ask(f"{LONG} {i} mock:latency_ms=300"), extra_headers={"x-request-id": shared},
                    **CALL)
            except openai.APIStatusError as exc:
                assert exc.status_code == 429 and exc.body["code"] == "budget_exceeded"  # type: ignore[index]
                return False
            return True

        try:
            return await asyncio.gather(*(one(i) for i in range(30)))
        finally:
            for c in clients:
                await c.close()

    admitted = sum(asyncio.run(burst()))
    assert admitted == 10, admitted  # $0.10 of $0.01 calls, each in flight with the others
    total = until(lambda: (row := pair.ledger(key["id"]))["requests"] == 30 and row)
    assert Decimal(total["cost_usd"]) == Decimal("0.10")


def test_a_request_larger_than_the_whole_budget_is_a_400(pair: Pair) -> None:
    key = pair.key(max_budget_usd=0.005)
    with pytest.raises(openai.BadRequestError) as refused:
        pair.sdk(key["key"]).chat.completions.create(messages=ask(LONG), **CALL)
    body: Any = refused.value.body
    assert body["code"] == "request_exceeds_budget" and "lower max_tokens" in body["message"]
    # The refusal is in the request log, with its error and no attempts.
    rid = refused.value.response.headers["x-request-id"]
    deadline = time.monotonic() + 20
    while not (found := pair.admin("GET", f"/admin/v1/logs?request_id={rid}").json()["data"]):
        assert time.monotonic() < deadline, f"{rid} never reached the request log"
        time.sleep(0.1)
    assert found[0]["status"] == 400 and found[0]["error_code"] == "request_exceeds_budget"
    assert found[0]["attempts"] is None
    # Nothing was reserved: a smaller request still fits.
    reply = pair.sdk(key["key"]).chat.completions.create(messages=ask(LONG), model=PRICED, max_tokens=2)
    assert reply.usage is not None and reply.usage.completion_tokens == 2


def test_a_request_for_the_priority_tier_reserves_at_its_prices(pair: Pair) -> None:
    """OpenAI bills a call served in its priority tier at the model's priority prices: the
    reservation covers them, as the answer's tier settles to them. 5 output tokens are $0.001
    at the standard price and $0.01 at the priority price, past a $0.005 budget."""
    key = pair.key(max_budget_usd=0.005)
    client = pair.sdk(key["key"])
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(messages=ask(LONG), model=TIERED, max_tokens=5,
                                       service_tier="priority")
    body: Any = refused.value.body
    assert body["code"] == "request_exceeds_budget"
    standard = client.chat.completions.with_raw_response.create(messages=ask(LONG), model=TIERED,
                                                                max_tokens=5)
    assert standard.headers["x-switchboard-cost-usd"] == "0.001000"
    priority = client.chat.completions.with_raw_response.create(
        messages=ask(LONG), model=TIERED, max_tokens=2, service_tier="priority")
    assert priority.parse().service_tier == "priority"
    assert priority.headers["x-switchboard-cost-usd"] == "0.004000"


def test_an_unbounded_request_reserves_the_default_output_for_each_choice(pair: Pair) -> None:
    # No max_tokens and no output limit in the catalog: 4,096 output tokens ($8.192) are
    # reserved per choice, so two choices ($16.384) cannot fit a $10 budget, one can.
    key = pair.key(max_budget_usd=10)
    client = pair.sdk(key["key"])
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(messages=ask("hi"), model=BOUNDLESS, n=2)
    body: Any = refused.value.body
    assert body["code"] == "request_exceeds_budget" and "$16.384" in body["message"], body
    reply = client.chat.completions.create(messages=ask("hi"), model=BOUNDLESS)
    assert reply.choices[0].message.content


def _ten_thousand_tokens(pair: Pair) -> openai.OpenAI:
    """A client of a new key with a 10,000-token budget."""
    key = pair.key()
    pair.budget(scope="key", subject=key["id"], unit="tokens", max_amount=10_000, period="total")
    return pair.sdk(key["key"])


def _refused_reserving(client: openai.OpenAI, output: int, **request: Any) -> None:
    """The call is refused as costing more than the whole budget: ``output`` tokens reserved,
    plus its prompt's few."""
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(messages=ask("hello"), **request)
    assert refused.value.code == "request_exceeds_budget"
    reserved = re.search(r"may cost up to (\d+) tokens", refused.value.message)
    assert reserved is not None and output < int(reserved[1]) < output + 100, refused.value.message


def test_a_call_without_max_tokens_reserves_the_output_the_gateway_asks_the_provider_for(pair: Pair) -> None:
    """Anthropic needs max_tokens: for a caller that sets none, the gateway sends its
    default_max_tokens (4,096), plus the thinking budget reasoning_effort asks for (high: 16,384).
    That is the most the call can produce, and what is reserved: not the model's whole output
    limit (64,000 here, which refused the call), nor the 4,096 of a model without a known limit
    (with thinking, the call could produce five times that)."""
    client = _ten_thousand_tokens(pair)
    answer = client.chat.completions.create(model=CLAUDE, messages=ask("hello"))
    assert answer.choices[0].message.content
    _refused_reserving(client, 4096 + 16384, model=CLAUDE_UNKNOWN, reasoning_effort="high")
    # Without thinking, the default alone: it fits.
    assert client.chat.completions.create(model=CLAUDE_UNKNOWN, messages=ask("hello")).choices


def test_a_bedrock_claude_call_with_thinking_reserves_the_output_it_asks_for(pair: Pair) -> None:
    """Bedrock's Claude is sent maxTokens only with thinking: the budget (high: 16,384) plus
    4,096 for the answer, which is what a call without max_tokens can produce, and is reserved
    (it was the 4,096 of a model without a known output limit)."""
    client = _ten_thousand_tokens(pair)
    _refused_reserving(client, 16384 + 4096, model=BEDROCK_CLAUDE, reasoning_effort="high")
    # Without thinking, the model's own limit, unknown here: the default 4,096 fits.
    assert client.chat.completions.create(model=BEDROCK_CLAUDE, messages=ask("hello")).choices


def test_a_fallback_whose_provider_asks_for_more_output_reserves_that_output(pair: Pair) -> None:
    """The same model at the same prices is not the same cost when the fallback's provider asks
    for more output: a call without max_tokens gets 4,096 tokens from CLAUDE_SPARE's account and
    60,000 from its fallback's, so 60,000 are reserved (4,096 let it past a 10,000-token budget)."""
    client = _ten_thousand_tokens(pair)
    _refused_reserving(client, 60_000, model=CLAUDE_SPARE)
    # Bounded by the caller, it costs the same wherever it goes: admitted.
    assert client.chat.completions.create(model=CLAUDE_SPARE, messages=ask("hello"), max_tokens=50).choices


def test_a_fallback_to_a_dearer_model_cannot_overshoot_the_budget(pair: Pair) -> None:
    """The reservation covers the dearest deployment the request may be sent to, its fallbacks'
    included: the cheap model's cost fits the budget, the fallback's ($0.01) does not."""
    key = pair.key()
    budget = pair.budget(scope="key", subject=key["id"], max_amount=0.005, period="total")
    client = pair.sdk(key["key"])
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(messages=ask(LONG), model=DOWN, max_tokens=5)
    body: Any = refused.value.body
    assert body["code"] == "request_exceeds_budget"
    # A request whose fallback fits is admitted and served by the fallback, within the budget.
    raw = client.chat.completions.with_raw_response.create(messages=ask(LONG), model=DOWN, max_tokens=2)
    assert raw.headers["x-switchboard-model"] == PRICED
    assert raw.headers["x-switchboard-cost-usd"] == "0.004000"
    status = until(lambda: (s := pair.status(budget["id"]))["reserved"] == "0" and s)
    assert status["spent"] == "0.004"


def test_a_stream_longer_than_the_request_timeout_holds_its_reservation_to_the_end(
        mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A stream is bounded by its provider's total timeout, not by the request's deadline: its
    reservation holds until it ends, however long past that deadline (plus the lapse margin,
    ``budgets.hold_margin_seconds``, lowered to 2 s here) it streams, so a budget it fills admits
    nothing else meanwhile."""
    with WebhookReceiver() as hooks:
        config = _config(mock_upstream, hooks)
        config["server"] = {"request_timeout_seconds": 1}
        config.setdefault("budgets", {})["hold_margin_seconds"] = 2
        config["providers"].append({"name": "patient", "type": "openai", "api_key": "${UPSTREAM_KEY}",
                                    "api_base": f"{mock_upstream.url}/v1", "timeouts": {"total": 300}})
        config["models"].append({"name": "budget-patient", "provider": "patient", "model": "gpt-4o-mini",
                                 "info": {"input_cost_per_mtok": 0, "output_cost_per_mtok": 2000}})
        gw = start_gateway(config, tmp_path_factory.mktemp("budgets-long-stream"))
        try:
            pair = Pair("embedded", gw, gw, hooks)
            key = pair.key()
            pair.budget(scope="key", subject=key["id"], max_amount=0.01, period="total")  # one call's worth
            client = pair.sdk(key["key"])
            # One word ($0.002): four chunks 2.5 s apart, past the request's deadline (1 s) and the
            # margin after it; the next call's estimate ($0.01) then fits only if this one's lapsed.
            stream = client.chat.completions.create(
                model="budget-patient", messages=ask(f"{LONG} mock:chunk_delay_ms=2500"), max_tokens=1,
                stream=True, stream_options={"include_usage": True})
            admitted = 0
            chunks = 0
            for _ in stream:
                chunks += 1
                try:
                    client.chat.completions.create(messages=ask(LONG), **CALL)
                    admitted += 1
                except openai.RateLimitError as exc:
                    body: Any = exc.body
                    assert body["code"] == "budget_exceeded"
            assert chunks == 4  # the last 7.5 s after the first
            assert admitted == 0
            row = until(lambda: (r := pair.ledger(key["id"]))["requests"] == 1 + chunks and r)
            assert Decimal(row["cost_usd"]) == Decimal("0.002")
        finally:
            gw.process.stop()


def test_a_large_request_on_a_spent_budget_is_told_the_budget_is_spent(pair: Pair) -> None:
    """Larger than the whole budget, on a budget already spent: 429 budget_exceeded, not the 400
    whose advice (lower max_tokens) could not help."""
    key = pair.key(max_budget_usd=0.01)
    pair.sdk(key["key"]).chat.completions.create(messages=ask(LONG), **CALL)  # spends it all
    with pytest.raises(openai.RateLimitError) as refused:
        pair.sdk(key["key"]).chat.completions.create(messages=ask(LONG), model=PRICED, max_tokens=10)
    body: Any = refused.value.body
    assert body["code"] == "budget_exceeded" and "is exhausted" in body["message"]


def _zone_far_from_month_end() -> str:
    """UTC, unless its month ends within ten minutes: then UTC+14, whose month ended 14 hours
    ago (a Retry-After until the month's end is then long, whenever the test runs)."""
    now = datetime.now(UTC)
    ends = (now.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return "UTC" if ends - now > timedelta(minutes=10) else "Etc/GMT-14"


def test_an_exhausted_budget_tells_the_sdks_not_to_retry(pair: Pair) -> None:
    """The SDKs retry a 429 by themselves, the Anthropic one after however long Retry-After says
    (here: until the month ends): an exhausted budget says x-should-retry: false, so both raise
    at once, and a total budget (no Retry-After) is not retried for nothing either."""
    monthly = pair.key()
    pair.budget(scope="key", subject=monthly["id"], max_amount=0.01, period="monthly",
                timezone=_zone_far_from_month_end())
    pair.sdk(monthly["key"]).chat.completions.create(messages=ask(LONG), **CALL)  # spends it all
    raw = httpx.post(f"{pair.first.url}/v1/messages", timeout=10,
                     headers={"x-api-key": monthly["key"], "anthropic-version": "2023-06-01"},
                     json={"model": PRICED, "max_tokens": 5, "messages": ask(LONG)})
    assert raw.status_code == 429 and raw.json()["error"]["type"] == "rate_limit_error"
    assert int(raw.headers["retry-after"]) > 120 and raw.headers["x-should-retry"] == "false"
    # The Anthropic SDK with its default retries raises at once (it would otherwise sleep for weeks).
    outcome: list[BaseException] = []

    def call() -> None:
        sdk = anthropic.Anthropic(base_url=pair.first.url, api_key=monthly["key"], timeout=10)
        try:
            sdk.messages.create(model=PRICED, max_tokens=5, messages=ask(LONG))
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    caller.join(20)
    assert outcome and isinstance(outcome[0], anthropic.RateLimitError), outcome
    # A total budget: no Retry-After, and the openai SDK's own retries (2) do not happen.
    total = pair.key()
    pair.budget(scope="key", subject=total["id"], max_amount=0.01, period="total")
    pair.sdk(total["key"]).chat.completions.create(messages=ask(LONG), **CALL)
    sent: list[int] = []
    counting = httpx.Client(event_hooks={"response": [lambda r: sent.append(r.status_code)]})
    retrying = openai.OpenAI(base_url=pair.first.base_url, api_key=total["key"], max_retries=2, timeout=30,
                             http_client=counting)
    with pytest.raises(openai.RateLimitError) as refused:
        retrying.chat.completions.create(messages=ask(LONG), **CALL)
    assert "retry-after" not in refused.value.response.headers
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert sent == [429]


def test_max_tokens_beyond_the_models_limit_is_a_400_under_a_budget(pair: Pair) -> None:
    key = pair.key(max_budget_usd=100)
    with pytest.raises(openai.BadRequestError) as refused:
        pair.sdk(key["key"]).chat.completions.create(messages=ask(LONG), model=PRICED, max_tokens=10_000_000)
    body: Any = refused.value.body
    assert body["code"] == "max_tokens_too_large" and body["param"] == "max_tokens"


def test_reservations_always_balance(pair: Pair) -> None:
    key = pair.key()
    budget = pair.budget(scope="key", subject=key["id"], unit="tokens", max_amount=1_000_000, period="daily")
    client = pair.sdk(key["key"])
    # Upstream errors, a timeout, a success, a stream: afterwards nothing is held.
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=ask("mock:status=500"), max_tokens=50)
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="impatient-model", messages=ask("mock:hang=1"), max_tokens=50)
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="unreachable", messages=ask("hi"), max_tokens=50)
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=ask(LONG), max_tokens=50)
    assert reply.usage is not None
    # A stream holds its reservation until it ends, then settles.
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=ask(f"{LONG} mock:chunk_delay_ms=100"), max_tokens=50, stream=True,
        stream_options={"include_usage": True})
    chunks = iter(stream)
    next(chunks)
    held = pair.status(budget["id"])
    assert held["reserved"] > 0
    streamed = [c for c in chunks if c.usage is not None]
    # A stream the client abandons settles too.
    abandoned = client.chat.completions.create(
        model="gpt-4o-mini", messages=ask(f"{LONG} mock:chunk_delay_ms=200"), max_tokens=50, stream=True)
    next(iter(abandoned))
    abandoned.close()
    settled = until(lambda: (s := pair.status(budget["id"]))["reserved"] == 0 and s)
    used = reply.usage.total_tokens + streamed[0].usage.total_tokens  # type: ignore[union-attr]
    # The abandoned stream counts what it produced (estimated), the failures count nothing.
    assert settled["spent"] >= used
    row = until(lambda: (r := pair.ledger(key["id"]))["requests"] == 6 and r)
    assert settled["spent"] == row["prompt_tokens"] + row["completion_tokens"]


def test_a_keys_token_limit_and_budget_settle_together(pair: Pair) -> None:
    """Rate limits and budgets are settled by one callback after the response: both must come
    out right after a success, an upstream error, a stream and an abandoned stream."""
    key = pair.key(tpm_limit=1000)
    budget = pair.budget(scope="key", subject=key["id"], unit="tokens", max_amount=1_000_000, period="daily")
    client = pair.sdk(key["key"])

    def nothing_held() -> dict[str, Any] | None:
        status = pair.status(budget["id"])
        return status if status["reserved"] == 0 else None

    def fits() -> bool:
        """600 more tokens fit the minute's 1000 only if every earlier reservation of 600 was
        corrected to the few tokens its call used (or given back)."""
        try:
            reply = client.chat.completions.create(model="gpt-4o-mini", messages=ask("f"), max_tokens=600)
        except openai.RateLimitError:
            return False
        assert reply.usage is not None
        return True

    def success() -> None:
        reply = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=ask("s"), max_tokens=600)
        assert int(reply.headers["x-ratelimit-remaining-tokens"]) < 1000 - 600

    def failure() -> None:
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(
                model="gpt-4o-mini", messages=ask("mock:status=500"), max_tokens=600)

    def stream() -> None:
        chunks = client.chat.completions.create(
            model="gpt-4o-mini", messages=ask("t"), max_tokens=600, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    for call in (success, failure, stream):
        call()
        until(nothing_held)
        until(fits)
    # A stream the client abandons: its budget reservation is settled all the same.
    abandoned = client.chat.completions.create(
        model="gpt-4o-mini", messages=ask(f"{LONG} mock:chunk_delay_ms=200"), max_tokens=300, stream=True)
    next(iter(abandoned))
    abandoned.close()
    settled = until(nothing_held)
    row = until(lambda: (r := pair.ledger(key["id"]))["requests"] == 7 and r)
    assert settled["spent"] == row["prompt_tokens"] + row["completion_tokens"]


def test_every_budget_in_scope_applies_and_the_most_restrictive_decides(pair: Pair) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    assert pair.admin("POST", "/admin/v1/tenants", {"id": tenant}).status_code == 201
    keys = [pair.key(tenant=tenant, max_budget_usd=1.00) for _ in range(2)]
    daily = pair.budget(scope="key", subject=keys[0]["id"], max_amount=0.03, period="daily", tenant=tenant)
    pair.budget(scope="tenant", tenant=tenant, max_amount=0.05, period="monthly")
    first = pair.sdk(keys[0]["key"])
    for _ in range(3):
        first.chat.completions.create(messages=ask(LONG), **CALL)
    with pytest.raises(openai.RateLimitError) as refused:  # the key's daily budget, not its own $1
        first.chat.completions.create(messages=ask(LONG), **CALL)
    assert daily["id"] in refused.value.message
    second = pair.sdk(keys[1]["key"], on=pair.second)
    for _ in range(2):
        second.chat.completions.create(messages=ask(LONG), **CALL)
    with pytest.raises(openai.RateLimitError) as refused:  # now the tenant's is spent
        second.chat.completions.create(messages=ask(LONG), **CALL)
    assert refused.value.response.headers["x-switchboard-budget-scope"] == "tenant"


def test_past_the_threshold_requests_go_to_the_cheaper_model(pair: Pair) -> None:
    key = pair.key()
    pair.budget(scope="key", subject=key["id"], max_amount=0.04, period="total",
                downgrade={"model": CHEAP, "at_percent": 50})
    client = pair.sdk(key["key"])
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(messages=ask(LONG), **CALL)
        assert "x-switchboard-budget-downgrade" not in raw.headers
    raw = client.chat.completions.with_raw_response.create(messages=ask(LONG), **CALL)
    assert raw.headers["x-switchboard-budget-downgrade"] == f"{PRICED} -> {CHEAP}"
    assert raw.headers["x-switchboard-model"] == CHEAP  # the group that answered
    assert raw.headers["x-switchboard-cost-usd"] == "0.001000"


def test_past_the_threshold_a_request_the_model_asked_for_would_not_fit_goes_to_the_cheaper_model(
        pair: Pair) -> None:
    """Past its threshold the budget sends requests to the cheaper model, also one whose most
    possible cost on the model it names no longer fits in the budget (or is larger than the
    whole budget): it is reserved and served there, not refused."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    assert pair.admin("POST", "/admin/v1/tenants", {"id": tenant}).status_code == 201
    key = pair.key(tenant=tenant, rpm_limit=100)
    # A tenant budget (no downgrade of its own) is in force too, before the key's in the order
    # budgets are checked: it refuses PRICED first, and the key's downgrade still decides.
    pair.budget(scope="tenant", tenant=tenant, max_amount=0.05, period="total")
    pair.budget(scope="key", subject=key["id"], tenant=tenant, max_amount=0.05, period="total",
                downgrade={"model": CHEAP, "at_percent": 50})
    client = pair.sdk(key["key"])
    for _ in range(3):  # $0.03 spent: 60 %
        raw = client.chat.completions.with_raw_response.create(messages=ask(LONG), **CALL)
        assert "x-switchboard-budget-downgrade" not in raw.headers
    # Up to $0.03 on PRICED would not fit in the $0.02 left ($0.003 on CHEAP does); $0.06 is
    # more than the whole budget ($0.006 on CHEAP fits). The caller's limit counts each once.
    for on, most, left in ((pair.first, 15, "96"), (pair.second, 15, "95"), (pair.second, 30, "94")):
        raw = pair.sdk(key["key"], on).chat.completions.with_raw_response.create(
            messages=ask(LONG), model=PRICED, max_tokens=most)
        assert raw.headers["x-switchboard-budget-downgrade"] == f"{PRICED} -> {CHEAP}"
        assert raw.headers["x-switchboard-model"] == CHEAP
        assert raw.headers["x-ratelimit-remaining-requests"] == left
    until(lambda: pair.answered(key["id"]) == 6)


def test_past_the_threshold_the_cheaper_model_is_still_refused_by_a_spent_budget_without_downgrade(
        pair: Pair) -> None:
    """A key's downgrade does not lift a hard budget: with the tenant's budget (no downgrade)
    spent, the request the key's budget sends to the cheaper model is refused there too, and
    leaves nothing reserved nor counted against the caller's rate limit."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    assert pair.admin("POST", "/admin/v1/tenants", {"id": tenant}).status_code == 201
    key = pair.key(tenant=tenant, rpm_limit=100)
    hard = pair.budget(scope="tenant", tenant=tenant, max_amount=0.02, period="total")
    own = pair.budget(scope="key", subject=key["id"], tenant=tenant, max_amount=0.04, period="total",
                      downgrade={"model": CHEAP, "at_percent": 50})
    clients = [pair.sdk(key["key"]), pair.sdk(key["key"], on=pair.second)]
    for i in range(2):  # $0.02: the tenant's budget spent, the key's at its threshold
        clients[i].chat.completions.create(messages=ask(LONG), **CALL)
    until(lambda: pair.status(hard["id"])["spent"] == "0.02")
    for client in clients:
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(messages=ask(LONG), **CALL)
        headers = refused.value.response.headers
        assert refused.value.code == "budget_exceeded"
        assert headers["x-switchboard-budget-scope"] == "tenant"
        assert headers["x-switchboard-budget-downgrade"] == f"{PRICED} -> {CHEAP}"
    assert pair.status(hard["id"])["reserved"] in (0, "0") and pair.status(own["id"])["reserved"] in (0, "0")
    assert pair.status(hard["id"])["spent"] == "0.02"
    # The tenant's budget raised: served on the cheaper model, the refusals not counted by the
    # caller's limit (the two served and this one).
    pair.budget(scope="tenant", tenant=tenant, max_amount=1, period="total")
    raw = clients[0].chat.completions.with_raw_response.create(messages=ask(LONG), **CALL)
    assert raw.headers["x-switchboard-model"] == CHEAP
    assert raw.headers["x-ratelimit-remaining-requests"] == "97"


def test_past_the_threshold_a_request_the_cheaper_model_cannot_serve_stays_on_its_model(pair: Pair) -> None:
    """The cheaper model is a chat model: an embeddings request past the threshold is not sent
    to it (it would be refused there as a request of the wrong mode), it is served by the model
    it names; chat requests still go to the cheaper one."""
    key = pair.key()
    pair.budget(scope="key", subject=key["id"], max_amount=0.04, period="total",
                downgrade={"model": CHEAP, "at_percent": 50})
    client = pair.sdk(key["key"])
    for _ in range(2):  # $0.02 spent: 50 %
        client.chat.completions.create(messages=ask(LONG), **CALL)
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="budgets")
    assert "x-switchboard-budget-downgrade" not in raw.headers
    assert raw.headers["x-switchboard-model"] == "text-embedding-3-small"
    assert raw.parse().data[0].embedding
    raw = client.chat.completions.with_raw_response.create(messages=ask(LONG), **CALL)
    assert raw.headers["x-switchboard-budget-downgrade"] == f"{PRICED} -> {CHEAP}"


def test_a_downgrade_to_a_model_needing_approval_is_refused_as_asking_for_it_would_be(pair: Pair) -> None:
    key = pair.key()  # no team: no subscription to anything that needs approval
    budget = pair.budget(scope="key", subject=key["id"], max_amount=0.04, period="total",
                         downgrade={"model": GATED, "at_percent": 50})
    client = pair.sdk(key["key"])
    with pytest.raises(openai.PermissionDeniedError) as asked:  # the model named: refused
        client.chat.completions.create(messages=ask(LONG), model=GATED, max_tokens=5)
    for _ in range(2):
        client.chat.completions.create(messages=ask(LONG), **CALL)
    with pytest.raises(openai.PermissionDeniedError) as downgraded:  # nor reached by the downgrade
        client.chat.completions.create(messages=ask(LONG), **CALL)
    assert downgraded.value.body == asked.value.body, downgraded.value.body
    assert downgraded.value.code == "subscription_required"
    assert downgraded.value.response.headers["x-switchboard-budget-downgrade"] == f"{PRICED} -> {GATED}"
    # Refused before anything went upstream: nothing of it stays reserved on the budget.
    until(lambda: pair.status(budget["id"])["reserved"] in (0, "0"))


def _two_calls_then_downgraded(pair: Pair, to: str, rpm: dict[str, int]) -> tuple[dict[str, Any], Any]:
    """A key whose budget sends its third PRICED call on to ``to``, with per-model ``rpm``: its
    budget, and the call (the first two made: PRICED's limit shown counting them)."""
    key = pair.key()
    budget = {"scope": "key", "subject": key["id"], "max_amount": 0.04, "period": "total"}
    pair.budget(**budget, downgrade={"model": to, "at_percent": 50})
    for model, most in rpm.items():
        resp = pair.admin("PUT", "/admin/v1/limits", {"scope": "key_model", "key": key["id"], "model": model,
                                                      "rpm": most})
        assert resp.status_code == 200, resp.text
    create = pair.sdk(key["key"]).chat.completions.with_raw_response.create
    for left in (rpm[PRICED] - 1, rpm[PRICED] - 2):
        raw = create(messages=ask(LONG), **CALL)
        assert "x-switchboard-budget-downgrade" not in raw.headers
        assert raw.headers["x-ratelimit-remaining-requests"] == str(left)
    return budget, create


def test_a_downgraded_request_counts_against_the_cheaper_models_limits(pair: Pair) -> None:
    budget, create = _two_calls_then_downgraded(pair, CHEAP, {PRICED: 4, CHEAP: 1})
    # Sent to CHEAP: its limit (1 a minute) counts this request, PRICED's does not.
    raw = create(messages=ask(LONG), **CALL)
    assert raw.headers["x-switchboard-budget-downgrade"] == f"{PRICED} -> {CHEAP}"
    assert raw.headers["x-ratelimit-limit-requests"] == "1"
    assert raw.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as refused:  # CHEAP's minute is used up
        create(messages=ask(LONG), **CALL)
    assert refused.value.response.headers["x-ratelimit-scope"] == "key_model"
    assert refused.value.response.headers["x-ratelimit-limit-requests"] == "1"
    # Without the downgrade, PRICED has the two requests it served counted, not the others.
    pair.budget(**{**budget, "max_amount": 1})
    raw = create(messages=ask(LONG), **CALL)
    assert "x-switchboard-budget-downgrade" not in raw.headers
    assert raw.headers["x-ratelimit-limit-requests"] == "4"
    assert raw.headers["x-ratelimit-remaining-requests"] == "1"


def test_a_downgraded_requests_fallback_to_the_model_asked_for_takes_its_limits(pair: Pair) -> None:
    _, create = _two_calls_then_downgraded(pair, DOWN, {PRICED: 3})
    # Sent to DOWN, which fails: its fallback PRICED answers, and counts the request.
    raw = create(messages=ask(LONG), **CALL)
    assert raw.headers["x-switchboard-budget-downgrade"] == f"{PRICED} -> {DOWN}"
    assert raw.headers["x-switchboard-model"] == PRICED
    with pytest.raises(openai.RateLimitError) as refused:  # PRICED's minute is used up
        create(messages=ask(LONG), **CALL)
    assert refused.value.response.headers["x-ratelimit-scope"] == "key_model"
    assert refused.value.response.headers["x-ratelimit-limit-requests"] == "3"


def test_a_downgrade_while_the_first_picks_provider_limit_is_full_goes_to_the_cheaper_one(pair: Pair) -> None:
    """The model asked for has no room under its provider's limit (its fallback would serve) and
    the budget is past its threshold: the cheaper model serves, on its own limits, the caller's
    own limit counting the request once."""
    key = pair.key(rpm_limit=100)
    pair.budget(scope="key", subject=key["id"], max_amount=0.04, period="total",
                downgrade={"model": CHEAP, "at_percent": 50})
    create = pair.sdk(key["key"]).chat.completions.with_raw_response.create
    call = {**CALL, "model": ONE_A_MINUTE}
    # The account's one request this minute, then its fallback: $0.02 spent, no downgrade yet.
    for served_by, left in ((ONE_A_MINUTE, "99"), (SPARE, "98")):
        raw = create(messages=ask(LONG), **call)
        assert "x-switchboard-budget-downgrade" not in raw.headers
        assert raw.headers["x-switchboard-model"] == served_by
        assert raw.headers["x-ratelimit-remaining-requests"] == left
    for left in ("97", "96"):  # past the threshold, the account still full: the cheaper model
        raw = create(messages=ask(LONG), **call)
        assert raw.headers["x-switchboard-budget-downgrade"] == f"{ONE_A_MINUTE} -> {CHEAP}"
        assert raw.headers["x-switchboard-model"] == CHEAP
        assert raw.headers["x-switchboard-cost-usd"] == "0.001000"
        assert raw.headers["x-ratelimit-remaining-requests"] == left
    until(lambda: pair.answered(key["id"]) == 4)


def test_a_request_a_budget_refuses_does_not_use_up_the_rate_limit(pair: Pair) -> None:
    """The rate limits run before the budgets: a request the budget refuses gives back the
    request it took from the caller's RPM window (and its token reservation), so a caller whose
    budget is spent does not also exhaust its rate limit by retrying."""
    key = pair.key(rpm_limit=2, tpm_limit=100_000)
    budget = {"scope": "key", "subject": key["id"], "max_amount": 0.01, "period": "total"}
    pair.budget(**budget)
    raw = pair.sdk(key["key"]).chat.completions.with_raw_response.create(messages=ask(LONG), **CALL)
    assert raw.headers["x-ratelimit-remaining-requests"] == "1"  # the budget is spent now
    for on in (pair.first, pair.second, pair.first, pair.second):
        with pytest.raises(openai.RateLimitError) as refused:
            pair.sdk(key["key"], on).chat.completions.create(messages=ask(LONG), **CALL)
        body: Any = refused.value.body
        assert body["code"] == "budget_exceeded"
        headers = refused.value.response.headers
        # The refusal describes the window without itself: still one request left.
        assert headers["x-ratelimit-limit-requests"] == "2"
        assert headers["x-ratelimit-remaining-requests"] == "1"
        assert int(headers["x-ratelimit-remaining-tokens"]) > 99_000
    pair.budget(**{**budget, "max_amount": 1})
    raw = pair.sdk(key["key"]).chat.completions.with_raw_response.create(messages=ask(LONG), **CALL)
    assert raw.headers["x-ratelimit-remaining-requests"] == "0"  # the second of two, not the sixth
    with pytest.raises(openai.RateLimitError) as limited:
        pair.sdk(key["key"]).chat.completions.create(messages=ask(LONG), **CALL)
    assert limited.value.response.headers["x-ratelimit-scope"] == "key"


def test_a_request_the_rate_limit_refuses_reserves_nothing_on_its_budgets(pair: Pair) -> None:
    """The limits are checked first: a request they refuse is told so (not about its budget, even
    one that is spent too) and reserves nothing on its budgets; one both admit is counted once
    in each."""
    key = pair.key(rpm_limit=2)
    spend = pair.budget(scope="key", subject=key["id"], max_amount=0.02, period="total")
    tokens = pair.budget(scope="key", subject=key["id"], unit="tokens", max_amount=1_000_000, period="daily")
    client = pair.sdk(key["key"])
    for left in ("1", "0"):  # both admit: the window counts down, each budget is charged
        raw = client.chat.completions.with_raw_response.create(messages=ask(LONG), **CALL)
        assert raw.headers["x-ratelimit-remaining-requests"] == left
        assert raw.headers["x-switchboard-cost-usd"] == "0.010000"
    settled = until(lambda: (s := pair.status(tokens["id"]))["reserved"] == 0 and s["spent"] > 0 and s)
    # The minute's two requests are used and so is the $0.02: the limit decides, and says so.
    for on in (pair.first, pair.second, pair.first):
        with pytest.raises(openai.RateLimitError) as refused:
            pair.sdk(key["key"], on).chat.completions.create(messages=ask(LONG), **CALL)
        body: Any = refused.value.body
        assert body["code"] == "rate_limit_exceeded" and "budget" not in body["message"]
        headers = refused.value.response.headers
        assert headers["x-ratelimit-scope"] == "key" and int(headers["retry-after"]) >= 1
        assert "x-switchboard-budget-scope" not in headers
        # Nothing held or spent on either budget by the refused request.
        assert pair.status(tokens["id"]) == settled
        status = pair.status(spend["id"])
        assert (Decimal(status["spent"]), Decimal(status["reserved"])) == (Decimal("0.02"), 0)


def test_when_redis_is_down_the_limits_policy_comes_before_the_budgets(
    pair: Pair, request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A key with limits and a budget, Redis gone: each store's own policy decides, the limits'
    first (as when both answer), whether they are asked in one round trip or two."""
    if pair.kind == "embedded":
        # Embedded limits and counters live in the process: both keep working.
        key = pair.key(rpm_limit=1000, max_budget_usd=0.01)
        raw = pair.sdk(key["key"]).chat.completions.with_raw_response.create(messages=ask(LONG), **CALL)
        assert raw.headers["x-ratelimit-limit-requests"] == "1000"
        with pytest.raises(openai.RateLimitError) as refused:
            pair.sdk(key["key"]).chat.completions.create(messages=ask(LONG), **CALL)
        assert refused.value.body["code"] == "budget_exceeded"  # type: ignore[index]
        return
    postgres: Postgres = request.getfixturevalue("postgres")
    redis = start_redis()  # our own, so stopping it leaves the shared one alone
    gateways: list[Gateway] = []
    policies = [("closed", "open"), ("open", "closed"), ("open", "open")]  # limits', budgets'
    try:
        config = _config(mock_upstream, pair.hooks)
        config["database"] = {"url": postgres.create_database(f"budgets_limits_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
        for limits, budgets in policies:
            config["limits"] = {"on_store_error": limits}
            config["budgets"] = {"on_store_error": budgets}
            gateways.append(start_gateway(config, tmp_path_factory.mktemp(f"down-{limits}-{budgets}")))
        created = httpx.post(f"{gateways[0].url}/admin/v1/keys", headers=ADMIN, timeout=10,
                             json={"models": ["*"], "rpm_limit": 1000, "max_budget_usd": 1}).json()
        clients = [openai.OpenAI(base_url=g.base_url, api_key=created["key"], max_retries=0, timeout=30)
                   for g in gateways]
        for client in clients:  # all up: limited and charged
            raw = client.chat.completions.with_raw_response.create(messages=ask(LONG), **CALL)
            assert raw.headers["x-ratelimit-limit-requests"] == "1000"
        redis.stop()
        for client, code in zip(clients[:2], ("rate_limiter_unavailable", "budget_unavailable"), strict=True):
            with pytest.raises(openai.APIStatusError) as refused:
                client.chat.completions.create(messages=ask(LONG), **CALL)
            assert refused.value.status_code == 503
            assert refused.value.body["code"] == code  # type: ignore[index]
        raw = clients[2].chat.completions.with_raw_response.create(messages=ask(LONG), **CALL)
        assert raw.parse().choices and "x-ratelimit-limit-requests" not in raw.headers
    finally:
        for gw in gateways:
            gw.process.stop()
        redis.stop()


@contextmanager
def _on_own_redis(mock: Mock, postgres: Postgres, tmp_path_factory: pytest.TempPathFactory, name: str,
                  edit: Callable[[dict[str, Any]], None] = lambda config: None,
                  ) -> Iterator[tuple[Gateway, RedisServer]]:
    """A cluster gateway on a Redis of its own (the test writes its keys by hand, or pauses it),
    ``edit`` changing its configuration; both stopped after."""
    redis = start_redis()
    gateway = None
    try:
        with WebhookReceiver() as hooks:
            config = _config(mock, hooks)
            config["database"] = {"url": postgres.create_database(f"{name}_{uuid.uuid4().hex[:8]}")}
            config["redis"] = {"url": redis.url}
            edit(config)
            gateway = start_gateway(config, tmp_path_factory.mktemp(name))
            yield gateway, redis
    finally:
        if gateway is not None:
            gateway.process.stop()
        redis.stop()


def test_a_budget_counter_redis_refuses_is_judged_by_the_budget_policy_not_the_limits(
    mock_upstream: Mock, postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A key with limits and a budget whose counter Redis refuses to read (a key of another type
    under the counter's name): the budgets' on_store_error decides (open: admitted), as when the
    reservation is its own call; the limiter, which answers, refuses nothing. Redis's error is
    in the log, once however many requests meet it."""

    def policies(config: dict[str, Any]) -> None:
        config["limits"] = {"on_store_error": "closed"}
        config["budgets"] = {**config["budgets"], "on_store_error": "open"}

    own = _on_own_redis(mock_upstream, postgres, tmp_path_factory, "budgets_bad", policies)
    with own as (gateway, redis):
        created = httpx.post(f"{gateway.url}/admin/v1/keys", headers=ADMIN, timeout=10,
                             json={"models": ["*"], "rpm_limit": 1000, "max_budget_usd": 1}).json()
        client = openai.OpenAI(base_url=gateway.base_url, api_key=created["key"], max_retries=0, timeout=30)
        raw = client.chat.completions.with_raw_response.create(messages=ask(LONG), **CALL)
        assert raw.headers["x-ratelimit-remaining-requests"] == "999"
        store = sync_redis.Redis.from_url(redis.url)
        counters = [k for k in store.scan_iter(match="sb:bg:*") if not k.endswith(b":since")]
        assert counters  # the key's budget counter, loaded by the first request
        for k in counters:
            store.delete(k)
            store.set(k, "not a hash")
        for left in ("998", "997"):
            raw = client.chat.completions.with_raw_response.create(messages=ask(LONG), **CALL)
            assert raw.parse().choices
            assert raw.headers["x-ratelimit-remaining-requests"] == left
        gateway.process.stop()
        gateway.process.wait_exit()
        told = [line for line in gateway.process.lines
                if "reservation made with the rate limits failed in redis (WRONGTYPE" in line]
        assert len(told) == 1, gateway.process.output


def test_a_client_that_leaves_while_redis_holds_its_admission_leaves_no_budget_reserved(
    mock_upstream: Mock, postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Cluster mode: a key with limits and a budget, whose limits and reservation go to Redis in
    one script. The client gives up while Redis holds that script (CLIENT PAUSE); Redis runs it
    once it goes on, and the reservation it made is released at once rather than held until it
    lapses (the request's deadline plus a minute). What the limits took stays, as when the
    limiter's own call is cancelled. (Embedded counters answer in process: nothing is held.)"""
    with _on_own_redis(mock_upstream, postgres, tmp_path_factory, "budgets_left") as (gateway, redis):
        store = sync_redis.Redis.from_url(redis.url)
        admin = httpx.Client(base_url=gateway.url, headers=ADMIN, timeout=10)
        key = admin.post("/admin/v1/keys", json={"models": ["*"], "rpm_limit": 1000}).json()
        budget = admin.put("/admin/v1/budgets", json={
            "scope": "key", "subject": key["id"], "max_amount": 1, "period": "total"}).json()

        def status() -> dict[str, Any]:
            return dict(admin.get(f"/admin/v1/budgets/{budget['id']}").json()["status"])

        client = openai.OpenAI(base_url=gateway.base_url, api_key=key["key"], max_retries=0, timeout=30)
        # The budget cached and its counter loaded: the next request reserves with its limits,
        # and that one loads the combined script into Redis (the cancelled request's call is then
        # run by Redis, not answered NOSCRIPT: a call re-run after NOSCRIPT for a caller gone is
        # not run at all, tests/stores/test_redis_release_after_noscript.py).
        client.chat.completions.create(messages=ask(LONG), **CALL)
        client.chat.completions.create(messages=ask(LONG), **CALL)
        spent = until(lambda: (s := status())["reserved"] == "0" and s["spent"])
        store.execute_command("CLIENT", "PAUSE", 30_000, "WRITE")
        try:
            with pytest.raises(openai.APITimeoutError):
                client.with_options(timeout=1.0).chat.completions.create(
                    messages=ask(LONG), **CALL, extra_headers={"x-request-id": "left-1"})
            gateway.process.wait_for_all("left-1", "client disconnected")
        finally:
            store.execute_command("CLIENT", "UNPAUSE")
        assert until(lambda: (s := status())["reserved"] == "0" and s, timeout=10)["spent"] == spent
        raw = client.chat.completions.with_raw_response.create(messages=ask(LONG), **CALL)
        assert raw.headers["x-ratelimit-remaining-requests"] == "996"  # its request counted


def test_counters_are_rebuilt_from_the_ledger_when_redis_loses_them(pair: Pair) -> None:
    key = pair.key()
    budget = pair.budget(scope="key", subject=key["id"], max_amount=0.05, period="weekly")
    client = pair.sdk(key["key"])
    for _ in range(3):
        client.chat.completions.create(messages=ask(LONG), **CALL)
    until(lambda: pair.ledger(key["id"])["requests"] == 3)
    if pair.redis is not None:
        pair.redis.flush()  # Redis restarted empty: the counters are gone
    status = pair.status(budget["id"])
    assert Decimal(status["spent"]) == Decimal("0.03") and status["reserved"] == "0"
    for _ in range(2):
        client.chat.completions.create(messages=ask(LONG), **CALL)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(messages=ask(LONG), **CALL)


def _over_budget(client: openai.OpenAI) -> str:
    """The refusal of a request past its key's budget: its message."""
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(messages=ask(LONG), **CALL)
    body: Any = refused.value.body
    assert body["code"] == "budget_exceeded"
    assert refused.value.response.headers["x-switchboard-budget-scope"] == "key"
    return str(body["message"])


def test_a_rotated_key_keeps_its_own_budget_even_when_it_rotates_itself(pair: Pair) -> None:
    old = pair.key(max_budget_usd=0.03)  # in total: three calls
    for _ in range(3):
        pair.sdk(old["key"]).chat.completions.create(messages=ask(LONG), **CALL)
    assert "key budget" in _over_budget(pair.sdk(old["key"]))
    # A developer key may rotate itself: its successor has what is left, nothing.
    resp = httpx.post(f"{pair.first.url}/admin/v1/keys/{old['id']}/rotate", json={"grace_seconds": 600},
                      headers={"Authorization": f"Bearer {old['key']}"}, timeout=10)
    assert resp.status_code == 201, resp.text
    new = resp.json()
    assert new["lineage"] == old["id"] and new["max_budget_usd"] == 0.03
    assert "key budget" in _over_budget(pair.sdk(new["key"], on=pair.second))
    assert "key budget" in _over_budget(pair.sdk(old["key"]))  # still in its grace period
    newer = pair.admin("POST", f"/admin/v1/keys/{new['id']}/rotate", {"grace_seconds": 0}).json()
    assert "key budget" in _over_budget(pair.sdk(newer["key"]))


def test_a_budget_set_on_a_key_follows_it_through_rotations(pair: Pair) -> None:
    old = pair.key()
    budget = pair.budget(scope="key", subject=old["id"], max_amount=0.02, period="daily")
    for _ in range(2):
        pair.sdk(old["key"]).chat.completions.create(messages=ask(LONG), **CALL)
    assert budget["id"] in _over_budget(pair.sdk(old["key"]))
    new = pair.admin("POST", f"/admin/v1/keys/{old['id']}/rotate", {"grace_seconds": 0}).json()
    assert budget["id"] in _over_budget(pair.sdk(new["key"], on=pair.second))
    assert Decimal(pair.status(budget["id"])["spent"]) == Decimal("0.02")
    # Naming the successor sets the same budget: a key's budgets are held under its lineage.
    raised = pair.budget(scope="key", subject=new["id"], max_amount=0.03, period="daily")
    assert (raised["id"], raised["subject"]) == (budget["id"], old["id"])
    pair.sdk(new["key"]).chat.completions.create(messages=ask(LONG), **CALL)
    assert budget["id"] in _over_budget(pair.sdk(new["key"]))
    until(lambda: pair.answered(old["id"]) == 2 and pair.answered(new["id"]) == 1)
    if pair.redis is not None:
        pair.redis.flush()  # Redis restarted empty: counters rebuilt from the ledger, the whole chain's
    assert Decimal(pair.status(budget["id"])["spent"]) == Decimal("0.03")
    assert budget["id"] in _over_budget(pair.sdk(new["key"], on=pair.second))


def test_each_threshold_fires_one_signed_webhook_per_period(pair: Pair) -> None:
    key = pair.key()
    budget = pair.budget(scope="key", subject=key["id"], max_amount=0.04, period="monthly",
                         thresholds=[50, 100])
    pair.hooks.respond([500])  # the first delivery fails: retried with the same event id
    clients = [pair.sdk(key["key"]), pair.sdk(key["key"], on=pair.second)]
    for i in range(4):
        clients[i % 2].chat.completions.create(messages=ask(LONG), **CALL)
    with pytest.raises(openai.RateLimitError):
        clients[0].chat.completions.create(messages=ask(LONG), **CALL)

    def mine() -> list[Any]:
        return [r for r in pair.hooks.requests if r.json()["data"]["budget"]["id"] == budget["id"]]

    received = until(lambda: (got := mine()) and len({r.json()["id"] for r in got if r.answered == 200}) == 2
                     and got)
    events = {r.json()["id"]: r.json() for r in received}
    assert sorted(e["data"]["threshold_percent"] for e in events.values()) == [50, 100]
    for r in received:
        assert verify(HOOK_SECRET.encode(), r.headers[SIGNATURE_HEADER], r.body, now=int(time.time()))
        assert r.headers["x-switchboard-event-id"] == r.json()["id"]
    hundred = next(e for e in events.values() if e["data"]["threshold_percent"] == 100)
    assert hundred["type"] == "budget.threshold" and hundred["data"]["spent"] == "0.04"
    assert hundred["data"]["budget"]["scope"] == "key" and hundred["data"]["period_end"] is not None
    # Delivered once each (plus the one retried delivery): no instance fired a threshold twice.
    assert len(received) in (2, 3)


def _alerts_of(pair: Pair, budget_id: str) -> dict[tuple[int, str], set[str]]:
    """The delivered threshold events of one budget: event ids by (percent, budget amount)."""
    out: dict[tuple[int, str], set[str]] = {}
    for r in pair.hooks.requests:
        data = r.json()["data"]
        if data["budget"]["id"] == budget_id and r.answered == 200:
            at = (data["threshold_percent"], data["budget"]["max_amount"])
            out.setdefault(at, set()).add(r.json()["id"])
    return out


def test_a_raised_budget_alerts_again_at_its_thresholds_of_the_new_amount(pair: Pair) -> None:
    key = pair.key()
    budget = pair.budget(scope="key", subject=key["id"], max_amount=0.02, period="monthly",
                         thresholds=[50, 80])
    clients = [pair.sdk(key["key"]), pair.sdk(key["key"], on=pair.second)]
    for i in range(2):
        clients[i % 2].chat.completions.create(messages=ask(LONG), **CALL)
    until(lambda: set(_alerts_of(pair, budget["id"])) == {(50, "0.02"), (80, "0.02")})
    # Raised mid-period to $0.10 with $0.02 spent: 20 %, below both thresholds of the new amount.
    assert pair.budget(scope="key", subject=key["id"], max_amount=0.10, period="monthly",
                       thresholds=[50, 80])["id"] == budget["id"]
    for i in range(3):  # $0.05: 50 % of the new amount
        clients[i % 2].chat.completions.create(messages=ask(LONG), **CALL)
    until(lambda: (50, "0.1") in _alerts_of(pair, budget["id"]))
    for i in range(3):  # $0.08: 80 %
        clients[i % 2].chat.completions.create(messages=ask(LONG), **CALL)
    alerts = until(lambda: (got := _alerts_of(pair, budget["id"])) and (80, "0.1") in got and got)
    assert set(alerts) == {(50, "0.02"), (80, "0.02"), (50, "0.1"), (80, "0.1")}
    assert all(len(ids) == 1 for ids in alerts.values()), alerts  # each once, across both instances


def test_a_budget_lowered_below_its_spend_alerts_at_its_thresholds_of_the_new_amount(pair: Pair) -> None:
    key = pair.key()
    budget = pair.budget(scope="key", subject=key["id"], max_amount=0.10, period="monthly",
                         thresholds=[50, 80, 100])
    clients = [pair.sdk(key["key"]), pair.sdk(key["key"], on=pair.second)]
    for i in range(6):
        clients[i % 2].chat.completions.create(messages=ask(LONG), **CALL)
    until(lambda: pair.status(budget["id"])["spent"] == "0.06")
    until(lambda: set(_alerts_of(pair, budget["id"])) == {(50, "0.1")})
    # Lowered to $0.05 with $0.06 spent: past every threshold of the new amount, and no request
    # will settle to cross one (they are refused).
    pair.budget(scope="key", subject=key["id"], max_amount=0.05, period="monthly", thresholds=[50, 80, 100])
    with pytest.raises(openai.RateLimitError):
        clients[0].chat.completions.create(messages=ask(LONG), **CALL)
    alerts = until(lambda: (got := _alerts_of(pair, budget["id"])) and len(got) == 4 and got)
    assert set(alerts) == {(50, "0.1"), (50, "0.05"), (80, "0.05"), (100, "0.05")}
    event = next(r.json() for r in pair.hooks.requests if r.json()["id"] in alerts[(100, "0.05")])
    assert event["data"]["spent"] == "0.06"
    assert all(len(ids) == 1 for ids in alerts.values()), alerts


def _refused_as_expired(gw: Gateway, key: str) -> bool:
    resp = httpx.get(f"{gw.url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    return resp.status_code == 401 and resp.json()["error"]["code"] == "key_expired"


def test_revoking_a_chains_last_key_forgets_its_own_budgets_threshold_claims(pair: Pair) -> None:
    # Before, a revoked chain's own budget kept its threshold claims for ever (a total budget's
    # period never ends): the claims table only grew.
    key = pair.key(max_budget_usd=0.04)
    own = f"key:{key['id']}"
    client = pair.sdk(key["key"])
    for _ in range(2):  # $0.02: 50 %
        client.chat.completions.create(messages=ask(LONG), **CALL)
    until(lambda: (50, "0.04") in _alerts_of(pair, own))
    assert pair.claims(own) == 1
    resp = pair.admin("DELETE", f"/admin/v1/keys/{key['id']}")
    assert resp.status_code == 200, resp.text
    assert pair.claims(own) == 0


def test_a_deleted_budget_and_its_audit_entry_are_written_both_or_neither(pair: Pair) -> None:
    # Before, the budget was deleted, then audited in a transaction of its own: an audit entry the
    # database refused left the budget deleted, unaudited, and the caller told it failed.
    with pair.audit_refused() as tenant:
        budget = pair.budget(scope="tenant", tenant=tenant, max_amount=5, period="total")
        resp = pair.admin("DELETE", f"/admin/v1/budgets/{budget['id']}")
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        assert pair.admin("GET", f"/admin/v1/budgets/{budget['id']}").status_code == 200  # still in force
        assert pair.audited(tenant, budget["id"]) == []
    resp = pair.admin("DELETE", f"/admin/v1/budgets/{budget['id']}")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"id": budget["id"], "object": "budget", "deleted": True}
    gone = pair.admin("GET", f"/admin/v1/budgets/{budget['id']}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "budget_not_found"
    assert pair.audited(tenant, budget["id"]) == ["master"]


def test_a_revoke_whose_budget_delete_cannot_be_audited_changes_nothing(pair: Pair) -> None:
    # Before, the key was revoked (and the revoke audited) before its chain's budgets were deleted
    # in a transaction of their own: an audit entry the database refused answered the caller an
    # error for a key that was revoked all the same.
    with pair.audit_refused() as tenant:
        key = pair.key(tenant=tenant, max_budget_usd=1)
        budget = pair.budget(scope="key", subject=key["id"], tenant=tenant, max_amount=1, period="total")
        resp = pair.admin("DELETE", f"/admin/v1/keys/{key['id']}")
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        # Nothing changed: the key still works, its budget is in force, nothing is audited.
        for gw in (pair.first, pair.second):
            assert pair.sdk(key["key"], on=gw).chat.completions.create(messages=ask(LONG), **CALL).choices
        assert pair.admin("GET", f"/admin/v1/keys/{key['id']}").json()["revoked"] is False
        assert pair.admin("GET", f"/admin/v1/budgets/{budget['id']}").status_code == 200
        assert pair.audited(tenant, key["id"], "key.revoke") == []
        assert pair.audited(tenant, budget["id"]) == []
    resp = pair.admin("DELETE", f"/admin/v1/keys/{key['id']}")
    assert resp.status_code == 200, resp.text
    with pytest.raises(openai.AuthenticationError):
        pair.sdk(key["key"]).chat.completions.create(messages=ask(LONG), **CALL)
    assert pair.admin("GET", f"/admin/v1/budgets/{budget['id']}").status_code == 404
    assert pair.audited(tenant, key["id"], "key.revoke") == ["master"]
    assert pair.audited(tenant, budget["id"]) == ["master"]


def test_an_expired_key_chains_budgets_are_deleted_without_alert_rules(pair: Pair) -> None:
    # Before, only the alerts' evaluation ended an expired key chain's budgets, and it runs only
    # with alert rules: here (none) a budget set on a key whose chain had expired stayed stored,
    # listed and shown, until its last key was revoked.
    expires = datetime.now(UTC) + timedelta(seconds=2)
    key = pair.key(expires_at=expires.isoformat())
    budget = pair.budget(scope="key", subject=key["id"], max_amount=1, period="total")
    kept = pair.budget(scope="tenant", max_amount=1000, period="total")  # the tenant's: not the chain's
    until(lambda: _refused_as_expired(pair.first, key["key"]))
    until(lambda: pair.admin("GET", f"/admin/v1/budgets/{budget['id']}").status_code == 404)
    for gw in (pair.first, pair.second):
        resp = httpx.get(f"{gw.url}/admin/v1/budgets/{budget['id']}", headers=ADMIN, timeout=10)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "budget_not_found"
        listed = httpx.get(f"{gw.url}/admin/v1/budgets", params={"scope": "key"}, headers=ADMIN, timeout=10)
        assert budget["id"] not in {b["id"] for b in listed.json()["data"]}
    assert pair.admin("GET", f"/admin/v1/budgets/{kept['id']}").status_code == 200
    # Audited once, by the system, however many instances looked.
    resp = pair.admin("GET", f"/admin/v1/audit?resource_id={budget['id']}")
    deleted = [e for e in resp.json()["data"] if e["action"] == "budget.delete"]
    assert [(e["actor"], e["actor_role"], e["before"]["id"]) for e in deleted] == [
        ("system", "system", budget["id"])]


def test_an_expired_key_chain_with_only_its_own_budget_forgets_its_threshold_claims(pair: Pair) -> None:
    # Before, the look for expired key chains found only chains with budgets set on them: a key
    # whose only budget was its own (max_budget_usd) kept its claims until it was brought back
    # or revoked; those of a total budget, whose period never ends, for ever.
    expires = datetime.now(UTC) + timedelta(seconds=3)
    key = pair.key(max_budget_usd=0.04, expires_at=expires.isoformat())
    own = f"key:{key['id']}"
    client = pair.sdk(key["key"])
    for _ in range(2):  # $0.02: 50 %
        client.chat.completions.create(messages=ask(LONG), **CALL)
    until(lambda: (50, "0.04") in _alerts_of(pair, own))
    assert pair.claims(own) == 1
    until(lambda: _refused_as_expired(pair.first, key["key"]))
    until(lambda: pair.claims(own) == 0)


def test_a_key_brought_back_after_expiring_sends_its_threshold_webhook_again(pair: Pair) -> None:
    # Before, an expired chain's own budget forgot its thresholds only when an alert rule had
    # opened an incident on it: with budgets.webhook alone, a key whose expires_at was pushed
    # back crossed its 50 % again without a webhook.
    expires = datetime.now(UTC) + timedelta(seconds=3)
    key = pair.key(max_budget_usd=0.04, expires_at=expires.isoformat())
    own = f"key:{key['id']}"
    client = pair.sdk(key["key"])
    for _ in range(2):  # $0.02: 50 %
        client.chat.completions.create(messages=ask(LONG), **CALL)
    until(lambda: (50, "0.04") in _alerts_of(pair, own))
    until(lambda: _refused_as_expired(pair.first, key["key"]))
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    resp = pair.admin("PATCH", f"/admin/v1/keys/{key['id']}", {"expires_at": later})
    assert resp.status_code == 200, resp.text
    # $0.03, 75 %: past 50 % again, on the instance that sent the first webhook.
    client.chat.completions.create(messages=ask(LONG), **CALL)
    alerts = until(lambda: (got := _alerts_of(pair, own)) and len(got.get((50, "0.04"), ())) == 2 and got)
    assert set(alerts) == {(50, "0.04")}
    events = {r.json()["id"]: r.json() for r in pair.hooks.requests if r.json()["id"] in alerts[(50, "0.04")]}
    assert sorted(e["data"]["spent"] for e in events.values()) == ["0.02", "0.03"]


def test_a_key_whose_chain_still_spends_is_not_alerted_again_when_its_expiry_moves(pair: Pair) -> None:
    # Pushing back the expiry of a key that has not expired brings nothing back: its thresholds
    # stay alerted for the period.
    key = pair.key(max_budget_usd=0.04, expires_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    own = f"key:{key['id']}"
    client = pair.sdk(key["key"])
    for _ in range(2):
        client.chat.completions.create(messages=ask(LONG), **CALL)
    until(lambda: (50, "0.04") in _alerts_of(pair, own))
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    assert pair.admin("PATCH", f"/admin/v1/keys/{key['id']}", {"expires_at": later}).status_code == 200
    client.chat.completions.create(messages=ask(LONG), **CALL)
    until(lambda: Decimal(pair.ledger(key["id"])["cost_usd"]) == Decimal("0.03"))
    marker = pair.key(max_budget_usd=0.02)  # a later crossing, delivered after any of the key's
    for _ in range(2):
        pair.sdk(marker["key"]).chat.completions.create(messages=ask(LONG), **CALL)
    until(lambda: (100, "0.02") in _alerts_of(pair, f"key:{marker['id']}"))
    assert {at: len(ids) for at, ids in _alerts_of(pair, own).items()} == {(50, "0.04"): 1}


def test_when_redis_is_down_the_budget_policy_decides(
    pair: Pair, request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if pair.kind == "embedded":
        # Embedded counters live in the process: nothing can be unreachable; budgets hold.
        key = pair.key(max_budget_usd=0.01)
        pair.sdk(key["key"]).chat.completions.create(messages=ask(LONG), **CALL)
        with pytest.raises(openai.RateLimitError):
            pair.sdk(key["key"]).chat.completions.create(messages=ask(LONG), **CALL)
        return
    postgres: Postgres = request.getfixturevalue("postgres")
    redis = start_redis()  # our own, so stopping it leaves the shared one alone
    gateways: list[Gateway] = []
    try:
        config = _config(mock_upstream, pair.hooks)
        config["database"] = {"url": postgres.create_database(f"budgets_down_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
        for policy in ("open", "closed"):
            config["budgets"] = {"on_store_error": policy}
            gateways.append(start_gateway(config, tmp_path_factory.mktemp(f"budgets-{policy}")))
        created = httpx.post(f"{gateways[0].url}/admin/v1/keys", json={"models": ["*"], "max_budget_usd": 1},
                             headers=ADMIN, timeout=10).json()
        clients = [openai.OpenAI(base_url=g.base_url, api_key=created["key"], max_retries=0, timeout=30)
                   for g in gateways]
        for client in clients:  # both up: counted
            client.chat.completions.create(messages=ask(LONG), **CALL)
        plain = httpx.post(f"{gateways[1].url}/admin/v1/keys", json={"models": ["*"]}, headers=ADMIN,
                           timeout=10).json()
        redis.stop()
        assert clients[0].chat.completions.create(messages=ask(LONG), **CALL).choices  # open: admitted
        with pytest.raises(openai.APIStatusError) as refused:  # closed: refused, clearly
            clients[1].chat.completions.create(messages=ask(LONG), **CALL)
        assert refused.value.status_code == 503
        body: Any = refused.value.body
        assert body["code"] == "budget_unavailable"
        # A key with no budget is not affected by the policy.
        client = openai.OpenAI(base_url=gateways[1].base_url, api_key=plain["key"], max_retries=0)
        assert client.chat.completions.create(messages=ask(LONG), **CALL).choices
    finally:
        for gw in gateways:
            gw.process.stop()
        redis.stop()


def _in_flight(client: openai.OpenAI) -> tuple[list[threading.Thread], dict[str, Any]]:
    """A slow call (600 tokens reserved by the key's token limit, a few used) and a slow stream,
    each in a thread: what they answered lands in the dict."""
    answers: dict[str, Any] = {}

    def call() -> None:
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=ask(f"{LONG} mock:latency_ms=3000"), max_tokens=600)
        answers["call"] = reply.usage.total_tokens if reply.usage is not None else None

    def stream() -> None:
        chunks = client.chat.completions.create(
            model="gpt-4o-mini", messages=ask(f"{LONG} mock:chunk_delay_ms=300"), max_tokens=10,
            stream=True, stream_options={"include_usage": True})
        answers["stream"] = [c.usage.total_tokens for c in chunks if c.usage is not None]

    threads = [threading.Thread(target=call), threading.Thread(target=stream)]
    for thread in threads:
        thread.start()
    return threads, answers


def _fits(client: openai.OpenAI) -> bool:
    """Another 600 tokens fit the key's 1000 a minute only if the slow call's reservation of
    600 was corrected to the few tokens it used."""
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=ask("f"), max_tokens=600)
    except openai.RateLimitError:
        return False
    return True


def test_calls_ending_while_redis_is_down_are_settled_once_it_is_back(
    pair: Pair, request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Their settlement was tried once and dropped: the reservations held the budget until they
    # lapsed (11 minutes), what the calls cost was never counted (the ledger had it), and the
    # token limit kept the whole estimate for its minute.
    if pair.kind == "embedded":
        # Embedded counters live in the process: a settlement cannot fail; the calls count.
        key = pair.key(tpm_limit=1000)
        budget = pair.budget(scope="key", subject=key["id"], unit="tokens", max_amount=100_000)
        threads, answers = _in_flight(pair.sdk(key["key"]))
        for thread in threads:
            thread.join(30)
        assert answers["call"] and answers["stream"]
        row = until(lambda: (r := pair.ledger(key["id"]))["requests"] == 2 and r)
        settled = until(lambda: (st := pair.status(budget["id"]))["reserved"] == 0 and st)
        assert settled["spent"] == row["prompt_tokens"] + row["completion_tokens"]
        assert _fits(pair.sdk(key["key"]))
        return
    postgres: Postgres = request.getfixturevalue("postgres")
    redis = start_redis()  # our own, so stopping it leaves the shared one alone
    gw: Gateway | None = None
    try:
        config = _config(mock_upstream, pair.hooks)
        config["database"] = {"url": postgres.create_database(f"budgets_blip_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
        gw = start_gateway(config, tmp_path_factory.mktemp("budgets-blip"))
        one = Pair("cluster", gw, gw, pair.hooks, redis)
        key = one.key(tpm_limit=1000)
        budget = one.budget(scope="key", subject=key["id"], unit="tokens", max_amount=100_000)
        client = one.sdk(key["key"])
        first = client.chat.completions.create(model="gpt-4o-mini", messages=ask(LONG), max_tokens=20)
        assert first.usage is not None
        until(lambda: one.status(budget["id"])["spent"] == first.usage.total_tokens)  # type: ignore[union-attr]
        threads, answers = _in_flight(client)
        # Both reserved (prompt + max_tokens each), and under way upstream: Redis goes away.
        until(lambda: one.status(budget["id"])["reserved"] >= 610)
        redis.shut_down_keeping_data()
        for thread in threads:
            thread.join(30)
        # The client saw nothing of it: both answered in full while Redis was down.
        assert answers["call"] and answers["stream"], answers
        redis.restart()  # with the counters as they were: both reservations held, nothing spent
        row = until(lambda: (r := one.ledger(key["id"]))["requests"] == 3 and r)
        ledger = row["prompt_tokens"] + row["completion_tokens"]
        assert ledger == first.usage.total_tokens + answers["call"] + answers["stream"][0]
        settled = until(lambda: (st := one.status(budget["id"]))["reserved"] == 0 and st, timeout=30)
        assert settled["spent"] == ledger
        assert until(lambda: _fits(client))  # well within the minute of the slow call
    finally:
        if gw is not None:
            gw.process.stop()
        redis.stop()
