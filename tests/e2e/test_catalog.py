"""The model catalog through a running gateway: GET /v1/models extras and the admin endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from switchboard.catalog import cost_usd, lookup
from tests.servers import MASTER_KEY, Gateway, Mock, start_gateway


@pytest.fixture(scope="module")
def catalog_gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("catalog")
    extra = tmp / "extra-catalog.yaml"
    extra.write_text(yaml.safe_dump({"sections": [{
        "name": "house", "provider_types": ["openai"], "source": "https://example.test/house-prices",
        "as_of": "2026-01-01",
        "models": {"house-llm": {"context_window": 8192, "capabilities": ["streaming"],
                                 "input_cost_per_mtok": 1.0, "output_cost_per_mtok": 2.0}},
    }]}))
    config: dict[str, Any] = {
        "providers": [
            {"name": "local-openai", "type": "openai", "api_base": f"{mock_upstream.url}/v1",
             "api_key": "${UPSTREAM_KEY}"},
            {"name": "second-openai", "type": "openai", "api_base": f"{mock_upstream.url}/v1",
             "api_key": "${UPSTREAM_KEY}"},
        ],
        "models": [
            {"name": "gpt-4o-mini", "provider": "local-openai", "model": "gpt-4o-mini"},
            {"name": "embedder", "provider": "local-openai", "model": "text-embedding-3-small"},
            {"name": "dated", "provider": "local-openai", "model": "gpt-4o-2024-11-20"},
            {"name": "house", "provider": "local-openai", "model": "house-llm"},
            {"name": "custom", "provider": "local-openai", "model": "my-finetune",
             "info": {"context_window": 32000, "capabilities": ["tools", "streaming"],
                      "input_cost_per_mtok": 0.5, "output_cost_per_mtok": 1.5}},
            {"name": "mystery", "provider": "local-openai", "model": "totally-unknown-model"},
            # A group of two deployments of different upstream models.
            {"name": "mixed", "provider": "second-openai", "model": "gpt-4o-mini"},
            {"name": "mixed", "provider": "local-openai", "model": "gpt-4o-2024-08-06"},
        ],
        "catalog": {"file": str(extra), "models": {"gpt-4o-mini": {"max_output_tokens": 1000}}},
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
    }
    gw = start_gateway(config, tmp)
    yield gw
    gw.process.stop()


@pytest.fixture
def sdk(catalog_gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=catalog_gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def _admin(gw: Gateway, key: str | None = MASTER_KEY, query: str = "") -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{gw.url}/admin/models{query}", headers=headers, timeout=30)


# -- GET /v1/models --------------------------------------------------------------------------


def test_models_list_keeps_openai_shape_and_adds_catalog_fields(sdk: openai.OpenAI) -> None:
    models = {m.id: m for m in sdk.models.list()}
    assert set(models) == {"gpt-4o-mini", "embedder", "dated", "house", "custom", "mystery", "mixed"}
    mini = models["gpt-4o-mini"]
    assert (mini.object, mini.owned_by) == ("model", "local-openai")
    extra = mini.model_extra or {}
    assert extra["context_window"] == 128000
    assert extra["max_output_tokens"] == 1000  # the config's catalog.models override
    assert extra["mode"] == "chat"
    assert extra["capabilities"] == {"tools": True, "vision": True, "json_schema": True, "embeddings": False,
                                     "streaming": True}
    assert extra["pricing"] == {"currency": "USD", "unit": "1M tokens", "input": 0.15, "output": 0.6,
                                "cached_input": 0.075,
                                # OpenAI's priority tier (docs/catalog.md)
                                "priority": {"input": 0.25, "output": 1.0, "cached_input": 0.125}}


def test_models_list_extras_follow_lookup_rules_and_overrides(sdk: openai.OpenAI) -> None:
    models = {m.id: m.model_extra or {} for m in sdk.models.list()}
    assert models["embedder"]["mode"] == "embedding"
    assert models["embedder"]["capabilities"]["embeddings"] is True
    assert "max_output_tokens" not in models["embedder"]
    assert models["dated"]["pricing"]["input"] == 2.5  # gpt-4o-2024-11-20 -> gpt-4o
    assert models["house"]["context_window"] == 8192  # from catalog.file
    assert models["custom"]["context_window"] == 32000  # from the model entry's info
    assert models["custom"]["pricing"]["output"] == 1.5
    # Unknown to the catalog: the plain OpenAI entry, nothing invented.
    assert models["mystery"] == {}


def test_model_retrieve_carries_catalog_fields(sdk: openai.OpenAI) -> None:
    model = sdk.models.retrieve("custom")
    assert model.id == "custom"
    assert (model.model_extra or {})["capabilities"]["tools"] is True


def test_cost_helper_prices_a_real_call(sdk: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "price me"}]
    resp = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert resp.usage is not None
    info = lookup("openai", "gpt-4o-mini")
    assert info is not None
    expected = (resp.usage.prompt_tokens * 0.15 + resp.usage.completion_tokens * 0.6) / 1_000_000
    assert cost_usd(info, resp.usage.model_dump()) == pytest.approx(expected)
    assert expected > 0


# -- GET /admin/models -----------------------------------------------------------------------


def test_model_listings_show_a_key_only_the_models_it_may_use(catalog_gateway: Gateway) -> None:
    created = httpx.post(f"{catalog_gateway.url}/admin/v1/keys", json={"models": ["gpt-4o-mini", "house"]},
                         headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30)
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    # /admin/models names providers and upstream ids: the platform admin's.
    for query in ("", "?all=1"):
        refused = _admin(catalog_gateway, key, query)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["type"] == "permission_error"
    headers = {"Authorization": f"Bearer {key}"}
    listed = httpx.get(f"{catalog_gateway.url}/admin/v1/models", headers=headers, timeout=30)
    assert listed.status_code == 200, listed.text
    assert [m["name"] for m in listed.json()["data"]] == ["gpt-4o-mini", "house"]
    shown = httpx.get(f"{catalog_gateway.url}/admin/v1/models/house", headers=headers, timeout=30)
    assert shown.status_code == 200, shown.text
    hidden = httpx.get(f"{catalog_gateway.url}/admin/v1/models/mystery", headers=headers, timeout=30)
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "model_not_found"


def test_admin_models_lists_configured_models_with_records(catalog_gateway: Gateway) -> None:
    resp = _admin(catalog_gateway)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    rows = {row["id"]: row for row in resp.json()["data"]}
    assert set(rows) == {"gpt-4o-mini", "embedder", "dated", "house", "custom", "mystery", "mixed"}
    dated = rows["dated"]
    assert (dated["provider"], dated["provider_type"], dated["model"]) == ("local-openai", "openai",
                                                                          "gpt-4o-2024-11-20")
    assert dated["catalog_match"] == "base"
    record = dated["catalog"]
    assert record["model"] == "gpt-4o"
    assert set(record["provider_types"]) == {"openai", "azure"}
    assert record["source"].startswith("https://platform.openai.com/")
    assert record["as_of"]
    assert rows["custom"]["catalog_match"] == "config"
    assert rows["house"]["catalog"]["source"] == "https://example.test/house-prices"
    assert (rows["mystery"]["catalog_match"], rows["mystery"]["catalog"]) == (None, None)


def test_admin_models_lists_the_models_added_at_run_time(mock_upstream: Mock, tmp_path: Path) -> None:
    """A model added through /admin/v1/models is served at once: the catalog view lists it, with
    its own record, after the YAML's; removed, it is gone."""
    gw = start_gateway({
        "providers": [{"name": "local-openai", "type": "openai", "api_base": f"{mock_upstream.url}/v1",
                       "api_key": "${UPSTREAM_KEY}"}],
        "models": [{"name": "gpt-4o-mini", "provider": "local-openai", "model": "gpt-4o-mini"}],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
    }, tmp_path)
    try:
        headers = {"Authorization": f"Bearer {MASTER_KEY}"}
        for body in ({"name": "added", "provider": "local-openai", "model": "gpt-4o-2024-08-06"},
                     {"name": "added-custom", "provider": "local-openai", "model": "my-finetune",
                      "info": {"context_window": 32000}}):
            made = httpx.post(f"{gw.url}/admin/v1/models", json=body, headers=headers, timeout=30)
            assert made.status_code == 201, made.text
        rows = _admin(gw).json()["data"]
        assert [(r["id"], r["source"]) for r in rows] == [
            ("gpt-4o-mini", "config"), ("added", "database"), ("added-custom", "database")]
        added = rows[1]
        assert (added["object"], added["provider"], added["provider_type"], added["model"]) == (
            "model", "local-openai", "openai", "gpt-4o-2024-08-06")
        assert (added["catalog_match"], added["catalog"]["model"]) == ("base", "gpt-4o")
        assert (rows[2]["catalog_match"], rows[2]["catalog"]["context_window"]) == ("config", 32000)
        gone = httpx.delete(f"{gw.url}/admin/v1/models/added", headers=headers, timeout=30)
        assert gone.status_code in (200, 204), gone.text
        assert [r["id"] for r in _admin(gw).json()["data"]] == ["gpt-4o-mini", "added-custom"]
    finally:
        gw.process.stop()


