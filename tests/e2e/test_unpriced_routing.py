"""``spend.refuse_unpriced`` holds for every deployment a request may reach: a retry within the
group and a fallback group never send it to a deployment whose model has no price (they were
sent, and recorded unpriced, while only the first pick was checked)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from switchboard.stores.protocols import UsageRecord
from tests import ledger
from tests.e2e.sdk import ask
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway

RUN = uuid.uuid4().hex[:8]  # fault counters are per header value: this run's own


def _model(name: str, provider: str, deployment: str, model: str = "gpt-4o-mini",
           weight: int = 1) -> dict[str, Any]:
    return {"name": name, "provider": provider, "model": model, "deployment": deployment, "weight": weight}


@pytest.fixture(scope="module")
def gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Path]]:
    config = openai_config(mock_upstream)
    config["providers"].append({
        "name": "always-500", "type": "openai", "api_base": f"{mock_upstream.url}/v1",
        "api_key": "${UPSTREAM_KEY}", "headers": {"x-mock-faults": f"rate=1;kinds=500;run={RUN}"}})
    # house-llm-7b: a model the catalog cannot price.
    config["models"] += [
        _model("primary", "always-500", "primary-a"),
        _model("mystery", "local-openai", "mystery-a", "house-llm-7b"),
        _model("safe", "local-openai", "safe-a"),
        _model("mixed", "always-500", "mixed-priced"),
        _model("mixed", "local-openai", "mixed-unpriced", "house-llm-7b", weight=1000),
        _model("unpriced-only", "local-openai", "unpriced-only-a", "house-llm-7b"),
        # Five output tokens of capped-priced cost $0.01 (input is free).
        {**_model("capped", "local-openai", "capped-priced"),
         "info": {"input_cost_per_mtok": 0, "output_cost_per_mtok": 2000}},
        _model("capped", "local-openai", "capped-unpriced", "house-llm-7b", weight=1000),
        {**_model("dear", "local-openai", "dear-a"),
         "info": {"input_cost_per_mtok": 0, "output_cost_per_mtok": 2000}},
    ]
    config["router"] = {
        "fallbacks": {"primary": ["mystery", "safe"]},
        "fallback_on": ["server_error"],
        "groups": {"primary": {"num_retries": 0}, "mixed": {"num_retries": 2}},
        "retry": {"backoff_seconds": 0.01, "max_backoff_seconds": 0.02},
        "cooldown": {"failures": 1000},
    }
    config["spend"] = {"refuse_unpriced": True, "flush_seconds": 0.1}
    tmp = tmp_path_factory.mktemp("unpriced-routing")
    gw = start_gateway(config, tmp)
    yield gw, ledger.database_of(config, tmp)
    gw.process.stop()


def _sdk(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def _record(database: Any, request_id: str) -> UsageRecord:
    return ledger.wait_for(database, {request_id}, 20.0)[request_id]


def _attempts(record: UsageRecord) -> list[tuple[str, str, int]]:
    return [(a["group"], a["deployment"], a["status"]) for a in record.attempts or ()]


def test_a_fallback_group_without_a_price_is_passed_over(gateway: tuple[Gateway, Any]) -> None:
    gw, database = gateway
    raw = _sdk(gw).chat.completions.with_raw_response.create(model="primary", messages=ask("fall back"))
    assert raw.parse().choices[0].message.content
    record = _record(database, raw.headers["x-request-id"])
    assert _attempts(record) == [("primary", "primary-a", 502), ("safe", "safe-a", 200)]
    assert not record.unpriced and record.deployment == "safe-a"


def test_a_retry_never_goes_to_a_deployment_without_a_price(gateway: tuple[Gateway, Any]) -> None:
    """The unpriced deployment weighs a thousand times the other: it is still never tried."""
    gw, database = gateway
    for _ in range(3):
        with pytest.raises(openai.InternalServerError) as failed:
            _sdk(gw).chat.completions.create(model="mixed", messages=ask("retry"))
        record = _record(database, failed.value.response.headers["x-request-id"])
        assert _attempts(record) == [("mixed", "mixed-priced", 502)] * 3


def test_a_model_with_no_priced_deployment_is_refused(gateway: tuple[Gateway, Any]) -> None:
    gw, _ = gateway
    with pytest.raises(openai.BadRequestError) as refused:
        _sdk(gw).chat.completions.create(model="unpriced-only", messages=ask("hi"))
    assert refused.value.body["code"] == "model_unpriced"  # type: ignore[index]


def test_a_budget_reserves_the_price_of_the_deployment_that_answers(gateway: tuple[Gateway, Any]) -> None:
    """The route stage picks the unpriced deployment (a thousand times the weight): the budget's
    reservation is still that of the priced one the request goes to, so a request costing more
    than the whole budget is refused before it is sent, as on a group of priced deployments."""
    gw, _ = gateway
    made = httpx.post(f"{gw.url}/admin/v1/keys", json={"models": ["*"], "max_budget_usd": 0.005},
                      headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10)
    assert made.status_code == 201, made.text
    client = openai.OpenAI(base_url=gw.base_url, api_key=made.json()["key"], max_retries=0, timeout=30)
    for _ in range(3):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="capped", messages=ask("a long story please"), max_tokens=5)
        assert refused.value.body["code"] == "request_exceeds_budget"  # type: ignore[index]


def test_a_budget_downgrade_to_a_model_without_a_price_is_not_made(gateway: tuple[Gateway, Any]) -> None:
    """Past the threshold the budget would send the request to a model whose calls are refused:
    no downgrade is made, as when none is set. The request stays on the model it names until
    the budget's maximum refuses it (it ended in a 503 saying no deployment was healthy)."""
    gw, _ = gateway
    admin = {"Authorization": f"Bearer {MASTER_KEY}"}
    made = httpx.post(f"{gw.url}/admin/v1/keys", json={"models": ["*"]}, headers=admin, timeout=10)
    assert made.status_code == 201, made.text
    budget = httpx.put(f"{gw.url}/admin/v1/budgets", headers=admin, timeout=10, json={
        "scope": "key", "subject": made.json()["id"], "max_amount": 0.04, "period": "total",
        "downgrade": {"model": "unpriced-only", "at_percent": 50}})
    assert budget.status_code == 200, budget.text
    create = openai.OpenAI(base_url=gw.base_url, api_key=made.json()["key"], max_retries=0,
                           timeout=30).chat.completions.with_raw_response.create
    for _ in range(4):  # five output tokens of "dear" cost $0.01: four fit the budget
        raw = create(model="dear", messages=ask("a long story please"), max_tokens=5)
        assert "x-switchboard-budget-downgrade" not in raw.headers
        assert (raw.headers["x-switchboard-deployment"], raw.headers["x-switchboard-cost-usd"]) == \
            ("dear-a", "0.010000")
    with pytest.raises(openai.RateLimitError) as refused:
        create(model="dear", messages=ask("a long story please"), max_tokens=5)
    assert refused.value.body["code"] == "budget_exceeded"  # type: ignore[index]
