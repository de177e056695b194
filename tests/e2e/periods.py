"""Budget periods (daily, weekly, monthly) seen from a test: a time zone in which the current one
does not end during the test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def _period_of(period: str, at: datetime) -> tuple[int, ...]:
    if period == "daily":
        return at.year, at.month, at.day
    if period == "weekly":  # ISO weeks, from Monday
        return tuple(at.isocalendar()[:2])
    return at.year, at.month


def zone_far_from_period_end(period: str) -> str:
    """UTC, unless its ``period`` (daily, weekly, monthly) ends within ten minutes: then UTC+12,
    whose day (and so week and month) began 12 hours ago. A test that spends and then reads what
    was spent sees one period, whenever it runs (a period ending mid-test would start again at 0)."""
    now = datetime.now(UTC)
    soon = now + timedelta(minutes=10)
    return "UTC" if _period_of(period, now) == _period_of(period, soon) else "Etc/GMT-12"
