"""Budget periods: the window containing an instant, local to the budget's time zone, in UTC.

Expected instants are written out by hand (the local midnight and its UTC offset that day), so
a test fails if a reset moves, not only if the code disagrees with itself."""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo

import pytest

from switchboard.spend.budgets.periods import (
    COUNTER_MARGIN,
    EPOCH,
    PERIODS,
    counter_key,
    counter_ttl,
    day_start,
    window,
    zone,
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def win(period: str, tz: str, now: str) -> str:
    """The window as "start -> end" in UTC ("..." for no end); every reset is on a whole minute."""
    start, end = window(period, zone(tz), utc(now))
    assert start.tzinfo is UTC and (end is None or end.tzinfo is UTC)
    assert start.second == start.microsecond == 0 and (end is None or end.second == end.microsecond == 0)
    return f"{start:%Y-%m-%d %H:%M} -> " + ("..." if end is None else f"{end:%Y-%m-%d %H:%M}")


# -- zones --------------------------------------------------------------------------------------


def test_zone_knows_iana_names_and_caches_them() -> None:
    assert zone("Europe/Paris") is zone("Europe/Paris")
    assert zone("UTC").utcoffset(datetime(2024, 1, 1)) == timedelta(0)


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "Europe/", "x" * 300])
def test_unknown_zone_is_a_value_error_naming_it(name: str) -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        zone(name)


def test_the_hosts_own_zone_is_refused() -> None:
    # 'localtime' resolves to whatever each host has: instances would reset budgets apart.
    with pytest.raises(ValueError, match="host's own zone"):
        zone("localtime")


# -- UTC: the plain cases -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "now", "expected"),
    [
        ("daily", "2024-05-15T13:45:10", "2024-05-15 00:00 -> 2024-05-16 00:00"),
        ("daily", "2024-05-15T00:00", "2024-05-15 00:00 -> 2024-05-16 00:00"),
        ("daily", "2024-05-15T23:59:59.999999", "2024-05-15 00:00 -> 2024-05-16 00:00"),
        # Month end, year end.
        ("daily", "2024-04-30T22:00", "2024-04-30 00:00 -> 2024-05-01 00:00"),
        ("daily", "2024-12-31T23:00", "2024-12-31 00:00 -> 2025-01-01 00:00"),
        # ISO weeks start on Monday: 2024-05-15 is a Wednesday; 2024-05-19 a Sunday; 2024-05-20 a
        # Monday; a week across a year end (2025-12-29 is a Monday).
        ("weekly", "2024-05-15T10:00", "2024-05-13 00:00 -> 2024-05-20 00:00"),
        ("weekly", "2024-05-19T23:59:59", "2024-05-13 00:00 -> 2024-05-20 00:00"),
        ("weekly", "2024-05-20T00:00", "2024-05-20 00:00 -> 2024-05-27 00:00"),
        ("weekly", "2026-01-02T12:00", "2025-12-29 00:00 -> 2026-01-05 00:00"),
        # Months: 30 and 31 days, leap and common Februaries (2100 is not a leap year), Dec -> Jan.
        ("monthly", "2024-04-30T23:59:59", "2024-04-01 00:00 -> 2024-05-01 00:00"),
        ("monthly", "2024-05-01T00:00", "2024-05-01 00:00 -> 2024-06-01 00:00"),
        ("monthly", "2024-02-29T12:00", "2024-02-01 00:00 -> 2024-03-01 00:00"),
        ("monthly", "2023-02-28T12:00", "2023-02-01 00:00 -> 2023-03-01 00:00"),
        ("monthly", "2100-02-28T12:00", "2100-02-01 00:00 -> 2100-03-01 00:00"),
        ("monthly", "2024-12-31T23:59:59", "2024-12-01 00:00 -> 2025-01-01 00:00"),
        ("monthly", "2025-01-01T00:00", "2025-01-01 00:00 -> 2025-02-01 00:00"),
        ("total", "2024-05-15T13:45:10", "1970-01-01 00:00 -> ..."),
    ],
)
def test_utc_windows(period: str, now: str, expected: str) -> None:
    assert win(period, "UTC", now) == expected


