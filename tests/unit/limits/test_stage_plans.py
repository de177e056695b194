"""The rate-limit stage keeps one plan per caller, model and deployment: requests alternating
between two deployments of one model (a model group) reuse both plans, each with its own
provider limit, and a changed caller record makes a new one."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from switchboard.config.schema import LimitsConfig
from switchboard.context import Principal, Reply, RequestContext, Result
from switchboard.errors import RateLimited
from switchboard.http.openai_api import CHAT
from switchboard.pipeline.limits import RateLimitStage
from switchboard.providers.target import Target
from switchboard.stores.memory.limits import MemoryRateLimiter


@dataclass
class _Route:
    target: Target


def _target(name: str, rpm: int) -> Target:
    return Target(name="m", model="gpt-4o-mini", provider=name, provider_type="openai", api_base="http://x",
                  options=None, timeouts=None, rpm=rpm)  # type: ignore[arg-type]


async def _done(ctx: RequestContext) -> Result:
    return Reply({})


async def test_one_plan_per_deployment_kept_while_nothing_changes() -> None:
    key = Principal(id="k1", role="developer", key_id="k1", tenant_id="t1", rpm_limit=100)
    a, b = _Route(_target("a", 1)), _Route(_target("b", 1))
    limiter = MemoryRateLimiter()
    stage = RateLimitStage(LimitsConfig(), lambda: limiter, lambda: None)

    async def call(route: Any, principal: Principal = key) -> RequestContext:
        ctx = RequestContext("r", "chat", CHAT, {}, b"", 0.0, request={"model": "m"})
        ctx.principal, ctx.route = principal, route
        await stage(ctx, _done)
        return ctx

    first = await call(a)
    await call(b)  # the other deployment: its own provider limit of 1 per minute
    plans = dict(stage._plans)
    assert len(plans) == 2
    assert first.response_headers["x-ratelimit-remaining-requests"] == "99"
    # Both deployments' limits of 1 per minute are now used: each refuses on its own.
    for route in (a, b):
        with pytest.raises(RateLimited) as refused:
            await call(route)
        assert refused.value.code == "upstream_rate_limited"
    assert stage._plans == plans  # reused, not rebuilt
    changed = replace(key, rpm_limit=50)  # the key's record changed: a new plan
    await call(_Route(_target("c", 10)), changed)
    ctx = await call(_Route(_target("d", 10)), changed)
    assert ctx.response_headers["x-ratelimit-limit-requests"] == "50"
