"""Config validation: scalars as written, log levels, api_base, provider and catalog types."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from switchboard.config.schema import LOG_LEVELS
from switchboard.providers import registry
from switchboard.routing.table import build_clients, build_routes, resolve_providers
from switchboard.settings.loader import ConfigError, load, validate


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "switchboard.yaml"
    path.write_text(text)
    return path


AZURE = """
providers:
  - name: az
    type: azure
    api_base: https://contoso.openai.azure.com
    api_key: k
    api_version: {api_version}
    headers: {{x-release: 2.10, x-flag: yes, x-day: 2025-01-31}}
models:
  - {{name: m, provider: az, model: 2024}}
auth: {{master_key: 12345678}}
server: {{access_log: yes, port: 8080, log_level: {log_level}}}
catalog:
  models:
    house: {{as_of: 2025-06-01, context_window: 1000, provider_types: [azure]}}
"""


def test_unquoted_scalars_in_string_fields_are_taken_as_written(tmp_path: Path) -> None:
    settings = load(_write(tmp_path, AZURE.format(api_version="2024-10-21", log_level="info")))
    provider = settings.providers[0]
    options: Any = registry.resolve(provider).options
    assert options.api_version == "2024-10-21"  # a YAML date, kept as the text
    assert provider.headers == {"x-release": "2.10", "x-flag": "yes", "x-day": "2025-01-31"}
    assert settings.models[0].model == "2024"
    assert settings.auth.master_key.get_secret_value() == "12345678"
    assert settings.catalog.models["house"].as_of == "2025-06-01"
    # Fields typed otherwise keep their values.
    assert settings.server.access_log is True and settings.server.port == 8080
    assert settings.catalog.models["house"].context_window == 1000


def test_every_provider_options_model_takes_scalars_as_written() -> None:
    for spec in registry.providers().values():
        assert spec.options.model_config.get("coerce_numbers_to_str") is True, spec.type


@pytest.mark.parametrize("level", ["debug", "INFO", "Warning", "error", "critical"])
def test_log_levels_case_insensitive(tmp_path: Path, level: str) -> None:
    settings = load(_write(tmp_path, AZURE.format(api_version="2024-10-21", log_level=level)))
    assert settings.server.log_level == level.lower()


def test_unknown_log_level_lists_the_levels(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load(_write(tmp_path, AZURE.format(api_version="2024-10-21", log_level="verbose")))
    assert exc.value.problems == [
        f"server.log_level: unknown log level 'verbose' (one of: {', '.join(LOG_LEVELS)})"
    ]


def _config(**provider: Any) -> dict[str, Any]:
    return {
        "providers": [{"name": "p", "type": "openai", **provider}],
        "models": [{"name": "m", "provider": "p", "model": "gpt-4o"}],
        "auth": {"master_key": "12345678"},
    }


@pytest.mark.parametrize(
    ("api_base", "problem"),
    [
        ("127.0.0.1:9001", "must be an http:// or https:// URL with a host (e.g. http://127.0.0.1:9001)"),
        ("localhost:9001/v1", "must be an http:// or https:// URL with a host"),
        ("ftp://example.com/v1", "must be an http:// or https:// URL with a host, got 'ftp://example.com/v1'"),
        ("http:///v1", "must be an http:// or https:// URL with a host"),
        ("http://h:99999/v1", "not a valid URL"),
        (5, "must be an http:// or https:// URL with a host"),
        ("http://2130706433:9001/v1", "the host of 'http://2130706433:9001/v1' is an IPv4 address in"),
        ("http://0x7f.1/v1", "the host of 'http://0x7f.1/v1' is an IPv4 address"),
        ("http://127.0.0.1:9001/v1?key=abc", "a base URL takes no query string or fragment"),
        ("http://127.0.0.1:9001/v1#x", "a base URL takes no query string or fragment"),
    ],
)
def test_api_base_must_be_an_http_url(api_base: Any, problem: str) -> None:
    with pytest.raises(ConfigError) as exc:
        validate(_config(api_base=api_base), "cfg.yaml", env={})
    [line] = exc.value.problems
    assert line.startswith(f"providers[0].api_base: {problem}"), line


@pytest.mark.parametrize("api_base", ["http://127.0.0.1:9001/v1", "HTTPS://api.openai.com/v1", "http://[::1]:8/"])
def test_api_base_accepts_http_urls(api_base: str) -> None:
    validate(_config(api_base=api_base), "cfg.yaml", env={})


def test_unknown_provider_type_names_key_and_known_types() -> None:
    cfg = _config()
    cfg["providers"][0]["type"] = "openia"
    with pytest.raises(ConfigError) as exc:
        validate(cfg, "cfg.yaml", env={})
    known = ", ".join(sorted(registry.providers()))
    assert exc.value.problems == [f"providers[0].type: unknown provider type 'openia' (known: {known})"]


def test_catalog_file_provider_types_checked_by_the_loader(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text("version: 1\nsections:\n  - {name: x, provider_types: [openia], models: {m: {}}}\n")
    cfg = _config()
    cfg["catalog"] = {"file": str(extra)}
    with pytest.raises(ConfigError) as exc:
        validate(cfg, "cfg.yaml", env={})
    [line] = exc.value.problems
    expected = f"catalog: file {extra}: sections[0].provider_types: unknown provider type 'openia'"
    assert line.startswith(expected), line


def test_schema_imports_nothing_outside_config() -> None:
    code = (
        "import sys, switchboard.config.schema\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('switchboard'))))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = proc.stdout.split()
    assert [m for m in out if m != "switchboard" and not m.startswith("switchboard.config")] == []


def test_providers_resolved_once_and_route_timeouts_are_config_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = _config(api_base="http://127.0.0.1:9/v1")
    cfg["models"] = [
        {"name": f"m{i}", "provider": "p", "model": "gpt-4o"} for i in range(3)
    ] + [{"name": "quick", "provider": "p", "model": "gpt-4o", "timeouts": {"first_byte": 0.5}}]
    settings = validate(cfg, "cfg.yaml", env={})
    calls = []
    real = registry.resolve
    monkeypatch.setattr(registry, "resolve", lambda p: calls.append(p.name) or real(p))
    providers = resolve_providers(settings)
    routes = {r.target.name: r for r in build_routes(settings, build_clients(settings, providers), providers)}
    assert calls == ["p"]
    assert routes["m0"].timeout is None
    quick = routes["quick"].timeout
    assert quick is not None and (quick.connect, quick.first_byte, quick.total) == (10.0, 0.5, 600.0)
    assert routes["m0"].target.api_base == "http://127.0.0.1:9/v1"
    client = routes["quick"].client
    first = client._client_timeout(quick)
    assert client._client_timeout(quick) is first  # built once, not per request
    assert (first.sock_read, first.total, first.sock_connect) == (0.5, 600.0, 10.0)


@pytest.mark.parametrize(("value", "problem"), [
    (0, "greater than or equal to 65536"), (-1, "greater than or equal to 65536"),
    (2**40, "less than or equal to 1073741824"), ("lots", "valid integer")])
def test_max_event_bytes_is_bounded(value: Any, problem: str) -> None:
    cfg = _config(api_base="http://127.0.0.1:9/v1")
    cfg["providers"][0]["max_event_bytes"] = value
    with pytest.raises(ConfigError) as exc:
        validate(cfg, "cfg.yaml", env={})
    [line] = exc.value.problems
    assert line.startswith("providers[0].max_event_bytes:") and problem in line, line


def test_max_event_bytes_reaches_the_routes_target() -> None:
    cfg = _config(api_base="http://127.0.0.1:9/v1")
    settings = validate(cfg, "cfg.yaml", env={})
    assert build_routes(settings, build_clients(settings))[0].target.max_event_bytes == 16 * 1024 * 1024
    cfg["providers"][0]["max_event_bytes"] = 65536
    settings = validate(cfg, "cfg.yaml", env={})
    assert build_routes(settings, build_clients(settings))[0].target.max_event_bytes == 65536


def test_a_default_covers_a_variable_set_but_empty() -> None:
    """`${PORT:-4000}` with PORT= (as compose passes `PORT: ${PORT}`) is 4000, as in a shell."""
    data = {"providers": [{"name": "p", "type": "openai", "api_base": "${BASE:-http://127.0.0.1:9001/v1}"}],
            "models": [{"name": "m", "provider": "p", "model": "m"}],
            "auth": {"master_key": "${MK}"}, "server": {"port": "${PORT:-4000}"}}
    env = {"PORT": "", "BASE": "", "MK": "set-and-long-enough"}
    settings = validate(data, "test.yaml", env=env)
    assert settings.server.port == 4000
    assert str(settings.providers[0].api_base) == "http://127.0.0.1:9001/v1"
    # Without a default a variable is used as set, empty included; unset is the error.
    with pytest.raises(ConfigError) as err:
        validate(data, "test.yaml", env={"PORT": "4100"})
    assert err.value.problems == ["auth.master_key: environment variable MK is not set"]


def test_a_doubled_dollar_is_a_literal_reference() -> None:
    """``$${NOT_A_VAR}`` loads as ``${NOT_A_VAR}`` (as in docker compose); ``${VAR}`` beside it is
    still interpolated and an unset one is still the error."""
    headers = {"x-literal": "$${NOT_A_VAR}", "x-mixed": "a$${B}-${TOKEN}-$${C:-d}", "x-dollar": "$$x"}
    data = {"providers": [{"name": "p", "type": "openai", "api_key": "k", "headers": headers}],
            "models": [{"name": "m", "provider": "p", "model": "m"}],
            "auth": {"master_key": "${MK}"}}
    settings = validate(data, "test.yaml", env={"MK": "set-and-long-enough", "TOKEN": "t0k"})
    assert settings.providers[0].headers == {
        "x-literal": "${NOT_A_VAR}", "x-mixed": "a${B}-t0k-${C:-d}", "x-dollar": "$$x"}
    with pytest.raises(ConfigError) as err:
        validate(data, "test.yaml", env={"TOKEN": "t0k"})
    assert err.value.problems == ["auth.master_key: environment variable MK is not set"]


def test_a_doubled_dollar_in_a_default_is_a_literal_reference_too(tmp_path: Path) -> None:
    """In ``${VAR:-default}``, ``$${`` gives a literal ``${`` and the escaped reference's ``}`` is
    its own, not the end of the default; a set variable still wins over the default."""
    text = """
providers:
  - name: p
    type: openai
    api_key: k
    headers:
      x-whole: "${UNSET:-$${NOT_A_VAR}}"
      x-around: "${UNSET:-a$${B}c}-${TOKEN}"
      x-set: "${TOKEN:-$${B}}"
      x-open: "${UNSET:-a$${b}"
      x-after: "${UNSET:-d}$${E}"
models:
  - {name: m, provider: p, model: m}
auth: {master_key: 12345678}
"""
    settings = load(_write(tmp_path, text), env={"TOKEN": "t0k"})
    assert settings.providers[0].headers == {
        "x-whole": "${NOT_A_VAR}", "x-around": "a${B}c-t0k", "x-set": "t0k", "x-open": "a${b",
        "x-after": "d${E}"}


def test_a_reference_in_a_default_is_expanded_one_level_deep(tmp_path: Path) -> None:
    """``${A:-${B}}`` falls back to B's value (and to B's own default), read only when the
    default is used; an escaped ``$${`` in it stays literal; a reference deeper than that is
    refused with a line saying so."""
    text = """
providers:
  - name: p
    type: openai
    api_key: ${KEY:-${FALLBACK_KEY}}
    api_base: "${BASE:-http://${HOST:-127.0.0.1}:9001/v1}"
    headers:
      x-nested: "a-${UNSET:-${TOKEN}}-z"
      x-set: "${TOKEN:-${UNSET}}"
      x-nested-default: "${UNSET:-${ALSO_UNSET:-d}}"
      x-escaped: "${UNSET:-${ALSO_UNSET:-$${LITERAL}}}"
      x-escaped-outer: "$${UNSET:-${TOKEN}}"
models:
  - {name: m, provider: p, model: m}
auth: {master_key: 12345678}
"""
    path = _write(tmp_path, text)
    settings = load(path, env={"TOKEN": "t0k", "FALLBACK_KEY": "sk-fallback", "HOST": "10.0.0.7"})
    assert settings.providers[0].api_key is not None
    assert settings.providers[0].api_key.get_secret_value() == "sk-fallback"
    assert str(settings.providers[0].api_base) == "http://10.0.0.7:9001/v1"
    assert settings.providers[0].headers == {
        "x-nested": "a-t0k-z", "x-set": "t0k", "x-nested-default": "d", "x-escaped": "${LITERAL}",
        "x-escaped-outer": "${UNSET:-t0k}"}
    # A nested reference to an unset variable is the error a reference outside a default is...
    with pytest.raises(ConfigError) as err:
        load(path, env={"TOKEN": "t0k", "HOST": "h"})
    assert err.value.problems == ["providers[0].api_key: environment variable FALLBACK_KEY is not set"]
    # ... unless the default is not used.
    assert load(path, env={"TOKEN": "t0k", "KEY": "sk-own"}).providers[0].api_key is not None
    deeper = _write(tmp_path, text.replace("${FALLBACK_KEY}", "${FALLBACK_KEY:-${THIRD}}"))
    with pytest.raises(ConfigError) as err:
        load(deeper, env={"TOKEN": "t0k"})
    assert err.value.problems == [
        "providers[0].api_key: a ${...} reference nests one level deep at most "
        "(${A:-${B}} or ${A:-${B:-default}}, not a reference in B's default)"]


@pytest.mark.parametrize("form", ["${KEY-sk-x}", "${KEY:?set KEY}", "${KEY?set KEY}", "${KEY:+on}",
                                  "${KEY+on}", "${KEY:=sk-x}", "${KEY=sk-x}", "${UNSET:-${KEY-x}}"])
def test_a_shell_form_the_gateway_does_not_read_is_refused_not_loaded_as_text(
        tmp_path: Path, form: str) -> None:
    """Docker compose reads these; the gateway reads ${NAME} and ${NAME:-default} only. Loaded as
    they were written, an API key '${KEY-sk-x}' went upstream as the key."""
    path = _write(tmp_path, f"""
providers:
  - {{name: p, type: openai, api_key: "{form}"}}
models:
  - {{name: m, provider: p, model: m}}
auth: {{master_key: 12345678}}
""")
    with pytest.raises(ConfigError) as err:
        load(path, env={"KEY": "sk-set"})
    [problem] = err.value.problems
    assert problem.startswith("providers[0].api_key: ") and "${NAME:-default}" in problem
    escaped = _write(tmp_path, path.read_text().replace(form, form.replace("${", "$${")))
    assert load(escaped, env={}).providers[0].api_key.get_secret_value() == form  # type: ignore[union-attr]


BOOL_NUMBER_SWAPS = """
providers:
  - {{name: p, type: openai, api_key: k, max_connections: {connections}, allow_caller_credentials: {callers}}}
models:
  - {{name: m, provider: p, model: gpt-4o, drop_params: {drop}}}
auth: {{master_key: 12345678}}
server: {{port: {port}}}
"""


def test_a_catalog_token_count_past_2_to_31_is_refused(tmp_path: Path) -> None:
    """``context_window: 123456789012345678901234567890`` loaded, and /v1/models, written by
    orjson (64 bits), was a 500; a token count is at most what a usage record counts."""
    huge = 123456789012345678901234567890
    text = f"""
providers:
  - {{name: p, type: openai, api_key: k}}
models:
  - {{name: m, provider: p, model: house-model, info: {{context_window: {huge}, max_output_tokens: {2**31}}}}}
auth: {{master_key: 12345678}}
"""
    with pytest.raises(ConfigError) as exc:
        load(_write(tmp_path, text))
    assert exc.value.problems == [
        "models[0].info.context_window: Input should be less than or equal to 2147483647",
        "models[0].info.max_output_tokens: Input should be less than or equal to 2147483647",
    ]
    fits = load(_write(tmp_path, text.replace(str(huge), str(2**31 - 1)).replace(str(2**31), "8192")))
    assert fits.models[0].info is not None and fits.models[0].info.context_window == 2**31 - 1


def test_an_infinite_image_timeout_is_refused(tmp_path: Path) -> None:
    """``images.timeout: .inf`` loaded, and every fetch of a remote image then failed in aiohttp
    (its deadline is rounded up with math.ceil): a 500 for each such request."""
    text = """
providers:
  - {name: p, type: openai, api_key: k}
models:
  - {name: m, provider: p, model: gpt-4o}
auth: {master_key: 12345678}
images: {timeout: .inf}
"""
    with pytest.raises(ConfigError) as exc:
        load(_write(tmp_path, text))
    assert exc.value.problems == ["images.timeout: Input should be less than or equal to 86400"]
    assert load(_write(tmp_path, text.replace(".inf", "86400"))).images.timeout == 86400


def test_a_yaml_boolean_is_no_number_and_a_number_no_boolean(tmp_path: Path) -> None:
    """``max_connections: true`` was 1 connection, ``drop_params: 1`` was ``True``: each is now
    refused naming the key, as the admin API refuses the same in a JSON body."""
    text = BOOL_NUMBER_SWAPS.format(connections="yes", callers=1, drop=0, port="on")
    with pytest.raises(ConfigError) as exc:
        load(_write(tmp_path, text))
    assert exc.value.problems == [
        "providers[0].max_connections: Input should be a valid integer",
        "providers[0].allow_caller_credentials: Input should be a valid boolean",
        "models[0].drop_params: Input should be a valid boolean",
        "server.port: Input should be a valid integer",
    ]
    # Each kind as itself is taken.
    text = BOOL_NUMBER_SWAPS.format(connections=8, callers="true", drop="off", port=8080)
    settings = load(_write(tmp_path, text))
    provider = settings.providers[0]
    assert (provider.max_connections, provider.allow_caller_credentials) == (8, True)
    assert (settings.models[0].drop_params, settings.server.port) == (False, 8080)


def test_an_unset_variable_does_not_hide_the_rest_of_the_file() -> None:
    """As docs/configuration.md shows it: the unset variable and a model naming no provider, in one
    run; nothing is said about the value the unset variable left empty."""
    data = {"providers": [{"name": "openai", "type": "openai", "api_key": "${UPSTREAM_KEY}"},
                          {"name": "claude", "type": "anthropic", "api_key": "k"}],
            "models": [{"name": "a", "provider": "openai", "model": "m"},
                       {"name": "b", "provider": "claud", "model": "m"}],
            "auth": {"master_key": "${MK}"}, "server": {"port": "${PORT}"}}
    with pytest.raises(ConfigError) as err:
        validate(data, "test.yaml", env={})
    assert err.value.problems == [
        "providers[0].api_key: environment variable UPSTREAM_KEY is not set",
        "auth.master_key: environment variable MK is not set",
        "server.port: environment variable PORT is not set",
        "models[1].provider: unknown provider 'claud' (known: claude, openai)",
    ]


def test_names_longer_than_the_admin_api_takes_are_refused(tmp_path: Path) -> None:
    """A model name of any length loaded, where the admin API (and the stored models' column)
    takes 256 characters and the catalog's ``?after=`` a name of that length: one past it is
    refused at load, naming the key, and so is a provider name past the admin API's 128."""
    text = """
providers:
  - {{name: {provider}, type: openai, api_key: k}}
models:
  - {{name: {model}, provider: {provider}, model: gpt-4o-mini}}
auth: {{master_key: 12345678}}
"""
    with pytest.raises(ConfigError) as exc:
        load(_write(tmp_path, text.format(provider="p" * 129, model="m" * 257)))
    assert exc.value.problems == [
        "providers[0].name: String should have at most 128 characters",
        "models[0].name: String should have at most 256 characters",
        "models[0].provider: String should have at most 128 characters",
    ]
    fits = load(_write(tmp_path, text.format(provider="p" * 128, model="m" * 256)))
    assert (fits.providers[0].name, fits.models[0].name) == ("p" * 128, "m" * 256)


@pytest.mark.parametrize("name", ["grupo-ñ", "gpt 4o", "gpt-4o?v=2", "team#1", "a%2Fb", "x\\y"])
def test_a_model_name_the_admin_api_would_refuse_is_refused_at_load(tmp_path: Path, name: str) -> None:
    """One rule for model names, the file's and the stored ones': the name is sent in URLs
    (``/v1beta/models/{name}:generateContent``), paged by (``?after=``) and shares one namespace
    with the admin API's models, which takes letters, digits and ``_.:/@+-`` only."""
    text = """
providers:
  - {{name: p, type: openai, api_key: k}}
models:
  - {{name: {model}, provider: p, model: gpt-4o-mini}}
auth: {{master_key: 12345678}}
"""
    with pytest.raises(ConfigError) as exc:
        load(_write(tmp_path, text.format(model=json.dumps(name))))
    assert exc.value.problems == ["models[0].name: String should match pattern '^[A-Za-z0-9_.:/@+-]+$'"]
    fits = "meta-llama/Llama-3.1-8B-Instruct:free@eu+v2_0.1"  # every character the rule takes
    assert load(_write(tmp_path, text.format(model=json.dumps(fits)))).models[0].name == fits


@pytest.mark.parametrize("alias", ["álias", "smart model", "smart?v=2", "team#1", "a%2Fb", "x\\y", "a" * 257])
def test_an_alias_the_model_name_rule_would_refuse_is_refused_at_load(tmp_path: Path, alias: str) -> None:
    """A client sends an alias as a model name (in ``/v1beta/models/{name}:generateContent`` too,
    and ``/v1/models`` lists it as one): it follows the model names' rule and length bound."""
    text = """
providers:
  - {{name: p, type: openai, api_key: k}}
models:
  - {{name: g, provider: p, model: gpt-4o-mini}}
router: {{aliases: {{{alias}: g}}}}
auth: {{master_key: 12345678}}
"""
    with pytest.raises(ConfigError) as exc:
        load(_write(tmp_path, text.format(alias=json.dumps(alias))))
    problem = ("String should have at most 256 characters" if len(alias) > 256
               else "String should match pattern '^[A-Za-z0-9_.:/@+-]+$'")
    assert exc.value.problems == [f"router.aliases.{alias}.[key]: {problem}"]
    fits = "meta-llama/Llama-3.1-8B-Instruct:free@eu+v2_0.1"  # every character the rule takes
    assert load(_write(tmp_path, text.format(alias=json.dumps(fits)))).router.aliases == {fits: "g"}
    longest = "a" * 256
    assert load(_write(tmp_path, text.format(alias=json.dumps(longest)))).router.aliases == {longest: "g"}
