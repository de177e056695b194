"""Pre-routing: data residency and context windows decide which deployments may serve a request
before any strategy; the refusal says why none may (403 region, 400 context, 503 cooling)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard.context import Principal, Reply, RequestContext, Result
from switchboard.errors import GatewayError, UpstreamUnavailable
from switchboard.pipeline.attempts import AttemptStage
from switchboard.pipeline.chain import build_chain
from switchboard.pipeline.route import RouteStage
from switchboard.routing.prerouting import Windows, in_regions
from switchboard.routing.router import Needs, Router
from switchboard.routing.table import Route
from switchboard.stores.sql.keys import intersect
from tests.unit.pipeline.fakes import context
from tests.unit.routing.health_world import route, router
from tests.unit.routing.world import table

FAIL = UpstreamUnavailable("down")


def _residency() -> Router:
    return router([
        {"name": "chat", "deployment": "eu", "region": "eu-west"},
        {"name": "chat", "deployment": "us", "region": "us-east"},
        {"name": "chat", "deployment": "nowhere"},
    ], {"cooldown": {"failures": 1, "seconds": 60}})


def test_only_deployments_inside_the_allowed_regions_are_planned() -> None:
    r = _residency()
    g = r.group("chat")
    assert g is not None
    assert [d.deployment for d in r.plan(g, Needs(frozenset({"eu-west"})))] == ["eu"]
    assert {d.deployment for d in r.plan(g, Needs(frozenset({"eu-west", "us-east"})))} == {"eu", "us"}
    # No policy: anywhere, the deployment without a region included.
    assert {d.deployment for d in r.plan(g, Needs())} == {"eu", "us", "nowhere"}
    refusal = r.refusal(g, Needs(frozenset({"ap-south"})))
    assert (refusal.status, refusal.code) == (403, "region_not_allowed")
    assert "ap-south" in refusal.message


def test_a_cooling_deployment_in_region_is_never_replaced_by_one_outside() -> None:
    r = _residency()
    g = r.group("chat")
    assert g is not None
    r.finished(route(r, "chat", "eu"), FAIL, 0.1)
    eu_only = Needs(frozenset({"eu-west"}))
    assert r.plan(g, eu_only) == []
    refusal = r.refusal(g, eu_only)
    assert (refusal.status, refusal.code) == (503, "no_healthy_deployment")


def _sized() -> Router:
    return router([
        {"name": "small", "deployment": "s", "info": {"context_window": 100}},
        {"name": "mixed", "deployment": "tiny", "info": {"context_window": 50}},
        {"name": "mixed", "deployment": "big", "info": {"context_window": 1000}},
        {"name": "large", "deployment": "l", "info": {"context_window": 5000}, "region": "eu"},
        {"name": "unknown", "model": "no-such-model-in-any-catalog"},
    ], {"context_window_fallbacks": {"small": ["large"]}})


def test_deployments_too_small_are_dropped_and_larger_groups_planned() -> None:
    r = _sized()
    mixed, small, unknown = r.group("mixed"), r.group("small"), r.group("unknown")
    assert mixed is not None and small is not None and unknown is not None
    assert {d.deployment for d in r.plan(mixed, Needs(None, 40, 30))} == {"tiny", "big"}
    assert [d.deployment for d in r.plan(mixed, Needs(None, 400, 300))] == ["big"]
    # Fits none of its own: its context_window_fallbacks, in order.
    assert [(d.target.name, d.deployment) for d in r.plan(small, Needs(None, 400, 300))] == [("large", "l")]
    assert [d.deployment for d in r.plan(small, Needs(None, 90, 80))] == ["s"]
    # A window nobody knows is assumed large enough.
    assert r.windows is not None and r.windows.smallest(unknown) is None
    assert r.windows.smallest(mixed) == 50
    assert len(r.plan(unknown, Needs(None, 10**9, 10**9))) == 1
    too_big = r.refusal(mixed, Needs(None, 2000, 1900))
    assert (too_big.status, too_big.code) == (400, "context_length_exceeded")
    assert "1000" in too_big.message and "2000" in too_big.message
    assert r.plan(small, Needs(None, 9000, 8000)) == []
    assert "5000" in r.refusal(small, Needs(None, 9000, 8000)).message
    # Residency first: the larger group is in eu only.
    assert r.plan(small, Needs(frozenset({"us"}), 400, 300)) == []


async def _served(r: Router, model: str, principal: Principal, content: str = "hi",
                  headers: dict[str, str] | None = None, **extra: Any) -> tuple[RequestContext, list[Route]]:
    reached: list[Route] = []

    async def terminal(ctx: RequestContext) -> Result:
        assert ctx.route is not None
        reached.append(ctx.route)
        return Reply({"ok": True})

    chain = build_chain([RouteStage(r), AttemptStage(r)], terminal)
    messages = [{"role": "user", "content": content}]
    ctx = context(headers=headers, request={"model": model, "messages": messages, **extra})
    ctx.body = json.dumps(ctx.request).encode()  # as received: its size bounds the prompt
    ctx.principal = principal
    await chain(ctx)
    return ctx, reached


async def test_the_route_stage_computes_needs_only_where_they_matter() -> None:
    r = _sized()
    ctx, reached = await _served(r, "mixed", Principal(id="k"), "word " * 200, max_tokens=50)
    assert ctx.needs is not None and ctx.needs.tokens is not None and ctx.needs.tokens > 200
    assert [d.deployment for d in reached] == ["big"]
    ctx, _ = await _served(r, "unknown", Principal(id="k"), "word " * 200)
    assert ctx.needs is not None and ctx.needs.tokens is None  # no window known: nothing counted
    with pytest.raises(GatewayError) as refused:
        await _served(r, "mixed", Principal(id="k"), "word " * 2000)
    assert refused.value.code == "context_length_exceeded"


async def test_a_context_window_fallback_answers_under_its_own_group_name() -> None:
    r = _sized()
    ctx, reached = await _served(r, "small", Principal(id="k"), "word " * 200)
    assert [(d.target.name, d.deployment) for d in reached] == [("large", "l")]
    assert ctx.response_headers["x-switchboard-model"] == "large"  # was "small"
    assert [(a.group, a.deployment) for a in ctx.attempts or ()] == [("large", "l")]


def _unsized(strategy: str, **policy: Any) -> Router:
    """Two priced deployments whose context windows nobody knows (not in the catalog), routed
    as the gateway routes them (the live table, the catalog's windows)."""
    live = table([
        {"name": "g", "deployment": "in-cheap", "model": "house-model-a", "tpm": 50,
         "info": {"input_cost_per_mtok": 1, "output_cost_per_mtok": 100}},
        {"name": "g", "deployment": "out-cheap", "model": "house-model-b", "tpm": 40,
         "info": {"input_cost_per_mtok": 50, "output_cost_per_mtok": 1}},
    ], {"groups": {"g": {"strategy": strategy, **policy}}})
    return Router(live, windows=Windows(live.catalog))


async def test_cost_and_headroom_count_the_tokens_even_where_no_window_is_known() -> None:
    # Without a known window the route stage used to count nothing: cost priced every request
    # as an empty prompt with 256 tokens out, headroom never saw a token sent.
    r = _unsized("cost")
    assert r.windows is not None and r.windows.smallest(r.group("g")) is None  # type: ignore[arg-type]
    ctx, reached = await _served(r, "g", Principal(id="k"), "word " * 80, max_tokens=1)
    assert ctx.needs is not None and ctx.needs.prompt_tokens > 80 and ctx.needs.output_tokens == 1
    assert ctx.needs.tokens is None  # no window to check
    assert [d.deployment for d in reached] == ["in-cheap"]
    _, reached = await _served(r, "g", Principal(id="k"), "hi", max_tokens=1000)
    assert [d.deployment for d in reached] == ["out-cheap"]
    r = _unsized("headroom")
    served = [(await _served(r, "g", Principal(id="k"), "word " * 30))[1][0].deployment for _ in range(4)]
    assert set(served) == {"in-cheap", "out-cheap"}, served  # 50 and 40 tpm: ~35 tokens each
    # A caller's pinned strategy needs the count as well (where the group allows pins).
    r = _unsized("weighted", allow_pinning=True)
    pin = {"x-switchboard-strategy": "cost"}
    ctx, _ = await _served(r, "g", Principal(id="k"), "word " * 80, headers=pin)
    assert ctx.needs is not None and ctx.needs.prompt_tokens > 80
    ctx, _ = await _served(r, "g", Principal(id="k"), "word " * 80)
    assert ctx.needs is not None and ctx.needs.prompt_tokens == 0  # weighted: nothing counted


# -- the property: no request ever reaches a deployment outside its allowed regions -----------

REGIONS = ["eu", "us", "ap"]
region = st.sampled_from([*REGIONS, None])
policy = st.none() | st.lists(st.sampled_from(REGIONS), max_size=3)


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, Any]:
    n_groups = draw(st.integers(1, 3))
    models: list[dict[str, Any]] = []
    for g in range(n_groups):
        for d in range(draw(st.integers(1, 3))):
            m: dict[str, Any] = {"name": f"g{g}", "deployment": f"d{d}"}
            if (where := draw(region)) is not None:
                m["region"] = where
            if draw(st.booleans()):
                m["info"] = {"context_window": draw(st.integers(10, 5000))}
            models.append(m)
    names = [f"g{g}" for g in range(n_groups)]
    chain = st.lists(st.sampled_from(names), max_size=3, unique=True)
    chains = st.dictionaries(st.sampled_from(names), chain)
    return {
        "models": models,
        "router": {"fallbacks": draw(chains), "context_window_fallbacks": draw(chains),
                   "cooldown": {"failures": 1, "seconds": 600}},
        "outages": draw(st.lists(st.integers(0, len(models) - 1), max_size=len(models))),
        "policies": (draw(policy), draw(policy), draw(policy)),  # tenant, team, key
        "tokens": draw(st.none() | st.integers(1, 6000)),
        "model": draw(st.sampled_from(names)),
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_no_plan_nor_fallback_ever_leaves_the_allowed_regions(world: dict[str, Any]) -> None:
    r = router(world["models"], world["router"])
    every = [d for name, g in r._table.current.groups.items() if g.name == name for d in g.deployments]
    for i in world["outages"]:
        r.finished(every[i], FAIL, 0.1)
    regions = intersect(*world["policies"])
    needs = Needs(regions, world["tokens"], world["tokens"] or 0)
    group = r.group(world["model"])
    assert group is not None
    planned = r.plan(group, needs)
    for name in group.fallbacks:  # as the attempts stage plans fallbacks: with the same needs
        other = r.group(name)
        assert other is not None
        planned += r.plan(other, needs)
    for d in planned:
        assert in_regions(d, regions), f"{d.deployment} of {d.target.name} is outside {regions}"
        assert r.health.state(d)["status"] != "cooling_down"
    if not planned:
        refusal = r.refusal(group, needs)
        chain = [group] + [g for n in (*group.fallbacks, *group.context_window_fallbacks)
                           if (g := r.group(n)) is not None]
        if not any(in_regions(d, regions) for g in chain for d in g.deployments):
            assert refusal.code == "region_not_allowed"
        assert refusal.status in (400, 403, 503)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.integers(1, 400))
