"""The attempts stage with the rate-limit stage's ``take`` (an in-memory limiter): a first pick
that may not be sent to (cooling down since the plan, or its probe held) passes the request to
the next deployment, which takes its own limits first; one whose limits have no room is passed
over, and a request sent nowhere gets that limit's 429."""

from __future__ import annotations

import random
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from unittest.mock import patch

import pytest

from switchboard.config.schema import LimitsConfig, RouterConfig
from switchboard.errors import RateLimited
from switchboard.pipeline import attempts as attempts_module
from switchboard.pipeline.attempts import AttemptStage
from switchboard.pipeline.limits import RateLimitStage
from switchboard.stores.memory.limits import MemoryRateLimiter
from tests.unit.pipeline.attempts_fakes import Clock, FakeRouter, Script, group, new_context


def _route(name: str, provider: str, rpm: int | None = None) -> Any:
    target = SimpleNamespace(name="g", provider=provider, rpm=rpm, tpm=None, require_approval=False)
    return SimpleNamespace(deployment=name, target=target)


A = _route("a", "pa")  # the first pick: the rate-limit stage took its limits
B = _route("b", "pb", rpm=1)
C = _route("c", "pc", rpm=1)


@pytest.fixture
def clock() -> Iterator[Clock]:
    fake = Clock()
    with patch.object(attempts_module, "time", fake):
        yield fake


def _stage(router: FakeRouter, clock: Clock) -> AttemptStage:
    limiter = MemoryRateLimiter()
    limits = RateLimitStage(LimitsConfig(), lambda: limiter, lambda: None)
    return AttemptStage(router, RouterConfig(), rng=random.Random(7), sleep=clock.sleep, limits=limits)


async def test_a_first_pick_cooling_down_passes_on_under_the_next_ones_limits(clock: Clock) -> None:
    g = group("g", [A, B, C])
    router = FakeRouter({"g": g})
    router.out = {"a"}  # cooling down since the plan
    stage = _stage(router, clock)
    script = Script(clock, {})
    for expected in ("b", "c"):  # b's one request is taken by the first: the second goes to c
        ctx = new_context(group=g, candidates=[A, B, C], limited=A.target)
        await stage(ctx, script)
        assert ctx.response_headers["x-switchboard-deployment"] == expected
    assert script.calls == ["b", "c"]
    # Nothing left: the caller is told which limit, not that no deployment is healthy.
    ctx = new_context(group=g, candidates=[A, B, C], limited=A.target)
    with pytest.raises(RateLimited) as refused:
        await stage(ctx, script)
    assert refused.value.code == "upstream_rate_limited"
    assert refused.value.headers is not None and refused.value.headers["x-ratelimit-scope"] == "upstream"
    assert script.calls == ["b", "c"]  # nothing sent
