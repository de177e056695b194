"""The stores' clock: timezone-aware UTC, the default of every record's timestamps."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
