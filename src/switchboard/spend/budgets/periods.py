"""TEMPORARY stand-in until the real module lands."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from switchboard.config.schema import check_timezone

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@cache
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(check_timezone(name))


def window(period: str, tz: ZoneInfo, now: datetime) -> tuple[datetime, datetime | None]:
    if period == "total":
        return EPOCH, None
    local = now.astimezone(tz)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        start, end = day, day + timedelta(days=1)
    elif period == "weekly":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif period == "monthly":
        start = day.replace(day=1)
        nxt = start.replace(year=start.year + 1, month=1) if start.month == 12 else None
        end = nxt or start.replace(month=start.month + 1)
    else:
        raise ValueError(period)
    return start.astimezone(UTC), end.replace(tzinfo=tz).astimezone(UTC)


def counter_key(budget_id: str, start: datetime) -> str:
    return f"{budget_id}:{int(start.timestamp())}"


def counter_ttl(end: datetime | None, now: datetime) -> float:
    if end is None:
        return math.inf
    return (end - now).total_seconds() + 2 * 86400
