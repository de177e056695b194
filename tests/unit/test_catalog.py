"""The model catalog: the shipped data, loading and validation, lookup rules, overrides and cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from switchboard import catalog
from switchboard.catalog import CatalogError, ModelInfo, cost_usd, lookup
from switchboard.providers.registry import providers
from switchboard.settings.loader import ConfigError, validate

# -- the shipped data ------------------------------------------------------------------------


def test_shipped_catalog_is_valid_and_sourced() -> None:
    data = catalog.shipped()
    assert data.sections
    for section in data.sections:
        assert section.source, section.name
        assert section.as_of, section.name
        assert set(section.provider_types) <= set(providers())


def test_shipped_catalog_covers_every_provider_type() -> None:
    covered = {t for info in catalog.default().entries() for t in info.provider_types}
    assert covered == set(providers())


@pytest.mark.parametrize(
    ("provider_type", "model"),
    [
        ("openai", "gpt-4o"),
        ("azure", "gpt-4o-mini"),
        ("anthropic", "claude-sonnet-4-5-20250929"),
        ("gemini", "gemini-2.5-flash"),
        ("vertex", "gemini-2.5-pro"),
        ("cohere", "command-a-03-2025"),
        ("bedrock", "anthropic.claude-3-5-haiku-20241022-v1:0"),
        ("bedrock", "amazon.titan-embed-text-v2:0"),
        ("bedrock", "meta.llama3-3-70b-instruct-v1:0"),
        ("bedrock", "mistral.mistral-7b-instruct-v0:2"),
        ("mistral", "mistral-small-2506"),
        ("openai-compatible", "llama-3.3-70b-versatile"),
        ("openai-compatible", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
        ("openai-compatible", "deepseek-v4-flash"),
    ],
)
def test_providers_current_models_are_listed_exactly(provider_type: str, model: str) -> None:
    match = catalog.default().find(provider_type, model)
    assert match is not None and match.kind == "exact"
    assert match.info.context_window and match.info.input_cost_per_mtok is not None


def test_shipped_records_are_consistent() -> None:
    for info in catalog.default().entries():
        if info.mode == "embedding":
            assert "embeddings" in info.capabilities, info.model
            assert "tools" not in info.capabilities, info.model
        else:
            assert "streaming" in info.capabilities, info.model
        if info.cached_input_cost_per_mtok is not None:
            assert info.input_cost_per_mtok is not None
            assert info.cached_input_cost_per_mtok <= info.input_cost_per_mtok, info.model


def test_known_prices() -> None:
    info = lookup("openai", "gpt-4o-mini")
    assert info is not None
    assert (info.input_cost_per_mtok, info.output_cost_per_mtok, info.cached_input_cost_per_mtok) == (
        0.15, 0.6, 0.075)
    assert info.context_window == 128000 and info.max_output_tokens == 16384
    assert info.source and "openai.com" in info.source
    claude = lookup("anthropic", "claude-haiku-4-5-20251001")
    assert claude is not None and claude.output_cost_per_mtok == 5.0


# -- lookup rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider_type", "requested", "expected", "kind"),
    [
        ("openai", "GPT-4o", "gpt-4o", "exact"),  # case-insensitive
        ("azure", "gpt-4o", "gpt-4o", "exact"),  # Azure shares OpenAI's ids
        ("mistral", "mistral-large-latest", "mistral-large-2512", "exact"),  # alias
        ("openai-compatible", "deepseek-chat", "deepseek-v4-flash", "exact"),  # alias
        ("gemini", "models/gemini-2.5-pro", "gemini-2.5-pro", "exact"),  # resource name
        ("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
         "anthropic.claude-sonnet-4-5-20250929-v1:0", "exact"),  # cross-region profile
        ("bedrock", "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0",
         "amazon.titan-embed-text-v2:0", "exact"),
        ("openai", "gpt-4o-2024-11-20", "gpt-4o", "base"),  # dated snapshot -> family id
        ("openai", "gpt-3.5-turbo-0125", "gpt-3.5-turbo", "base"),
        ("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "base"),  # undated alias
        ("vertex", "claude-haiku-4-5@20251001", None, None),  # Claude is not listed for vertex
        ("vertex", "gemini-2.5-flash-preview-05-20", "gemini-2.5-flash", "base"),
        ("mistral", "mistral-medium-latest", "mistral-medium-2508", "base"),  # newest snapshot
        ("openai", "gpt-4o_2024-08-06", "gpt-4o", "prefix"),  # a date after another separator
        ("openai", "gpt-4o-2024-08-06:preview-02", "gpt-4o", "prefix"),
        ("openai", "o1-pro", None, None),  # another model, ten times o1's price
        ("openai", "o1-pro-2025-03-19", None, None),
        ("openai", "gpt-4o-mini-search-preview-2025-03-11", None, None),  # not gpt-4o-mini
        ("anthropic", "claude-opus-4-9", None, None),  # another version is not a variant
        ("openai", "gpt-4.7", None, None),
        ("openai", "ft:gpt-4o-mini:acme::abc123", None, None),  # fine-tunes are priced differently
        ("bedrock", "amazon.titan-embed-text-v1", None, None),  # v2 is a different model
        ("anthropic", "gpt-4o", None, None),  # provider types are separate
        ("no-such-type", "gpt-4o", None, None),
    ],
)
def test_lookup_rules(provider_type: str, requested: str, expected: str | None, kind: str | None) -> None:
    match = catalog.default().find(provider_type, requested)
    if expected is None:
        assert match is None
    else:
        assert match is not None
        assert (match.info.model, match.kind) == (expected, kind)


def test_lookup_function_returns_info_or_none() -> None:
    assert isinstance(lookup("openai", "text-embedding-3-small"), ModelInfo)
    assert lookup("openai", "definitely-not-a-model") is None


def test_suffix_stripping_steps() -> None:
    assert list(catalog.stripped("anthropic.claude-3-5-haiku-20241022-v1:0")) == [
        "anthropic.claude-3-5-haiku-20241022-v1",
        "anthropic.claude-3-5-haiku-20241022",
        "anthropic.claude-3-5-haiku",
    ]
    assert list(catalog.stripped("command-r-08-2024")) == ["command-r"]
    assert list(catalog.stripped("gpt-4o")) == []


# -- file validation -------------------------------------------------------------------------


def _section(**models: Any) -> dict[str, Any]:
    return {"version": 1, "sections": [{"name": "x", "provider_types": ["openai"], "models": models}]}


def test_parse_error_names_file_and_entry() -> None:
    with pytest.raises(CatalogError) as exc:
        catalog.parse(_section(good={"context_window": 10}, bad={"context_window": 0}), "extra.yaml")
    assert exc.value.problems == [
        "sections[0].models.bad.context_window: Input should be greater than or equal to 1"
    ]
    assert str(exc.value).startswith("extra.yaml: sections[0].models.bad")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (_section(m={"contxt_window": 5}), "sections[0].models.m.contxt_window: unknown key"),
        (_section(m={"mode": "images"}),
         "sections[0].models.m.mode: Input should be 'chat', 'embedding', 'completion', 'rerank'"),
        (_section(m={"capabilities": ["telepathy"]}), "sections[0].models.m.capabilities[0]: Input should"),
        (_section(m={"input_cost_per_mtok": -1}), "sections[0].models.m.input_cost_per_mtok: Input should"),
        (_section(m={"provider_types": ["openia"]}),
         "sections[0].models.m.provider_types: unknown provider type 'openia'"),
        (_section(a={}, b={"aliases": ["A"]}),
         "sections[0].models.b: id 'A' (openai) is already defined at sections[0].models.a"),
        ({"version": 2}, "version: Input should be 1"),
    ],
)
def test_parse_problems(data: Any, problem: str) -> None:
    with pytest.raises(CatalogError) as exc:
        catalog.parse(data, "f.yaml")
    assert any(p.startswith(problem) for p in exc.value.problems), exc.value.problems


def test_read_file_errors(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="file not found"):
        catalog.read_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sections: [\n")
    with pytest.raises(CatalogError, match="invalid YAML"):
        catalog.read_file(bad)


# -- overrides through the config --------------------------------------------------------------


def _config(**extra: Any) -> dict[str, Any]:
    return {
        "providers": [
            {"name": "oa", "type": "openai", "api_key": "sk-x"},
            {"name": "az", "type": "azure", "api_base": "https://r.openai.azure.com", "api_key": "k"},
        ],
        "models": [{"name": "mini", "provider": "oa", "model": "gpt-4o-mini"}],
        "auth": {"master_key": "sk-master-123456"},
        **extra,
    }


def test_minimal_config_needs_no_catalog_key() -> None:
    settings = validate(_config(), "cfg.yaml", env={})
    built = catalog.build(settings)
    match = built.configured("mini")
    assert match is not None and match.kind == "exact" and match.info.max_output_tokens == 16384


def test_catalog_models_override_and_extend() -> None:
    settings = validate(_config(catalog={"models": {
        "gpt-4o-mini": {"max_output_tokens": 1000, "cached_input_cost_per_mtok": None},
        "house-model": {"provider_types": ["openai"], "context_window": 32000, "input_cost_per_mtok": 0.5},
        "everywhere": {"mode": "embedding", "capabilities": ["embeddings"]},
    }}), "cfg.yaml", env={})
    built = catalog.build(settings)
    mini = built.lookup("openai", "gpt-4o-mini")
    assert mini is not None
    assert mini.max_output_tokens == 1000 and mini.context_window == 128000
    assert mini.cached_input_cost_per_mtok is None  # an explicit null clears the shipped price
    assert built.lookup("azure", "gpt-4o-mini") == mini
    house = built.lookup("openai", "house-model")
    assert house is not None and house.context_window == 32000 and house.mode == "chat"
    assert built.lookup("azure", "house-model") is None
    everywhere = built.lookup("bedrock", "everywhere")
    assert everywhere is not None and everywhere.mode == "embedding"
    # The shipped catalog itself is untouched.
    shipped_mini = lookup("openai", "gpt-4o-mini")
    assert shipped_mini is not None and shipped_mini.max_output_tokens == 16384


def test_catalog_override_for_one_provider_type_splits_the_record() -> None:
    settings = validate(_config(catalog={"models": {
        "gpt-4o": {"provider_types": ["azure"], "input_cost_per_mtok": 2.75},
    }}), "cfg.yaml", env={})
    built = catalog.build(settings)
    azure, openai_ = built.lookup("azure", "gpt-4o"), built.lookup("openai", "gpt-4o")
    assert azure is not None and openai_ is not None
    assert (azure.input_cost_per_mtok, azure.provider_types) == (2.75, ("azure",))
    assert (openai_.input_cost_per_mtok, openai_.provider_types) == (2.5, ("openai",))


def test_catalog_file_extends_the_shipped_catalog(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({"sections": [{
        "name": "house", "provider_types": ["openai-compatible"], "source": "https://example.test/prices",
        "as_of": "2026-01-01", "defaults": {"capabilities": ["tools", "streaming"]},
        "models": {"house-llm": {"context_window": 8192, "input_cost_per_mtok": 1, "output_cost_per_mtok": 2,
                                 "aliases": ["house"]}},
    }]}))
    settings = validate(_config(catalog={"file": str(extra)}), "cfg.yaml", env={})
    built = catalog.build(settings)
    info = built.lookup("openai-compatible", "house")
    assert info is not None
    assert (info.model, info.context_window, info.source, info.as_of) == (
        "house-llm", 8192, "https://example.test/prices", "2026-01-01")
    assert info.capabilities == {"tools", "streaming"}
    assert any(s["name"] == "house" for s in built.sections)


def test_bad_catalog_file_is_a_config_error_naming_file_and_entry(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump(_section(m={"context_window": "lots"})))
    with pytest.raises(ConfigError) as exc:
        validate(_config(catalog={"file": str(extra)}), "cfg.yaml", env={})
    [problem] = exc.value.problems
    assert problem.startswith(f"catalog: file {extra}: sections[0].models.m.context_window: Input should be")
    with pytest.raises(ConfigError, match="file not found"):
        validate(_config(catalog={"file": str(tmp_path / "nope.yaml")}), "cfg.yaml", env={})


@pytest.mark.parametrize(
    ("catalog_key", "problem"),
    [
        ({"models": {"m": {"provider_types": ["nope"]}}}, "catalog.models.m.provider_types: unknown"),
        ({"models": {"m": {"context_window": -5}}}, "catalog.models.m.context_window: Input should be"),
        ({"modles": {}}, "catalog.modles: unknown key"),
    ],
)
def test_catalog_key_validation(catalog_key: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as exc:
        validate(_config(catalog=catalog_key), "cfg.yaml", env={})
    assert any(p.startswith(problem) for p in exc.value.problems), exc.value.problems


def test_model_entry_info_overrides() -> None:
    cfg = _config()
    cfg["models"] = [
        # An Azure deployment name says nothing: base_model names the catalog record.
        {"name": "prod", "provider": "az", "model": "prod-deploy-7", "info": {"base_model": "gpt-4o"}},
        {"name": "cheap", "provider": "oa", "model": "gpt-4o-mini", "info": {"input_cost_per_mtok": 0.1}},
        {"name": "custom", "provider": "oa", "model": "my-finetune",
         "info": {"context_window": 32000, "capabilities": ["tools", "streaming"],
                  "output_cost_per_mtok": 3}},
        {"name": "unknown", "provider": "oa", "model": "totally-unknown"},
    ]
    built = catalog.build(validate(cfg, "cfg.yaml", env={}))
    prod = built.configured("prod")
    assert prod is not None and prod.kind == "exact" and prod.info.model == "gpt-4o"
    cheap = built.configured("cheap")
    assert cheap is not None and cheap.kind == "config"
    assert (cheap.info.input_cost_per_mtok, cheap.info.output_cost_per_mtok) == (0.1, 0.6)
    custom = built.configured("custom")
    assert custom is not None and custom.kind == "config"
    assert custom.info.model == "my-finetune" and custom.info.provider_types == ("openai",)
    assert custom.info.public() == {
        "mode": "chat", "context_window": 32000,
        "capabilities": {"tools": True, "vision": False, "json_schema": False, "embeddings": False,
                         "streaming": True},
        "pricing": {"currency": "USD", "unit": "1M tokens", "input": None, "output": 3.0,
                    "cached_input": None},
    }
    assert built.configured("unknown") is None
    assert built.public_fields("unknown") == {}


def test_model_entry_info_rejects_unknown_keys() -> None:
    cfg = _config()
    cfg["models"] = [{"name": "m", "provider": "oa", "model": "gpt-4o", "info": {"price": 1}}]
    with pytest.raises(ConfigError, match=r"models\[0\]\.info\.price: unknown key"):
        validate(cfg, "cfg.yaml", env={})


# -- records and cost ------------------------------------------------------------------------


def test_record_has_every_field() -> None:
    info = lookup("openai", "text-embedding-3-small")
    assert info is not None
    record = info.record()
    assert set(record) == {"model", "provider_types", "mode", "context_window", "max_output_tokens",
                           "capabilities", "pricing", "source", "as_of"}
    assert record["mode"] == "embedding" and record["max_output_tokens"] is None
    assert "max_output_tokens" not in info.public()


def _info(**prices: float | None) -> ModelInfo:
    return ModelInfo(model="m", provider_types=("openai",), **prices)


def test_cost_uses_prompt_completion_and_cached_tokens() -> None:
    info = _info(input_cost_per_mtok=2.5, output_cost_per_mtok=10.0, cached_input_cost_per_mtok=1.25)
    usage = {"prompt_tokens": 1_000_000, "completion_tokens": 500_000,
             "prompt_tokens_details": {"cached_tokens": 400_000}}
    # 600k fresh x 2.5 + 400k cached x 1.25 + 500k out x 10
    assert cost_usd(info, usage) == pytest.approx(1.5 + 0.5 + 5.0)


def test_cost_without_cached_price_bills_cached_tokens_as_input() -> None:
    info = _info(input_cost_per_mtok=1.0, output_cost_per_mtok=2.0)
    usage = {"prompt_tokens": 1000, "completion_tokens": 0, "prompt_tokens_details": {"cached_tokens": 600}}
    assert cost_usd(info, usage) == pytest.approx(0.001)


@pytest.mark.parametrize(
    "usage",
    [
        {},
        {"prompt_tokens": None, "completion_tokens": "12"},
        {"prompt_tokens": -5, "completion_tokens": True},
        {"prompt_tokens": 0, "prompt_tokens_details": None},
    ],
)
def test_cost_of_missing_or_odd_usage_is_zero(usage: dict[str, Any]) -> None:
    assert cost_usd(_info(input_cost_per_mtok=1.0, output_cost_per_mtok=1.0), usage) == 0.0


def test_cost_clamps_cached_and_treats_unknown_prices_as_zero() -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 100, "prompt_tokens_details": {"cached_tokens": 500}}
    assert cost_usd(_info(cached_input_cost_per_mtok=1.0), usage) == pytest.approx(100 / 1_000_000)
    assert cost_usd(_info(), usage) == 0.0
    embedding = lookup("openai", "text-embedding-3-large")
    assert embedding is not None
    assert cost_usd(embedding, {"prompt_tokens": 2_000_000, "total_tokens": 2_000_000}) == pytest.approx(0.26)
