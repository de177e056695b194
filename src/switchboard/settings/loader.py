"""Reads a YAML config file, interpolates ``${ENV}`` references and validates it.

Every problem is reported as ``FILE: key.path: what is wrong``, never as a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from switchboard.config.base import BLANK_CREDENTIAL
from switchboard.config.catalog import file_problems, type_problem
from switchboard.config.schema import McpServerConfig, ProviderConfig, Settings
from switchboard.config.yamlfile import YamlFileError, read_yaml
from switchboard.crypto import refs
from switchboard.providers.registry import check_provider, providers
from switchboard.settings.secret import secret_problem

# ``$${`` is matched first (leftmost, then first alternative) so an escaped reference is never
# read as one: it becomes a literal ``${``, as in docker compose. In a default too: an escaped
# ``$${...}`` there is taken whole, so its ``}`` does not end the default
# (``${A:-$${B}}`` defaults to ``${B}``). A default may hold references of its own, one level
# deep (``${A:-${B}}``, ``${A:-${B:-b}}``): taken whole too, expanded when the default is used.
_DEFAULT_TEXT = r"(?:\$\$\{[^}]*\}|[^}])*"
_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-("
                      r"(?:\$\$\{[^}]*\}|\$\{[A-Za-z_][A-Za-z0-9_]*(?::-" + _DEFAULT_TEXT + r")?\}|[^}])*"
                      r"))?\}")
# A reference in a default's reference's default (two levels deep), which the pattern above does
# not read: refused with a line saying so rather than loaded as a half-expanded value.
_OPEN_DEFAULT = r"(?<!\$)\$\{[A-Za-z_][A-Za-z0-9_]*:-[^}]*?"
_TOO_DEEP = re.compile(_OPEN_DEFAULT + _OPEN_DEFAULT + r"(?<!\$)\$\{")
# The other forms of shells and docker compose (${A-b}, ${A:?message}, ${A+b}, ${A:=b}): not
# read, so refused rather than loaded as written (a key "${KEY-sk-x}" would go upstream as is).
_SHELL_FORM = re.compile(r"(?<!\$)\$\{[A-Za-z_][A-Za-z0-9_]*(?:[-?+=]|:[?+=])")
_LINE_BREAK = re.compile("[\r\n\x00]")
# A whole-file check's message that starts with the key path it is about ("router.rules[1].name:
# ..."): shown as it is, not after "(top level):".
_OWN_PATH = re.compile(r"^[a-z_][\w.\[\]-]*: ")
_Entry = TypeVar("_Entry", bound=BaseModel)


class ConfigError(Exception):
    """A configuration problem; ``problems`` holds one line per issue found."""

    def __init__(self, source: str, problems: list[str], skipped: list[str] | None = None) -> None:
        self.source = source
        self.problems = problems
        # Checks that could not run because what they read has problems (``config check``).
        self.skipped = skipped or []
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
                # The default's own references (and escapes) are read only when it is used.
                return value or _ENV_REF.sub(sub, default)
            if value is None:
                problems.append(f"{_path(loc)}: environment variable {name} is not set")
            return value or ""

        if _SHELL_FORM.search(value):
            problems.append(f"{_path(loc)}: only ${{NAME}} and ${{NAME:-default}} are read, not "
                            "${NAME-...}, ${NAME:?...}, ${NAME+...} or ${NAME:=...} "
                            "(write $${ for a literal ${)")
        if _TOO_DEEP.search(value):
            problems.append(f"{_path(loc)}: a ${{...}} reference nests one level deep at most "
                            "(${A:-${B}} or ${A:-${B:-default}}, not a reference in B's default)")
        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        for key in value:
            if isinstance(key, str) and "${" in key:
                # Keys are taken as written (as in docker compose): a reference there would
                # be sent or matched as the literal text.
                problems.append(f"{_path((*loc, key))}: a ${{...}} reference is read in values only, "
                                "not in a key; write the key out")
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
        elif e["type"] == "too_short" and e.get("ctx", {}).get("field_type") == "Value":
            # A secret's (SecretStr) length: pydantic counts "items" there, as for a list.
            msg = f"String should have at least {e['ctx']['min_length']} characters"
        problems.append(_located(tuple(e["loc"]), msg))
    return problems


def _located(loc: tuple[Any, ...], msg: str) -> str:
    """``msg`` with the key path it is about. A check across a section's keys starts its message
    with the key it is about, from that section (``master_key: ...`` from ``auth``): joined to
    the section's path, so the line names the key, not the section holding it."""
    if not _OWN_PATH.match(msg):
        return f"{_path(loc)}: {msg}"
    if not loc:
        return msg
    return _path(loc) + ("" if msg.startswith("[") else ".") + msg


