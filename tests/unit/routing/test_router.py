"""The router's plan around the strategies: a group of one without a strategy, aliases, the
caller's pins (only where allowed), and the statistics' bounds."""

from __future__ import annotations

import pytest

from switchboard.errors import InvalidRequest, PermissionDenied, UpstreamUnavailable
from switchboard.routing import strategies
from switchboard.routing.pinning import PIN_DEPLOYMENT, PIN_STRATEGY, pinned
from switchboard.routing.router import ANYWHERE, Needs
from switchboard.routing.stats import RECENT_ERRORS
from tests.unit.routing.world import names, router_of, table

TWO = [{"name": "g", "deployment": "a"}, {"name": "g", "deployment": "b"}]


def test_a_group_of_one_is_planned_without_a_strategy(monkeypatch: pytest.MonkeyPatch) -> None:
    r = router_of([{"name": "solo"}, *TWO])
    solo = r.group("solo")
    assert solo is not None and solo.single is not None

    def refuse(*args: object) -> None:
        raise AssertionError("a strategy was called for a group of one")

    monkeypatch.setattr(strategies, "order", refuse)
    assert r.plan(solo, ANYWHERE) == [solo.single]
    assert solo.single.deployment == "p/gpt-4o-mini"  # the default deployment name


def test_an_alias_answers_with_its_groups_deployments() -> None:
    live = table(TWO, {"aliases": {"smart": "g"}})
    assert live.current.groups["smart"] is live.current.groups["g"]
    assert [e["id"] for e in live.current.directory] == ["g", "smart"]


def test_weights_set_at_run_time_replace_the_configured_ones() -> None:
    live = table([{"name": "g", "deployment": "a", "weight": 5}, {"name": "g", "deployment": "b"}])
    live.weights = {("g", "b"): 7}
    live.current = live._build_snapshot([], "")
    g = live.current.groups["g"]
    assert g.weights == (5, 7) and dict(g.weight_of) == {"a": 5, "b": 7}


def test_pins_are_refused_403_where_the_policy_does_not_allow_them() -> None:
    r = router_of(TWO)
    g = r.group("g")
    assert g is not None and not g.allow_pinning
    for headers in ({PIN_DEPLOYMENT: "a"}, {PIN_STRATEGY: "cost"}, {PIN_DEPLOYMENT: "nonexistent"}):
        with pytest.raises(PermissionDenied) as denied:
            pinned(r, g, ANYWHERE, headers)
        assert denied.value.code == "pinning_not_allowed"


def test_pins_where_allowed_and_bad_values_400() -> None:
    r = router_of([*TWO, {"name": "h", "deployment": "x"}, {"name": "h", "deployment": "y"}],
                  {"groups": {"g": {"allow_pinning": True}}})
    g, h = r.group("g"), r.group("h")
    assert g is not None and h is not None and g.allow_pinning and not h.allow_pinning
    assert {names(pinned(r, g, ANYWHERE, {PIN_DEPLOYMENT: "b"}))[0] for _ in range(100)} == {"b"}
    assert names(pinned(r, g, ANYWHERE, {PIN_DEPLOYMENT: "b"})) == ["b"]  # the only candidate
    assert [names(pinned(r, g, ANYWHERE, {PIN_STRATEGY: "round-robin"}))[0] for _ in range(4)] == list("abab")
    for headers, code in (({PIN_DEPLOYMENT: "c"}, "deployment_not_found"),
                          ({PIN_DEPLOYMENT: "a" * 5000}, "deployment_not_found"),
                          ({PIN_STRATEGY: "fastest"}, "invalid_strategy"),
                          ({PIN_STRATEGY: "x" * 5000}, "invalid_strategy"),
                          ({PIN_DEPLOYMENT: "a", PIN_STRATEGY: ""}, "invalid_strategy")):
        with pytest.raises(InvalidRequest) as bad:
            pinned(r, g, ANYWHERE, headers)
        assert bad.value.code == code and bad.value.status == 400
        assert "x" * 100 not in str(bad.value)  # an oversized value is not echoed


def test_statistics_keep_bounded_recent_errors_and_never_go_below_zero_in_flight() -> None:
    r = router_of(TWO)
    g = r.group("g")
    assert g is not None
    a = g.deployments[0]
    for _ in range(500):
        r.started(a)
        r.finished(a, UpstreamUnavailable("down"), 0.01)
    r.finished(a, None, 0.2)  # a finish without a start
    state = r.stats.state(a)
    assert state["in_flight"] == 0
    assert len(state["recent_errors"]) == RECENT_ERRORS
    assert state["recent_errors"][-1]["code"] == "upstream_overloaded"
    assert state["latency_ms"] == 200.0  # failures do not count as latency samples
    assert r.stats.state(g.deployments[1])["latency_ms"] is None


def test_recent_errors_name_an_error_without_a_code_by_its_type() -> None:
    r = router_of(TWO)
    g = r.group("g")
    assert g is not None
    a = g.deployments[0]
    adapter, target = a.adapter, a.target
    for status, body in ((404, b'{"error": {"message": "no such thing"}}'),  # type by status
                         (400, b'{"error": {"message": "bad", "type": "invalid_request_error"}}'),
                         (422, b"not json")):
        r.started(a)
        r.finished(a, adapter.error(status, {}, body, target), 0.01)
    codes = [e["code"] for e in r.stats.state(a)["recent_errors"]]
    assert codes == ["not_found_error", "invalid_request_error", "invalid_request_error"]


def test_the_strategy_pinned_in_a_plan_replaces_the_groups() -> None:
    r = router_of([{"name": "g", "deployment": d, "weight": w} for d, w in (("a", 0), ("b", 1))])
    g = r.group("g")
    assert g is not None
    assert {r.plan(g, Needs())[0].deployment for _ in range(50)} == {"b"}
    assert [r.plan(g, Needs(), "round-robin")[0].deployment for _ in range(2)] == ["a", "b"]
