"""Budget periods: the window of time a budget's counter covers, in the budget's time zone.

Pure functions, no I/O (docs/budgets.md, "Periods and time zones"):

- ``daily``: from local midnight to the next local midnight;
- ``weekly``: from Monday 00:00 local to the next Monday (ISO weeks);
- ``monthly``: from the 1st 00:00 local to the next 1st;
- ``total``: since 1970-01-01T00:00Z, with no end.

A period starts at the first instant of its first local day. Where a daylight saving change
makes local midnight ambiguous (clocks set back over it), the first of the two midnights counts
(``fold=0``); where it makes local midnight not exist (clocks set forward over it), the day
starts at the first instant after the gap. So days are 23, 24 or 25 hours long (or shorter
still, where a zone once skipped a day), and every instant belongs to exactly one period.

Windows are returned as aware UTC datetimes ``[start, end)``; a period's counter is keyed by
its budget and its start (``counter_key``; ``key_start`` reads the start back), and kept a
little longer than the period (``counter_ttl``) so the last requests of a period settle into
the right counter.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

from switchboard.config.schema import check_timezone

PERIODS = ("daily", "weekly", "monthly", "total")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A period's counter outlives the period by this much: requests reserved before the boundary
# settle after it, and a clock a little off still finds its counter.
COUNTER_MARGIN = timedelta(days=2)


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``UTC``, ``Europe/Paris``); ValueError if it is unknown."""
    try:
        check_timezone(name)
    except OSError:  # e.g. a name too long for a file name: unknown all the same
        raise ValueError(f"unknown time zone {name[:64]!r} (an IANA name: 'UTC', 'Europe/Paris')") from None
    return ZoneInfo(name)


def window(period: str, tz: tzinfo, now: datetime) -> tuple[datetime, datetime | None]:
    """The ``period`` (daily, weekly, monthly or total) containing ``now``, local to ``tz``, as
    UTC datetimes ``[start, end)``; ``end`` is None for a total budget. ``now`` must be aware."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime (with a time zone)")
    if period == "total":
        return EPOCH, None
    today = now.astimezone(tz).date()
    if period == "daily":
        first, following = today, today + timedelta(days=1)
    elif period == "weekly":
        first = today - timedelta(days=today.weekday())
        following = first + timedelta(days=7)
    elif period == "monthly":
        first = today.replace(day=1)
        following = date(first.year + 1, 1, 1) if first.month == 12 else first.replace(month=first.month + 1)
    else:
        raise ValueError(f"unknown budget period {period!r} (one of {', '.join(PERIODS)})")
    return day_start(first, tz), day_start(following, tz)


def day_start(day: date, tz: tzinfo) -> datetime:
    """The first instant of the local ``day`` in ``tz``, in UTC: its midnight (the first one if
    midnight happens twice), or the end of the gap if the clocks skip midnight."""
    local = datetime.combine(day, time(0), tzinfo=tz)  # fold=0: the earlier of two midnights
    instant = local.astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) == local.replace(tzinfo=None):
        return instant
    # Midnight falls in a gap. With fold=0 it is read with the offset before the change, which
    # lands at or after the change; with fold=1, with the offset after it, which lands before.
    # The change itself is the first instant after the gap: find it (to the second) in between.
    early = local.replace(fold=1).astimezone(UTC)
    low, high = math.floor(early.timestamp()), math.ceil(instant.timestamp())
    offset = instant.astimezone(tz).utcoffset()  # the offset after the change
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, tz).utcoffset() == offset:
            high = middle
        else:
            low = middle
    # If the offsets did not differ as expected, keep the fold=0 reading (never earlier than
    # the day's own instants).
    return datetime.fromtimestamp(high, UTC) if high <= instant.timestamp() else instant


def counter_key(budget_id: str, start: datetime) -> str:
    """The key of a budget's counter for the period starting at ``start``."""
    return f"{budget_id}:{int(start.timestamp())}"


def key_start(key: str) -> datetime:
    """The start of the period whose counter is ``key`` (the inverse of ``counter_key``). Work
    done for a charge after it was made (a counter's rebuild, a threshold's alert) belongs to the
    charge's period, which may have ended since: the time it is done at would name the next."""
    return datetime.fromtimestamp(int(key.rpartition(":")[2]), UTC)


def counter_ttl(end: datetime | None, now: datetime) -> float:
    """Seconds to keep a period's counter: until the period ends, plus a margin of two days
    (infinite for a total budget)."""
    if end is None:
        return math.inf
    return max(0.0, (end - now).total_seconds()) + COUNTER_MARGIN.total_seconds()
