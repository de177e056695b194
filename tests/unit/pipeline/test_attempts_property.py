"""Properties of the attempts stage over random groups, plans, outages and policies (hypothesis):
nothing is tried after a byte may have reached the client, no group gets more than
``num_retries + 1`` attempts, only planned deployments are tried, no attempt starts and no wait
ends past the deadline, a caller's error is never retried, and the client gets the last error."""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any
from unittest.mock import patch

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard.config.schema import RouterConfig
from switchboard.context import StreamReply
from switchboard.errors import (
    GatewayError,
    InvalidRequest,
    UpstreamBadGateway,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from switchboard.pipeline import attempts as attempts_module
from switchboard.pipeline.attempts import AttemptStage
from tests.unit.pipeline.attempts_fakes import Clock, FakeRouter, Outcome, Script, group, new_context, route

CLASSES = ["rate_limit", "server_error", "timeout", "connection", "content_policy"]


@st.composite
def errors(draw: st.DrawFn) -> GatewayError:
    kind = draw(st.sampled_from(["429", "500", "timeout", "connection", "400", "policy"]))
    if kind == "429":
        after = draw(st.sampled_from([None, "0.1", "1", "30"]))
        return UpstreamRateLimited("limited", headers={"retry-after": after} if after else {})
    if kind == "500":
        return UpstreamBadGateway("boom")
    if kind == "timeout":
        return UpstreamTimeout("slow")
    if kind == "connection":
        return UpstreamUnreachable("gone")
    if kind == "policy":
        return UpstreamBadGateway("refused", status=400, code="content_policy_violation")
    return InvalidRequest("bad") if draw(st.booleans()) else UpstreamBadGateway("bad", status=400)


@st.composite
def outcomes(draw: st.DrawFn, stream: bool) -> Outcome:
    seconds = draw(st.floats(min_value=0, max_value=1.5))
    error = draw(st.none() | errors())
    if not stream:
        return Outcome(seconds=seconds, error=error)
    shape = draw(st.sampled_from(["ok", "status", "before", "after"]))
    if shape == "status" and error is not None:
        return Outcome(seconds=seconds, error=error)  # raised before a stream is returned
    return Outcome(seconds=seconds, stream=True, error=error, fail_before_first=shape == "before",
                   fail_after_first=shape == "after")


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    stream = draw(st.booleans())
    n_groups = draw(st.integers(1, 3))
    names = [f"g{i}" for i in range(n_groups)]
    groups, plans, script = {}, {}, {}
    for i, name in enumerate(names):
        deployments = [route(f"{name}-d{j}", name) for j in range(draw(st.integers(1, 3)))]
        groups[name] = group(name, deployments, num_retries=draw(st.integers(0, 3)),
                             fallbacks=tuple(names[i + 1:]) if i == 0 else ())
        plans[name] = draw(st.permutations(deployments).flatmap(
            lambda p: st.integers(0, len(p)).map(lambda k, p=p: list(p[:k]))))
        for d in deployments:
            script[d.deployment] = draw(st.lists(outcomes(stream), max_size=5))
    return {
        "stream": stream, "groups": groups, "plans": plans, "script": script,
        "deadline": draw(st.none() | st.floats(min_value=0.01, max_value=6)),
        "retry_on": draw(st.lists(st.sampled_from(CLASSES[:4]), unique=True)),
        "fallback_on": draw(st.lists(st.sampled_from(CLASSES), unique=True)),
        "backoff": draw(st.sampled_from([0.0, 0.05, 0.5])),
        "seed": draw(st.integers(0, 2**16)),
    }


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_attempts_keep_their_promises(scenario: dict[str, Any]) -> None:
    asyncio.run(_check(scenario))


async def _check(s: dict[str, Any]) -> None:
    clock = Clock()
    groups = s["groups"]
    primary = groups["g0"]
    router = FakeRouter(groups, plans={name: plan for name, plan in s["plans"].items() if name != "g0"})
    config = RouterConfig.model_validate({
        "retry": {"on": s["retry_on"], "backoff_seconds": s["backoff"], "max_retry_after_seconds": 5},
        "fallback_on": s["fallback_on"],
    })
    script = Script(clock, {name: list(queue) for name, queue in s["script"].items()})
    deadline = clock.now + s["deadline"] if s["deadline"] is not None else float("inf")
    ctx = new_context(deadline=deadline, group=primary, candidates=list(s["plans"]["g0"]), stream=s["stream"])
    stage = AttemptStage(router, config, rng=random.Random(s["seed"]), sleep=clock.sleep)
    failure: GatewayError | None = None
    with patch.object(attempts_module, "time", clock):
        try:
            result = await stage(ctx, script)
        except GatewayError as error:
            failure = error
        script.returned = True
        if failure is None and isinstance(result, StreamReply):
            try:
                async for _ in result.chunks:
                    pass
            except GatewayError:
                pass  # a failure after the first byte reaches the client mid-stream
            finally:
                await result.aclose()

    # Nothing is tried once the client may have a byte.
    assert script.calls_after_return == 0
    attempts = ctx.attempts or []
    assert len(attempts) == len(script.calls)
    by_group: dict[str, int] = {}
    for attempt in attempts:
        by_group[attempt.group] = by_group.get(attempt.group, 0) + 1
        planned = s["plans"][attempt.group]
        assert any(r.deployment == attempt.deployment for r in planned)
    for name, count in by_group.items():
        assert count <= groups[name].num_retries + 1
    # The first attempt may start at once; every later one, and every wait, before the deadline.
    assert all(t < deadline for t in script.call_times[1:])
    assert all(when + wait < deadline for when, wait in clock.sleeps)
    # A caller's error (not retryable) is never followed by a retry within its group.
    for before, after in itertools.pairwise(attempts):
        if before.status == 400 and before.code not in ("content_policy_violation",):
            assert after.group != before.group
    assert router.in_flight == 0
    if failure is not None:
        if script.calls:
            assert failure is script.failures[-1]
            assert ctx.response_headers["x-switchboard-attempts"] == str(len(attempts))
        else:
            assert failure.code == "no_deployment_available"
    else:
        assert ctx.response_headers["x-switchboard-attempts"] == str(len(attempts))
        assert ctx.response_headers["x-switchboard-model"] == attempts[-1].group
