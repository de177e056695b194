"""The permission table, walked: every admin route under /admin/v1, for every role, on two
tenants, against the real server (embedded and cluster).

The routes are read from the admin application itself, each with the ``allow_<resource>_<action>``
dependency it declares, so a route added later is covered without touching this file (and a
route without such a dependency fails the test). What each role may do comes from
``access/roles.py`` TABLE, which ``docs/access.md`` prints verbatim (checked below): the docs,
the code and this test cannot drift.

- A role the table gives no reach gets 403 ``permission_denied``; every other role never gets 403
  for the mere action.
- A record of another tenant answers 404 ``*_not_found`` to every role of this tenant, and a
  record of another team (or another person's) answers 404 to the team-level roles.
- No list shows any role another tenant's records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from switchboard.access import roles
from switchboard.access.roles import ROLES, Reach, reach
from tests.e2e.admin_routes import Route, admin_routes
from tests.e2e.tenancy_world import Admin, TenantWorld, build_world, deployment_fixture
from tests.servers import Gateway

DOCS = Path(__file__).resolve().parents[2] / "docs" / "access.md"
PROBE = "nope_0000"  # an id nothing has
# Platform-wide resources: not owned by a tenant, so there is no "another tenant's" record.
SHARED = {"provider", "model", "routing"}

gateway = deployment_fixture("gateway")


ROUTES = admin_routes("/admin/v1/")


def test_every_admin_route_declares_its_permission_and_the_walk_covers_them() -> None:
    assert len(ROUTES) >= 20
    declared = {(r.resource, r.action) for r in ROUTES}
    for expected in [("tenant", "create"), ("team", "delete"), ("user", "update"), ("key", "rotate"),
                     ("audit", "read")]:
        assert expected in declared


def test_the_docs_print_the_permission_table_verbatim() -> None:
    assert roles.markdown() in DOCS.read_text()


@pytest.fixture(scope="module")
def worlds(gateway: Gateway) -> tuple[TenantWorld, TenantWorld]:
    admin = Admin(gateway.url)
    return build_world(admin, "perm-a"), build_world(admin, "perm-b")


# Bodies valid where a body is read, so an answer is about the permission or the record, not the
# body: by method, and for the few routes that need more than an empty object.
BODIES: dict[str, Any] = {"PATCH": {"name": "hijacked"}, "POST": {}}
BODY_BY_SUFFIX: dict[str, Any] = {"/reject": {"reason": "probe"},
                                  "/mcp/servers/{name}": {"description": "probe"}}


def _body(route: Route) -> Any:
    for suffix, body in BODY_BY_SUFFIX.items():
        if route.path.endswith(suffix):
            return body
    return BODIES.get(route.method)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_is_denied_exactly_what_the_table_denies(
    gateway: Gateway, worlds: tuple[TenantWorld, TenantWorld], role: str
) -> None:
    admin = Admin(gateway.url)
    wrong: list[str] = []
    for world in worlds:
        caller = world.caller(admin, role)
        for route in ROUTES:
            resp = caller.call(route.method, route.url(PROBE), json=_body(route))
            denied = reach(role, route.resource, route.action) is Reach.NONE
            got = (f"{route.method} {route.path} as {role} of {world.tenant}: "
                   f"{resp.status_code} {resp.text[:200]}")
            if denied and (resp.status_code != 403 or resp.json()["error"]["code"] != "permission_denied"):
                wrong.append("expected 403 permission_denied, " + got)
            if not denied and (resp.status_code == 403 or resp.status_code >= 500):
                wrong.append("expected no refusal for the action, " + got)
    assert not wrong, "\n".join(wrong)


def _foreign_ids(other: TenantWorld) -> dict[str, str]:
    """Records of the other tenant, by the collection path that addresses them."""
    return {
        "/admin/v1/tenants": other.tenant,
        "/admin/v1/teams": other.team1,
        "/admin/v1/users": other.users["developer"],
        "/admin/v1/service-accounts": other.sa2,
        "/admin/v1/keys": other.key_ids["developer"],
        "/admin/v1/subscriptions": other.sub1,
        "/admin/v1/limits": other.limit,
        "/admin/v1/budgets": other.budget,
        "/admin/v1/prompts": other.prompt,
        "/admin/v1/apis": other.api,
        "/admin/v1/services": other.service,
        "/admin/v1/mcp/servers": other.mcp_server,
        "/admin/v1/token-revocations": other.token_revocation,
    }


def _other_team_ids(world: TenantWorld) -> dict[str, str]:
    """Records of the same tenant outside team1."""
    return {
        "/admin/v1/teams": world.team2,
        "/admin/v1/users": world.member2,
        "/admin/v1/service-accounts": world.sa2,
        "/admin/v1/keys": world.member2_key,
        "/admin/v1/subscriptions": world.sub2,
        "/admin/v1/prompts": world.prompt2,
        "/admin/v1/apis": world.api,
        "/admin/v1/services": world.service,
    }


def _expect_404(caller: Admin, route: Route, record_id: str, who: str, wrong: list[str]) -> None:
    resp = caller.call(route.method, route.url(record_id), json=_body(route))
    if resp.status_code != 404 or not str(resp.json()["error"]["code"]).endswith("_not_found"):
        wrong.append(f"{route.method} {route.url(record_id)} as {who}: {resp.status_code} {resp.text[:200]}")


def test_another_tenants_records_are_404_to_every_role(
    gateway: Gateway, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    admin = Admin(gateway.url)
    wrong: list[str] = []
    by_id = [r for r in ROUTES if r.by_id and r.resource not in SHARED]
    for world, other in (worlds, worlds[::-1]):
        foreign = _foreign_ids(other)
        unseeded = sorted({r.collection for r in by_id} - set(foreign))
        assert not unseeded, f"add a record of another tenant for {unseeded} to this test"
        for role in ROLES[1:]:
            for route in by_id:
                if reach(role, route.resource, route.action) is not Reach.NONE:
                    _expect_404(world.caller(admin, role), route, foreign[route.collection],
                                f"{role} of {world.tenant}", wrong)
    assert not wrong, "\n".join(wrong)
    _untouched(admin, worlds)


def _all_ids(world: TenantWorld) -> set[str]:
    return {world.team1, world.team2, *world.users.values(), *world.key_ids.values(), world.peer,
            world.peer_key, world.member2, world.member2_key, world.sa2, world.sa2_key, world.sub1,
            world.sub2, world.limit, world.budget, world.prompt, world.prompt2, world.api, world.service,
            world.mcp_server, world.token_revocation}


# Lists that answer a summary, not pages of records (an unknown parameter is refused there).
# Lists that take no page parameters (a parameter a list does not take is a 400).
UNPAGED = frozenset({"/admin/v1/analytics", "/admin/v1/catalog/openapi.json", "/admin/v1/limits",
                     "/admin/v1/budgets", "/admin/v1/services", "/admin/v1/apis",
                     "/admin/v1/usage/unpriced"})


def test_no_list_shows_another_tenants_records_to_any_role(
    gateway: Gateway, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    admin = Admin(gateway.url)
    wrong: list[str] = []
    lists = [r for r in ROUTES if r.method == "GET" and not r.by_id]
    for world, other in (worlds, worlds[::-1]):
        theirs = _all_ids(other) | {other.tenant}
        for role in ROLES[1:]:
            for route in lists:
                if reach(role, route.resource, route.action) is Reach.NONE:
                    continue
                params = {} if route.path in UNPAGED else {"limit": 1000}
                resp = world.caller(admin, role).call("GET", route.path, params=params)
                leaked = sorted(i for i in theirs if i in resp.text)
                if resp.status_code != 200 or leaked:
                    wrong.append(f"GET {route.path} as {role} of {world.tenant}: {resp.status_code}, "
                                 f"shows {leaked}")
    assert not wrong, "\n".join(wrong)
    # ... while the platform admin, naming the tenant, sees them.
    listed = admin.ok("GET", "/admin/v1/keys", params={"tenant": worlds[1].tenant, "limit": 1000})
    assert worlds[1].member2_key in {k["id"] for k in listed["data"]}


def test_another_teams_and_other_peoples_records_are_404_to_team_roles(
    gateway: Gateway, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    admin = Admin(gateway.url)
    wrong: list[str] = []
    world = worlds[0]
    for role in ("team_admin", "developer", "viewer"):
        caller = world.caller(admin, role)
        for route in ROUTES:
            level = reach(role, route.resource, route.action)
            if not route.by_id or level not in (Reach.TEAM, Reach.SELF):
                continue
            targets = [_other_team_ids(world).get(route.collection)]
            if level is Reach.SELF:  # someone else of the same team
                targets.append({"/admin/v1/users": world.peer, "/admin/v1/keys": world.peer_key}.get(
                    route.collection))
            for target in filter(None, targets):
                _expect_404(caller, route, target, f"{role} of {world.tenant}/team1", wrong)
    assert not wrong, "\n".join(wrong)
    _untouched(admin, worlds)


def _untouched(admin: Admin, worlds: tuple[TenantWorld, TenantWorld]) -> None:
    """Nothing the refused calls aimed at changed."""
    for world in worlds:
        assert admin.ok("GET", f"/admin/v1/tenants/{world.tenant}")["name"] == world.tenant.upper()
        assert admin.ok("GET", f"/admin/v1/teams/{world.team2}")["name"] == "two"
        assert admin.ok("GET", f"/admin/v1/users/{world.member2}")["name"] == "member of two"
        for key_id in (world.member2_key, world.sa2_key, world.key_ids["developer"], world.peer_key):
            assert admin.ok("GET", f"/admin/v1/keys/{key_id}")["enabled"] is True
        for sub in (world.sub1, world.sub2):
            shown = admin.ok("GET", f"/admin/v1/subscriptions/{sub}", params={"tenant": world.tenant})
            assert shown["status"] == "pending"
        assert admin.ok("GET", f"/admin/v1/limits/{world.limit}")["rpm"] == 1_000_000
        assert admin.ok("GET", f"/admin/v1/budgets/{world.budget}")["max_amount"] == 1_000_000


def test_a_key_above_the_callers_role_is_neither_limited_nor_budgeted_by_it(
    gateway: Gateway, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    """A key's budget or rate limit stops it (or frees it) as a block does, so, as blocking it,
    setting, replacing or removing one is not for a caller below the key's role: a tenant admin
    reads the budget and limit of a platform admin's key of its tenant, and changes neither."""
    admin, world = Admin(gateway.url), worlds[0]
    tenant_admin = world.caller(admin, "tenant_admin")
    body = {"models": ["*"], "tenant": world.tenant, "role": "platform_admin"}
    above = admin.ok("POST", "/admin/v1/keys", body, status=201)
    on_key = {"scope": "key", "subject": above["id"]}
    on_key_model = {"scope": "key_model", "key": above["id"], "model": "gpt-4o-mini"}
    budget = admin.ok("PUT", "/admin/v1/budgets", {**on_key, "tenant": world.tenant, "max_amount": 1000})
    limit = admin.ok("PUT", "/admin/v1/limits", {**on_key_model, "tenant": world.tenant, "rpm": 1000})
    for method, path, body in [
        ("PUT", "/admin/v1/budgets", {**on_key, "max_amount": 0.000001}),
        ("PUT", "/admin/v1/limits", {**on_key_model, "rpm": 1}),
        ("DELETE", f"/admin/v1/budgets/{budget['id']}", None),
        ("DELETE", f"/admin/v1/limits/{limit['id']}", None),
    ]:
        resp = tenant_admin.call(method, path, json=body)
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "permission_denied", resp.text
    assert tenant_admin.ok("GET", f"/admin/v1/budgets/{budget['id']}")["max_amount"] == 1000
    assert tenant_admin.ok("GET", f"/admin/v1/limits/{limit['id']}")["rpm"] == 1000
    for record in (budget, limit):
        params = {"tenant": world.tenant, "resource_id": record["id"]}
        entries = admin.ok("GET", "/admin/v1/audit", params=params)
        assert [e["action"] for e in entries["data"]] in (["budget.set"], ["limit.set"])
    # A key of its own role is its to budget and limit, and to free again.
    own = world.key_ids["tenant_admin"]
    mine = tenant_admin.ok("PUT", "/admin/v1/budgets", {"scope": "key", "subject": own, "max_amount": 1000})
    tenant_admin.ok("DELETE", f"/admin/v1/budgets/{mine['id']}")
    body = {"scope": "key_model", "key": own, "model": "gpt-4o-mini", "rpm": 1000}
    mine = tenant_admin.ok("PUT", "/admin/v1/limits", body)
    tenant_admin.ok("DELETE", f"/admin/v1/limits/{mine['id']}")
    admin.ok("DELETE", f"/admin/v1/budgets/{budget['id']}")
    admin.ok("DELETE", f"/admin/v1/limits/{limit['id']}")
    admin.ok("DELETE", f"/admin/v1/keys/{above['id']}")


