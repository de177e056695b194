"""Capabilities of provider type ``azure``: OpenAI's own (the same body on another URL)."""

from __future__ import annotations

from switchboard.providers.capabilities import Table
from switchboard.providers.capabilities.openai import SAMPLES, table

TABLE: Table = table()

__all__ = ["SAMPLES", "TABLE"]
