"""What a provider module declares so the registry can find it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from switchboard.config.base import ExactScalars
from switchboard.config.schema import ProviderConfig
from switchboard.providers.base import ProviderAdapter
from switchboard.upstream.auth import UpstreamAuth

OptionsModel = type[BaseModel]


class ProviderOptions(ExactScalars):
    """Base of every provider type's options model: unknown keys are errors, a scalar in a
    string field is taken as written (``api_version: 2024-10-21``, see config.yamlfile), and a
    boolean and a number are not taken for each other (config.base.ExactScalars)."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


@dataclass(frozen=True)
class ProviderSpec:
    type: str
    adapter: ProviderAdapter
    options: OptionsModel  # the provider type's own config keys
    default_api_base: str | None
    make_auth: Callable[[ProviderConfig, BaseModel], UpstreamAuth]
    # api_base as written in config -> the base adapters append paths to (e.g. presets).
    resolve_api_base: Callable[[ProviderConfig, BaseModel], str | None] | None = None

    def api_base(self, config: ProviderConfig, options: BaseModel) -> str | None:
        base = self.resolve_api_base(config, options) if self.resolve_api_base else None
        base = base or config.api_base or self.default_api_base
        return base.rstrip("/") if base else None
