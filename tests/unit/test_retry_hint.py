"""``x-should-retry: false`` on errors whose wait is longer than the SDKs should sleep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from switchboard.errors import RETRY_SOON_SECONDS, retry_hint


@pytest.mark.parametrize(("headers", "retry"), [
    ({}, True),
    ({"retry-after": "61"}, True),
    ({"retry-after": str(RETRY_SOON_SECONDS)}, True),
    ({"retry-after": str(RETRY_SOON_SECONDS + 1)}, False),
    ({"retry-after": "86400"}, False),
    ({"retry-after": "2.5"}, True),
    ({"retry-after": "inf"}, False),
    ({"retry-after": "soon"}, True),  # unreadable: the SDKs use their own backoff
    ({"retry-after-ms": "500", "retry-after": "9999"}, True),  # the SDKs read the ms first
    ({"retry-after-ms": "3600000"}, False),
    ({"retry-after": format_datetime(datetime.now(UTC) + timedelta(hours=2), usegmt=True)}, False),
    ({"retry-after": format_datetime(datetime.now(UTC) + timedelta(seconds=5), usegmt=True)}, True),
])
def test_a_long_wait_says_not_to_retry(headers: dict[str, str], retry: bool) -> None:
    out = retry_hint(headers)
    assert ("x-should-retry" not in out) is retry
    if not retry:
        assert out["x-should-retry"] == "false" and "x-should-retry" not in headers  # a copy
    assert {k: v for k, v in out.items() if k != "x-should-retry"} == headers


def test_a_hint_already_given_is_kept() -> None:
    headers = {"retry-after": "86400", "x-should-retry": "true"}
    assert retry_hint(headers) is headers