def test_each_deployment_of_a_group_shows_its_own_record(catalog_gateway: Gateway,
                                                         sdk: openai.OpenAI) -> None:
    rows = [row for row in _admin(catalog_gateway).json()["data"] if row["id"] == "mixed"]
    assert [(r["provider"], r["model"], r["catalog_match"], r["catalog"]["model"]) for r in rows] == [
        ("second-openai", "gpt-4o-mini", "exact", "gpt-4o-mini"),
        ("local-openai", "gpt-4o-2024-08-06", "base", "gpt-4o")]
    assert rows[0]["catalog"]["max_output_tokens"] == 1000  # catalog.models' override of gpt-4o-mini
    # GET /v1/models lists the group once, described as its first deployment, whose provider
    # owned_by names: one model's limits and prices, not another's beside its owner.
    entry = sdk.models.retrieve("mixed")
    mini = lookup("openai", "gpt-4o-mini")
    assert mini is not None
    assert entry.owned_by == "second-openai"
    assert entry.model_extra is not None
    assert entry.model_extra["max_output_tokens"] == 1000
    assert entry.model_extra["pricing"]["input"] == mini.input_cost_per_mtok
    listed = [m for m in sdk.models.list().data if m.id == "mixed"]
    assert len(listed) == 1 and listed[0].model_extra == entry.model_extra


