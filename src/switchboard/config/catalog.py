"""The catalog's file format and its ``catalog`` settings key, as configuration models.

Only the shape lives here (the config schema imports it, and imports nothing outside
``config/``). Which provider types exist is known to the provider registry, so provider type
names are checked above this layer: by ``config.loader`` for the settings and by
``switchboard.catalog`` for the shipped file.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from switchboard.config.base import Strict
from switchboard.config.yamlfile import YamlFileError, read_yaml

Mode = Literal[
    "chat", "embedding", "completion",
    # Media endpoints (docs/api-media.md): a model of another mode is refused there.
    "rerank", "moderation", "image_generation", "audio_transcription", "audio_speech",
]
Capability = Literal["tools", "vision", "json_schema", "embeddings", "streaming"]
CAPABILITIES: tuple[Capability, ...] = ("tools", "vision", "json_schema", "embeddings", "streaming")

# A token count (a context window, an output limit): at most what a usage record counts
# (providers/counts.py, TOKENS_MAX). Unbounded, a YAML 10**29 was served as is and /v1/models,
# written by orjson (64 bits), was a 500.
MAX_TOKEN_COUNT = 2**31 - 1
TokenCount = Annotated[int, Field(ge=1, le=MAX_TOKEN_COUNT)]


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


# USD per million tokens: a finite number from 0 to a million (a dollar a token), never a boolean.
Price = Annotated[float, BeforeValidator(_not_bool), Field(ge=0, le=1_000_000, allow_inf_nan=False)]
# The service tiers an OpenAI answer may report (``service_tier``) that have prices of their own.
SERVICE_TIERS = ("flex", "priority")
# The prices a long prompt is charged in place of the standard ones, by the standard field each
# replaces (``long_context_<field>``).
LONG_CONTEXT_PRICES = tuple(f"long_context_{price}_cost_per_mtok" for price in (
    "input", "output", "cached_input", "cache_write_5m", "cache_write_1h"))
INFO_FIELDS = (
    "mode", "context_window", "max_output_tokens", "capabilities", "input_cost_per_mtok",
    "output_cost_per_mtok", "cached_input_cost_per_mtok", "cache_write_5m_cost_per_mtok",
    "cache_write_1h_cost_per_mtok", "input_image_cost_per_mtok", "input_audio_cost_per_mtok",
    "output_image_cost_per_mtok", "output_audio_cost_per_mtok", *(
        # Unit prices of the media endpoints (docs/spend.md), USD per unit.
        "search_unit_cost", "output_cost_per_image", "input_cost_per_audio_second",
        "input_cost_per_mchar",
        # Anthropic's web search server tool: USD per search (usage.server_tool_use).
        "web_search_request_cost",
    ), *(
        # OpenAI's service tiers (docs/spend.md): a call the answer says was served in one is
        # priced at its prices.
        f"{tier}_{price}_cost_per_mtok" for tier in SERVICE_TIERS
        for price in ("input", "output", "cached_input")
    ), *(
        # Long-context prices (docs/spend.md): a call whose prompt is over the threshold is
        # priced at them, all its tokens.
        "long_context_threshold_tokens", *LONG_CONTEXT_PRICES,
    ), "source", "as_of",
)


class CatalogError(Exception):
    """A broken catalog file; ``problems`` holds one ``key.path: message`` line per issue."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("; ".join(f"{source}: {p}" for p in problems))


class InfoFields(Strict):
    """Catalog fields that a file section, ``catalog.models`` or a model's ``info`` may set."""

    mode: Mode | None = None
    context_window: TokenCount | None = None
    max_output_tokens: TokenCount | None = None
    capabilities: list[Capability] | None = None
    input_cost_per_mtok: Price | None = None
    output_cost_per_mtok: Price | None = None
    cached_input_cost_per_mtok: Price | None = None
    # Prompt-cache writes (Anthropic's 5-minute and 1-hour tiers); unknown: the input price.
    cache_write_5m_cost_per_mtok: Price | None = None
    cache_write_1h_cost_per_mtok: Price | None = None
    # Image and audio units (input not read from a cache; output); unknown: the text price.
    input_image_cost_per_mtok: Price | None = None
    input_audio_cost_per_mtok: Price | None = None
    output_image_cost_per_mtok: Price | None = None
    output_audio_cost_per_mtok: Price | None = None
    # Media units (docs/spend.md): USD per search unit (rerank), per image generated or edited,
    # per second of audio transcribed or translated, per million characters of speech input.
    search_unit_cost: Price | None = None
    output_cost_per_image: Price | None = None
    input_cost_per_audio_second: Price | None = None
    input_cost_per_mchar: Price | None = None
    # Server tools (docs/spend.md): USD per web search a model made (Anthropic's web search tool,
    # usage.server_tool_use.web_search_requests), on top of its tokens.
    web_search_request_cost: Price | None = None
    # OpenAI's service tiers: the prices of a call its answer says was served in ``flex`` or
    # ``priority`` (``service_tier``). A tier without both an input and an output price is
    # priced at the standard prices; without a cached price, cache reads at its input price.
    flex_input_cost_per_mtok: Price | None = None
    flex_output_cost_per_mtok: Price | None = None
    flex_cached_input_cost_per_mtok: Price | None = None
    priority_input_cost_per_mtok: Price | None = None
    priority_output_cost_per_mtok: Price | None = None
    priority_cached_input_cost_per_mtok: Price | None = None
    # Long-context surcharges (Gemini Pro, Claude Sonnet 4/4.5 with the 1M window): a call whose
    # prompt (cache reads and writes, image and audio units included) is over the threshold is
    # priced at these, all its tokens. Without both an input and an output price: not modelled;
    # without a cached or cache-write price, those tokens at the long-context input price.
    long_context_threshold_tokens: TokenCount | None = None
    long_context_input_cost_per_mtok: Price | None = None
    long_context_output_cost_per_mtok: Price | None = None
    long_context_cached_input_cost_per_mtok: Price | None = None
    long_context_cache_write_5m_cost_per_mtok: Price | None = None
    long_context_cache_write_1h_cost_per_mtok: Price | None = None
    source: str | None = None
    as_of: str | None = None

    def patch(self) -> dict[str, Any]:
        """The fields written out, explicit nulls included (``null`` clears a shipped value)."""
        return {k: getattr(self, k) for k in INFO_FIELDS if k in self.model_fields_set}


