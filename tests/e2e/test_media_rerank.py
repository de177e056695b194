"""POST /v1/rerank end to end (httpx, Cohere-compatible): through Cohere v2, a vLLM-style
OpenAI-compatible host (/v1/rerank) and TGI (/rerank), through the chain (key, model access,
ledger with the search units' or tokens' cost), and its bad-input table."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import ledger
from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, start_gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
DOCS = [
    "Carson City is the capital city of the American state of Nevada.",
    "Washington, D.C. is the capital of the United States.",
    "Capital punishment has existed in the United States since before it was a country.",
    "The Commonwealth of the Northern Mariana Islands is a group of islands in the Pacific Ocean.",
]
QUERY = "What is the capital of the United States?"


def rerank_config(mock: Mock) -> dict[str, Any]:
    return {
        "providers": [
            {"name": "co", "type": "cohere", "api_base": mock.url, "api_key": "${UPSTREAM_KEY}"},
            {"name": "vllm", "type": "openai-compatible", "preset": "vllm", "api_base": f"{mock.url}/v1",
             "api_key": "${UPSTREAM_KEY}"},
            {"name": "tgi", "type": "openai-compatible", "preset": "tgi", "api_base": f"{mock.url}/v1"},
            {"name": "oa", "type": "openai", "api_base": f"{mock.url}/v1", "api_key": "${UPSTREAM_KEY}"},
        ],
        "models": [
            {"name": "rerank-cohere", "provider": "co", "model": "rerank-v3.5",
             "info": {"mode": "rerank", "search_unit_cost": 0.002}},
            {"name": "rerank-vllm", "provider": "vllm", "model": "BAAI/bge-reranker-v2-m3",
             "info": {"mode": "rerank", "input_cost_per_mtok": 0.05, "output_cost_per_mtok": 0}},
            {"name": "rerank-tgi", "provider": "tgi", "model": "bge-reranker-base",
             "info": {"search_unit_cost": 0.001}},
            {"name": "gpt-4o-mini", "provider": "oa", "model": "gpt-4o-mini"},
        ],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "spend": {"flush_seconds": 0.1},
        "server": {"max_body_bytes": 1024 * 1024},
    }


@pytest.fixture(scope="module")
def setup(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str]]:
    config = rerank_config(mock_upstream)
    tmp: Path = tmp_path_factory.mktemp("rerank")
    gw = start_gateway(config, tmp)
    yield gw, ledger.database_of(config, tmp)
    gw.process.stop()


@pytest.fixture(scope="module")
def gw(setup: tuple[Gateway, str]) -> Gateway:
    return setup[0]


def rerank(gw: Gateway, body: Any, key: str = MASTER_KEY, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
    if isinstance(body, bytes):
        return httpx.post(f"{gw.base_url}/rerank", content=body, headers=headers, timeout=30, **kwargs)
    return httpx.post(f"{gw.base_url}/rerank", json=body, headers=headers, timeout=30, **kwargs)


def test_rerank_through_cohere_orders_by_relevance_and_bills_search_units(
    setup: tuple[Gateway, str], mock_upstream: Mock
) -> None:
    gw, database = setup
    marker = new_marker()
    resp = rerank(gw, {"model": "rerank-cohere", "query": f"{QUERY} mock:capture={marker}",
                       "documents": [*DOCS[:3], {"text": DOCS[3]}],
                       "top_n": 2, "return_documents": True},
                  )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert len(body["results"]) == 2 and body["results"][0]["index"] == 1
    assert body["results"][0]["document"] == {"text": DOCS[1]}
    assert body["results"][0]["relevance_score"] >= body["results"][1]["relevance_score"]
    assert body["meta"]["billed_units"]["search_units"] == 1
    assert Decimal(resp.headers["x-switchboard-cost-usd"]) == Decimal("0.002")
    sent = captured(mock_upstream, marker)[0]
    assert sent["path"] == "/v2/rerank"
    assert sent["body"]["model"] == "rerank-v3.5" and sent["body"]["documents"][3] == DOCS[3]
    assert "return_documents" not in sent["body"]  # Cohere v2 has no such field
    rid = resp.headers["x-request-id"]
    record = ledger.wait_for(database, {rid})[rid]
    assert record.cost_usd == Decimal("0.002") and record.model == "rerank-cohere"
    assert record.metadata["operation"] == "rerank" and record.metadata["units"] == {"search_units": 1}


def test_rerank_through_a_vllm_host_bills_tokens(setup: tuple[Gateway, str], mock_upstream: Mock) -> None:
    gw, database = setup
    marker = new_marker()
    resp = rerank(gw, {"model": "rerank-vllm", "query": f"{QUERY} mock:capture={marker}", "documents": DOCS})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["results"][0]["index"] == 1 and len(body["results"]) == 4
    assert "document" not in body["results"][0]  # not asked for
    tokens = body["meta"]["billed_units"]["input_tokens"]
    assert tokens > 0
    assert Decimal(resp.headers["x-switchboard-cost-usd"]) == Decimal(tokens) * Decimal("0.05") / 1_000_000
    assert captured(mock_upstream, marker)[0]["path"] == "/v1/rerank"
    rid = resp.headers["x-request-id"]
    record = ledger.wait_for(database, {rid})[rid]
    assert record.prompt_tokens == tokens and record.provider == "vllm"


def test_rerank_through_tgi_uses_its_own_route(gw: Gateway, mock_upstream: Mock) -> None:
    marker = new_marker()
    resp = rerank(gw, {"model": "rerank-tgi", "query": f"{QUERY} mock:capture={marker}", "documents": DOCS,
                       "top_n": 1, "return_documents": True})
    assert resp.status_code == 200, resp.text
    [only] = resp.json()["results"]
    assert only["index"] == 1 and only["document"] == {"text": DOCS[1]} and 0 < only["relevance_score"] <= 1
    sent = captured(mock_upstream, marker)[0]
    assert sent["path"] == "/rerank" and sent["body"]["texts"] == DOCS


def test_cohere_clients_path_v2_rerank_is_served(gw: Gateway) -> None:
    resp = httpx.post(f"{gw.url}/v2/rerank", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30,
                      json={"model": "rerank-cohere", "query": QUERY, "documents": DOCS, "top_n": 1})
    assert resp.status_code == 200 and resp.json()["results"][0]["index"] == 1
    bad = httpx.post(f"{gw.url}/v2/rerank", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30,
                     json={"model": "rerank-cohere", "query": QUERY})
    assert bad.status_code == 400  # in Cohere's error shape there
    assert bad.json()["message"] == "'documents' is required" and bad.json()["param"] == "documents"


def test_rerank_needs_a_key_and_model_access(gw: Gateway) -> None:
    body = {"model": "rerank-cohere", "query": QUERY, "documents": DOCS}
    assert httpx.post(f"{gw.base_url}/rerank", json=body, timeout=10).status_code == 401
    key = httpx.post(f"{gw.url}/admin/v1/keys", headers=ADMIN, json={"models": ["gpt-4o-mini"]},
                     timeout=10).json()
    denied = rerank(gw, body, key=key["key"])
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "model_not_allowed"


def test_upstream_errors_and_faults_come_back_openai_shaped(gw: Gateway) -> None:
    resp = rerank(gw, {"model": "rerank-cohere", "query": "mock:status=429", "documents": DOCS})
    assert resp.status_code == 429 and resp.json()["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize(("body", "status", "param"), [
    (b"{not json", 400, None),
    (b"[]", 400, None),
    ({"model": "rerank-cohere", "documents": DOCS}, 400, "query"),
    ({"model": "rerank-cohere", "query": QUERY}, 400, "documents"),
    ({"model": "rerank-cohere", "query": QUERY, "documents": []}, 400, "documents"),
    ({"model": "rerank-cohere", "query": QUERY, "documents": [1, 2]}, 400, "documents"),
    ({"model": "rerank-cohere", "query": 5, "documents": DOCS}, 400, "query"),
    ({"model": "rerank-cohere", "query": QUERY, "documents": DOCS, "top_n": "2"}, 400, "top_n"),
    ({"model": "rerank-cohere", "query": QUERY, "documents": DOCS, "top_n": 0}, 400, "top_n"),
    ({"model": "rerank-cohere", "query": QUERY, "documents": DOCS, "rank_fields": ["a"]}, 400, "rank_fields"),
    ({"model": "gpt-4o-mini", "query": QUERY, "documents": DOCS}, 400, "model"),
    ({"model": "no-such-model", "query": QUERY, "documents": DOCS}, 404, "model"),
])
def test_bad_input_is_refused_and_the_server_keeps_serving(
    gw: Gateway, body: Any, status: int, param: str | None
) -> None:
    resp = rerank(gw, body)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    assert rerank(gw, {"model": "rerank-cohere", "query": QUERY, "documents": DOCS}).status_code == 200


def test_an_oversized_body_is_refused(gw: Gateway) -> None:
    resp = rerank(gw, b"{" + b" " * (2 * 1024 * 1024) + b"}", headers={"content-type": "application/json"})
    assert resp.status_code == 413
