"""Model groups through a real gateway, on the embedded default (SQLite) and on a cluster
(PostgreSQL and Redis): several deployments answer to one name, each group's strategy is
honoured, aliases answer, callers pin only where allowed, and run-time weights (admin API and
CLI) are served at once, by every instance.

Which deployment answered: ``x-switchboard-deployment`` when the gateway sends it, else the
reply's model, the deployment's upstream model id (each deployment here has its own)."""

from __future__ import annotations

import math
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.sdk import ask
from tests.servers import MASTER_KEY, Gateway, Mock, refused_port, spawn, start_gateway
from tests.services import Postgres, RedisServer

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
GROUPS = "/admin/v1/routing/groups"


MARKUP_NAME = "[/odd] [bold]x"


def routing_config(mock: Mock) -> dict[str, Any]:
    def provider(name: str, **headers: str) -> dict[str, Any]:
        return {"name": name, "type": "openai", "api_base": f"{mock.url}/v1", "api_key": "${UPSTREAM_KEY}",
                "headers": headers}

    def dep(group: str, name: str, provider: str = "mock", **extra: Any) -> dict[str, Any]:
        return {"name": group, "provider": provider, "model": name, "deployment": name, **extra}

    claude = {"name": "mock-claude", "type": "anthropic", "api_base": mock.url, "api_key": "${UPSTREAM_KEY}"}
    return {
        "providers": [provider("mock"), provider("mock-slow", **{"x-mock-latency-ms": "250"}),
                      provider("mock-slower", **{"x-mock-latency-ms": "600"}), claude,
                      {**provider("mock-gone"), "api_base": f"http://127.0.0.1:{refused_port()}/v1"}],
        "models": [
            dep("grp", "grp-a", weight=1), dep("grp", "grp-b", weight=3),
            dep("rr", "rr-a"), dep("rr", "rr-b"), dep("rr", "rr-c"),
            dep("busy", "busy-fast"), dep("busy", "busy-slow", "mock-slower"),
            dep("lat", "lat-fast"), dep("lat", "lat-slow", "mock-slow"),
            dep("cost", "cost-pricey", info={"input_cost_per_mtok": 5, "output_cost_per_mtok": 15}),
            dep("cost", "cost-cheap", info={"input_cost_per_mtok": 0.1, "output_cost_per_mtok": 0.4}),
            dep("cost", "cost-unpriced"),
            dep("room", "room-small", rpm=3), dep("room", "room-large", rpm=100_000),
            # Models no catalog knows (no context window): the strategies still count tokens.
            dep("tokens", "tok-in-cheap", info={"input_cost_per_mtok": 1, "output_cost_per_mtok": 100}),
            dep("tokens", "tok-out-cheap", info={"input_cost_per_mtok": 50, "output_cost_per_mtok": 1}),
            dep("tight", "tight-a", tpm=50), dep("tight", "tight-b", tpm=40),
            {"name": "single", "provider": "mock", "model": "gpt-4o-mini"},
            # An upstream model id that looks like Rich markup (a model name may not: the names'
            # rule refuses brackets): the CLI prints it as written.
            {"name": "odd", "provider": "mock", "model": MARKUP_NAME},
            dep("canary", "can-a"), dep("canary", "can-b"),
            # Unnamed twice: mock/gpt-4o-mini and mock/gpt-4o-mini#2, the names pins and splits use.
            {"name": "twin", "provider": "mock", "model": "gpt-4o-mini"},
            {"name": "twin", "provider": "mock", "model": "gpt-4o-mini"},
            # One name over two providers: Anthropic has no logprobs, OpenAI has.
            dep("mixed", "claude-haiku-4-5", "mock-claude"), dep("mixed", "gpt-4o-mini"),
            dep("mixed-down", "claude-haiku-4-5", "mock-claude"), dep("mixed-down", "gpt-4o-mini"),
            # Unreachable, falling back to a group mixing providers.
            dep("gone", "gpt-4o-mini", "mock-gone"),
            dep("mixed-fallback", "claude-haiku-4-5", "mock-claude"), dep("mixed-fallback", "gpt-4o-mini"),
            # Unreachable, then one without logprobs, then one that answers: a single retry.
            dep("retry-past", "gpt-4o-mini", "mock-gone", deployment="down"),
            dep("retry-past", "claude-haiku-4-5", "mock-claude"), dep("retry-past", "gpt-4o-mini"),
        ],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "router": {
            "strategy": "weighted",
            "aliases": {"grp-alias": "grp", "canary-alias": "canary"},
            "fallbacks": {"gone": ["mixed-fallback"]},
            "splits": [{"name": "can", "model": "canary", "sticky": "none",
                        "arms": [{"deployment": "can-a", "percent": 50},
                                 {"deployment": "can-b", "percent": 50}]},
                       {"name": "tw", "model": "twin", "sticky": "none",
                        "arms": [{"deployment": "mock/gpt-4o-mini", "percent": 50},
                                 {"deployment": "mock/gpt-4o-mini#2", "percent": 50}]}],
            "groups": {
                "grp": {"allow_pinning": True},
                "rr": {"strategy": "round-robin"},
                "busy": {"strategy": "least-busy"},
                "lat": {"strategy": "latency"},
                "cost": {"strategy": "cost"},
                "room": {"strategy": "headroom"},
                "tokens": {"strategy": "cost"},
                "tight": {"strategy": "headroom"},
                "mixed": {"strategy": "round-robin"},
                "mixed-down": {"strategy": "round-robin"},
                "mixed-fallback": {"strategy": "round-robin"},
                "retry-past": {"strategy": "round-robin", "num_retries": 1},
                "gone": {"num_retries": 0},
                "twin": {"allow_pinning": True},
            },
        },
    }


