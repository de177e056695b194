"""Capabilities of provider type ``azure``: OpenAI's own (the same body on another URL)."""

from __future__ import annotations

from switchboard.providers.capabilities import Table, passed
from switchboard.providers.capabilities.openai import SAMPLES, table

TABLE: Table = table(
    max_completion_tokens=passed("sent as `max_tokens` to an `api_version` before 2024-09-01"),
)

__all__ = ["SAMPLES", "TABLE"]