class ModelInfoPatch(InfoFields):
    """A ``catalog.models`` value: overrides an entry, or adds one for the listed provider types."""

    provider_types: Annotated[list[str], Field(min_length=1)] | None = None


class ModelEntryInfo(InfoFields):
    """A model entry's ``info``: ``base_model`` names the catalog id to start from (e.g. the
    model behind an Azure deployment name); the other fields override it."""

    base_model: Annotated[str, Field(min_length=1)] | None = None


class FileEntry(InfoFields):
    provider_types: Annotated[list[str], Field(min_length=1)] | None = None
    aliases: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)


class Section(Strict):
    name: Annotated[str, Field(min_length=1)]
    provider_types: Annotated[list[str], Field(min_length=1)]
    source: list[str] | str | None = None
    as_of: str | None = None
    note: str | None = None
    defaults: InfoFields = InfoFields()
    models: dict[str, FileEntry] = Field(default_factory=dict)


class CatalogFile(Strict):
    version: Literal[1] = 1
    sections: list[Section] = Field(default_factory=list)


class CatalogConfig(Strict):
    """The ``catalog`` settings key. A relative ``file`` is resolved from the working directory."""

    file: Path | None = None
    models: dict[str, ModelInfoPatch] = Field(default_factory=dict)
    _file_data: CatalogFile | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _read_file(self) -> CatalogConfig:
        if self.file is not None:
            try:
                self._file_data = read_file(self.file)
            except CatalogError as err:
                raise ValueError("file " + str(err)) from None
        return self

    @property
    def file_data(self) -> CatalogFile | None:
        return self._file_data


# -- reading files ---------------------------------------------------------------------------


def key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out or "(top level)"


def type_problem(types: list[str] | None, known: Collection[str]) -> str | None:
    """The problem with a ``provider_types`` list, or None when every type is known."""
    unknown = [t for t in types or () if t not in known]
    if unknown:
        return f"unknown provider type {unknown[0]!r} (known: {', '.join(sorted(known))})"
    return None


def file_problems(parsed: CatalogFile, known_types: Collection[str] | None = None) -> list[str]:
    """An id defined twice for one provider type and, given ``known_types``, unknown types."""
    problems: list[str] = []
    seen: dict[tuple[str, str], str] = {}

    def check(where: str, types: list[str] | None) -> None:
        problem = type_problem(types, known_types) if known_types is not None else None
        if problem:
            problems.append(f"{where}.provider_types: {problem}")

    for i, section in enumerate(parsed.sections):
        check(f"sections[{i}]", section.provider_types)
        for mid, entry in section.models.items():
            where = f"sections[{i}].models.{mid}"
            check(where, entry.provider_types)
            for t in entry.provider_types or section.provider_types:
                for name in (mid, *entry.aliases):
                    other = seen.setdefault((t, name.lower()), where)
                    if other != where:
                        problems.append(f"{where}: id {name!r} ({t}) is already defined at {other}")
    return problems


def parse(data: Any, source: str, known_types: Collection[str] | None = None) -> CatalogFile:
    """Validate catalog data; problems name the entry, e.g. ``sections[0].models.gpt-4o.mode``."""
    try:
        parsed = CatalogFile.model_validate(data if data is not None else {})
    except ValidationError as err:
        problems = []
        for e in err.errors(include_url=False, include_input=False):
            msg = "unknown key" if e["type"] == "extra_forbidden" else str(e["msg"])
            problems.append(f"{key_path(tuple(e['loc']))}: {msg.removeprefix('Value error, ')}")
        raise CatalogError(source, problems) from None
    problems = file_problems(parsed, known_types)
    if problems:
        raise CatalogError(source, problems)
    return parsed


def read_file(path: str | Path, known_types: Collection[str] | None = None) -> CatalogFile:
    source = str(path)
    try:
        data = read_yaml(path)
    except YamlFileError as exc:
        raise CatalogError(source, [str(exc)]) from None
    return parse(data, source, known_types)
