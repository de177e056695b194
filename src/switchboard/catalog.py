"""The model catalog: what an upstream model is (mode, limits, capabilities) and what it costs.

Layers, later ones winning field by field: the catalog shipped in ``data/catalog.yaml``, then the
config's ``catalog.file`` and ``catalog.models``, then a model entry's own ``info``. Everything is
validated at start-up; errors name the file and the entry. Lookup is by provider type and upstream
id with fallbacks (exact id or alias, id without a date/version suffix, family prefix); the rules
are documented in docs/catalog.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from switchboard.config import catalog as config_catalog
from switchboard.config.catalog import (
    CAPABILITIES,
    LONG_CONTEXT_PRICES,
    SERVICE_TIERS,
    Capability,
    CatalogConfig,
    CatalogError,
    CatalogFile,
    Mode,
    ModelEntryInfo,
    ModelInfoPatch,
    Section,
)
from switchboard.config.yamlfile import parse_yaml
from switchboard.providers.registry import providers

if TYPE_CHECKING:
    from switchboard.config.schema import Settings

MatchKind = Literal["exact", "base", "prefix", "config"]

__all__ = [
    "CAPABILITIES",
    "Capability",
    "Catalog",
    "CatalogConfig",
    "CatalogError",
    "CatalogFile",
    "Match",
    "Mode",
    "ModelEntryInfo",
    "ModelInfo",
    "ModelInfoPatch",
    "build",
    "cost_usd",
    "default",
    "lookup",
    "parse",
    "read_file",
    "shipped",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelInfo(_Strict):
    """One catalog record. Prices are USD per million tokens; None means not known."""

    model: str
    provider_types: tuple[str, ...]
    mode: Mode = "chat"
    context_window: int | None = None
    max_output_tokens: int | None = None
    capabilities: frozenset[Capability] = frozenset()
    input_cost_per_mtok: float | None = None
    output_cost_per_mtok: float | None = None
    cached_input_cost_per_mtok: float | None = None
    cache_write_5m_cost_per_mtok: float | None = None
    cache_write_1h_cost_per_mtok: float | None = None
    # Image and audio units (input not read from a cache; output); None: the text price.
    input_image_cost_per_mtok: float | None = None
    input_audio_cost_per_mtok: float | None = None
    output_image_cost_per_mtok: float | None = None
    output_audio_cost_per_mtok: float | None = None
    # Media units, USD per unit (docs/spend.md); None: not billed per unit.
    search_unit_cost: float | None = None
    output_cost_per_image: float | None = None
    input_cost_per_audio_second: float | None = None
    input_cost_per_mchar: float | None = None
    # Server tools, USD per request (docs/spend.md); None: not billed per request.
    web_search_request_cost: float | None = None
    # OpenAI's service tiers (docs/spend.md); None: not known, the standard price is used.
    flex_input_cost_per_mtok: float | None = None
    flex_output_cost_per_mtok: float | None = None
    flex_cached_input_cost_per_mtok: float | None = None
    priority_input_cost_per_mtok: float | None = None
    priority_output_cost_per_mtok: float | None = None
    priority_cached_input_cost_per_mtok: float | None = None
    # Long-context prices (docs/spend.md): a prompt over the threshold is priced at them.
    long_context_threshold_tokens: int | None = None
    long_context_input_cost_per_mtok: float | None = None
    long_context_output_cost_per_mtok: float | None = None
    long_context_cached_input_cost_per_mtok: float | None = None
    long_context_cache_write_5m_cost_per_mtok: float | None = None
    long_context_cache_write_1h_cost_per_mtok: float | None = None
    source: str | None = None
    as_of: str | None = None

    @property
    def unit_priced(self) -> bool:
        """Some media unit has a price (rerank search units, images, audio seconds, characters)."""
        return (self.search_unit_cost is not None or self.output_cost_per_image is not None
                or self.input_cost_per_audio_second is not None or self.input_cost_per_mchar is not None)

    def pricing(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "currency": "USD",
            "unit": "1M tokens",
            "input": self.input_cost_per_mtok,
            "output": self.output_cost_per_mtok,
            "cached_input": self.cached_input_cost_per_mtok,
        }
        # Cache-write tiers only where the provider bills them (Anthropic).
        if self.cache_write_5m_cost_per_mtok is not None:
            out["cache_write_5m"] = self.cache_write_5m_cost_per_mtok
        if self.cache_write_1h_cost_per_mtok is not None:
            out["cache_write_1h"] = self.cache_write_1h_cost_per_mtok
        # Image and audio prices only where they differ from the text price (set in the catalog).
        for key, value in (("input_image", self.input_image_cost_per_mtok),
                           ("input_audio", self.input_audio_cost_per_mtok),
                           ("output_image", self.output_image_cost_per_mtok),
                           ("output_audio", self.output_audio_cost_per_mtok)):
            if value is not None:
                out[key] = value
        # Media units, only where set (their own units: per search unit, image, second, 1M chars).
        for key, value in (("search_unit", self.search_unit_cost), ("image", self.output_cost_per_image),
                           ("audio_second", self.input_cost_per_audio_second),
                           ("mchar", self.input_cost_per_mchar),
                           ("web_search_request", self.web_search_request_cost)):
            if value is not None:
                out[key] = value
        # Service tiers, only those with prices of their own.
        for tier in SERVICE_TIERS:
            prices = self.tier_prices(tier)
            if prices is not None:
                out[tier] = {"input": prices[0], "output": prices[1], "cached_input": prices[2]}
        if self.long_context_threshold() is not None:
            long = {"above_prompt_tokens": self.long_context_threshold_tokens}
            for field in LONG_CONTEXT_PRICES:
                value = getattr(self, field)
                if value is not None:
                    long[field.removeprefix("long_context_").removesuffix("_cost_per_mtok")] = value
            out["long_context"] = long
        return out

    def long_context_threshold(self) -> int | None:
        """The prompt size (tokens) past which a call is priced at the long-context prices; None
        when the model has no threshold, or no long-context input and output price."""
        if (self.long_context_input_cost_per_mtok is None or self.long_context_output_cost_per_mtok is None):
            return None
        return self.long_context_threshold_tokens

    def tier_prices(self, tier: str) -> tuple[float, float, float | None] | None:
        """The input, output and cached-input prices of OpenAI service tier ``tier`` (``flex``,
        ``priority``); None when the tier lacks an input or an output price (the standard
        prices apply)."""
        if tier not in SERVICE_TIERS:
            return None
        inp = getattr(self, f"{tier}_input_cost_per_mtok")
        out = getattr(self, f"{tier}_output_cost_per_mtok")
        if inp is None or out is None:
            return None
        return inp, out, getattr(self, f"{tier}_cached_input_cost_per_mtok")

    def public(self) -> dict[str, Any]:
        """Extra fields for a GET /v1/models entry: only what is known."""
        out: dict[str, Any] = {"mode": self.mode}
        if self.context_window is not None:
            out["context_window"] = self.context_window
        if self.max_output_tokens is not None:
            out["max_output_tokens"] = self.max_output_tokens
        out["capabilities"] = {c: c in self.capabilities for c in CAPABILITIES}
        if self.input_cost_per_mtok is not None or self.output_cost_per_mtok is not None or self.unit_priced:
            out["pricing"] = self.pricing()
        return out

    def record(self) -> dict[str, Any]:
        """The full record, nulls included (admin endpoints)."""
        return {
            "model": self.model,
            "provider_types": list(self.provider_types),
            "mode": self.mode,
            "context_window": self.context_window,
            "max_output_tokens": self.max_output_tokens,
            "capabilities": {c: c in self.capabilities for c in CAPABILITIES},
            "pricing": self.pricing(),
            "source": self.source,
            "as_of": self.as_of,
        }


@dataclass(frozen=True, slots=True)
class Match:
    info: ModelInfo
    kind: MatchKind


# -- reading files ---------------------------------------------------------------------------


def parse(data: Any, source: str) -> CatalogFile:
    """Validate catalog data, provider type names included."""
    return config_catalog.parse(data, source, providers())


def read_file(path: str | Path) -> CatalogFile:
    return config_catalog.read_file(path, providers())


@cache
def shipped() -> CatalogFile:
    """The catalog in the package (read once per process)."""
    ref = resources.files("switchboard").joinpath("data/catalog.yaml")
    return parse(parse_yaml(ref.read_text(encoding="utf-8")), "switchboard/data/catalog.yaml")


# -- id normalisation ------------------------------------------------------------------------

_SEPARATORS = "-_.:@/"
# Bedrock cross-region inference profiles prefix the model id with a geography.
_REGION = re.compile(r"^(?:us|eu|apac|global|jp|au|ca|us-gov)\.(?=[a-z0-9-]+\.)")
_RESOURCE = re.compile(r"^(?:projects/[^/]+/locations/[^/]+/)?(?:publishers/[^/]+/)?models/")
# Version/date suffixes, tried in this order, one removed per step.
_SUFFIXES = tuple(
    re.compile(p)
    for p in (
        r"@[^@]*$",  # Vertex: claude-sonnet-4-5@20250929
        r":\d+$",  # Bedrock revision: ...-v1:0
        r"-v1$",  # Bedrock first version (v2+ name a different model, e.g. titan-embed-text-v2)
        r"-latest$",
        r"-(?:preview|exp)(?:-[0-9-]+)?$",  # gemini-2.5-flash-preview-05-20
        r"-\d{4}-\d{2}-\d{2}$",  # OpenAI: gpt-4o-2024-08-06
        r"-\d{8}$",  # Anthropic: claude-3-5-haiku-20241022
        r"-\d{2}-\d{4}$",  # Cohere: command-r-08-2024
        r"-\d{4}$",  # Mistral 2411, OpenAI 0125
        r"-\d{3}$",  # Gemini: gemini-1.5-pro-002
    )
)


def normalise(model: str) -> str:
    """Lower-case, without resource-name or ARN prefixes and Bedrock geography prefixes."""
    key = model.strip().lower()
    if key.startswith("arn:"):
        key = key.rsplit("/", 1)[-1]
    key = _RESOURCE.sub("", key)
    return _REGION.sub("", key)


def stripped(key: str) -> Iterator[str]:
    """``key`` with one more version/date suffix removed at each step."""
    while True:
        for pattern in _SUFFIXES:
            shorter = pattern.sub("", key)
            if shorter != key and shorter:
                key = shorter
                yield key
                break
        else:
            return


# What may follow a catalog id for its price to apply: dates and release tags only. Anything
# else names another model (o1-pro is not o1, gpt-4o-mini-search is not gpt-4o-mini) or another
# version (claude-opus-4-9 is not claude-opus-4), often at another price.
_TAG = r"(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{2}-\d{4}|\d{3,4}|latest|preview|exp|v1)"
_VERSION_TAIL = re.compile(rf"{_TAG}(?:[-_.:@/](?:{_TAG}|\d{{1,2}}))*")


def _prefix_of(key: str, candidate: str) -> bool:
    """``candidate`` is ``key`` with a date or release tag after it (in a form the suffix rules
    do not strip: another separator, several tags), not another model of its family."""
    n = len(candidate)
    if len(key) <= n + 1 or not key.startswith(candidate) or key[n] not in _SEPARATORS:
        return False
    return _VERSION_TAIL.fullmatch(key, n + 1) is not None


# -- the catalog -----------------------------------------------------------------------------


class _Table:
    """The records of one provider type, indexed for lookup."""

    def __init__(self, records: list[tuple[ModelInfo, list[str]]]) -> None:
        self.exact: dict[str, ModelInfo] = {}
        for info, aliases in records:
            for name in (info.model, *aliases):
                self.exact[normalise(name)] = info
        # Base index: ids without their suffix. Several snapshots may share a base: the -latest
        # alias wins, else the highest id (the newest date).
        ranked = sorted(self.exact.items(), key=lambda kv: (kv[0].endswith("-latest"), kv[0]))
        self.base: dict[str, ModelInfo] = {}
        for key, info in ranked:
            for base in stripped(key):
                self.base[base] = info
        self.prefixes = sorted(set(self.exact) | set(self.base), key=len, reverse=True)

    def find(self, model: str) -> Match | None:
        key = normalise(model)
        if key in self.exact:
            return Match(self.exact[key], "exact")
        chain = [key, *stripped(key)]
        for i, candidate in enumerate(chain):
            info = (self.exact.get(candidate) if i else None) or self.base.get(candidate)
            if info is not None:
                return Match(info, "base")
        for candidate in chain:
            for prefix in self.prefixes:
                if _prefix_of(candidate, prefix):
                    return Match(self.exact.get(prefix) or self.base[prefix], "prefix")
        return None


_Records = dict[tuple[str, str], dict[str, Any]]


class Catalog:
    """Lookup over every provider type's records, plus the configured models' resolved records."""

    def __init__(self, records: _Records, aliases: dict[tuple[str, str], list[str]],
                 sections: list[dict[str, Any]]) -> None:
        self.sections = sections
        self._tables: dict[str, _Table] = {}
        grouped: dict[str, list[tuple[ModelInfo, list[str]]]] = {}
        for info, types in _finalise(records):
            for t in types:
                grouped.setdefault(t, []).append((info, aliases.get((t, info.model.lower()), [])))
        for t, items in grouped.items():
            self._tables[t] = _Table(items)
        self._configured: dict[str, Match | None] = {}

    def find(self, provider_type: str, upstream_model: str) -> Match | None:
        table = self._tables.get(provider_type)
        return table.find(upstream_model) if table else None

    def lookup(self, provider_type: str, upstream_model: str) -> ModelInfo | None:
        match = self.find(provider_type, upstream_model)
        return match.info if match else None

    def entries(self) -> list[ModelInfo]:
        """Every record once, ordered by provider type then id."""
        seen: dict[int, ModelInfo] = {}
        for t in sorted(self._tables):
            for info in sorted(set(self._tables[t].exact.values()), key=lambda i: i.model):
                seen.setdefault(id(info), info)
        return list(seen.values())

    def configured(self, name: str) -> Match | None:
        """The record for a configured model name, its first deployment's for a group (None when
        unknown to the catalog)."""
        return self._configured.get(name)

    def public_fields(self, name: str) -> dict[str, Any]:
        match = self._configured.get(name)
        return match.info.public() if match else {}

    def resolve_models(self, settings: Settings) -> None:
        types = {p.name: p.type for p in settings.providers}
        for m in settings.models:
            # A group is described by its first deployment, as its /v1/models owner is.
            if m.name not in self._configured:
                self._configured[m.name] = self._resolve(types[m.provider], m.model, m.info)

    def resolve_entry(self, provider_type: str, model: str, info: ModelEntryInfo | None) -> Match | None:
        """The record for a model entry outside the settings (one added at run time)."""
        return self._resolve(provider_type, model, info)

    def _resolve(self, provider_type: str, model: str, info: ModelEntryInfo | None) -> Match | None:
        match = self.find(provider_type, info.base_model if info and info.base_model else model)
        patch = info.patch() if info else {}
        if not patch:
            return match
        base = match.info.model_dump() if match else {"model": model, "provider_types": (provider_type,)}
        return Match(ModelInfo.model_validate({**base, **_clean(patch)}), "config")


def _clean(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Patch values as ModelInfo takes them: a null mode or capabilities list means the default."""
    out = dict(fields)
    if "mode" in out and out["mode"] is None:
        out["mode"] = "chat"
    if "capabilities" in out:
        out["capabilities"] = frozenset(out["capabilities"] or ())
    return out