def test_admin_models_all_lists_the_whole_catalog(catalog_gateway: Gateway) -> None:
    resp = _admin(catalog_gateway, query="?all=1")
    assert resp.status_code == 200
    body = resp.json()
    by_type: dict[str, set[str]] = {}
    for record in body["data"]:
        for t in record["provider_types"]:
            by_type.setdefault(t, set()).add(record["model"])
    assert "claude-sonnet-4-5-20250929" in by_type["anthropic"]
    assert "amazon.titan-embed-text-v2:0" in by_type["bedrock"]
    assert "house-llm" in by_type["openai"]
    assert {s["name"] for s in body["sources"]} >= {"openai", "anthropic", "gemini", "bedrock", "house"}


@pytest.mark.parametrize(("query", "whole"), [("?all=1", True), ("?all=true", True), ("?all=yes", True),
                                              ("?all=0", False), ("?all=false", False), ("?all=no", False)])
def test_admin_models_all_reads_yes_or_no(catalog_gateway: Gateway, query: str, whole: bool) -> None:
    body = _admin(catalog_gateway, query=query).json()
    assert ("sources" in body) is whole, body


@pytest.mark.parametrize(("query", "param", "code"), [
    ("?all=on", "all", "invalid_value"), ("?all=2", "all", "invalid_value"),
    ("?all=", "all", "invalid_value"),
    ("?all=1&all=0", "all", "duplicate_parameter"), ("?alll=1", "alll", "unknown_parameter"),
    ("?provider=local-openai", "provider", "unknown_parameter")])
def test_admin_models_refuses_what_it_cannot_read(catalog_gateway: Gateway, query: str, param: str,
                                                 code: str) -> None:
    """Anything but 1/true/yes was the list of served models: ``?all=on`` (or a misspelt
    ``?alll=1``, a filter it does not take) answered another list than the one asked for, as a
    success. As on the other admin lists: 400 naming the parameter."""
    resp = _admin(catalog_gateway, query=query)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code), error


@pytest.mark.parametrize(
    ("key", "code"), [(None, "missing_api_key"), ("sk-wrong-key-000", "invalid_api_key")]
)
def test_admin_models_requires_the_master_key(catalog_gateway: Gateway, key: str | None, code: str) -> None:
    for query in ("", "?all=1"):
        resp = _admin(catalog_gateway, key=key, query=query)
        assert resp.status_code == 401
        error = resp.json()["error"]
        assert (error["type"], error["code"]) == ("authentication_error", code)
        assert set(error) == {"message", "type", "param", "code"}


def test_admin_models_other_methods_are_not_allowed(catalog_gateway: Gateway) -> None:
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    resp = httpx.post(f"{catalog_gateway.url}/admin/models", headers=headers, json={}, timeout=30)
    assert resp.status_code == 405
    assert resp.json()["error"]["code"] == "method_not_allowed"


def test_invalid_catalog_file_stops_start_up(tmp_path: Path, mock_upstream: Mock) -> None:
    extra = tmp_path / "broken.yaml"
    extra.write_text(yaml.safe_dump({"sections": [{"name": "x", "provider_types": ["openai"],
                                                   "models": {"m": {"context_window": "huge"}}}]}))
    config = {
        "providers": [{"name": "p", "type": "openai", "api_base": f"{mock_upstream.url}/v1"}],
        "models": [{"name": "m", "provider": "p", "model": "m"}],
        "catalog": {"file": str(extra)},
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
    }
    with pytest.raises(RuntimeError) as exc:
        start_gateway(config, tmp_path)
    # The CLI wraps long lines; compare without whitespace.
    expected = f"catalog: file {extra}: sections[0].models.m.context_window: Input should be a valid integer"
    assert "".join(expected.split()) in "".join(str(exc.value).split())
