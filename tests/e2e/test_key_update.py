"""Changing a key in place (``PATCH /admin/v1/keys/{id}``) on a real gateway, embedded and
cluster: the change applies from the key's next request, its secret stays, a block is lifted
and a revoke is not, ownership never moves, and a caller gives no more than it may use itself.
(A change reaching a second instance is in test_keys.py, next to revocation.)"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.sdk import ask
from tests.e2e.tenancy_world import Admin, deployment_fixture
from tests.servers import Gateway

gateway = deployment_fixture("gateway")


@dataclass
class World:
    """One tenant: in team1 a tenant admin, a team admin whose key may use only ``gpt-*``, a
    developer and a peer developer; a member of team2. Each holds one key (the key itself)."""

    tenant: str
    team1: str
    team2: str
    users: dict[str, str]  # who -> user id
    keys: dict[str, str]  # who -> the key


@pytest.fixture
def admin(gateway: Gateway) -> Admin:
    return Admin(gateway.url)


@pytest.fixture(scope="module")
def world(gateway: Gateway) -> World:
    admin = Admin(gateway.url)
    tenant = "upd"
    admin.ok("POST", "/admin/v1/tenants", {"id": tenant}, status=201)
    team1 = admin.ok("POST", "/admin/v1/teams", {"tenant": tenant, "name": "one"}, status=201)["id"]
    team2 = admin.ok("POST", "/admin/v1/teams", {"tenant": tenant, "name": "two"}, status=201)["id"]
    people = {"tenant_admin": ("tenant_admin", team1, ["*"]), "team_admin": ("team_admin", team1, ["gpt-*"]),
              "dev": ("developer", team1, ["*"]), "peer": ("developer", team1, ["*"]),
              "other": ("developer", team2, ["*"])}
    users, keys = {}, {}
    for who, (role, team, models) in people.items():
        body = {"tenant": tenant, "name": who, "role": role, "team": team}
        users[who] = admin.ok("POST", "/admin/v1/users", body, status=201)["id"]
        body = {"tenant": tenant, "user": users[who], "role": role, "models": models}
        keys[who] = admin.ok("POST", "/admin/v1/keys", body, status=201)["key"]
    return World(tenant, team1, team2, users, keys)


def _key(admin: Admin, models: list[str], **extra: Any) -> dict[str, Any]:
    return admin.ok("POST", "/admin/v1/keys", {"models": models, **extra}, status=201)


def _patch(caller: Admin, key_id: str, body: Any) -> httpx.Response:
    return caller.call("PATCH", f"/admin/v1/keys/{key_id}", body)


def _error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    error = dict(resp.json()["error"])
    assert error["code"] == code, error
    return error


def _sdk(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=30)


def _in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def test_a_models_change_applies_from_the_next_request(gateway: Gateway, admin: Admin) -> None:
    created = _key(admin, ["gpt-4o-mini"], name="changing", metadata={"owner": "ops"}, tags=["a"])
    client = _sdk(gateway, created["key"])
    assert client.chat.completions.create(model="gpt-4o-mini", messages=ask("before")).choices
    with pytest.raises(openai.PermissionDeniedError):
        client.embeddings.create(model="text-embedding-3-small", input="x")

    changed = admin.ok("PATCH", f"/admin/v1/keys/{created['id']}", {"models": ["text-embedding-3-small"]})
    assert changed["models"] == ["text-embedding-3-small"] and changed["updated_at"] is not None
    # Only the field given changed; the key, its prefix and everything else are as they were.
    for field in ("id", "prefix", "name", "metadata", "tags", "tenant", "role", "lineage", "created_at"):
        assert changed[field] == created[field], field

    with pytest.raises(openai.PermissionDeniedError) as denied:  # removed: refused at once
        client.chat.completions.create(model="gpt-4o-mini", messages=ask("after"))
    assert denied.value.status_code == 403
    assert denied.value.body["code"] == "model_not_allowed"  # type: ignore[index]
    assert client.embeddings.create(model="text-embedding-3-small", input="x").data  # added: served
    assert [m.id for m in client.models.list()] == ["text-embedding-3-small"]


def test_null_clears_and_lists_are_replaced(admin: Admin) -> None:
    created = _key(admin, ["*"], name="labelled", expires_at=_in(3600), allowed_regions=["eu", "us"],
                   metadata={"a": 1, "b": "x"}, tags=["one", "two"])
    body = {"name": None, "expires_at": None, "allowed_regions": None, "metadata": {"c": True},
            "tags": ["three"]}
    changed = admin.ok("PATCH", f"/admin/v1/keys/{created['id']}", body)
    assert (changed["name"], changed["expires_at"], changed["allowed_regions"]) == (None, None, None)
    assert (changed["metadata"], changed["tags"]) == ({"c": True}, ["three"])
    body = {"name": "again", "expires_at": _in(7200), "allowed_regions": ["us", "eu", "us"], "metadata": {}}
    again = admin.ok("PATCH", f"/admin/v1/keys/{created['id']}", body)
    assert (again["name"], again["allowed_regions"], again["metadata"]) == ("again", ["eu", "us"], {})
    assert again["expires_at"] is not None and again["tags"] == ["three"]
    assert admin.ok("GET", f"/admin/v1/keys/{created['id']}") == again
    # An empty change changes nothing.
    assert admin.ok("PATCH", f"/admin/v1/keys/{created['id']}", {}) == again


def test_block_and_unblock(gateway: Gateway, admin: Admin) -> None:
    created = _key(admin, ["gpt-4o-mini"])
    client = _sdk(gateway, created["key"])
    assert client.models.list().data  # seen, so cached
    blocked = admin.ok("PATCH", f"/admin/v1/keys/{created['id']}", {"enabled": False})
    assert (blocked["enabled"], blocked["revoked"]) == (False, False)
    with pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=ask("blocked"))
    assert refused.value.body["code"] == "key_disabled"  # type: ignore[index]
    assert "blocked" in refused.value.body["message"]  # type: ignore[index]
    rotate = admin.call("POST", f"/admin/v1/keys/{created['id']}/rotate", {"grace_seconds": 0})
    assert "unblock" in _error(rotate, 400, "key_disabled")["message"]

    unblocked = admin.ok("PATCH", f"/admin/v1/keys/{created['id']}", {"enabled": True})
    assert (unblocked["enabled"], unblocked["revoked"]) == (True, False)
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=ask("unblocked"))
    assert reply.choices[0].message.content.endswith("You said: unblocked")


def test_a_revoked_key_cannot_be_unblocked_or_changed(gateway: Gateway, admin: Admin) -> None:
    created = _key(admin, ["gpt-4o-mini"])
    admin.ok("PATCH", f"/admin/v1/keys/{created['id']}", {"enabled": False})
    admin.ok("DELETE", f"/admin/v1/keys/{created['id']}")
    error = _error(_patch(admin, created["id"], {"enabled": True}), 400, "key_revoked")
    assert error["param"] == "enabled" and "final" in error["message"]
    _error(_patch(admin, created["id"], {"name": "back?"}), 400, "key_revoked")
    shown = admin.ok("GET", f"/admin/v1/keys/{created['id']}")
    assert (shown["enabled"], shown["revoked"], shown["name"]) == (False, True, None)
    with pytest.raises(openai.AuthenticationError) as refused:
        _sdk(gateway, created["key"]).models.list()
    assert refused.value.body["code"] == "key_disabled"  # type: ignore[index]


def test_a_rotated_key_is_changed_through_its_successor(admin: Admin) -> None:
    old = _key(admin, ["*"], metadata={"owner": "ops"})
    new = admin.ok("POST", f"/admin/v1/keys/{old['id']}/rotate", {"grace_seconds": 600}, status=201)
    error = _error(_patch(admin, old["id"], {"expires_at": _in(86400)}), 400, "key_rotated")
    assert new["id"] in error["message"]
    changed = admin.ok("PATCH", f"/admin/v1/keys/{new['id']}", {"metadata": {"owner": "billing"}})
    # What the gateway wrote on rotation stays with the key.
    assert changed["metadata"] == {"owner": "billing", "rotated_from": old["id"]}


def test_an_expired_key_can_be_given_a_new_expiry(gateway: Gateway, admin: Admin) -> None:
    created = _key(admin, ["gpt-4o-mini"], expires_at=_in(1))
    auth = {"Authorization": f"Bearer {created['key']}"}
    deadline = time.monotonic() + 10
    while (seen := httpx.get(f"{gateway.base_url}/models", headers=auth, timeout=10)).status_code != 401:
        assert time.monotonic() < deadline, "the key outlived its expiry"
    assert seen.json()["error"]["code"] == "key_expired"
    admin.ok("PATCH", f"/admin/v1/keys/{created['id']}", {"expires_at": _in(3600)})
    assert _sdk(gateway, created["key"]).models.list().data


@pytest.mark.parametrize("field", ["tenant", "team", "user", "service_account", "role", "lineage", "id",
                                   "key", "prefix", "created_at", "created_by"])
def test_ownership_and_identity_are_refused_by_name(admin: Admin, field: str) -> None:
    created = _key(admin, ["*"])
    error = _error(_patch(admin, created["id"], {"name": "x", field: created.get(field, "x")}), 400,
                   "immutable_parameter")
    assert error["param"] == field and error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"{field}: ") and "fixed" in error["message"]
    assert admin.ok("GET", f"/admin/v1/keys/{created['id']}")["name"] is None  # nothing written


def test_limits_budgets_and_unknown_fields_are_refused(admin: Admin) -> None:
    created = _key(admin, ["*"])
    for field, value in (("rpm_limit", 10), ("max_budget_usd", 1)):
        error = _error(_patch(admin, created["id"], {field: value}), 400, "immutable_parameter")
        assert error["param"] == field and "/admin/v1/limits" in error["message"]
    error = _error(_patch(admin, created["id"], {"owner": "me"}), 400, "unknown_parameter")
    assert error["param"] == "owner"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"models": []}, "models"),
        ({"models": "gpt-4o-mini"}, "models"),
        ({"models": None}, "models"),
        ({"models": [1]}, "models[0]"),
        ({"models": ["m" * 201]}, "models[0]"),
        ({"name": ""}, "name"),
        ({"name": "n" * 201}, "name"),
        ({"expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_at": "2999-01-01T00:00:00"}, "expires_at"),
        ({"expires_at": "soon"}, "expires_at"),
        ({"expires_at": "9999-12-31T23:59:59-23:59"}, "expires_at"),
        ({"metadata": None}, "metadata"),
        ({"metadata": {"rotated_from": "key_x"}}, "metadata"),
        ({"metadata": {f"k{i}": i for i in range(51)}}, "metadata"),
        ({"metadata": {"k": {"nested": 1}}}, "metadata.k"),
        ({"tags": ["a b"]}, "tags[0]"),
        ({"tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"enabled": "false"}, "enabled"),
        ({"enabled": 0}, "enabled"),
        ({"enabled": None}, "enabled"),
        ({"allowed_regions": ["eu west"]}, "allowed_regions[0]"),
        ({"mcp_tools": {"allow": 1}}, "mcp_tools.allow"),
        # Tool names are text: a number is refused, never stored as "1" or "1.5".
        ({"mcp_tools": {"allow": [1, 1.5]}}, "mcp_tools.allow[0]"),
        ({"mcp_tools": {"allow": ["notes__*"], "deny": ["a", 2]}}, "mcp_tools.deny[1]"),
        ({"mcp_tools": {"deny": [True]}}, "mcp_tools.deny[0]"),
    ],
)
def test_bad_values_are_400_naming_the_param(admin: Admin, body: Any, param: str | None) -> None:
    created = _key(admin, ["gpt-4o-mini"], name="kept")
    error = _error(_patch(admin, created["id"], body), 400, "invalid_value")
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    shown = admin.ok("GET", f"/admin/v1/keys/{created['id']}")
    assert (shown["models"], shown["name"], shown["enabled"]) == (["gpt-4o-mini"], "kept", True)


def test_a_missing_key_is_404(admin: Admin) -> None:
    _error(_patch(admin, "key_nope", {"name": "x"}), 404, "key_not_found")


def test_the_change_is_audited_without_secrets(admin: Admin) -> None:
    created = _key(admin, ["gpt-4o-mini"], name="audited")
    admin.ok("PATCH", f"/admin/v1/keys/{created['id']}", {"models": ["gpt-*"], "enabled": False})
    entries = admin.ok("GET", "/admin/v1/audit", params={"resource_id": created["id"]})["data"]
    assert [e["action"] for e in entries] == ["key.update", "key.create"]  # newest first
    entry = entries[0]
    who = (entry["actor"], entry["actor_role"], entry["resource_type"])
    assert who == ("master", "platform_admin", "api_key")
    changed = {f for f in entry["after"] if entry["after"][f] != entry["before"][f]}
    assert changed == {"models", "enabled", "updated_at"}
    assert entry["before"]["models"] == ["gpt-4o-mini"] and entry["after"]["models"] == ["gpt-*"]
    listed = admin.call("GET", "/admin/v1/audit", params={"limit": 1000}).text
    assert created["key"] not in listed and "key_hash" not in listed


def test_a_team_admin_gives_no_model_beyond_its_own(world: World, gateway: Gateway) -> None:
    master, team_admin = Admin(gateway.url), Admin(gateway.url, world.keys["team_admin"])
    dev_key = _key(master, ["gpt-4o-mini"], tenant=world.tenant, user=world.users["dev"])
    path = f"/admin/v1/keys/{dev_key['id']}"
    assert team_admin.ok("PATCH", path, {"models": ["gpt-4o*", "gpt-3.5-turbo-instruct"]})["models"] == [
        "gpt-4o*", "gpt-3.5-turbo-instruct"]
    for wider in (["*"], ["gpt-4o-mini", "text-embedding-3-small"], ["*-mini"]):
        error = _error(team_admin.call("PATCH", path, {"models": wider}), 403, "permission_denied")
        assert error["param"].startswith("models[") and "beyond" in error["message"]
    # The same rule as when issuing a key.
    body = {"models": ["*"], "user": world.users["dev"]}
    _error(team_admin.call("POST", "/admin/v1/keys", body), 403, "permission_denied")
    assert master.ok("GET", path)["models"] == ["gpt-4o*", "gpt-3.5-turbo-instruct"]
    # Outside its team, or above its role: out of reach (404), or not to be acted on (403).
    other = _key(master, ["gpt-4o-mini"], tenant=world.tenant, user=world.users["other"])
    _error(team_admin.call("PATCH", f"/admin/v1/keys/{other['id']}", {"name": "x"}), 404, "key_not_found")
    admins = _key(master, ["*"], tenant=world.tenant, user=world.users["tenant_admin"], role="tenant_admin")
    above = team_admin.call("PATCH", f"/admin/v1/keys/{admins['id']}", {"name": "x"})
    _error(above, 403, "permission_denied")


def test_a_developer_changes_only_its_own_keys(world: World, gateway: Gateway) -> None:
    master, dev = Admin(gateway.url), Admin(gateway.url, world.keys["dev"])
    own = _key(master, ["gpt-4o-mini"], tenant=world.tenant, user=world.users["dev"])
    assert dev.ok("PATCH", f"/admin/v1/keys/{own['id']}", {"name": "mine", "tags": ["x"]})["name"] == "mine"
    peers = _key(master, ["gpt-4o-mini"], tenant=world.tenant, user=world.users["peer"], name="peer's")
    for body in ({"name": "hijacked"}, {"enabled": False}, {"models": ["*"]}):
        _error(dev.call("PATCH", f"/admin/v1/keys/{peers['id']}", body), 404, "key_not_found")
    assert master.ok("GET", f"/admin/v1/keys/{peers['id']}")["name"] == "peer's"
    assert _sdk(gateway, peers["key"]).models.list().data


def test_a_block_is_lifted_only_by_its_role_or_above(world: World, gateway: Gateway) -> None:
    master = Admin(gateway.url)
    dev, tenant_admin = Admin(gateway.url, world.keys["dev"]), Admin(gateway.url, world.keys["tenant_admin"])
    target = _key(master, ["gpt-4o-mini"], tenant=world.tenant, user=world.users["dev"])
    path = f"/admin/v1/keys/{target['id']}"
    tenant_admin.ok("PATCH", path, {"enabled": False})
    dev.ok("PATCH", path, {"enabled": False})  # blocking again keeps the stronger block
    error = _error(dev.call("PATCH", path, {"enabled": True}), 403, "permission_denied")
    assert "tenant_admin" in error["message"]
    with pytest.raises(openai.AuthenticationError):
        _sdk(gateway, target["key"]).models.list()
    assert tenant_admin.ok("PATCH", path, {"enabled": True})["enabled"] is True
    assert _sdk(gateway, target["key"]).models.list().data
    # A developer lifts its own block.
    dev.ok("PATCH", path, {"enabled": False})
    assert dev.ok("PATCH", path, {"enabled": True})["enabled"] is True


def test_a_key_restricted_to_some_mcp_tools_does_not_lift_its_restriction(world: World, gateway: Gateway
                                                                           ) -> None:
    master = Admin(gateway.url)
    rule = {"allow": ["notes__*", "math__*"], "deny": ["notes__delete_*"]}
    restricted = _key(master, ["*"], tenant=world.tenant, user=world.users["dev"], mcp_tools=rule)
    holder, path = Admin(gateway.url, restricted["key"]), f"/admin/v1/keys/{restricted['id']}"
    # Changing its own key: no list at all, every tool, or the denied tools allowed again.
    for body, param in (({"mcp_tools": None}, "mcp_tools"),
                        ({"mcp_tools": {"allow": ["*"], "deny": []}}, "mcp_tools.allow[0]"),
                        ({"mcp_tools": {"allow": ["notes__*"]}}, "mcp_tools.deny"),
                        ({"mcp_tools": {"allow": None, "deny": ["notes__delete_*"]}}, "mcp_tools.allow")):
        error = _error(holder.call("PATCH", path, body), 403, "permission_denied")
        assert error["param"] == param, error
    assert master.ok("GET", path)["mcp_tools"] == rule
    # Issuing a key: without a rule it gets the issuer's; a wider one is refused, a narrower taken.
    issued = holder.ok("POST", "/admin/v1/keys", {"models": ["*"], "name": "second"}, status=201)
    assert issued["mcp_tools"] == rule
    for wider in (None, {"allow": ["*"]}, {"deny": ["notes__delete_*"]}):
        body = {"models": ["*"], "mcp_tools": wider}
        if wider is None:  # an explicit null: the issuer's rule as well
            assert holder.ok("POST", "/admin/v1/keys", body, status=201)["mcp_tools"] == rule
            continue
        _error(holder.call("POST", "/admin/v1/keys", body), 403, "permission_denied")
    narrower = {"allow": ["math__*"], "deny": []}
    assert holder.ok("POST", "/admin/v1/keys", {"models": ["*"], "mcp_tools": narrower}, status=201)[
        "mcp_tools"] == narrower
    # Narrowing its own key is allowed; the master key (and callers without a rule) are not bound.
    assert holder.ok("PATCH", path, {"mcp_tools": narrower})["mcp_tools"] == narrower
    assert master.ok("PATCH", path, {"mcp_tools": None})["mcp_tools"] is None
    free = Admin(gateway.url, world.keys["dev"])
    assert free.ok("POST", "/admin/v1/keys", {"models": ["*"]}, status=201)["mcp_tools"] is None
