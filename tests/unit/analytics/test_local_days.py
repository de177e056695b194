"""``interval=day&tz=``: each rollup hour belongs to the local day it starts in."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from switchboard.http.admin.analytics import _local_days, _local_start
from switchboard.stores.protocols import AnalyticsRow


def test_hours_go_to_the_local_day_they_start_in() -> None:
    paris = ZoneInfo("Europe/Paris")  # UTC+2 in June, UTC+1 in January
    hours = [datetime(2026, 6, 1, h, tzinfo=UTC) for h in (0, 21, 22, 23)] + [
        datetime(2026, 1, 15, 22, tzinfo=UTC), datetime(2026, 1, 15, 23, tzinfo=UTC)]
    days = _local_days([AnalyticsRow(start=h, group=None, requests=1) for h in hours], paris)
    assert [_local_start(day) for day, _ in days] == [
        "2026-06-01T00:00:00+02:00", "2026-06-01T00:00:00+02:00",
        "2026-06-02T00:00:00+02:00", "2026-06-02T00:00:00+02:00",
        "2026-01-15T00:00:00+01:00", "2026-01-16T00:00:00+01:00",
    ]
    assert [row.start for _, row in days] == hours