def test_no_key_is_issued_owned_by_a_user_above_the_callers_role(
    gateway: Gateway, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    """A key reaches its owner's other keys, to read them: a developer key a team admin issued to
    the tenant admin of its team would show it the tenant admin's keys. Refused (403, naming the
    role, nothing issued); a user of the team admin's role or below still gets one."""
    admin, world = Admin(gateway.url), worlds[0]
    team_admin = world.caller(admin, "team_admin")
    above = world.users["tenant_admin"]
    owned = {"tenant": world.tenant, "user": above}
    before = [k["id"] for k in admin.ok("GET", "/admin/v1/keys", params=owned)["data"]]
    refused = team_admin.call("POST", "/admin/v1/keys", {"models": ["gpt-4o-mini"], "user": above})
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert error["code"] == "permission_denied" and "'tenant_admin'" in error["message"], error
    assert [k["id"] for k in admin.ok("GET", "/admin/v1/keys", params=owned)["data"]] == before
    for user in (world.users["team_admin"], world.peer):
        body = {"models": ["gpt-4o-mini"], "user": user}
        issued = team_admin.ok("POST", "/admin/v1/keys", body, status=201)
        assert (issued["user"], issued["role"]) == (user, "developer")
        admin.ok("DELETE", f"/admin/v1/keys/{issued['id']}")