async def test_no_request_through_the_stages_reaches_a_deployment_outside_its_regions(
    world: dict[str, Any], words: int
) -> None:
    r = router(world["models"], world["router"])
    every = [d for name, g in r._table.current.groups.items() if g.name == name for d in g.deployments]
    for i in world["outages"]:
        r.finished(every[i], FAIL, 0.1)
    regions = intersect(*world["policies"])
    try:
        caller = Principal(id="k", allowed_regions=regions)
        _, reached = await _served(r, world["model"], caller, "w " * words)
    except GatewayError as refused:
        assert refused.status in (400, 403, 503)
        return
    assert len(reached) == 1 and in_regions(reached[0], regions)


async def test_a_request_smaller_in_bytes_than_every_window_is_not_counted() -> None:
    r = _sized()
    # A 62-byte body cannot hold more than 62 tokens: fits the 100-token window uncounted.
    ctx, reached = await _served(r, "small", None, "hi")
    assert ctx.needs is not None and ctx.needs.tokens is None and ctx.prompt_tokens is None
    assert len(reached) == 1
    # An image stands for more tokens than its URL's bytes: counted.
    parts = [{"type": "image_url", "image_url": {"url": "https://example.test/a.png"}}]
    ctx, _ = await _served(r, "unknown", None, "x")  # no window known: never counted
    assert ctx.prompt_tokens is None
    with pytest.raises(GatewayError) as counted:  # a remote image of unknown size: its most
        await _served(r, "large", None, parts, max_tokens=1)  # type: ignore[arg-type]
    assert counted.value.code == "context_length_exceeded"