def test_leap_day_is_its_own_day() -> None:
    assert win("daily", "UTC", "2024-02-29T08:00") == "2024-02-29 00:00 -> 2024-03-01 00:00"
    assert win("daily", "Europe/Paris", "2024-02-28T23:30") == "2024-02-28 23:00 -> 2024-02-29 23:00"


# -- daylight saving time -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "period", "now", "expected", "hours"),
    [
        # Paris springs forward at 02:00 on 2024-03-31 (+01:00 -> +02:00): a 23-hour day.
        ("Europe/Paris", "daily", "2024-03-31T12:00", "2024-03-30 23:00 -> 2024-03-31 22:00", 23),
        # ... and falls back at 03:00 on 2024-10-27 (+02:00 -> +01:00): a 25-hour day.
        ("Europe/Paris", "daily", "2024-10-27T12:00", "2024-10-26 22:00 -> 2024-10-27 23:00", 25),
        # The week and the month containing those days are an hour short or long as well.
        ("Europe/Paris", "weekly", "2024-03-27T12:00", "2024-03-24 23:00 -> 2024-03-31 22:00", 167),
        ("Europe/Paris", "monthly", "2024-03-15T12:00", "2024-02-29 23:00 -> 2024-03-31 22:00", 743),
        ("Europe/Paris", "monthly", "2024-10-15T12:00", "2024-09-30 22:00 -> 2024-10-31 23:00", 745),
        # New York springs forward at 02:00 on 2024-03-10 (-05:00 -> -04:00) ...
        ("America/New_York", "daily", "2024-03-10T12:00", "2024-03-10 05:00 -> 2024-03-11 04:00", 23),
        # ... and falls back at 02:00 on 2024-11-03 (-04:00 -> -05:00).
        ("America/New_York", "daily", "2024-11-03T12:00", "2024-11-03 04:00 -> 2024-11-04 05:00", 25),
        # During the repeated hour (01:30 EDT, then 01:30 EST) it is still the same day.
        ("America/New_York", "daily", "2024-11-03T05:30", "2024-11-03 04:00 -> 2024-11-04 05:00", 25),
        ("America/New_York", "daily", "2024-11-03T06:30", "2024-11-03 04:00 -> 2024-11-04 05:00", 25),
    ],
)
def test_dst_days_are_23_or_25_hours(
    tz: str, period: str, now: str, expected: str, hours: int
) -> None:
    assert win(period, tz, now) == expected
    start, end = window(period, zone(tz), utc(now))
    assert end is not None and end - start == timedelta(hours=hours)


def test_midnight_that_does_not_exist_starts_the_day_after_the_gap() -> None:
    # Havana springs forward at midnight on 2023-03-12: 00:00 CST (-05:00) becomes 01:00 CDT
    # (-04:00). The day starts at that instant, 05:00Z, which is 01:00 local.
    tz = zone("America/Havana")
    assert win("daily", "America/Havana", "2023-03-12T12:00") == "2023-03-12 05:00 -> 2023-03-13 04:00"
    start, _ = window("daily", tz, utc("2023-03-12T05:00"))
    assert start.astimezone(tz).strftime("%H:%M %z") == "01:00 -0400"
    # The instant before belongs to the 11th, which ends there.
    assert win("daily", "America/Havana", "2023-03-12T04:59:59") == "2023-03-11 05:00 -> 2023-03-12 05:00"
    # Santiago does the same at 24:00 on 2023-09-02 (-04:00 -> -03:00).
    assert win("daily", "America/Santiago", "2023-09-03T12:00") == "2023-09-03 04:00 -> 2023-09-04 03:00"