def validate(data: Any, source: str, env: Mapping[str, str] | None = None) -> Settings:
    found = _examine(data, source, env)
    if found.problems or found.settings is None:
        raise ConfigError(source, found.problems)
    return found.settings


@dataclass
class _Findings:
    """What one pass over a file found: every problem, and the checks that could not run."""

    settings: Settings | None  # None when the file is invalid as a whole
    problems: list[str]
    skipped: list[str] = field(default_factory=list)
    # The file without its invalid top-level sections, when that validates; later checks that
    # read none of those sections run on it.
    rest: Settings | None = None
    failed: frozenset[str] = frozenset()


# Settings' checks across sections (schema.Settings._references) read these sections; pydantic
# runs them only when every section is valid, so they are run again on the file without the
# invalid sections when none of these is among them.
_CROSS_READ = frozenset({"providers", "models", "router", "services", "mcp_servers", "mcp"})
# What serving_problems reads.
_SERVING_READ = frozenset({"server", "redis", "database", "auth"})
# Stands in for an invalid ``auth`` (a required section) in that second pass; nothing read from it.
_PLACEHOLDER_AUTH = {"master_key": "placeholder-for-the-checks-across-sections"}


def _examine(data: Any, source: str, env: Mapping[str, str] | None) -> _Findings:
    """Every problem the file shows in one pass: the environment references, then the schema,
    then each later check on the parts of the file it reads when those are valid (a broken
    provider entry does not hide a typo in another one, or an unset variable the schema)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["(top level): expected a mapping of keys to values"])
    problems: list[str] = []
    data = interpolate(data, os.environ if env is None else env, (), problems)
    data = _resolve_auth_refs(data, env, problems)
    # An unset variable reads as "": what the schema says about that value is noise.
    unresolved = [p.split(": ", 1)[0] for p in problems]
    unset_sections = {re.split(r"[.\[]", u, maxsplit=1)[0] for u in unresolved}
    try:
        settings = Settings.model_validate(data)
    except ValidationError as err:
        return _after_schema_errors(data, err, env, problems, unresolved, unset_sections)
    if unset_sections:
        # Later checks would judge "" where a value is missing: those on other parts still run.
        problems.extend(_entry_problems(data, env, unresolved))
        if "catalog" not in unset_sections:
            problems.extend(_catalog_type_problems(settings))
        return _Findings(None, problems, rest=settings, failed=frozenset(unset_sections))
    problems.extend(_provider_problems(settings, env))
    problems.extend(_catalog_type_problems(settings))
    return _Findings(settings, problems)


def _after_schema_errors(
    data: dict[str, Any], err: ValidationError, env: Mapping[str, str] | None, problems: list[str],
    unresolved: list[str], unset_sections: set[str],
) -> _Findings:
    problems.extend(p for p in _pydantic_problems(err) if not _about(p, unresolved))
    invalid = {str(e["loc"][0]) for e in err.errors() if e["loc"]}
    failed = invalid | unset_sections
    skipped = []
    # Pydantic runs the checks across sections only when every section is valid (else their
    # problem, if any, is among those above).
    if invalid & _CROSS_READ:
        skipped.append("checks across sections (models' providers, router groups, duplicate names): "
                       f"they read {', '.join(sorted(invalid & _CROSS_READ))}")
    elif invalid:
        # Run them on the file without the invalid sections, which they do not read.
        found = _section_problems(data, invalid)
        problems.extend(p for p in found if p not in problems and not _about(p, unresolved))
    # The sections read by neither, valid on their own, for the checks that read them.
    rest = _valid_part(data, failed | _CROSS_READ)
    problems.extend(_entry_problems(data, env, unresolved))
    if "catalog" not in failed and rest is not None:
        problems.extend(_catalog_type_problems(rest))
    return _Findings(None, problems, skipped, rest, frozenset(failed))


def _trimmed(data: dict[str, Any], without: set[str]) -> dict[str, Any]:
    trimmed = {k: v for k, v in data.items() if k not in without}
    if "auth" in without:
        trimmed["auth"] = _PLACEHOLDER_AUTH
    return trimmed


def _section_problems(data: dict[str, Any], without: set[str]) -> list[str]:
    try:
        Settings.model_validate(_trimmed(data, without))
    except ValidationError as err:
        return _pydantic_problems(err)
    return []


def _valid_part(data: dict[str, Any], without: set[str]) -> Settings | None:
    try:
        return Settings.model_validate(_trimmed(data, without))
    except ValidationError:
        return None


def _about(problem: str, paths: list[str]) -> bool:
    """Whether ``problem`` is about one of ``paths``, a key inside one, or a section holding one."""
    where = problem.split(": ", 1)[0]
    return any(where == p or where.startswith((p + ".", p + "[")) or p.startswith((where + ".", where + "["))
               for p in paths)


def _entry_problems(data: dict[str, Any], env: Mapping[str, str] | None, unresolved: list[str]) -> list[str]:
    """Provider-type options and credentials of each provider entry that is valid on its own,
    and the client secret of each such MCP server entry."""
    problems: list[str] = []
    for i, provider in _valid_entries(data, "providers", ProviderConfig, unresolved):
        problems.extend(_one_provider_problems(i, provider, env))
    for i, server in _valid_entries(data, "mcp_servers", McpServerConfig, unresolved):
        problems.extend(_one_server_problems(i, server))
    return problems


def _valid_entries(data: dict[str, Any], section: str, model: type[_Entry], unresolved: list[str]
                   ) -> Iterator[tuple[int, _Entry]]:
    """The entries of the list ``section`` valid on their own (the others are reported by the
    schema), but those holding an unset variable (reported as such)."""
    entries = data.get(section)
    if not isinstance(entries, list):
        return
    for i, entry in enumerate(entries):
        if _about(f"{section}[{i}]: ", unresolved):
            continue
        try:
            yield i, model.model_validate(entry)
        except ValidationError:
            continue


def _provider_problems(settings: Settings, env: Mapping[str, str] | None) -> list[str]:
    # Provider types and their options are owned by the provider registry, not the schema.
    problems = []
    for i, provider in enumerate(settings.providers):
        problems.extend(_one_provider_problems(i, provider, env))
    for i, server in enumerate(settings.mcp_servers):
        problems.extend(_one_server_problems(i, server))
    return problems


def _one_server_problems(i: int, server: McpServerConfig) -> list[str]:
    """A blank OAuth client secret or static header, which every token request or call would
    send. Checked here, not by McpServerConfig or McpOAuthConfig: they also rebuild the stored
    servers (mcp/stored.py), and one stored before this check must not drop out of the tools on
    reload."""
    at = f"mcp_servers[{i}]"
    problems = [f"{at}.headers.{name}: {BLANK_CREDENTIAL}; leave the header out to send none"
                for name, value in server.headers.items() if not value.get_secret_value().strip()]
    secret = server.oauth.client_secret if server.oauth is not None else None
    if secret is not None and not secret.get_secret_value().strip():
        problems.append(f"{at}.oauth.client_secret: {BLANK_CREDENTIAL}; leave the key out to send none")
    return problems


def _one_provider_problems(i: int, provider: ProviderConfig, env: Mapping[str, str] | None) -> list[str]:
    return [f"providers[{i}].{p}" for p in (*check_provider(provider), *_credential_problems(provider, env))]


def check(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    """``config check``: the file as ``load`` validates it and what serving it needs, every
    problem found in one run. Raises ConfigError listing them, and the checks that could not
    run because they read a part of the file that has problems."""
    source = str(path)
    try:
        data = read_yaml(path)
    except YamlFileError as exc:
        raise ConfigError(source, [str(exc)], ["every other check: the file could not be read"]) from None
    found = _examine(data, source, env)
    serving = found.settings or found.rest
    if serving is not None and not (found.failed & _SERVING_READ):
        found.problems.extend(serving_problems(serving, env))
    else:
        read = ", ".join(sorted(found.failed & _SERVING_READ))
        why = f"they read {read}" if read else "they need the checks across sections to pass"
        found.skipped.append(f"checks for serving (workers without redis, the server secret): {why}")
    if found.problems or found.settings is None:
        raise ConfigError(source, found.problems, found.skipped)
    return found.settings


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
    """Credentials that cannot be sent: ``env:NAME`` and ``file:/path`` ones that do not resolve,
    and empty or blank ones, as written or resolved (named, never shown)."""
    given = [("api_key", provider.api_key)] if provider.api_key is not None else []
    given += [(f"api_keys[{i}]", v) for i, v in enumerate(provider.api_keys)]
    problems = []
    for key, value in given:
        try:
            secret = refs.resolve(value.get_secret_value(), env)
        except refs.BlankRef:
            secret = ""  # said below, as any blank credential
        except refs.RefError as exc:
            problems.append(f"{key}: {exc}")
            continue
        if not secret.strip():
            problems.append(f"{key}: {BLANK_CREDENTIAL}; leave the key out to send none")
        elif (found := _LINE_BREAK.search(secret)) is not None:
            # Sent in a header, it failed every request to the provider with a 500 (the HTTP
            # client refuses it); most often a variable set from a file with its final newline.
            problems.append(f"{key}: the credential holds a line break or NUL (U+{ord(found.group()):04X}), "
                            "which no HTTP header can carry (a trailing newline in the variable?)")
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
