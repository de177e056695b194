"""A budget or rate-limit store that cannot be read leaves no reference cycle: each stage judges
the error by its ``on_store_error`` (admitted, or 503 ``budget_unavailable`` /
``rate_limiter_unavailable``) or, when it is already the gateway's own error, raises it as it is.
An error kept in a local of a frame its own traceback holds is a cycle per request, left for the
cyclic garbage collector, whose passes stall the event loop."""

from __future__ import annotations

import gc

import pytest

from switchboard.config.schema import BudgetsConfig, LimitsConfig
from switchboard.context import Principal, Reply, RequestContext, Result
from switchboard.errors import GatewayError
from switchboard.pipeline.budgets import BudgetStage, BudgetUnavailable
from switchboard.pipeline.limits import LimiterUnavailable, RateLimitStage
from tests.unit.pipeline.fakes import context


class _Unreadable:
    """A budget book whose store does not answer: each read raises a new ``kind`` error."""

    def __init__(self, kind: type[Exception]) -> None:
        self.kind = kind

    def in_force_now(self, principal: Principal) -> None:
        return None  # not cached: read from the store

    async def in_force(self, principal: Principal) -> list[object]:
        raise self.kind("the store is down")


class _UnreadableLimits:
    """A tenant's stored rate limits, not cached, and a store that does not answer."""

    def __init__(self, kind: type[Exception]) -> None:
        self.kind = kind

    def peek(self, tenant: str, default: None) -> None:
        return default

    async def limits(self, tenant: str) -> object:
        raise self.kind("the store is down")


async def _answered(ctx: RequestContext) -> Result:
    return Reply({})


def _ours(garbage: list[object]) -> list[str]:
    start = len(gc.garbage)
    gc.collect()
    garbage.extend(gc.garbage[start:])
    return [type(o).__qualname__ for o in garbage if type(o).__module__.startswith("switchboard")]


async def _request(stage_name: str, policy: str, kind: type[Exception]) -> int:
    stage: BudgetStage | RateLimitStage
    if stage_name == "budgets":
        stage = BudgetStage(BudgetsConfig(on_store_error=policy), lambda: _Unreadable(kind),  # type: ignore[arg-type, return-value]
                            None, None)  # type: ignore[arg-type]
    else:
        stage = RateLimitStage(LimitsConfig(on_store_error=policy), lambda: object(),  # type: ignore[arg-type, return-value]
                               lambda: _UnreadableLimits(kind))  # type: ignore[arg-type, return-value]
    ctx = context(principal=Principal("k", key_id="k", tenant_id="t"))
    try:
        result = await stage(ctx, _answered)
    except GatewayError as err:
        return err.status
    assert isinstance(result, Reply)
    return result.status


@pytest.mark.parametrize(("policy", "kind", "status"), [
    ("open", ConnectionRefusedError, 200),
    ("closed", ConnectionRefusedError, 503),
    ("open", GatewayError, 500),  # the gateway's own error: raised as it is, whatever the policy
])
@pytest.mark.parametrize("stage", ["budgets", "rate_limits"])
async def test_an_unreadable_store_leaves_no_cycle(
    garbage: list[object], stage: str, policy: str, kind: type[Exception], status: int,
) -> None:
    assert BudgetUnavailable.status == LimiterUnavailable.status == 503
    for _ in range(3):
        assert await _request(stage, policy, kind) == status
    assert _ours(garbage) == []
