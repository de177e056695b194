"""Capabilities of provider type ``azure``: OpenAI's own (the same body on another URL)."""

from __future__ import annotations

from switchboard.providers.capabilities import Table, passed
from switchboard.providers.capabilities.openai import SAMPLES, table

_OLD_VERSION = "an `api_version` before 2024-09-01"

TABLE: Table = table(
    max_completion_tokens=passed(f"sent as `max_tokens` to {_OLD_VERSION}"),
    parallel_tool_calls=passed(f"not sent to {_OLD_VERSION}"),
    **{"parallel_tool_calls:false": passed(f"not sent to {_OLD_VERSION}: enforced by the gateway there")},
)

__all__ = ["SAMPLES", "TABLE"]