def test_ambiguous_midnight_is_the_first_one() -> None:
    # Havana falls back at 01:00 CDT on 2023-11-05 to 00:00 CST: midnight happens twice, at 04:00Z
    # (-04:00) and 05:00Z (-05:00). The day starts at the first (fold=0) and lasts 25 hours; the
    # instants between the two midnights belong to the 5th, not the 4th.
    assert win("daily", "America/Havana", "2023-11-05T12:00") == "2023-11-05 04:00 -> 2023-11-06 05:00"
    assert win("daily", "America/Havana", "2023-11-05T04:30") == "2023-11-05 04:00 -> 2023-11-06 05:00"
    assert win("daily", "America/Havana", "2023-11-05T03:59:59") == "2023-11-04 04:00 -> 2023-11-05 04:00"


class _HalfHourGap(tzinfo):
    """-03:00 until 2024-06-01T02:30Z, then -02:00: the clocks jump from 23:30 to 00:30, so local
    midnight on 2024-06-01 falls inside the gap rather than at its start (no real zone does this
    today). PEP 495: a time in the gap reads with the offset before the change when fold=0."""

    change = datetime(2024, 6, 1, 2, 30)  # UTC, naive
    before, after = timedelta(hours=-3), timedelta(hours=-2)

    def utcoffset(self, dt: datetime | None) -> timedelta:
        assert dt is not None
        wall = dt.replace(tzinfo=None, fold=0)
        if wall < self.change + self.before:  # before 23:30 on the old clock
            return self.before
        if wall >= self.change + self.after:  # from 00:30 on the new clock
            return self.after
        return self.after if dt.fold else self.before

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, dt: datetime | None) -> str:
        return "GAP"

    def fromutc(self, dt: datetime) -> datetime:
        offset = self.after if dt.replace(tzinfo=None) >= self.change else self.before
        return dt + offset


def test_midnight_inside_a_gap_starts_the_day_at_the_change() -> None:
    tz = _HalfHourGap()
    assert day_start(date(2024, 6, 1), tz) == datetime(2024, 6, 1, 2, 30, tzinfo=UTC)
    assert day_start(date(2024, 5, 31), tz) == datetime(2024, 5, 31, 3, 0, tzinfo=UTC)
    assert day_start(date(2024, 6, 2), tz) == datetime(2024, 6, 2, 2, 0, tzinfo=UTC)
    # 00:40 local (new clock) is on the 1st, and inside the day's window.
    now = datetime(2024, 6, 1, 2, 40, tzinfo=UTC)
    assert window("daily", tz, now) == (
        datetime(2024, 6, 1, 2, 30, tzinfo=UTC), datetime(2024, 6, 2, 2, 0, tzinfo=UTC)
    )
    # The last instant of the old clock (23:29:59 on the 31st) is still the 31st.
    last = datetime(2024, 6, 1, 2, 29, 59, tzinfo=UTC)
    assert window("daily", tz, last)[1] == datetime(2024, 6, 1, 2, 30, tzinfo=UTC)


# -- zones at the ends of the offset range ---------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "period", "now", "expected"),
    [
        # Kiritimati is UTC+14: its days, weeks and months begin at 10:00Z the day before.
        ("Pacific/Kiritimati", "daily", "2024-06-30T10:00", "2024-06-30 10:00 -> 2024-07-01 10:00"),
        ("Pacific/Kiritimati", "daily", "2024-06-30T09:59:59", "2024-06-29 10:00 -> 2024-06-30 10:00"),
        # 2024-07-01 is a Monday: the new week and the new month start at the same instant.
        ("Pacific/Kiritimati", "weekly", "2024-06-30T10:00", "2024-06-30 10:00 -> 2024-07-07 10:00"),
        ("Pacific/Kiritimati", "monthly", "2024-06-30T10:00", "2024-06-30 10:00 -> 2024-07-31 10:00"),
        ("Pacific/Kiritimati", "monthly", "2024-06-30T09:59:59", "2024-05-31 10:00 -> 2024-06-30 10:00"),
        ("Pacific/Kiritimati", "monthly", "2024-12-31T10:00", "2024-12-31 10:00 -> 2025-01-31 10:00"),
        # Pago Pago is UTC-11: when it is already 2025 in UTC, it is still December there.
        ("Pacific/Pago_Pago", "monthly", "2025-01-01T10:59:59", "2024-12-01 11:00 -> 2025-01-01 11:00"),
        ("Pacific/Pago_Pago", "monthly", "2025-01-01T11:00", "2025-01-01 11:00 -> 2025-02-01 11:00"),
        ("Pacific/Pago_Pago", "daily", "2024-12-31T23:00", "2024-12-31 11:00 -> 2025-01-01 11:00"),
        ("Pacific/Pago_Pago", "weekly", "2024-12-31T23:00", "2024-12-30 11:00 -> 2025-01-06 11:00"),
        ("Pacific/Pago_Pago", "monthly", "2024-02-29T12:00", "2024-02-01 11:00 -> 2024-03-01 11:00"),
        ("Pacific/Kiritimati", "total", "2024-06-30T10:00", "1970-01-01 00:00 -> ..."),
    ],
)
def test_far_east_and_far_west(tz: str, period: str, now: str, expected: str) -> None:
    assert win(period, tz, now) == expected


