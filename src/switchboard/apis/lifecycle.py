"""The lifecycle of a published API and its A/B split, as pure rules.

draft -> published -> deprecated -> retired. A draft is not served; a published API is; a
deprecated one is served with ``Deprecation``, ``Sunset`` and ``Link: rel="successor-version"``
headers; a retired one answers 410 naming its successor. A split sends each caller key to one
prompt version by a stable hash of the key lineage and the API name, so a key always sees the same
version while the split stands.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from email.utils import format_datetime
from typing import Any

STATUSES = ("draft", "published", "deprecated", "retired")
# status -> the statuses it may move to.
TRANSITIONS: Mapping[str, frozenset[str]] = {
    "draft": frozenset({"published", "retired"}),
    "published": frozenset({"deprecated", "retired"}),
    "deprecated": frozenset({"published", "retired"}),
    "retired": frozenset(),
}
SERVED = frozenset({"published", "deprecated"})


def transition_problem(current: str, wanted: str) -> str | None:
    """Why ``current`` may not move to ``wanted``; None when it may (or nothing changes)."""
    if current == wanted:
        return None
    if wanted not in TRANSITIONS.get(current, frozenset()):
        allowed = sorted(TRANSITIONS.get(current, frozenset()))
        shown = ", ".join(allowed) if allowed else "nothing (retired is final)"
        return f"an API that is {current} cannot become {wanted}; it can become {shown}"
    return None


def split_problem(split: Sequence[Mapping[str, Any]]) -> str | None:
    """Why a split is malformed; None when it is well formed: 2 or more distinct versions whose
    whole percentages add up to 100."""
    if len(split) < 2:
        return "split: give at least two arms"
    versions = [arm.get("version") for arm in split]
    if len(set(versions)) != len(versions):
        return "split: a version named twice"
    if sum(int(arm.get("percent", 0)) for arm in split) != 100:
        return "split: the percentages must add up to 100"
    return None


def bucket(key: str, api: str) -> int:
    """0..9999: where ``key`` falls for ``api``; stable across processes and restarts."""
    digest = hashlib.sha256(f"{key}\x00{api}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000


def split_version(split: Sequence[Mapping[str, Any]], key: str, api: str) -> int:
    """The prompt version a caller ``key`` (its key lineage) gets from ``split``."""
    point = bucket(key, api)
    edge = 0
    for arm in split:
        edge += int(arm["percent"]) * 100
        if point < edge:
            return int(arm["version"])
    return int(split[-1]["version"])


def http_date(value: datetime) -> str:
    return format_datetime(value, usegmt=True)


def deprecation_headers(*, deprecated_at: datetime, sunset_at: datetime | None,
                        successor_url: str | None) -> dict[str, str]:
    """The headers a deprecated API's responses carry (RFC 9745 Deprecation, RFC 8594 Sunset,
    RFC 8288 Link)."""
    headers = {"deprecation": f"@{int(deprecated_at.timestamp())}"}
    if sunset_at is not None:
        headers["sunset"] = http_date(sunset_at)
    if successor_url is not None:
        headers["link"] = f'<{successor_url}>; rel="successor-version"'
    return headers