def _finalise(records: _Records) -> Iterator[tuple[ModelInfo, list[str]]]:
    """One ModelInfo per distinct record; identical records of several provider types share it."""
    groups: dict[tuple[str, str], tuple[str, dict[str, Any], list[str]]] = {}
    for (ptype, _), fields in sorted(records.items()):
        key = (fields["model"], repr(sorted(fields.items())))
        groups.setdefault(key, (fields["model"], fields, []))[2].append(ptype)
    for _, fields, types in groups.values():
        yield ModelInfo.model_validate({**_clean(fields), "provider_types": tuple(types)}), types


def _source(section: Section) -> str | None:
    return ", ".join(section.source) if isinstance(section.source, list) else section.source


def _add_file(records: _Records, aliases: dict[tuple[str, str], list[str]], sections: list[dict[str, Any]],
              data: CatalogFile) -> None:
    for section in data.sections:
        sections.append({"name": section.name, "provider_types": section.provider_types,
                         "source": section.source, "as_of": section.as_of, "note": section.note})
        meta = {"source": _source(section), "as_of": section.as_of}
        meta = {k: v for k, v in meta.items() if v is not None}
        for mid, entry in section.models.items():
            for t in entry.provider_types or section.provider_types:
                fields = records.get((t, mid.lower())) or {"model": mid, "mode": "chat"}
                fields.update(meta)
                fields.update(section.defaults.patch())
                fields.update(entry.patch())
                records[(t, mid.lower())] = fields
                if entry.aliases:
                    aliases.setdefault((t, mid.lower()), []).extend(entry.aliases)


