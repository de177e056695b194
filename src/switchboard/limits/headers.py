"""Rate-limit headers, for the most restrictive limit of each kind: OpenAI's (``x-ratelimit-*``,
resets as durations) on every response, and Anthropic's as well (``anthropic-ratelimit-*``,
resets as RFC 3339 times) on the Anthropic Messages API's."""

from __future__ import annotations

import math
import time
from collections.abc import MutableMapping, Sequence
from datetime import UTC, datetime

from switchboard.limits.plan import Limit
from switchboard.stores.protocols import BucketState


def duration(seconds: float) -> str:
    """As OpenAI writes it: ``250ms``, ``1.5s``, ``6m0s``, ``1h2m3s``. Rounded up to the
    millisecond first, so a reset a hair under a second or a minute is written as the second or
    minute it rounds to (``1s``, ``1m0s``), never ``1000ms`` or ``60s``."""
    ms = max(0, math.ceil(seconds * 1000))
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms / 1000}s"  # as :g would, faster
    whole = math.ceil(seconds)
    text = _WHOLE.get(whole)
    if text is None:
        hours, rest = divmod(whole, 3600)
        minutes, secs = divmod(rest, 60)
        text = (f"{hours}h" if hours else "") + f"{minutes}m{secs}s"
        if len(_WHOLE) >= _WHOLE_MAX:
            _WHOLE.clear()
        _WHOLE[whole] = text
    return text


# Resets of a minute or more are written in whole seconds: formatted once per second of reset,
# not per request (a minute's window resets 60 or 61 s ahead on almost every request).
_WHOLE: dict[int, str] = {}
_WHOLE_MAX = 4096
# Shorter ones keep their milliseconds; the limiters give a reset in whole milliseconds, so each
# text is formatted once (formatting a float is some 15 times a dict look-up).
_SHORT: dict[float, str] = {}

# Anthropic's resets are times, written in whole seconds (rounded up: room is back by then), each
# formatted once per second rather than per request.
_STAMPS: dict[int, str] = {}


def timestamp(seconds: float) -> str:
    """The time ``seconds`` from now as RFC 3339 in UTC, as Anthropic writes its resets."""
    at = math.ceil(time.time() + seconds)
    text = _STAMPS.get(at)
    if text is None:
        if len(_STAMPS) >= _WHOLE_MAX:
            _STAMPS.clear()
        text = _STAMPS[at] = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return text


# Per kind, the header names, the indexes of the caller's limits of that kind (not the
# provider's), Anthropic's names when its headers go too, and every limit's capacity as the
# header's text: worked out once per plan of limits (the stage keeps plans, made again when a
# limit changes), then each request only compares their states and writes what they hold.
Names = tuple[str, str, str]  # limit, remaining, reset
HeaderPlan = tuple[tuple[Names, tuple[int, ...], Names | None, tuple[str, ...]], ...]
KINDS = ("requests", "tokens")
_NAMES = {kind: (f"x-ratelimit-limit-{kind}", f"x-ratelimit-remaining-{kind}", f"x-ratelimit-reset-{kind}")
          for kind in KINDS}
_ANTHROPIC = {kind: (f"anthropic-ratelimit-{kind}-limit", f"anthropic-ratelimit-{kind}-remaining",
                     f"anthropic-ratelimit-{kind}-reset") for kind in KINDS}


def header_plan(limits: Sequence[Limit], anthropic: bool = False) -> HeaderPlan:
    out = []
    texts = tuple(str(x.capacity) for x in limits)  # a state holds its bucket's, the limit's capacity
    for kind in KINDS:
        indexes = tuple(i for i, x in enumerate(limits) if x.kind == kind and x.scope != "upstream")
        if indexes:
            out.append((_NAMES[kind], indexes, _ANTHROPIC[kind] if anthropic else None, texts))
    return tuple(out)


def tightest(limits: Sequence[Limit], states: Sequence[BucketState], indexes: Sequence[int]) -> int:
    """Of ``indexes``, the limit with the least room left (then the smallest; then the first)."""
    best = indexes[0]
    for i in indexes[1:]:
        room, best_room = states[i].capacity - states[i].used, states[best].capacity - states[best].used
        if (room, limits[i].capacity) < (best_room, limits[best].capacity):
            best = i
    return best


def write_rate_headers(
    headers: MutableMapping[str, str], limits: Sequence[Limit], states: Sequence[BucketState],
    plan: HeaderPlan,
) -> None:
    """Put the headers of ``plan`` into ``headers`` (the response's)."""
    for (limit_name, remaining_name, reset_name), indexes, anthropic, texts in plan:
        i = indexes[0] if len(indexes) == 1 else tightest(limits, states, indexes)
        capacity, used, reset, _ = states[i]
        limit = headers[limit_name] = texts[i]  # str(capacity), made with the plan
        remaining = headers[remaining_name] = str(capacity - used) if used < capacity else "0"
        if reset >= 60:  # whole seconds, formatted once per second of reset
            text = _WHOLE.get(math.ceil(reset))
            headers[reset_name] = text if text is not None else duration(reset)
        else:
            text = _SHORT.get(reset)
            if text is None:
                if len(_SHORT) >= _WHOLE_MAX:
                    _SHORT.clear()
                text = _SHORT[reset] = duration(reset)
            headers[reset_name] = text
        if anthropic is not None:
            headers[anthropic[0]] = limit
            headers[anthropic[1]] = remaining
            headers[anthropic[2]] = timestamp(reset)


def write_refused(headers: MutableMapping[str, str], kind: str, capacity: int, retry_after: float,
                  anthropic: bool) -> None:
    """The headers of the limit that refused a request: none left of ``kind`` until
    ``retry_after`` seconds from now."""
    for names, reset in ((_NAMES[kind], duration(retry_after)),
                         *(((_ANTHROPIC[kind], timestamp(retry_after)),) if anthropic else ())):
        headers[names[0]] = str(capacity)
        headers[names[1]] = "0"
        headers[names[2]] = reset


def clear_rate_headers(headers: MutableMapping[str, str]) -> None:
    """Take out the headers ``write_rate_headers`` put in (the limits they describe were given
    back: the request went to another model)."""
    for family in (_NAMES, _ANTHROPIC):
        for names in family.values():
            for name in names:
                headers.pop(name, None)


def rate_headers(
    limits: Sequence[Limit], states: Sequence[BucketState], plan: HeaderPlan | None = None
) -> dict[str, str]:
    headers: dict[str, str] = {}
    write_rate_headers(headers, limits, states, plan if plan is not None else header_plan(limits))
    return headers
