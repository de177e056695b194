"""What every configuration section model shares.

Frozen (settings are read, never changed, after start-up), unknown keys refused (a typo is an
error, not a silently ignored setting), and scalars in string fields taken as written, so
``api_version: 2024-10-21`` or ``version: 2.10`` stay the strings the user typed (see
``config.yamlfile``); what no field type converts (``Any``) is made plain once validated, so a
YAML ``true`` there is ``True``, not the integer the reader carries it as.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from switchboard.config.yamlfile import plain

MIB = 1024 * 1024
# The longest wait a time bound of the server or a provider may be set to (a day): `.inf` or
# 1e300 would turn a bound into none (a trickling client held for ever, a drain never ending).
MAX_SECONDS = 86_400


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    @field_validator("*", mode="after")
    @classmethod
    def _plain(cls, value: Any) -> Any:
        return plain(value)
