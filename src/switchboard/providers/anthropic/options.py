"""Config keys of provider type 'anthropic' (validated once at start-up)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from switchboard.providers.spec import ProviderOptions

DEFAULT_VERSION = "2023-06-01"


class AnthropicOptions(ProviderOptions):
    # The `anthropic-version` header: the API's wire-format version, not the model version.
    anthropic_version: Annotated[str, Field(min_length=1)] = DEFAULT_VERSION
    # Beta features sent as `anthropic-beta` (a list, or one comma-separated string).
    anthropic_beta: tuple[str, ...] = ()
    # Anthropic requires `max_tokens`; used when the client sends neither max_tokens nor
    # max_completion_tokens.
    default_max_tokens: Annotated[int, Field(ge=1)] = 4096
    # How response_format json_schema is honoured: "native" = output_config.format (constrained
    # decoding, needs a closed schema), "tool" = a forced tool call, "auto" = native when the
    # client marks the schema strict, else tool. json_object always uses the tool.
    json_schema_mode: Literal["auto", "native", "tool"] = "auto"

    @field_validator("anthropic_beta", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if value is None:
            return ()
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value
