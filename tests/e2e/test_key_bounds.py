"""A key a caller issues or changes stays within the caller's own key, embedded and cluster: a
key with an expiry, rate limits, a budget or regions of its own hands out keys (and changes
keys, itself included) only within them, and a key issued without them gets the caller's.
Callers without such bounds (the master key, an admin's unbounded key) are not held."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.sdk import ask
from tests.e2e.tenancy_world import Admin
from tests.servers import Gateway, Mock, openai_config, start_gateway

PRICED = "bounds-priced"  # 5 output tokens (max_tokens=5) cost exactly $0.01; input is free
CALL = {"model": PRICED, "max_tokens": 5}
LONG = "tell me a long story about bounds please"  # the mock's reply is longer than 5 words


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def gateway(request: pytest.FixtureRequest, mock_upstream: Mock,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = openai_config(mock_upstream)
    config["models"].append({"name": PRICED, "provider": "local-openai", "model": "gpt-4o-mini",
                             "info": {"input_cost_per_mtok": 0, "output_cost_per_mtok": 2000}})
    if request.param == "cluster":
        postgres = request.getfixturevalue("postgres")
        config["database"] = {"url": postgres.create_database(f"bounds_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": request.getfixturevalue("redis_server").url}
    gw = start_gateway(config, tmp_path_factory.mktemp(request.param))
    yield gw
    gw.process.stop()


@dataclass
class World:
    """One tenant: a developer and a tenant admin (users without keys yet)."""

    tenant: str
    dev: str
    admin: str


@pytest.fixture(scope="module")
def world(gateway: Gateway) -> World:
    master = Admin(gateway.url)
    master.ok("POST", "/admin/v1/tenants", {"id": "bounds"}, status=201)

    def user(role: str) -> str:
        body = {"tenant": "bounds", "name": role, "role": role}
        return str(master.ok("POST", "/admin/v1/users", body, status=201)["id"])

    return World("bounds", user("developer"), user("tenant_admin"))


def _holder(gateway: Gateway, world: World, user: str, role: str = "developer", **bounds: Any
            ) -> tuple[Admin, dict[str, Any]]:
    """A key the master key issues to ``user`` with ``bounds``, as an admin API caller."""
    body = {"models": ["*"], "tenant": world.tenant, "user": user, "role": role, **bounds}
    created = Admin(gateway.url).ok("POST", "/admin/v1/keys", body, status=201)
    return Admin(gateway.url, created["key"]), created


def _issue(caller: Admin, **fields: Any) -> httpx.Response:
    return caller.call("POST", "/admin/v1/keys", {"models": ["*"], **fields})


def _refused(resp: httpx.Response, param: str) -> str:
    assert resp.status_code == 403, resp.text
    error = resp.json()["error"]
    assert (error["code"], error["type"], error["param"]) == ("permission_denied", "permission_error", param)
    assert error["message"].startswith(param + ": ")
    return str(error["message"])


def _bad(resp: httpx.Response, param: str) -> None:
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param, resp.text


def _sdk(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=30)


def _in(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_a_key_issued_by_a_rate_limited_key_is_limited_as_much(gateway: Gateway, world: World) -> None:
    holder, _ = _holder(gateway, world, world.dev, rpm_limit=1, tpm_limit=100_000)
    issued = _issue(holder, name="no limits named")
    assert issued.status_code == 201, issued.text
    assert (issued.json()["rpm_limit"], issued.json()["tpm_limit"]) == (1, 100_000)
    client = _sdk(gateway, issued.json()["key"])
    assert client.chat.completions.create(model="gpt-4o-mini", messages=ask("one")).choices
    with pytest.raises(openai.RateLimitError) as limited:  # its second call in the minute
        client.chat.completions.create(model="gpt-4o-mini", messages=ask("two"))
    assert limited.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]

    assert "above the caller's own key's rpm_limit (1)" in _refused(_issue(holder, rpm_limit=2), "rpm_limit")
    _refused(_issue(holder, tpm_limit=100_001), "tpm_limit")
    _refused(_issue(holder, rpm_limit=1, tpm_limit=10**6), "tpm_limit")
    within = _issue(holder, rpm_limit=1, tpm_limit=500)
    assert within.status_code == 201 and within.json()["tpm_limit"] == 500
    # A bad value is a 400 for what it is, before it is weighed against the caller's.
    _bad(_issue(holder, rpm_limit="2"), "rpm_limit")
    _bad(_issue(holder, rpm_limit=0), "rpm_limit")
    _bad(_issue(holder, tpm_limit=1.5), "tpm_limit")


def test_an_expiring_key_issues_and_changes_keys_that_expire_no_later(gateway: Gateway, world: World) -> None:
    holder, own = _holder(gateway, world, world.dev, expires_at=_in(1))
    issued = _issue(holder)
    assert issued.status_code == 201, issued.text
    assert _when(issued.json()["expires_at"]) == _when(own["expires_at"])
    assert _when(_issue(holder, expires_at=None).json()["expires_at"]) == _when(own["expires_at"])
    _refused(_issue(holder, expires_at=_in(2)), "expires_at")
    sooner = _issue(holder, expires_at=_in(0.5))
    assert sooner.status_code == 201, sooner.text

    # Changing a key, its own included: no clearing the expiry, no extending it.
    own_path, issued_path = f"/admin/v1/keys/{own['id']}", f"/admin/v1/keys/{issued.json()['id']}"
    assert "no expiry" in _refused(holder.call("PATCH", own_path, {"expires_at": None}), "expires_at")
    _refused(holder.call("PATCH", own_path, {"expires_at": _in(2)}), "expires_at")
    _refused(holder.call("PATCH", issued_path, {"expires_at": None}), "expires_at")
    assert _when(Admin(gateway.url).ok("GET", own_path)["expires_at"]) == _when(own["expires_at"])
    assert holder.ok("PATCH", issued_path, {"expires_at": _in(0.25)})["expires_at"] is not None
    _bad(_issue(holder, expires_at="tomorrow"), "expires_at")
    _bad(holder.call("PATCH", own_path, {"expires_at": _in(-1)}), "expires_at")
    # Shortening its own is allowed; the master key may lift it.
    shortened = holder.ok("PATCH", own_path, {"expires_at": _in(0.75)})
    assert _when(shortened["expires_at"]) < _when(own["expires_at"])
    assert Admin(gateway.url).ok("PATCH", own_path, {"expires_at": None})["expires_at"] is None


def test_a_key_with_a_budget_issues_keys_that_spend_no_more(gateway: Gateway, world: World) -> None:
    holder, _ = _holder(gateway, world, world.dev, max_budget_usd=0.01)  # total: one call
    issued = _issue(holder)
    assert issued.status_code == 201, issued.text
    assert (issued.json()["max_budget_usd"], issued.json()["budget_period"]) == (0.01, "total")
    client = _sdk(gateway, issued.json()["key"])
    assert client.chat.completions.create(messages=ask(LONG), **CALL).choices
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(messages=ask(LONG), **CALL)
    assert refused.value.body["code"] == "budget_exceeded"  # type: ignore[index]

    _refused(_issue(holder, max_budget_usd=0.02), "max_budget_usd")
    _refused(_issue(holder, max_budget_usd=0.01, budget_period="daily"), "budget_period")
    assert _issue(holder, max_budget_usd=0.005).json()["max_budget_usd"] == 0.005
    _bad(_issue(holder, max_budget_usd=-1), "max_budget_usd")
    _bad(_issue(holder, max_budget_usd=0.01, budget_period="yearly"), "budget_period")

    # Within a monthly budget: the same period or a total, no more.
    monthly, _ = _holder(gateway, world, world.dev, max_budget_usd=1, budget_period="monthly")
    inherited = _issue(monthly).json()
    assert (inherited["max_budget_usd"], inherited["budget_period"]) == (1.0, "monthly")
    assert _issue(monthly, max_budget_usd=0.5, budget_period="total").status_code == 201
    assert _issue(monthly, max_budget_usd=1, budget_period="monthly").status_code == 201
    message = _refused(_issue(monthly, max_budget_usd=0.1, budget_period="daily"), "budget_period")
    assert "use 'monthly' or 'total'" in message
    _refused(_issue(monthly, max_budget_usd=2, budget_period="monthly"), "max_budget_usd")


def test_a_key_held_to_regions_issues_and_changes_keys_within_them(gateway: Gateway, world: World) -> None:
    holder, own = _holder(gateway, world, world.dev, allowed_regions=["eu", "eu-west"])
    issued = _issue(holder)
    assert issued.json()["allowed_regions"] == ["eu", "eu-west"]
    assert _issue(holder, allowed_regions=["eu-west"]).json()["allowed_regions"] == ["eu-west"]
    _refused(_issue(holder, allowed_regions=["eu", "us"]), "allowed_regions[1]")
    own_path = f"/admin/v1/keys/{own['id']}"
    _refused(holder.call("PATCH", own_path, {"allowed_regions": None}), "allowed_regions")
    _refused(holder.call("PATCH", own_path, {"allowed_regions": ["us"]}), "allowed_regions[0]")
    assert holder.ok("PATCH", own_path, {"allowed_regions": ["eu"]})["allowed_regions"] == ["eu"]
    _bad(_issue(holder, allowed_regions=["not a region"]), "allowed_regions[0]")


def test_a_bounded_admin_is_held_and_an_unbounded_one_is_not(gateway: Gateway, world: World) -> None:
    bounded, _ = _holder(gateway, world, world.admin, role="tenant_admin", rpm_limit=5, expires_at=_in(1))
    # For another user of its tenant too: whoever issues or changes a key.
    _refused(_issue(bounded, user=world.dev, rpm_limit=10), "rpm_limit")
    for_dev = _issue(bounded, user=world.dev)
    assert for_dev.status_code == 201 and for_dev.json()["rpm_limit"] == 5
    path = f"/admin/v1/keys/{for_dev.json()['id']}"
    _refused(bounded.call("PATCH", path, {"expires_at": None}), "expires_at")

    free, _ = _holder(gateway, world, world.admin, role="tenant_admin")
    plain = _issue(free, user=world.dev).json()
    fields = ("expires_at", "rpm_limit", "tpm_limit", "max_budget_usd", "budget_period", "allowed_regions")
    assert {f: plain[f] for f in fields} == dict.fromkeys(fields)
    wide = {"rpm_limit": 10**6, "tpm_limit": 10**8, "max_budget_usd": 1000, "budget_period": "daily",
            "expires_at": _in(24 * 365), "allowed_regions": ["us", "eu"]}
    assert _issue(free, user=world.dev, **wide).status_code == 201
    assert _issue(Admin(gateway.url), tenant=world.tenant, user=world.dev, **wide).status_code == 201


def test_a_rotated_key_keeps_its_bounds(gateway: Gateway, world: World) -> None:
    holder, own = _holder(gateway, world, world.dev, rpm_limit=3, max_budget_usd=0.5, expires_at=_in(1),
                          allowed_regions=["eu"])
    rotated = holder.ok("POST", f"/admin/v1/keys/{own['id']}/rotate", {"grace_seconds": 0}, status=201)
    fields = ("rpm_limit", "max_budget_usd", "budget_period", "allowed_regions")
    assert {f: rotated[f] for f in fields} == {f: own[f] for f in fields}
    assert _when(rotated["expires_at"]) == _when(own["expires_at"])
    successor = Admin(gateway.url, rotated["key"])
    _refused(_issue(successor, rpm_limit=4), "rpm_limit")


def test_a_bounded_caller_does_not_rotate_a_wider_key_into_its_hands(gateway: Gateway, world: World) -> None:
    # A rotation hands the caller the new key's secret: a key wider than the caller's own would
    # be a key beyond its bounds, as if it had issued it.
    bounded, _ = _holder(gateway, world, world.admin, role="tenant_admin", rpm_limit=5, expires_at=_in(1))
    _, wide = _holder(gateway, world, world.dev)  # no expiry, no limits (the master key's)
    path = f"/admin/v1/keys/{wide['id']}/rotate"
    _refused(bounded.call("POST", path, {"grace_seconds": 0}), "expires_at")
    assert Admin(gateway.url).ok("GET", f"/admin/v1/keys/{wide['id']}")["enabled"]  # not retired
    _, unlimited = _holder(gateway, world, world.dev, expires_at=_in(0.5))
    message = _refused(bounded.call("POST", f"/admin/v1/keys/{unlimited['id']}/rotate"), "rpm_limit")
    assert "no rpm_limit" in message
    _, within = _holder(gateway, world, world.dev, expires_at=_in(0.5), rpm_limit=5)
    assert bounded.call("POST", f"/admin/v1/keys/{within['id']}/rotate").status_code == 201


def test_a_caller_limited_to_some_models_does_not_rotate_a_key_of_others_into_its_hands(
        gateway: Gateway, world: World) -> None:
    # Its models and MCP tool rule are held as its bounds are: a rotation hands over the secret.
    narrow, _ = _holder(gateway, world, world.admin, role="tenant_admin", models=["gpt-*"])
    _, every = _holder(gateway, world, world.dev)  # models ["*"]
    _refused(narrow.call("POST", f"/admin/v1/keys/{every['id']}/rotate"), "models[0]")
    assert Admin(gateway.url).ok("GET", f"/admin/v1/keys/{every['id']}")["enabled"]  # not retired
    tools = {"allow": ["github.*"], "deny": []}
    ruled, _ = _holder(gateway, world, world.admin, role="tenant_admin", mcp_tools=tools)
    _, unruled = _holder(gateway, world, world.dev)  # no rule: every tool
    assert ruled.call("POST", f"/admin/v1/keys/{unruled['id']}/rotate").status_code == 403
    _, inside = _holder(gateway, world, world.dev, models=["gpt-4o-mini"])
    assert narrow.call("POST", f"/admin/v1/keys/{inside['id']}/rotate").status_code == 201