def _cluster(config: dict[str, Any], postgres: Postgres, redis: RedisServer) -> dict[str, Any]:
    return {**config, "database": {"url": postgres.create_database(f"groups_{uuid.uuid4().hex[:8]}")},
            "redis": {"url": redis.url}}


@dataclass
class Deployment:
    kind: str
    gateway: Gateway

    @property
    def sdk(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)

    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = kw.pop("headers", ADMIN)
        return httpx.request(method, f"{self.gateway.url}{path}", headers=headers, timeout=10, **kw)


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def deployment(request: pytest.FixtureRequest, mock_upstream: Mock,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    config = routing_config(mock_upstream)
    if request.param == "cluster":
        pg, redis = request.getfixturevalue("postgres"), request.getfixturevalue("redis_server")
        config = _cluster(config, pg, redis)
    gw = start_gateway(config, tmp_path_factory.mktemp(f"groups-{request.param}"))
    yield Deployment(request.param, gw)
    gw.process.stop()


def served_by(client: openai.OpenAI, model: str, text: str = "hello", stream: bool = False,
              headers: dict[str, str] | None = None) -> str:
    """The deployment that answered one request."""
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=ask(text), stream=stream, extra_headers=headers or {})
    named = raw.headers.get("x-switchboard-deployment")
    if stream:
        chunks = list(raw.parse())
        assert chunks and any(c.choices and c.choices[0].delta.content for c in chunks)
        return named or chunks[0].model
    reply = raw.parse()
    assert reply.choices[0].message.content
    return named or reply.model