def test_now_in_any_offset_gives_the_same_window() -> None:
    instant = utc("2024-03-31T12:00")
    elsewhere = instant.astimezone(timezone(timedelta(hours=9, minutes=30)))
    paris = zone("Europe/Paris")
    assert window("monthly", paris, elsewhere) == window("monthly", paris, instant)


def test_windows_tile_time_without_gaps_or_overlaps() -> None:
    # For random instants over years with DST changes, in zones with midnight changes among them:
    # the window contains the instant, and the next window starts where this one ends.
    rng = random.Random(8)
    zones = ["UTC", "Europe/Paris", "America/New_York", "America/Havana", "America/Santiago",
             "Pacific/Kiritimati", "Pacific/Pago_Pago", "Australia/Lord_Howe", "Asia/Kolkata"]
    low, high = int(utc("2022-01-01T00:00").timestamp()), int(utc("2026-01-01T00:00").timestamp())
    for _ in range(600):
        tz = zone(rng.choice(zones))
        period = rng.choice(["daily", "weekly", "monthly"])
        now = datetime.fromtimestamp(rng.randrange(low, high), UTC)
        start, end = window(period, tz, now)
        assert end is not None
        assert start <= now < end, (tz, period, now)
        assert window(period, tz, end)[0] == end
        assert window(period, tz, end - timedelta(microseconds=1)) == (start, end)
        first = start.astimezone(tz)
        assert first.day == 1 if period == "monthly" else True
        assert first.weekday() == 0 if period == "weekly" else True
        hours = (end - start) / timedelta(hours=1)
        if period == "daily":
            assert 22 <= hours <= 26


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("period", ["yearly", "", "Daily", "hourly", "total "])
def test_unknown_period_is_a_value_error(period: str) -> None:
    with pytest.raises(ValueError, match="unknown budget period"):
        window(period, zone("UTC"), utc("2024-01-01T00:00"))


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        window("daily", zone("UTC"), datetime(2024, 1, 1))


def test_periods_are_the_stores_periods() -> None:
    from switchboard.stores.protocols import BUDGET_PERIODS

    assert set(PERIODS) == set(BUDGET_PERIODS)


# -- counters ------------------------------------------------------------------------------------


def test_counter_key_names_budget_and_period_start() -> None:
    start, _ = window("monthly", zone("Europe/Paris"), utc("2024-03-15T12:00"))
    assert counter_key("bud_123", start) == "bud_123:1709247600"  # 2024-02-29T23:00:00Z
    assert counter_key("bud_123", EPOCH) == "bud_123:0"
    # The same period seen from another offset is the same counter.
    assert counter_key("b", start.astimezone(zone("Asia/Tokyo"))) == counter_key("b", start)


def test_counter_ttl_is_the_rest_of_the_period_plus_two_days() -> None:
    now = utc("2024-05-15T12:00")
    _, end = window("daily", zone("UTC"), now)
    assert end is not None
    assert counter_ttl(end, now) == 12 * 3600 + 2 * 86400
    assert counter_ttl(end, end + timedelta(hours=1)) == COUNTER_MARGIN.total_seconds()
    assert counter_ttl(None, now) == math.inf
