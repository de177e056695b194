"""Reads a YAML config file, interpolates ``${ENV}`` references and validates it.

Every problem is reported as ``FILE: key.path: what is wrong``, never as a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from switchboard.config.catalog import file_problems, type_problem
from switchboard.config.schema import ProviderConfig, Settings
from switchboard.config.yamlfile import YamlFileError, read_yaml
from switchboard.crypto import refs
from switchboard.providers.registry import check_provider, providers
from switchboard.settings.secret import secret_problem

# ``$${`` is matched first (leftmost, then first alternative) so an escaped reference is never
# read as one: it becomes a literal ``${``, as in docker compose.
_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# A whole-file check's message that starts with the key path it is about ("router.rules[1].name:
# ..."): shown as it is, not after "(top level):".
_OWN_PATH = re.compile(r"^[a-z_][\w.\[\]-]*: ")


class ConfigError(Exception):
    """A configuration problem; ``problems`` holds one line per issue found."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def interpolate(value: Any, env: Mapping[str, str], loc: tuple[Any, ...], problems: list[str]) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string value, recursively; ``$${``
    is the escape for a literal ``${``."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name is None:
                return "${"
            value = env.get(name)
            if default is not None:
                # As in POSIX shells and docker compose: ":-" covers a variable set but empty too.
                return value or default
            if value is None:
                problems.append(f"{_path(loc)}: environment variable {name} is not set")
            return value or ""

        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: interpolate(v, env, (*loc, k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, (*loc, i), problems) for i, v in enumerate(value)]
    return value


def _pydantic_problems(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors(include_url=False, include_input=False):
        msg = str(e["msg"]).removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        problems.append(msg if not e["loc"] and _OWN_PATH.match(msg) else f"{_path(tuple(e['loc']))}: {msg}")
    return problems


def validate(data: Any, source: str, env: Mapping[str, str] | None = None) -> Settings:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["(top level): expected a mapping of keys to values"])
    problems: list[str] = []
    data = interpolate(data, os.environ if env is None else env, (), problems)
    data = _resolve_auth_refs(data, env, problems)
    if problems:
        raise ConfigError(source, problems)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as err:
        raise ConfigError(source, _pydantic_problems(err)) from None
    # Provider types and their options are owned by the provider registry, not the schema.
    for i, provider in enumerate(settings.providers):
        problems.extend(f"providers[{i}].{p}" for p in check_provider(provider))
        problems.extend(f"providers[{i}].{p}" for p in _credential_problems(provider, env))
    problems.extend(_catalog_type_problems(settings))
    if problems:
        raise ConfigError(source, problems)
    return settings


def _resolve_auth_refs(
    data: dict[str, Any], env: Mapping[str, str] | None, problems: list[str]
) -> dict[str, Any]:
    """``auth``'s secrets with ``env:NAME`` / ``file:/path`` references replaced by what they name,
    as for a provider's ``api_key``. Resolved once, before the schema, so the length checks see
    the secret and a reference is never used as a (guessable) key itself."""
    auth = data.get("auth")
    if not isinstance(auth, dict):
        return data
    auth = dict(auth)
    for key in ("master_key", "secret_key"):
        if key in auth:
            auth[key] = _resolved(auth[key], f"auth.{key}", env, problems)
    previous = auth.get("previous_secret_keys")
    if isinstance(previous, list):
        auth["previous_secret_keys"] = [
            _resolved(v, f"auth.previous_secret_keys[{i}]", env, problems) for i, v in enumerate(previous)
        ]
    return {**data, "auth": auth}


def _resolved(value: Any, path: str, env: Mapping[str, str] | None, problems: list[str]) -> Any:
    if not isinstance(value, str) or not refs.is_ref(value):
        return value
    try:
        return refs.resolve(value, env)
    except refs.RefError as exc:
        problems.append(f"{path}: {exc}")
        return value


def _credential_problems(provider: ProviderConfig, env: Mapping[str, str] | None) -> list[str]:
    """``env:NAME`` and ``file:/path`` credentials that do not resolve (named, never shown)."""
    given = [("api_key", provider.api_key)] if provider.api_key is not None else []
    given += [(f"api_keys[{i}]", v) for i, v in enumerate(provider.api_keys)]
    problems = []
    for key, value in given:
        try:
            refs.resolve(value.get_secret_value(), env)
        except refs.RefError as exc:
            problems.append(f"{key}: {exc}")
    return problems


def _catalog_type_problems(settings: Settings) -> list[str]:
    known = providers()
    problems = []
    for mid, patch in settings.catalog.models.items():
        problem = type_problem(patch.provider_types, known)
        if problem:
            problems.append(f"catalog.models.{mid}.provider_types: {problem}")
    data = settings.catalog.file_data
    if data is not None:
        # The file's shape was checked by the schema; what is left are its provider types.
        problems.extend(f"catalog: file {settings.catalog.file}: {p}" for p in file_problems(data, known))
    return problems


# Rate-limit windows, budget counters, cooldowns and cache invalidation live in the process
# without Redis: several workers would each enforce a limit on their own (N times the limit).
SHARED_STATE_NEEDED = (
    "server.workers: more than 1 worker needs redis.url (rate limits, budgets, cooldowns and "
    "cache invalidation are kept in each process without it, so every worker would enforce "
    "them on its own); set redis.url, or run one worker per instance"
)


def serving_problems(settings: Settings, env: Mapping[str, str] | None = None) -> list[str]:
    """What a valid file still lacks to be served: checked by `serve` and by `config check`
    alike, so a config that passes the check starts."""
    problems = []
    if settings.server.workers > 1 and settings.redis is None:
        problems.append(SHARED_STATE_NEEDED)
    secret = secret_problem(settings, os.environ if env is None else env)
    if secret:
        problems.append(secret)
    return problems


def load(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    source = str(path)
    try:
        data = read_yaml(path)
    except YamlFileError as exc:
        raise ConfigError(source, [str(exc)]) from None
    return validate(data, source, env)