def within(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


# -- groups, aliases, strategies -------------------------------------------------------------


def test_a_group_splits_by_weight_and_its_alias_answers_and_is_listed(deployment: Deployment) -> None:
    client = deployment.sdk
    got = Counter(served_by(client, "grp") for _ in range(300))
    assert set(got) == {"grp-a", "grp-b"}
    assert within(got["grp-b"], 300, 0.75), got
    assert {served_by(client, "grp-alias") for _ in range(30)} <= {"grp-a", "grp-b"}
    listed = [m.id for m in client.models.list().data]
    assert listed.count("grp") == 1 and "grp-alias" in listed  # a group is one model
    assert served_by(client, "single") == "mock/gpt-4o-mini"  # a group of one: <provider>/<model>


def test_round_robin_takes_the_deployments_in_turn(deployment: Deployment) -> None:
    seq = [served_by(deployment.sdk, "rr") for _ in range(9)]
    assert sorted(seq[:3]) == ["rr-a", "rr-b", "rr-c"]
    assert seq == seq[:3] * 3


def test_least_busy_sends_most_requests_to_the_deployment_that_answers_sooner(deployment: Deployment) -> None:
    client = deployment.sdk
    with ThreadPoolExecutor(8) as pool:
        got = Counter(pool.map(lambda _: served_by(client, "busy"), range(120)))
    # In flight balanced, the one that answers sooner serves more: (600 + o) / (600 + 2o) of the
    # requests for a gateway overhead o, over 0.65 while o is under 0.7 s.
    assert got["busy-fast"] > 0.65 * 120, got


def test_latency_prefers_the_faster_deployment_after_warm_up(deployment: Deployment) -> None:
    client = deployment.sdk
    warm = [served_by(client, "lat", stream=i % 2 == 1) for i in range(4)]
    assert "lat-slow" in warm  # every deployment is measured first
    n = 60
    got = Counter(served_by(client, "lat", stream=i % 2 == 1) for i in range(n))
    # Only exploration (5 %) goes to the slow one now.
    assert got["lat-slow"] <= n * 0.05 + 5 * math.sqrt(n * 0.05 * 0.95), got
    state = deployment.admin("GET", f"{GROUPS}/lat").json()
    by = {d["name"]: d["state"] for d in state["deployments"]}
    for average in ("latency_ms", "first_byte_ms"):
        assert by["lat-slow"][average] > 200 and by["lat-slow"][average] > by["lat-fast"][average] + 100


def test_cost_sends_every_request_to_the_cheapest_priced_deployment(deployment: Deployment) -> None:
    assert {served_by(deployment.sdk, "cost") for _ in range(20)} == {"cost-cheap"}


def test_headroom_stops_choosing_a_deployment_whose_rpm_is_used_up(deployment: Deployment) -> None:
    began = time.monotonic()
    got = Counter(served_by(deployment.sdk, "room") for _ in range(40))
    # room-small takes at most its 3 requests per minute of the gateway's clock. The requests span
    # at most elapsed // 60 + 2 of those minutes: 6 when they took under a minute (one minute
    # ending during the test), more only on a machine so loaded that they took longer.
    minutes = int((time.monotonic() - began) // 60) + 2
    assert got["room-small"] <= 3 * minutes and got["room-large"] >= 40 - 3 * minutes, (got, minutes)
    # And in the gateway's current minute, never more than its rpm.
    state = deployment.admin("GET", f"{GROUPS}/room").json()
    by = {d["name"]: d["state"] for d in state["deployments"]}
    assert by["room-small"]["requests_this_minute"] <= 3, by


def test_cost_prices_the_requests_own_tokens_where_no_context_window_is_known(deployment: Deployment) -> None:
    # Neither model has a known window: the tokens were not counted and every request was
    # priced as an empty prompt with 256 tokens out (tok-out-cheap, always).
    create = deployment.sdk.chat.completions.with_raw_response.create
    for _ in range(3):
        raw = create(model="tokens", messages=ask("word " * 80), max_tokens=1)
        assert raw.headers["x-switchboard-deployment"] == "tok-in-cheap"
        raw = create(model="tokens", messages=ask("hi"), max_tokens=1000)
        assert raw.headers["x-switchboard-deployment"] == "tok-out-cheap"


def test_headroom_counts_what_it_sent_where_no_context_window_is_known(deployment: Deployment) -> None:
    # tpm 50 and 40, about 35 tokens a request: the first goes to tight-a, which then has less
    # room left than tight-b. Uncounted, tight-a took every request.
    # The counts are per clock minute: a run that crossed into the next one is made again.
    for _ in range(2):
        minute = int(time.time() // 60)
        served = [served_by(deployment.sdk, "tight", "word " * 30) for _ in range(4)]
        state = deployment.admin("GET", f"{GROUPS}/tight").json()
        if int(time.time() // 60) == minute:
            break
    assert set(served) == {"tight-a", "tight-b"}, served
    assert sum(d["state"]["tokens_this_minute"] for d in state["deployments"]) > 0


# -- pinning ---------------------------------------------------------------------------------


def test_a_caller_pins_a_deployment_or_a_strategy_where_the_group_allows_it(deployment: Deployment) -> None:
    client = deployment.sdk
    pin = {"x-switchboard-deployment": "grp-a"}
    assert {served_by(client, "grp", headers=pin) for _ in range(15)} == {"grp-a"}
    assert {served_by(client, "grp-alias", headers=pin) for _ in range(5)} == {"grp-a"}
    seq = [served_by(client, "grp", headers={"x-switchboard-strategy": "round-robin"}) for _ in range(6)]
    assert sorted(seq[:2]) == ["grp-a", "grp-b"] and seq == seq[:2] * 3


def _error(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.response.json()["error"]
    return dict(body)


def test_pins_are_refused_where_not_allowed_and_bad_pins_are_400(deployment: Deployment) -> None:
    client = deployment.sdk
    for headers in ({"x-switchboard-deployment": "rr-a"}, {"x-switchboard-strategy": "cost"}):
        with pytest.raises(openai.PermissionDeniedError) as denied:
            served_by(client, "rr", headers=headers)
        assert _error(denied.value)["code"] == "pinning_not_allowed"
    for headers, code in (({"x-switchboard-deployment": "rr-a"}, "deployment_not_found"),
                          ({"x-switchboard-deployment": "x" * 4000}, "deployment_not_found"),
                          ({"x-switchboard-strategy": "fastest"}, "invalid_strategy"),
                          ({"x-switchboard-strategy": "y" * 4000}, "invalid_strategy")):
        with pytest.raises(openai.BadRequestError) as bad:
            served_by(client, "grp", headers=headers)
        error = _error(bad.value)
        assert error["code"] == code and error["type"] == "invalid_request_error"
        assert "x" * 300 not in error["message"] and "y" * 300 not in error["message"]
    assert served_by(client, "grp") in {"grp-a", "grp-b"}  # still serving


# -- admin API and CLI -------------------------------------------------------------------------


def test_recent_errors_name_an_upstream_error_without_a_code(deployment: Deployment) -> None:
    with pytest.raises(openai.NotFoundError):  # the mock's 404: type invalid_request_error, no code
        served_by(deployment.sdk, "single", "mock:status=404")
    listed = deployment.admin("GET", f"{GROUPS}/single")
    assert listed.status_code == 200, listed.text
    errors = listed.json()["deployments"][0]["state"]["recent_errors"]
    assert errors[-1]["code"] == "invalid_request_error"


def test_groups_are_listed_with_each_deployments_state(deployment: Deployment) -> None:
    client = deployment.sdk
    served_by(client, "single")
    with pytest.raises(openai.InternalServerError):
        served_by(client, "single", "mock:status=500")
    created = deployment.admin("POST", "/admin/v1/models", json={"name": "stored-one", "provider": "mock",
                                                                  "model": "stored-upstream"})
    assert created.status_code == 201, created.text
    assert served_by(client, "stored-one") == "mock/stored-upstream"
    listed = deployment.admin("GET", GROUPS)
    assert listed.status_code == 200, listed.text
    groups = {g["name"]: g for g in listed.json()["data"]}
    assert "grp-alias" not in groups and groups["grp"]["aliases"] == ["grp-alias"]
    grp = groups["grp"]
    assert (grp["object"], grp["strategy"], grp["allow_pinning"]) == ("model_group", "weighted", True)
    assert [(d["name"], d["provider"], d["model"], d["weight"]) for d in grp["deployments"]] == [
        ("grp-a", "mock", "grp-a", 1), ("grp-b", "mock", "grp-b", 3)]
    assert groups["rr"]["strategy"] == "round-robin"
    single = groups["single"]["deployments"]
    assert len(single) == 1 and single[0]["name"] == "mock/gpt-4o-mini"
    state = single[0]["state"]
    assert state["status"] == "healthy" and state["in_flight"] == 0 and state["latency_ms"] > 0
    assert state["recent_errors"] and state["recent_errors"][-1]["code"]
    stored = groups["stored-one"]["deployments"]
    assert [(d["name"], d["model"]) for d in stored] == [("mock/stored-upstream", "stored-upstream")]
    one = deployment.admin("GET", f"{GROUPS}/grp-alias")
    assert one.status_code == 200 and one.json()["name"] == "grp"
    missing = deployment.admin("GET", f"{GROUPS}/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "group_not_found"


def test_a_weight_changed_at_run_time_is_served_at_once_and_audited(deployment: Deployment) -> None:
    path = f"{GROUPS}/grp/deployments/grp-b"
    try:
        changed = deployment.admin("PATCH", path, json={"weight": 0})
        assert changed.status_code == 200, changed.text
        body = changed.json()
        assert (body["name"], body["weight"], body["configured_weight"], body["weight_overridden"]) == (
            "grp-b", 0, 3, True)
        assert {served_by(deployment.sdk, "grp") for _ in range(30)} == {"grp-a"}
        audit = deployment.admin("GET", "/admin/v1/audit", params={"action": "routing.weight"})
        entries = audit.json()["data"]
        assert entries[0]["resource_id"] == "grp/deployments/grp-b"
        assert (entries[0]["before"]["weight"], entries[0]["after"]["weight"]) == (3, 0)
    finally:
        reset = deployment.admin("PATCH", path, json={"weight": None})
    assert reset.status_code == 200 and reset.json()["weight"] == 3
    assert reset.json()["weight_overridden"] is False
    assert "grp-b" in {served_by(deployment.sdk, "grp") for _ in range(30)}


@pytest.mark.parametrize(("body", "code"), [
    ({"weight": 1, "extra": 1}, "unknown_parameter"),
    ({}, "missing_required_parameter"),
    ({"weight": "3"}, "invalid_value"),
    ({"weight": True}, "invalid_value"),
    ({"weight": 1.5}, "invalid_value"),
    ({"weight": -1}, "invalid_value"),
    ({"weight": 1_000_001}, "invalid_value"),
    ([1], "invalid_json"),
])
def test_bad_weight_bodies_are_400(deployment: Deployment, body: Any, code: str) -> None:
    resp = deployment.admin("PATCH", f"{GROUPS}/grp/deployments/grp-a", json=body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == code, error
    assert deployment.admin("GET", f"{GROUPS}/grp").json()["deployments"][0]["weight"] == 1


def test_unknown_groups_and_deployments_are_404(deployment: Deployment) -> None:
    for path, code in ((f"{GROUPS}/nope/deployments/grp-a", "group_not_found"),
                       (f"{GROUPS}/grp/deployments/nope", "deployment_not_found"),
                       (f"{GROUPS}/grp/deployments/{'z' * 5000}", "deployment_not_found"),
                       (f"{GROUPS}/grp", "unknown_url")):
        resp = deployment.admin("PATCH", path, json={"weight": 1})
        assert resp.status_code == 404 and resp.json()["error"]["code"] == code, resp.text
        assert "z" * 300 not in resp.text


def test_the_routing_api_is_the_platform_admins_alone(deployment: Deployment) -> None:
    key = deployment.admin("POST", "/admin/v1/keys", json={"models": ["*"], "role": "tenant_admin"}).json()
    headers = {"Authorization": f"Bearer {key['key']}"}
    calls = (("GET", GROUPS, None), ("PATCH", f"{GROUPS}/grp/deployments/grp-a", {"weight": 2}))
    for method, path, body in calls:
        resp = deployment.admin(method, path, json=body, headers=headers)
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "permission_denied"


def routing_cli(gateway: Gateway, *args: str) -> tuple[int, str]:
    proc = spawn(["routing", *args, "--url", gateway.url, "--key", MASTER_KEY], env={"COLUMNS": "250"})
    code = proc.wait_exit(60)
    return code, proc.output


def test_the_cli_lists_groups_and_sets_a_weight(deployment: Deployment) -> None:
    code, out = routing_cli(deployment.gateway, "groups")
    assert code == 0, out
    assert "grp-a" in out and "round-robin" in out and "healthy" in out
    assert MARKUP_NAME in out and "Traceback" not in out, out
    code, out = routing_cli(deployment.gateway, "weight", "grp", "grp-a", "4")
    assert code == 0 and "weight 4" in out, out
    try:
        code, out = routing_cli(deployment.gateway, "groups", "grp", "--json")
        assert code == 0, out
        assert "4*" not in out and '"weight": 4' in out
        code, out = routing_cli(deployment.gateway, "weight", "grp", "nope", "4")
        assert code == 1 and "no deployment 'nope'" in out, out
        code, out = routing_cli(deployment.gateway, "weight", "grp", "grp-a", "lots")
        assert code != 0 and "whole number" in out, out
    finally:
        code, out = routing_cli(deployment.gateway, "weight", "grp", "grp-a", "reset")
    assert code == 0 and "weight 1 (configured)" in out, out


# -- splits at run time ----------------------------------------------------------------------

SPLITS = "/admin/v1/routing/splits"


def test_a_split_changed_at_run_time_is_served_at_once_audited_and_reset(deployment: Deployment) -> None:
    listed = deployment.admin("GET", SPLITS).json()["data"]
    assert [(s["name"], s["model"], s["overridden"]) for s in listed] == [
        ("can", "canary", False), ("tw", "twin", False)]
    assert [(a["name"], a["kind"], a["percent"]) for a in listed[0]["arms"]] == [
        ("can-a", "deployment", 50), ("can-b", "deployment", 50)]
    try:
        changed = deployment.admin("PUT", f"{SPLITS}/can", json={"percents": {"can-a": 0, "can-b": 100}})
        assert changed.status_code == 200, changed.text
        assert changed.json()["overridden"] is True
        assert {served_by(deployment.sdk, "canary") for _ in range(30)} == {"can-b"}
        audit = deployment.admin("GET", "/admin/v1/audit", params={"action": "routing.split"})
        entries = audit.json()["data"]
        assert entries[0]["resource_id"] == "can"
        assert entries[0]["after"]["percents"] == {"can-a": 0, "can-b": 100}
    finally:
        reset = deployment.admin("DELETE", f"{SPLITS}/can")
    assert reset.status_code == 200 and reset.json()["overridden"] is False
    assert {served_by(deployment.sdk, "canary") for _ in range(40)} == {"can-a", "can-b"}


def test_an_alias_of_a_split_group_is_split_alike(deployment: Deployment) -> None:
    # The split is configured on the group; a request through its alias draws the same arms,
    # with the shares set at run time.
    try:
        changed = deployment.admin("PUT", f"{SPLITS}/can", json={"percents": {"can-a": 0, "can-b": 100}})
        assert changed.status_code == 200, changed.text
        for _ in range(10):
            raw = deployment.sdk.chat.completions.with_raw_response.create(
                model="canary-alias", messages=ask("hello"))
            assert raw.parse().choices[0].message.content
            assert raw.headers.get("x-switchboard-split") == "can=can-b"
            assert (raw.headers["x-switchboard-model"], raw.headers["x-switchboard-deployment"]) == (
                "canary", "can-b")
    finally:
        assert deployment.admin("DELETE", f"{SPLITS}/can").status_code == 200


@pytest.mark.parametrize(("body", "code"), [
    ({"percents": {"can-a": 100}}, "invalid_arms"),
    ({"percents": {"can-a": 50, "can-b": 40, "can-c": 10}}, "invalid_arms"),
    ({"percents": {"can-a": 60, "can-b": 60}}, "invalid_percents"),
    ({"percents": {"can-a": -10, "can-b": 110}}, "invalid_value"),
    ({"percents": {"can-a": "50", "can-b": 50}}, "invalid_value"),
    ({"percents": {"can-a": True, "can-b": 99}}, "invalid_value"),
    ({"percents": {}}, "invalid_value"),
    ({"percents": {"can-a": 50, "can-b": 50}, "extra": 1}, "unknown_parameter"),
    ({}, "missing_required_parameter"),
])
def test_bad_split_bodies_are_400(deployment: Deployment, body: Any, code: str) -> None:
    resp = deployment.admin("PUT", f"{SPLITS}/can", json=body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == code, resp.text
    assert deployment.admin("GET", SPLITS).json()["data"][0]["overridden"] is False


def test_an_arm_named_twice_in_the_body_is_400(deployment: Deployment) -> None:
    # JSON keeps the last of a repeated key: the body still names can-a twice.
    raw = b'{"percents": {"can-a": 10, "can-b": 80, "can-a": 10}}'
    resp = deployment.admin("PUT", f"{SPLITS}/can", content=raw,
                            headers={**ADMIN, "content-type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert (resp.json()["error"]["code"], resp.json()["error"]["param"]) == ("invalid_arms", "percents")
    assert deployment.admin("GET", SPLITS).json()["data"][0]["overridden"] is False


def test_a_numbered_default_deployment_is_a_split_arm_a_pin_and_a_share(deployment: Deployment) -> None:
    second = "mock/gpt-4o-mini#2"
    pin = {"x-switchboard-deployment": second}
    assert {served_by(deployment.sdk, "twin", headers=pin) for _ in range(5)} == {second}
    split = deployment.admin("GET", SPLITS).json()["data"][1]
    assert [a["name"] for a in split["arms"]] == ["mock/gpt-4o-mini", second]
    try:
        shares = {"percents": {"mock/gpt-4o-mini": 0, second: 100}}
        changed = deployment.admin("PUT", f"{SPLITS}/tw", json=shares)
        assert changed.status_code == 200, changed.text
        assert {served_by(deployment.sdk, "twin") for _ in range(10)} == {second}
    finally:
        assert deployment.admin("DELETE", f"{SPLITS}/tw").status_code == 200


def test_unknown_splits_are_404_and_splits_are_the_platform_admins(deployment: Deployment) -> None:
    resp = deployment.admin("PUT", f"{SPLITS}/{'n' * 300}", json={"percents": {"a": 100}})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "split_not_found"
    assert "n" * 100 not in resp.text
    key = deployment.admin("POST", "/admin/v1/keys", json={"models": ["*"], "role": "tenant_admin"}).json()
    headers = {"Authorization": f"Bearer {key['key']}"}
    for method in ("GET", "DELETE"):
        path = SPLITS if method == "GET" else f"{SPLITS}/can"
        resp = deployment.admin(method, path, headers=headers)
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "permission_denied"


def test_the_cli_lists_splits_and_sets_shares(deployment: Deployment) -> None:
    code, out = routing_cli(deployment.gateway, "splits")
    assert code == 0 and "can-a" in out and "deployment" in out, out
    try:
        code, out = routing_cli(deployment.gateway, "split", "can", "can-a=100", "can-b=0")
        assert code == 0 and "can-a 100 %" in out, out
        code, out = routing_cli(deployment.gateway, "split", "can", "can-a")
        assert code != 0 and "ARM=PERCENT" in out, out
        # An arm named twice is refused, as the API refuses it, not sent as the last one given.
        code, out = routing_cli(deployment.gateway, "split", "can", "can-a=20", "can-b=80", "can-a=20")
        assert code == 2 and "named twice" in out, out
        assert deployment.admin("GET", SPLITS).json()["data"][0]["arms"][0]["percent"] == 100
    finally:
        code, out = routing_cli(deployment.gateway, "split", "can", "reset")
    assert code == 0 and "(configured)" in out, out


# -- two instances ---------------------------------------------------------------------------

# The other instance applies a change when the change feed's message arrives (milliseconds when
# idle), else at its next periodic reload (routing/live.py RELOAD_SECONDS, 10 s). Half of that is
# the bound: it tells the feed from the fallback, and leaves a loaded machine seconds to reload.
FEED_BOUND = 5.0


@pytest.fixture(scope="module")
def two_instances(mock_upstream: Mock, postgres: Postgres, redis_server: RedisServer,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Gateway]]:
    config = _cluster(routing_config(mock_upstream), postgres, redis_server)
    first = start_gateway(config, tmp_path_factory.mktemp("groups-a"))
    second = start_gateway(config, tmp_path_factory.mktemp("groups-b"))
    yield first, second
    first.process.stop()
    second.process.stop()


def test_a_weight_changed_on_one_instance_is_honoured_by_the_other(
    two_instances: tuple[Gateway, Gateway],
) -> None:
    first, second = two_instances
    on_second = Deployment("cluster", second)
    changed = httpx.patch(f"{first.url}{GROUPS}/grp/deployments/grp-a", json={"weight": 0}, headers=ADMIN,
                          timeout=10)
    assert changed.status_code == 200, changed.text
    done = time.monotonic()
    while on_second.admin("GET", f"{GROUPS}/grp").json()["deployments"][0]["weight"] != 0:
        assert time.monotonic() - done < FEED_BOUND, "the weight did not reach the other instance by the feed"
    assert {served_by(on_second.sdk, "grp") for _ in range(30)} == {"grp-b"}


def test_a_split_changed_on_one_instance_is_honoured_by_the_other(
    two_instances: tuple[Gateway, Gateway],
) -> None:
    first, second = two_instances
    on_second = Deployment("cluster", second)
    changed = httpx.put(f"{first.url}{SPLITS}/can", json={"percents": {"can-a": 100, "can-b": 0}},
                        headers=ADMIN, timeout=10)
    assert changed.status_code == 200, changed.text
    done = time.monotonic()
    while not on_second.admin("GET", SPLITS).json()["data"][0]["overridden"]:
        assert time.monotonic() - done < FEED_BOUND, "the split did not reach the other instance by the feed"
    assert {served_by(on_second.sdk, "canary") for _ in range(30)} == {"can-a"}


def audited(deployment: Deployment, action: str) -> list[dict[str, Any]]:
    """The audit log's entries of ``action``, newest first."""
    resp = deployment.admin("GET", "/admin/v1/audit", params={"action": action})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["data"])


def test_a_change_on_an_instance_not_yet_reloaded_audits_what_is_stored_as_before(
    mock_upstream: Mock, postgres: Postgres, redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A weight or split changed on one instance, then at once on another whose table has not
    reloaded yet: the second change's audit entry's ``before`` is the first change's ``after``
    (read from the database), not the second instance's stale table. The second instance is
    kept from reloading (no change feed, an hour between reloads) so that "not yet" holds."""
    first_config = _cluster(routing_config(mock_upstream), postgres, redis_server)
    second_config = {**first_config, "database": {**first_config["database"], "cache_seconds": 3600}}
    del second_config["redis"]
    first = start_gateway(first_config, tmp_path_factory.mktemp("stale-a"))
    second = start_gateway(second_config, tmp_path_factory.mktemp("stale-b"))
    try:
        on_first, on_second = Deployment("cluster", first), Deployment("cluster", second)
        path = f"{GROUPS}/grp/deployments/grp-b"
        assert on_first.admin("PATCH", path, json={"weight": 0}).status_code == 200
        stale = on_second.admin("GET", f"{GROUPS}/grp").json()["deployments"][1]
        assert (stale["name"], stale["weight"]) == ("grp-b", 3)  # the second has not reloaded
        changed = on_second.admin("PATCH", path, json={"weight": 5})
        assert changed.status_code == 200 and changed.json()["weight"] == 5, changed.text
        entries = audited(on_second, "routing.weight")
        assert [(e["before"]["weight"], e["after"]["weight"]) for e in entries] == [(0, 5), (3, 0)]

        assert on_first.admin("PUT", f"{SPLITS}/can", json={"percents": {"can-a": 100, "can-b": 0}}
                              ).status_code == 200
        assert on_second.admin("GET", SPLITS).json()["data"][0]["overridden"] is False  # not reloaded
        changed = on_second.admin("PUT", f"{SPLITS}/can", json={"percents": {"can-a": 0, "can-b": 100}})
        assert changed.status_code == 200, changed.text
        entries = audited(on_second, "routing.split")
        assert [(e["before"]["percents"], e["after"]["percents"]) for e in entries] == [
            ({"can-a": 100, "can-b": 0}, {"can-a": 0, "can-b": 100}),
            ({"can-a": 50, "can-b": 50}, {"can-a": 100, "can-b": 0})]
        reset = on_second.admin("DELETE", f"{SPLITS}/can")  # back to the configured shares
        assert reset.status_code == 200, reset.text
        entry = audited(on_second, "routing.split")[0]
        assert (entry["before"]["percents"], entry["after"]["percents"]) == (
            {"can-a": 0, "can-b": 100}, {"can-a": 50, "can-b": 50})
    finally:
        first.process.stop()
        second.process.stop()


def test_a_weight_set_on_an_instance_not_yet_reloaded_finds_a_model_just_stored(
    mock_upstream: Mock, postgres: Postgres, redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # Before, the second instance looked the group up in its own table only: a model stored on
    # the first moments ago answered 404 group_not_found there until its next reload.
    first_config = _cluster(routing_config(mock_upstream), postgres, redis_server)
    second_config = {**first_config, "database": {**first_config["database"], "cache_seconds": 3600}}
    del second_config["redis"]
    first = start_gateway(first_config, tmp_path_factory.mktemp("added-a"))
    second = start_gateway(second_config, tmp_path_factory.mktemp("added-b"))
    try:
        on_first, on_second = Deployment("cluster", first), Deployment("cluster", second)
        name = f"added-{uuid.uuid4().hex[:8]}"
        made = on_first.admin("POST", "/admin/v1/models", json={"name": name, "provider": "mock",
                                                               "model": "gpt-4o-mini"})
        assert made.status_code == 201, made.text
        (stored,) = on_first.admin("GET", f"{GROUPS}/{name}").json()["deployments"]
        assert on_second.admin("GET", f"{GROUPS}/{name}").status_code == 404  # not reloaded yet
        path = f"{GROUPS}/{name}/deployments/{stored['name']}"
        changed = on_second.admin("PATCH", path, json={"weight": 0})
        assert changed.status_code == 200 and changed.json()["weight"] == 0, changed.text
        assert on_second.admin("GET", f"{GROUPS}/{name}").json()["deployments"][0]["weight"] == 0
        missing = on_second.admin("PATCH", f"{GROUPS}/{name}/deployments/nowhere", json={"weight": 0})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "deployment_not_found"
        missing = on_second.admin("PATCH", f"{GROUPS}/nowhere-{name}/deployments/x", json={"weight": 0})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "group_not_found"
    finally:
        first.process.stop()
        second.process.stop()


def test_a_group_mixing_providers_answers_a_parameter_where_it_exists(deployment: Deployment) -> None:
    # Round robin starts every other request on the deployment that cannot give logprobs: the
    # gateway's refusal there is not the answer, the other deployment is.
    attempts = []
    for _ in range(4):
        raw = deployment.sdk.chat.completions.with_raw_response.create(
            model="mixed", messages=[{"role": "user", "content": "hi"}], logprobs=True)
        assert raw.headers["x-switchboard-deployment"] == "gpt-4o-mini"
        attempts.append(raw.headers["x-switchboard-attempts"])
    assert sorted(set(attempts)) == ["1", "2"]
    # Without the parameter both deployments serve, in turn.
    served = {deployment.sdk.chat.completions.with_raw_response.create(
        model="mixed", messages=[{"role": "user", "content": "hi"}]).headers["x-switchboard-deployment"]
        for _ in range(2)}
    assert served == {"claude-haiku-4-5", "gpt-4o-mini"}


def test_a_deployment_that_cannot_take_a_parameter_does_not_answer_for_a_failed_retry(
    deployment: Deployment,
) -> None:
    # The one deployment that can give logprobs fails (a server error): the client gets that
    # error, whichever deployment round robin starts on, never the other's refusal (a 400 the
    # caller would take for its own mistake, and that no fallback follows).
    for _ in range(2):
        with pytest.raises(openai.APIStatusError) as failed:
            deployment.sdk.chat.completions.create(
                model="mixed-down", messages=[{"role": "user", "content": "mock:status=500 hi"}],
                logprobs=True)
        response = failed.value.response
        assert response.status_code >= 500 and failed.value.code != "unsupported_parameter", response.text


def test_a_deployment_refusing_a_parameter_does_not_use_up_a_retry(deployment: Deployment) -> None:
    # One retry: after the unreachable deployment, the one without logprobs refuses (nothing is
    # sent) and the retry goes on to the one that can answer, whichever the round robin starts on.
    for _ in range(3):
        raw = deployment.sdk.chat.completions.with_raw_response.create(
            model="retry-past", messages=[{"role": "user", "content": "hi"}], logprobs=True)
        assert raw.headers["x-switchboard-deployment"] == "gpt-4o-mini"
        assert raw.parse().choices[0].message.content


def test_a_fallback_group_mixing_providers_answers_a_parameter_where_it_exists(
    deployment: Deployment,
) -> None:
    # "gone" cannot be reached; its fallback's first deployment (round robin: every other
    # request) cannot give logprobs, its other one can and answers.
    for _ in range(2):
        raw = deployment.sdk.chat.completions.with_raw_response.create(
            model="gone", messages=[{"role": "user", "content": "hi"}], logprobs=True)
        assert (raw.headers["x-switchboard-model"], raw.headers["x-switchboard-deployment"]) == (
            "mixed-fallback", "gpt-4o-mini")
        assert raw.parse().choices[0].message.content


def test_shares_set_for_arms_the_configuration_no_longer_has_give_way_to_the_configured(
    mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Shares set at run time are stored by arm; once the configuration changes the arms (a
    restart with another canary), the stored shares no longer describe the split and the
    configured ones apply, rather than 0 for every arm the store does not name."""
    tmp = tmp_path_factory.mktemp("split-arms")
    config = routing_config(mock_upstream)
    gw = start_gateway(config, tmp)
    try:
        changed = httpx.put(f"{gw.url}{SPLITS}/can", json={"percents": {"can-a": 0, "can-b": 100}},
                            headers=ADMIN, timeout=10)
        assert changed.status_code == 200, changed.text
    finally:
        gw.process.stop()
    config["models"].append({"name": "canary", "provider": "mock", "model": "can-c", "deployment": "can-c"})
    config["router"]["splits"][0]["arms"] = [{"deployment": "can-a", "percent": 50},
                                             {"deployment": "can-c", "percent": 50}]
    gw = start_gateway(config, tmp)
    try:
        client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
        assert {served_by(client, "canary") for _ in range(40)} == {"can-a", "can-c"}
        split = httpx.get(f"{gw.url}{SPLITS}", headers=ADMIN, timeout=10).json()["data"][0]
        assert split["overridden"] is False
        assert [(a["name"], a["percent"]) for a in split["arms"]] == [("can-a", 50), ("can-c", 50)]
    finally:
        gw.process.stop()