def _add_overrides(records: _Records, overrides: Mapping[str, ModelInfoPatch], types: Iterable[str]) -> None:
    for mid, patch in overrides.items():
        # No types given: patch the id wherever it exists; a new id is added for every type.
        existing = [t for (t, m) in records if m == mid.lower()]
        for t in patch.provider_types or existing or list(types):
            fields = records.get((t, mid.lower())) or {"model": mid, "mode": "chat"}
            fields.update(patch.patch())
            records[(t, mid.lower())] = fields


def build(settings: Settings | None = None) -> Catalog:
    """The shipped catalog with the settings' overrides applied and configured models resolved."""
    records: _Records = {}
    aliases: dict[tuple[str, str], list[str]] = {}
    sections: list[dict[str, Any]] = []
    _add_file(records, aliases, sections, shipped())
    if settings is not None:
        if settings.catalog.file_data is not None:
            _add_file(records, aliases, sections, settings.catalog.file_data)
        _add_overrides(records, settings.catalog.models, providers())
    catalog = Catalog(records, aliases, sections)
    if settings is not None:
        catalog.resolve_models(settings)
    return catalog


@cache
def default() -> Catalog:
    """The shipped catalog alone, without any config overrides."""
    return build()


def lookup(provider_type: str, upstream_model: str) -> ModelInfo | None:
    """The shipped record for ``upstream_model`` as served by ``provider_type`` (None if unknown)."""
    return default().lookup(provider_type, upstream_model)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def cost_usd(info: ModelInfo, usage: Mapping[str, Any]) -> float:
    """Cost of one call from canonical (OpenAI-shaped) usage.

    ``prompt_tokens`` includes ``prompt_tokens_details.cached_tokens``: cached tokens are billed at
    the cached-input price (the input price when that is unknown), the rest at the input price.
    An unknown price counts as zero.
    """
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = min(_count(details.get("cached_tokens")), prompt) if isinstance(details, Mapping) else 0
    input_price = info.input_cost_per_mtok or 0.0
    cached_price = info.cached_input_cost_per_mtok
    if cached_price is None:
        cached_price = input_price
    output_price = info.output_cost_per_mtok or 0.0
    return ((prompt - cached) * input_price + cached * cached_price + completion * output_price) / 1_000_000
