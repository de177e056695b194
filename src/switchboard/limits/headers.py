"""OpenAI-style rate-limit headers, for the most restrictive limit of each kind."""

from __future__ import annotations

import math
from collections.abc import Sequence

from switchboard.limits.plan import Limit
from switchboard.stores.protocols import BucketState


def duration(seconds: float) -> str:
    """As OpenAI writes it: ``250ms``, ``1.5s``, ``6m0s``, ``1h2m3s``."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    if seconds < 60:
        return f"{math.ceil(seconds * 1000) / 1000:g}s"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + f"{minutes}m{secs}s"


def tightest(limits: Sequence[Limit], states: Sequence[BucketState], kind: str) -> int | None:
    """The index of the limit of ``kind`` with the least room left (then the smallest)."""
    best: int | None = None
    for i, (limit, state) in enumerate(zip(limits, states, strict=True)):
        if limit.kind != kind or limit.scope == "upstream":  # the provider's, not the caller's
            continue
        if best is None:
            best = i
            continue
        room, best_room = state.capacity - state.used, states[best].capacity - states[best].used
        if (room, limit.capacity) < (best_room, limits[best].capacity):
            best = i
    return best


def rate_headers(limits: Sequence[Limit], states: Sequence[BucketState]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for kind in ("requests", "tokens"):
        i = tightest(limits, states, kind)
        if i is None:
            continue
        state = states[i]
        headers[f"x-ratelimit-limit-{kind}"] = str(limits[i].capacity)
        headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, state.capacity - state.used))
        headers[f"x-ratelimit-reset-{kind}"] = duration(state.reset)
    return headers
