"""The attempts stage alone, over a scripted group on a fake clock: retries and their waits,
Retry-After, the deadline, fallbacks, streams before and after their first byte, the routing
headers and the attempts kept for the ledger."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from unittest.mock import patch

import pytest

from switchboard.config.schema import RouterConfig
from switchboard.context import Attempt, Reply, StreamReply
from switchboard.errors import (
    AuthenticationFailed,
    GatewayError,
    InvalidRequest,
    UnsupportedParameter,
    UpstreamBadGateway,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from switchboard.pipeline import attempts as attempts_module
from switchboard.pipeline.attempts import AttemptStage, retry_after_seconds
from switchboard.settings.loader import ConfigError, validate
from tests.unit.pipeline.attempts_fakes import Clock, FakeRouter, Outcome, Script, group, new_context, route

A, B, C = route("a"), route("b"), route("c")
FB, FC = route("b", "f"), route("c", "f")  # the same names in a fallback group "f"


@pytest.fixture
def clock() -> Iterator[Clock]:
    fake = Clock()
    with patch.object(attempts_module, "time", fake):
        yield fake


def stage(router: FakeRouter, clock: Clock, **settings: object) -> AttemptStage:
    config = RouterConfig.model_validate(settings)
    return AttemptStage(router, config, rng=random.Random(7), sleep=clock.sleep)


def limited(after: str) -> UpstreamRateLimited:
    return UpstreamRateLimited("slow down", headers={"retry-after": after})


async def test_one_deployment_that_answers_is_one_attempt(clock: Clock) -> None:
    g = group("g", [A])
    router = FakeRouter({"g": g})
    script = Script(clock, {})
    ctx = new_context(group=g, candidates=[A])
    result = await stage(router, clock)(ctx, script)
    assert isinstance(result, Reply) and script.calls == ["a"]
    assert ctx.response_headers == {"x-switchboard-model": "g", "x-switchboard-deployment": "a",
                                    "x-switchboard-attempts": "1"}
    assert ctx.attempts == [Attempt("a", "g", 200, None, 10)]
    assert router.in_flight == 0 and router.finishes == [("a", None)]


async def test_a_server_error_is_retried_on_the_next_candidate(clock: Clock) -> None:
    g = group("g", [A, B])
    router = FakeRouter({"g": g})
    script = Script(clock, {"a": [Outcome(error=UpstreamBadGateway("boom"))]})
    ctx = new_context(group=g, candidates=[A, B])
    result = await stage(router, clock)(ctx, script)
    assert isinstance(result, Reply) and result.body == {"deployment": "b"}
    assert script.calls == ["a", "b"]
    assert ctx.response_headers["x-switchboard-deployment"] == "b"
    assert ctx.response_headers["x-switchboard-attempts"] == "2"
    assert [(a.deployment, a.status, a.code) for a in ctx.attempts or ()] == [
        ("a", 502, "upstream_error"), ("b", 200, None)]
    # The wait between them: full jitter under the first backoff step.
    assert len(clock.sleeps) == 1 and 0 <= clock.sleeps[0][1] < 0.05


async def test_retries_cycle_through_fewer_deployments_than_attempts(clock: Clock) -> None:
    g = group("g", [A, B], num_retries=3)
    failing = [Outcome(error=UpstreamBadGateway("boom")) for _ in range(3)]
    script = Script(clock, {"a": list(failing), "b": list(failing)})
    ctx = new_context(group=g, candidates=[A, B])
    with pytest.raises(UpstreamBadGateway):
        await stage(FakeRouter({"g": g}), clock)(ctx, script)
    assert script.calls == ["a", "b", "a", "b"]  # num_retries + 1
    assert ctx.response_headers["x-switchboard-attempts"] == "4"
    assert ctx.response_headers["x-switchboard-deployment"] == "b"


async def test_a_retry_skips_a_deployment_health_keeps_out(clock: Clock) -> None:
    g = group("g", [A, B, C], num_retries=3)
    router = FakeRouter({"g": g})
    router.out = {"b"}  # cooling down, or half-open with its probe held by another request
    script = Script(clock, {"a": [Outcome(error=UpstreamBadGateway("boom"))]})
    ctx = new_context(group=g, candidates=[A, B, C])
    result = await stage(router, clock)(ctx, script)
    assert isinstance(result, Reply) and script.calls == ["a", "c"]
    assert router.asked == ["a", "b", "c"]  # checked in the plan's order; the first let through is tried


async def test_a_first_candidate_health_keeps_out_since_the_plan_is_passed_over(clock: Clock) -> None:
    # Planned, then taken by another request (a half-open deployment's probe) before this one's
    # first attempt: never sent without its probe, the next candidate is tried at once.
    g = group("g", [A, B])
    router = FakeRouter({"g": g})
    router.out = {"a"}
    script = Script(clock, {})
    ctx = new_context(group=g, candidates=[A, B])
    result = await stage(router, clock)(ctx, script)
    assert isinstance(result, Reply) and script.calls == ["b"]
    assert router.asked == ["a", "b"] and router.finishes == [("b", None)]


async def test_retries_stop_when_health_keeps_every_deployment_out(clock: Clock) -> None:
    # A's failure took it out (a cooldown of one failure); B is out too: no retry goes back to A,
    # the group's fallback is tried instead.
    g = group("g", [A, B], num_retries=3, fallbacks=("f",))
    router = FakeRouter({"g": g, "f": group("f", [FC])})
    script = Script(clock, {"a": [Outcome(error=UpstreamBadGateway("boom"))]})
    ctx = new_context(group=g, candidates=[A, B])
    router.out, router.cool_on_failure = {"b"}, True
    result = await stage(router, clock)(ctx, script)
    assert isinstance(result, Reply) and script.calls == ["a", "c"]
    assert ctx.response_headers["x-switchboard-model"] == "f"
    # With no fallback, the last error is the answer.
    alone = group("alone", [A, B], num_retries=3)
    router = FakeRouter({"alone": alone})
    router.out, router.cool_on_failure = {"b"}, True
    script = Script(clock, {"a": [Outcome(error=UpstreamBadGateway("boom"))]})
    with pytest.raises(UpstreamBadGateway):
        await stage(router, clock)(new_context(group=alone, candidates=[A, B]), script)
    assert script.calls == ["a"]


@pytest.mark.parametrize("error", [
    InvalidRequest("bad"), UpstreamBadGateway("bad", status=400, code="invalid_value"),
    AuthenticationFailed("no"),
])
async def test_a_callers_error_is_neither_retried_nor_fallen_back(clock: Clock, error: GatewayError) -> None:
    g = group("g", [A, B], fallbacks=("f",))
    f = group("f", [FC])
    script = Script(clock, {"a": [Outcome(error=error)]})
    ctx = new_context(group=g, candidates=[A, B])
    with pytest.raises(GatewayError) as caught:
        await stage(FakeRouter({"g": g, "f": f}), clock)(ctx, script)
    assert caught.value is error and script.calls == ["a"]


async def test_a_deployment_refusing_a_parameter_passes_the_request_on(clock: Clock) -> None:
    # A group mixing providers: the gateway's own refusal (nothing was sent) is not the answer.
    g = group("g", [A, B, C], num_retries=0)
    refused = UnsupportedParameter("logprobs is not supported", param="logprobs")
    script = Script(clock, {"a": [Outcome(error=refused)]})
    ctx = new_context(group=g, candidates=[A, B, C])
    result = await stage(FakeRouter({"g": g}), clock)(ctx, script)
    assert isinstance(result, Reply) and result.body == {"deployment": "b"}
    assert script.calls == ["a", "b"] and clock.sleeps == []
    assert [(a.deployment, a.status) for a in ctx.attempts or ()] == [("a", 400), ("b", 200)]
    assert ctx.response_headers["x-switchboard-deployment"] == "b"


async def test_when_every_deployment_refuses_the_first_refusal_stands(clock: Clock) -> None:
    g = group("g", [A, B], fallbacks=("f",))
    f = group("f", [FC])
    first = UnsupportedParameter("a refuses", param="logprobs")
    script = Script(clock, {"a": [Outcome(error=first)],
                            "b": [Outcome(error=UnsupportedParameter("b refuses", param="logprobs"))]})
    ctx = new_context(group=g, candidates=[A, B])
    with pytest.raises(UnsupportedParameter) as caught:
        await stage(FakeRouter({"g": g, "f": f}), clock)(ctx, script)
    assert caught.value is first and script.calls == ["a", "b"]  # a caller's error: no fallback


async def test_a_server_error_after_a_refusal_goes_on_as_a_retry(clock: Clock) -> None:
    g = group("g", [A, B, C], num_retries=3)
    script = Script(clock, {"a": [Outcome(error=UnsupportedParameter("no", param="logprobs"))],
                            "b": [Outcome(error=UpstreamBadGateway("down"))]})
    ctx = new_context(group=g, candidates=[A, B, C])
    result = await stage(FakeRouter({"g": g}), clock)(ctx, script)
    assert isinstance(result, Reply) and script.calls == ["a", "b", "c"]

async def test_retry_after_is_waited_for_on_the_same_deployment(clock: Clock) -> None:
    g = group("g", [A])
    script = Script(clock, {"a": [Outcome(error=limited("1.5"))]})
    ctx = new_context(group=g, candidates=[A])
    await stage(FakeRouter({"g": g}), clock)(ctx, script)
    assert script.calls == ["a", "a"] and [s for _, s in clock.sleeps] == [1.5]


async def test_retry_after_does_not_hold_back_another_deployment(clock: Clock) -> None:
    g = group("g", [A, B])
    script = Script(clock, {"a": [Outcome(error=limited("4"))]})
    ctx = new_context(group=g, candidates=[A, B])
    await stage(FakeRouter({"g": g}), clock)(ctx, script)
    assert script.calls == ["a", "b"] and all(s < 0.05 for _, s in clock.sleeps)


async def test_a_retry_after_beyond_the_bound_moves_on_or_fails_at_once(clock: Clock) -> None:
    g = group("g", [A, B], num_retries=3)
    script = Script(clock, {"a": [Outcome(error=limited("60"))],
                            "b": [Outcome(error=UpstreamBadGateway("x"))]})
    ctx = new_context(group=g, candidates=[A, B])
    await stage(FakeRouter({"g": g}), clock)(ctx, script)
    # b failed, then a would be next, but a asked for 60 s: b again, without waiting 60 s.
    assert script.calls == ["a", "b", "b"]
    assert all(s < 1 for _, s in clock.sleeps)
    alone = group("alone", [A])
    script = Script(clock, {"a": [Outcome(error=limited("60"))]})
    ctx = new_context(group=alone, candidates=[A])
    with pytest.raises(UpstreamRateLimited):
        await stage(FakeRouter({"alone": alone}), clock)(ctx, script)
    assert script.calls == ["a"] and ctx.response_headers["x-switchboard-attempts"] == "1"


async def test_a_wait_that_would_cross_the_deadline_is_not_taken(clock: Clock) -> None:
    g = group("g", [A])
    script = Script(clock, {"a": [Outcome(error=limited("2"))]})
    ctx = new_context(deadline=clock.now + 1.0, group=g, candidates=[A])
    with pytest.raises(UpstreamRateLimited):
        await stage(FakeRouter({"g": g}), clock)(ctx, script)
    assert script.calls == ["a"] and clock.sleeps == []


async def test_fallbacks_are_tried_in_order_and_empty_plans_skipped(clock: Clock) -> None:
    g = group("g", [A], num_retries=0, fallbacks=("empty", "f1", "f2"))
    groups = {"g": g, "empty": group("empty", [route("e", "empty")]),
              "f1": group("f1", [route("b", "f1")], num_retries=1), "f2": group("f2", [route("c", "f2")])}
    router = FakeRouter(groups, plans={"empty": []})
    down = [Outcome(error=UpstreamTimeout("slow")) for _ in range(2)]
    script = Script(clock, {"a": [Outcome(error=UpstreamBadGateway("x"))], "b": down})
    ctx = new_context(group=g, candidates=[A])
    result = await stage(router, clock)(ctx, script)
    assert isinstance(result, Reply) and script.calls == ["a", "b", "b", "c"]
    assert ctx.response_headers["x-switchboard-model"] == "f2"
    assert [a.group for a in ctx.attempts or ()] == ["g", "f1", "f1", "f2"]


async def test_fallbacks_only_on_their_classes(clock: Clock) -> None:
    g = group("g", [A], num_retries=0, fallbacks=("f",))
    router = FakeRouter({"g": g, "f": group("f", [FB])})
    script = Script(clock, {"a": [Outcome(error=UpstreamTimeout("slow"))]})
    ctx = new_context(group=g, candidates=[A])
    with pytest.raises(UpstreamTimeout):
        await stage(router, clock, fallback_on=["server_error"])(ctx, script)
    assert script.calls == ["a"]
    refusal = UpstreamBadGateway("no", status=400, code="content_policy_violation")
    script = Script(clock, {"a": [Outcome(error=refusal)]})
    ctx = new_context(group=g, candidates=[A])
    await stage(router, clock)(ctx, script)  # content_policy is in the default fallback_on
    assert script.calls == ["a", "b"]


def too_long() -> UpstreamBadGateway:
    """An upstream's 400 saying the request exceeds the model's context window."""
    return UpstreamBadGateway("too long", status=400, code="context_length_exceeded")


async def test_an_upstream_context_window_error_goes_to_the_context_window_fallbacks(clock: Clock) -> None:
    # The catalog's window was wrong (or unknown): the upstream said the request is too long.
    # Not retried in the group; the larger groups are tried in order, not the ordinary chain.
    g = group("g", [A, B], fallbacks=("f",), larger=("big", "bigger"))
    big, bigger = route("b", "big"), route("c", "bigger")
    groups = {"g": g, "f": group("f", [FC]), "big": group("big", [big]), "bigger": group("bigger", [bigger])}
    script = Script(clock, {"a": [Outcome(error=too_long())], "b": [Outcome(error=too_long())]})
    ctx = new_context(group=g, candidates=[A, B])
    result = await stage(FakeRouter(groups), clock)(ctx, script)
    assert isinstance(result, Reply) and script.calls == ["a", "b", "c"]
    assert ctx.response_headers["x-switchboard-model"] == "bigger"
    assert [(a.group, a.deployment, a.status) for a in ctx.attempts or ()] == [
        ("g", "a", 400), ("big", "b", 400), ("bigger", "c", 200)]
    # Without context_window_fallbacks the caller gets the upstream's error, after one attempt.
    plain = group("plain", [A, B], fallbacks=("f",))
    script = Script(clock, {"a": [Outcome(error=too_long())]})
    ctx = new_context(group=plain, candidates=[A, B])
    with pytest.raises(UpstreamBadGateway) as caught:
        await stage(FakeRouter({"plain": plain, "f": group("f", [FC])}), clock)(ctx, script)
    assert caught.value.code == "context_length_exceeded" and script.calls == ["a"]


async def test_a_context_window_fallback_failing_otherwise_ends_the_chain(clock: Clock) -> None:
    g = group("g", [A], larger=("big", "bigger"))
    groups = {"g": g, "big": group("big", [route("b", "big")], num_retries=0),
              "bigger": group("bigger", [route("c", "bigger")])}
    refused = InvalidRequest("bad")
    refused.from_upstream = True  # an upstream 400 of another kind: the caller's, not the size
    script = Script(clock, {"a": [Outcome(error=too_long())], "b": [Outcome(error=refused)]})
    with pytest.raises(InvalidRequest):
        await stage(FakeRouter(groups), clock)(new_context(group=g, candidates=[A]), script)
    assert script.calls == ["a", "b"]


async def test_each_attempt_and_the_answer_name_the_group_of_their_deployment(clock: Clock) -> None:
    # A request too long for every deployment of ``g`` is planned with its context-window
    # fallback's deployments: the answer is that group's, and so are its attempts.
    g = group("g", [A], num_retries=1, larger=("big",))
    big, big2 = route("b", "big"), route("c", "big")
    groups = {"g": g, "big": group("big", [big, big2])}
    ctx = new_context(group=g, candidates=[big])
    await stage(FakeRouter(groups), clock)(ctx, Script(clock, {}))
    assert ctx.response_headers["x-switchboard-model"] == "big"
    assert [(a.group, a.deployment) for a in ctx.attempts or ()] == [("big", "b")]
    # The same on a retry, and for a stream.
    script = Script(clock, {"b": [Outcome(stream=True, fail_before_first=True)], "c": [Outcome(stream=True)]})
    ctx = new_context(group=g, candidates=[big, big2], stream=True)
    result = await stage(FakeRouter(groups), clock)(ctx, script)
    assert isinstance(result, StreamReply)
    await result.aclose()
    assert ctx.response_headers["x-switchboard-model"] == "big"
    assert [(a.group, a.deployment) for a in ctx.attempts or ()] == [("big", "b"), ("big", "c")]


async def test_no_candidate_and_no_fallback_is_the_groups_refusal(clock: Clock) -> None:
    g = group("g", [A], fallbacks=("f",))
    router = FakeRouter({"g": g, "f": group("f", [FB])}, plans={"f": []})
    script = Script(clock, {})
    with pytest.raises(GatewayError) as caught:
        await stage(router, clock)(new_context(group=g, candidates=[]), script)
    assert caught.value.code == "no_deployment_available" and "for g" in caught.value.message
    assert script.calls == []
    # No candidate in the group itself, but a fallback that can serve.
    router.plans = {}
    ctx = new_context(group=g, candidates=[])
    await stage(router, clock)(ctx, script)
    assert script.calls == ["b"] and ctx.response_headers["x-switchboard-model"] == "f"


async def test_a_stream_failing_before_its_first_batch_is_retried(clock: Clock) -> None:
    g = group("g", [A, B])
    script = Script(clock, {"a": [Outcome(stream=True, fail_before_first=True)], "b": [Outcome(stream=True)]})
    ctx = new_context(group=g, candidates=[A, B], stream=True)
    result = await stage(FakeRouter({"g": g}), clock)(ctx, script)
    assert isinstance(result, StreamReply)
    assert script.closed == ["a"]  # the failed stream was closed
    batches = [batch async for batch in result.chunks]
    await result.aclose()
    assert [c["deployment"] for batch in batches for c in batch] == ["b", "b"]
    assert ctx.response_headers["x-switchboard-attempts"] == "2"


async def test_a_stream_failing_after_its_first_batch_is_not_retried(clock: Clock) -> None:
    g = group("g", [A, B])
    router = FakeRouter({"g": g})
    script = Script(clock, {"a": [Outcome(stream=True, fail_after_first=True)]})
    ctx = new_context(group=g, candidates=[A, B], stream=True)
    result = await stage(router, clock)(ctx, script)
    assert isinstance(result, StreamReply)
    received = []
    with pytest.raises(GatewayError):
        async for batch in result.chunks:
            received.append(batch)
    await result.aclose()
    assert len(received) == 1 and script.calls == ["a"]
    assert router.in_flight == 0 and router.finishes[-1][0] == "a" and router.finishes[-1][1] is not None


async def test_an_abandoned_attempt_is_reported_finished(clock: Clock) -> None:
    g = group("g", [A])
    router = FakeRouter({"g": g})

    async def cancelled(ctx: object) -> Reply:
        raise KeyboardInterrupt  # anything not a gateway error: passed on, the attempt closed

    with pytest.raises(KeyboardInterrupt):
        await stage(router, clock)(new_context(group=g, candidates=[A]), cancelled)
    assert router.in_flight == 0 and router.finishes[0][1] is not None


def test_retry_after_forms() -> None:
    assert retry_after_seconds(GatewayError("x", headers={"retry-after-ms": "250"})) == 0.25
    assert retry_after_seconds(GatewayError("x", headers={"retry-after": "3"})) == 3.0
    assert retry_after_seconds(GatewayError("x", headers={"retry-after": "soon"})) is None
    assert retry_after_seconds(GatewayError("x", headers={"retry-after": "-1"})) is None
    both = {"retry-after-ms": "nan", "retry-after": "2"}
    assert retry_after_seconds(GatewayError("x", headers=both)) == 2.0
    assert retry_after_seconds(GatewayError("x")) is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    seconds = retry_after_seconds(GatewayError("x", headers={"retry-after": later}))
    assert seconds is not None and 25 < seconds <= 30


BASE = {
    "providers": [{"name": "p", "type": "openai", "api_base": "http://127.0.0.1:9/v1"}],
    "models": [{"name": "m", "provider": "p", "model": "x"}, {"name": "n", "provider": "p", "model": "y"}],
    "auth": {"master_key": "12345678"},
}


@pytest.mark.parametrize(("router", "where"), [
    ({"retry": {"tries": 3}}, "router.retry.tries"),
    ({"retry": {"backoff_seconds": "soon"}}, "router.retry.backoff_seconds"),
    ({"retry": {"max_retry_after_seconds": -1}}, "router.retry.max_retry_after_seconds"),
    ({"retry": {"on": ["sometimes"]}}, "router.retry.on"),
    ({"fallback_on": "server_error"}, "router.fallback_on"),
    ({"num_retries": 11}, "router.num_retries"),
    ({"num_retries": "two"}, "router.num_retries"),
    ({"fallbacks": {"m": ["nowhere"]}}, "router.fallbacks.m"),
    ({"fallbacks": {"m": ["n"] * 11}}, "router.fallbacks.m"),
    ({"fallbacks": {"m": ["x" * 300]}}, "router.fallbacks"),
    # A chain is the group's: one keyed by an alias would never be followed.
    ({"aliases": {"smart": "m"}, "fallbacks": {"smart": ["n"]}},
     "router.fallbacks.smart: 'smart' is an alias of the model group 'm'"),
    ({"aliases": {"smart": "m"}, "context_window_fallbacks": {"smart": ["n"]}},
     "router.context_window_fallbacks.smart: 'smart' is an alias of the model group 'm'"),
])
def test_bad_retry_and_fallback_settings_are_refused(router: dict[str, object], where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate({**BASE, "router": router}, "test.yaml")
    assert where in str(caught.value)


def test_good_retry_and_fallback_settings_reach_the_stage() -> None:
    settings = validate({**BASE, "router": {"fallbacks": {"m": ["n"]}, "fallback_on": ["timeout"],
                                            "retry": {"on": ["rate_limit"], "max_retry_after_seconds": 1}}},
                        "test.yaml")
    assert settings.router.fallbacks == {"m": ["n"]}
    assert settings.router.retry.on == ("rate_limit",) and settings.router.fallback_on == ("timeout",)
    # An alias may be a fallback: it answers as its group.
    settings = validate({**BASE, "router": {"aliases": {"smart": "n"}, "fallbacks": {"m": ["smart"]}}},
                        "test.yaml")
    assert settings.router.fallbacks == {"m": ["smart"]}


async def test_a_stream_closed_unread_is_reported_finished(clock: Clock) -> None:
    g = group("g", [A])
    router = FakeRouter({"g": g})
    script = Script(clock, {"a": [Outcome(stream=True)]})
    result = await stage(router, clock)(new_context(group=g, candidates=[A], stream=True), script)
    assert isinstance(result, StreamReply) and router.in_flight == 1
    await result.aclose()  # the client left before the stream was written
    assert router.in_flight == 0 and script.closed == ["a"]
    assert router.finishes[0][1] is not None and router.finishes[0][1].code == "client_closed"


async def test_a_retry_is_cut_at_the_deadline_and_nothing_more_is_tried() -> None:
    g = group("g", [A, B], num_retries=2, fallbacks=("f",))
    router = FakeRouter({"g": g, "f": group("f", [FC])})
    calls: list[str] = []

    async def chain(ctx: object) -> Reply:
        calls.append(ctx.route.deployment)  # type: ignore[attr-defined]
        if len(calls) == 1:
            raise UpstreamBadGateway("boom")
        await asyncio.sleep(60)  # the retry hangs: far longer than the bound below
        return Reply({})

    ctx = new_context(deadline=time.perf_counter() + 0.3, group=g, candidates=[A, B])
    began = time.perf_counter()
    with pytest.raises(UpstreamTimeout) as caught:
        await AttemptStage(router, RouterConfig())(ctx, chain)
    assert time.perf_counter() - began < 10  # cut at the 0.3 s deadline, not after the 60 s hang
    assert caught.value.code == "deadline_exceeded" and caught.value.status == 504
    assert calls == ["a", "b"] and router.in_flight == 0
    assert ctx.response_headers["x-switchboard-attempts"] == "2"
