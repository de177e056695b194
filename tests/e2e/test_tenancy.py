"""Tenants, teams, users and service accounts through the admin API of a real gateway
(embedded and cluster): what each role creates, sees and changes, how keys follow their owners,
what a tenant's audit log shows, and that bad input is a 400 that names the field."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.sdk import ask
from tests.e2e.tenancy_world import GATED, Admin, TenantWorld, build_world, deployment_fixture
from tests.servers import MASTER_KEY, Gateway, spawn

gateway = deployment_fixture("gateway")


@pytest.fixture(scope="module")
def worlds(gateway: Gateway) -> tuple[TenantWorld, TenantWorld]:
    admin = Admin(gateway.url)
    return build_world(admin, "ten-a"), build_world(admin, "ten-b")


@pytest.fixture
def admin(gateway: Gateway) -> Admin:
    return Admin(gateway.url)


def ids(listing: dict[str, Any]) -> set[str]:
    return {item["id"] for item in listing["data"]}


def error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()["error"]
    assert body["code"], body
    return dict(body)


def test_tenant_lifecycle(admin: Admin) -> None:
    created = admin.ok("POST", "/admin/v1/tenants", {"id": "lifecycle", "name": "Life"}, status=201)
    assert (created["id"], created["object"], created["name"], created["created_by"]) == (
        "lifecycle", "tenant", "Life", "master")
    assert error(admin.call("POST", "/admin/v1/tenants", {"id": "lifecycle"}), 409)["code"] == "conflict"
    assert admin.ok("PATCH", "/admin/v1/tenants/lifecycle", {"name": "Life Ltd"})["name"] == "Life Ltd"
    assert admin.ok("GET", "/admin/v1/tenants/lifecycle")["name"] == "Life Ltd"
    team = admin.ok("POST", "/admin/v1/teams", {"name": "t", "tenant": "lifecycle"}, status=201)
    refused = error(admin.call("DELETE", "/admin/v1/tenants/lifecycle"), 409)
    assert refused["code"] == "conflict" and "1 team(s)" in refused["message"]
    admin.ok("DELETE", f"/admin/v1/teams/{team['id']}")
    assert admin.ok("DELETE", "/admin/v1/tenants/lifecycle") == {
        "id": "lifecycle", "object": "tenant", "deleted": True}
    assert error(admin.call("GET", "/admin/v1/tenants/lifecycle"), 404)["code"] == "tenant_not_found"
    assert error(admin.call("DELETE", "/admin/v1/tenants/default"), 409)["code"] == "conflict"
    missing = admin.call("POST", "/admin/v1/teams", {"name": "t", "tenant": "lifecycle"})
    assert error(missing, 404)["code"] == "tenant_not_found"


def test_tenant_lists_page_and_each_tenant_sees_only_itself(
    admin: Admin, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    a, b = worlds
    seen, after = [], None
    while True:
        params = {"limit": 1, **({"after": after} if after else {})}
        listing = admin.ok("GET", "/admin/v1/tenants", params=params)
        seen += [t["id"] for t in listing["data"]]
        if not listing["has_more"]:
            break
        after = listing["last_id"]
    assert {"default", a.tenant, b.tenant} <= set(seen) and seen == sorted(seen)
    for role in ("tenant_admin", "viewer"):
        mine = a.caller(admin, role)
        assert ids(mine.ok("GET", "/admin/v1/tenants")) == {a.tenant}
        assert mine.ok("GET", f"/admin/v1/tenants/{a.tenant}")["id"] == a.tenant
    renamed = a.caller(admin, "tenant_admin").ok("PATCH", f"/admin/v1/tenants/{a.tenant}", {"name": "TEN-A"})
    assert renamed["name"] == "TEN-A"


def test_a_tenant_admin_runs_its_tenant(admin: Admin, worlds: tuple[TenantWorld, TenantWorld]) -> None:
    a, b = worlds
    boss = a.caller(admin, "tenant_admin")
    team = boss.ok("POST", "/admin/v1/teams", {"name": "platform"}, status=201)
    assert team["tenant"] == a.tenant and team["id"].startswith("team_")
    assert team["id"] in ids(boss.ok("GET", "/admin/v1/teams"))
    assert ids(boss.ok("GET", "/admin/v1/teams")).isdisjoint(ids(admin.ok("GET", "/admin/v1/teams",
                                                                        params={"tenant": b.tenant})))
    body = {"name": "Grace", "email": "grace@a.test", "role": "team_admin", "team": team["id"]}
    grace = boss.ok("POST", "/admin/v1/users", body, status=201)
    assert (grace["object"], grace["tenant"], grace["team"], grace["role"]) == (
        "user", a.tenant, team["id"], "team_admin")
    bot = boss.ok("POST", "/admin/v1/service-accounts", {"name": "ci", "team": team["id"]}, status=201)
    assert bot["object"] == "service_account" and bot["id"].startswith("sa_") and bot["role"] == "developer"
    listed = boss.ok("GET", "/admin/v1/users", params={"team": team["id"]})
    assert ids(listed) == {grace["id"], bot["id"]}
    people = boss.ok("GET", "/admin/v1/users", params={"team": team["id"], "kind": "user"})
    assert ids(people) == {grace["id"]}
    assert ids(boss.ok("GET", "/admin/v1/service-accounts", params={"team": team["id"]})) == {bot["id"]}
    assert ids(boss.ok("GET", "/admin/v1/users", params={"role": "team_admin"})) >= {grace["id"]}
    # A person is not a service account, and another tenant's team is not there.
    assert error(boss.call("GET", f"/admin/v1/service-accounts/{grace['id']}"), 404)["code"] == (
        "service_account_not_found")
    stray = boss.call("POST", "/admin/v1/users", {"name": "x", "team": b.team1})
    assert error(stray, 404)["code"] == "team_not_found"
    other = boss.call("POST", "/admin/v1/users", {"name": "x", "tenant": b.tenant})
    assert error(other, 404)["code"] == "tenant_not_found"
    changed = boss.ok("PATCH", f"/admin/v1/users/{grace['id']}", {"role": "developer", "email": None})
    assert (changed["role"], changed["email"]) == ("developer", None)
    key = boss.ok("POST", "/admin/v1/keys", {"models": ["*"], "user": grace["id"]}, status=201)
    assert (key["team"], key["role"], key["tenant"]) == (team["id"], "developer", a.tenant)
    refused = error(boss.call("DELETE", f"/admin/v1/users/{grace['id']}"), 409)
    assert refused["code"] == "conflict" and "unrevoked" in refused["message"]
    assert error(boss.call("DELETE", f"/admin/v1/teams/{team['id']}"), 409)["code"] == "conflict"
    boss.ok("DELETE", f"/admin/v1/keys/{key['id']}")
    boss.ok("DELETE", f"/admin/v1/users/{grace['id']}")
    boss.ok("DELETE", f"/admin/v1/service-accounts/{bot['id']}")
    assert boss.ok("DELETE", f"/admin/v1/teams/{team['id']}")["deleted"] is True
    assert error(boss.call("GET", f"/admin/v1/users/{grace['id']}"), 404)["code"] == "user_not_found"


def test_nobody_gives_a_role_above_their_own(admin: Admin, worlds: tuple[TenantWorld, TenantWorld]) -> None:
    a, _ = worlds
    lead = a.caller(admin, "team_admin")
    above = lead.call("POST", "/admin/v1/users", {"name": "x", "role": "tenant_admin"})
    assert error(above, 403)["code"] == "permission_denied"
    boss_id = a.users["tenant_admin"]
    assert error(lead.call("PATCH", f"/admin/v1/users/{boss_id}", {"name": "x"}), 403)["code"] == (
        "permission_denied")
    promote = lead.call("PATCH", f"/admin/v1/users/{a.users['viewer']}", {"role": "tenant_admin"})
    assert error(promote, 403)["code"] == "permission_denied"
    too_strong = lead.call("POST", "/admin/v1/keys", {"models": ["*"], "role": "tenant_admin"})
    assert error(too_strong, 403)["code"] == "permission_denied"
    # The team admin sees its tenant admin's key (same team) but may neither rotate nor revoke it.
    boss_key = a.key_ids["tenant_admin"]
    assert lead.ok("GET", f"/admin/v1/keys/{boss_key}")["role"] == "tenant_admin"
    for method, path in (("POST", f"/admin/v1/keys/{boss_key}/rotate"),
                         ("DELETE", f"/admin/v1/keys/{boss_key}")):
        assert error(lead.call(method, path), 403)["code"] == "permission_denied"
    assert admin.ok("GET", f"/admin/v1/keys/{boss_key}")["enabled"] is True
    # A key may not outrank its owner; unnamed, its role is capped at the owner's.
    viewer = a.users["viewer"]
    capped = admin.ok("POST", "/admin/v1/keys", {"models": ["*"], "user": viewer}, status=201)
    assert capped["role"] == "viewer" and capped["team"] == a.team1
    over = admin.call("POST", "/admin/v1/keys", {"models": ["*"], "user": viewer, "role": "developer"})
    assert error(over, 403)["code"] == "permission_denied"


def test_keys_follow_their_owner_when_it_is_demoted_or_moved(
    admin: Admin, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    a, _ = worlds
    boss = a.caller(admin, "tenant_admin")
    body = {"name": "Sam", "role": "team_admin", "team": a.team1}
    sam = boss.ok("POST", "/admin/v1/users", body, status=201)
    key = boss.ok("POST", "/admin/v1/keys", {"models": ["*"], "user": sam["id"], "role": "team_admin"},
                  status=201)
    as_sam = admin.as_key(key["key"])
    assert as_sam.ok("GET", "/admin/v1/users", params={"limit": 1000})["data"]  # seen, so cached
    boss.ok("PATCH", f"/admin/v1/users/{sam['id']}", {"role": "viewer", "team": a.team2})
    shown = boss.ok("GET", f"/admin/v1/keys/{key['id']}")
    assert (shown["role"], shown["team"]) == ("viewer", a.team2)
    # The cached key lost its rank at once: a viewer may not create users.
    refused = as_sam.call("POST", "/admin/v1/users", {"name": "x"})
    assert error(refused, 403)["code"] == "permission_denied"
    log = boss.ok("GET", "/admin/v1/audit", params={"resource_id": key["id"], "action": "key.update"})
    [entry] = log["data"]
    assert (entry["before"]["role"], entry["after"]["role"]) == ("team_admin", "viewer")
    boss.ok("DELETE", f"/admin/v1/keys/{key['id']}")
    boss.ok("DELETE", f"/admin/v1/users/{sam['id']}")


def test_team_admins_and_developers_issue_keys_within_reach(
    admin: Admin, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    a, _ = worlds
    lead = a.caller(admin, "team_admin")
    mine = lead.ok("POST", "/admin/v1/keys", {"models": ["gpt-4o-mini"], "user": a.peer, "tags": ["ci"]},
                   status=201)
    assert (mine["tenant"], mine["team"], mine["user"], mine["tags"]) == (a.tenant, a.team1, a.peer, ["ci"])
    elsewhere = lead.call("POST", "/admin/v1/keys", {"models": ["*"], "team": a.team2})
    assert error(elsewhere, 404)["code"] == "team_not_found"
    not_mine = lead.call("POST", "/admin/v1/keys", {"models": ["*"], "user": a.member2})
    assert error(not_mine, 404)["code"] == "user_not_found"
    listed = ids(lead.ok("GET", "/admin/v1/keys", params={"limit": 1000}))
    assert mine["id"] in listed and a.member2_key not in listed and a.peer_key in listed
    assert ids(lead.ok("GET", "/admin/v1/keys", params={"tag": "ci", "limit": 1000})) == {mine["id"]}

    dev = a.caller(admin, "developer")
    own = dev.ok("POST", "/admin/v1/keys", {"models": ["*"], "name": "laptop"}, status=201)
    assert (own["user"], own["team"], own["role"]) == (a.users["developer"], a.team1, "developer")
    assert error(dev.call("POST", "/admin/v1/keys", {"models": ["*"], "user": a.peer}), 404)["code"] == (
        "user_not_found")
    assert ids(dev.ok("GET", "/admin/v1/keys")) == {a.key_ids["developer"], own["id"]}
    rotated = dev.ok("POST", f"/admin/v1/keys/{own['id']}/rotate", {"grace_seconds": 0}, status=201)
    dev.ok("DELETE", f"/admin/v1/keys/{rotated['id']}")
    assert error(dev.call("DELETE", f"/admin/v1/keys/{a.peer_key}"), 404)["code"] == "key_not_found"
    # Developers read only themselves among users; viewers their team.
    assert ids(dev.ok("GET", "/admin/v1/users")) == {a.users["developer"]}
    team1 = ids(a.caller(admin, "viewer").ok("GET", "/admin/v1/users", params={"limit": 1000}))
    assert team1 == {*a.users.values(), a.peer}


def test_service_account_keys_call_models_and_issue_their_own(
    admin: Admin, gateway: Gateway, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    a, _ = worlds
    shown = admin.ok("GET", f"/admin/v1/keys/{a.sa2_key}")
    assert (shown["service_account"], shown["user"], shown["team"]) == (a.sa2, None, a.team2)
    body = {"models": ["gpt-4o-mini"], "service_account": a.sa2, "tenant": a.tenant}
    key = admin.ok("POST", "/admin/v1/keys", body, status=201)
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key["key"], max_retries=0, timeout=30)
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=ask("from a robot"))
    assert reply.choices[0].message.content.endswith("You said: from a robot")
    robot = admin.as_key(key["key"])
    child = robot.ok("POST", "/admin/v1/keys", {"models": ["gpt-4o-mini"]}, status=201)
    assert (child["service_account"], child["user"], child["tenant"]) == (a.sa2, None, a.tenant)
    assert ids(robot.ok("GET", "/admin/v1/keys")) == {a.sa2_key, key["id"], child["id"]}
    person = admin.call("POST", "/admin/v1/keys", {"models": ["*"], "service_account": a.users["viewer"],
                                                   "tenant": a.tenant})
    assert error(person, 404)["code"] == "service_account_not_found"


def test_keys_and_audit_are_scoped_to_the_tenant(
    admin: Admin, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    a, b = worlds
    boss = a.caller(admin, "tenant_admin")
    mine = ids(boss.ok("GET", "/admin/v1/keys", params={"limit": 1000}))
    assert {a.member2_key, a.sa2_key, a.peer_key} <= mine
    assert mine.isdisjoint({b.member2_key, b.sa2_key, b.peer_key, *b.key_ids.values()})
    theirs = ids(admin.ok("GET", "/admin/v1/keys", params={"tenant": b.tenant, "limit": 1000}))
    assert {b.member2_key, *b.key_ids.values()} <= theirs
    assert error(boss.call("GET", "/admin/v1/keys", params={"tenant": b.tenant}), 404)["code"] == (
        "tenant_not_found")

    log = boss.ok("GET", "/admin/v1/audit", params={"limit": 1000})["data"]
    touched = {e["resource_id"] for e in log}
    assert {a.team1, a.member2, a.sa2, a.member2_key} <= touched
    assert touched.isdisjoint({b.team1, b.member2, b.sa2, b.member2_key})
    assert {e["action"] for e in log} >= {"tenant.create", "team.create", "user.create",
                                          "service_account.create", "key.create"}
    other = admin.ok("GET", "/admin/v1/audit", params={"tenant": b.tenant, "limit": 1000})["data"]
    # Changes the master key made to b's records (its subscriptions too) are in b's log.
    assert {b.team1, b.member2_key, b.sub1} <= {e["resource_id"] for e in other}
    assert error(boss.call("GET", "/admin/v1/audit", params={"tenant": b.tenant}), 404)["code"] == (
        "tenant_not_found")
    for secret in a.keys.values():
        assert secret not in str(log)


def test_a_keys_cursor_out_of_the_callers_reach_is_an_unknown_one(
    admin: Admin, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    a, b = worlds
    for role, out_of_reach in (("team_admin", a.member2_key), ("developer", a.peer_key)):
        caller = a.caller(admin, role)
        mine = caller.ok("GET", "/admin/v1/keys")["data"]
        assert mine and out_of_reach not in {k["id"] for k in mine}
        # Another team's (or user's) key, another tenant's and a made-up one: one answer, so a
        # page after it does not tell that it exists.
        for cursor in (out_of_reach, b.key_ids["team_admin"], "key_0000000000000000"):
            got = error(caller.call("GET", "/admin/v1/keys", params={"after": cursor}), 400)
            assert (got["param"], got["code"]) == ("after", "invalid_value"), got
        # Its own keys page on as before.
        assert caller.ok("GET", "/admin/v1/keys", params={"after": mine[-1]["id"]})["data"] == []
    # The tenant's whole reach pages after any key of it.
    assert admin.ok("GET", "/admin/v1/keys", params={"tenant": a.tenant, "after": a.member2_key})["data"]


@pytest.mark.parametrize(
    ("method", "path", "body", "param", "code"),
    [
        ("POST", "/admin/v1/tenants", {}, "id", "missing_required_parameter"),
        ("POST", "/admin/v1/tenants", {"id": "a b"}, "id", "invalid_value"),
        ("POST", "/admin/v1/tenants", {"id": "x" * 65}, "id", "invalid_value"),
        ("POST", "/admin/v1/tenants", {"id": "ok", "plan": "gold"}, "plan", "unknown_parameter"),
        ("POST", "/admin/v1/tenants", {"id": 7}, "id", "invalid_value"),
        ("PATCH", "/admin/v1/tenants/default", {"name": "n" * 201}, "name", "invalid_value"),
        ("POST", "/admin/v1/teams", {"name": ""}, "name", "invalid_value"),
        ("POST", "/admin/v1/teams", {"name": ["t"]}, "name", "invalid_value"),
        ("POST", "/admin/v1/teams", {"name": "t", "owner": "x"}, "owner", "unknown_parameter"),
        ("POST", "/admin/v1/users", {"name": "u", "role": "platform_admin"}, "role", "invalid_value"),
        ("POST", "/admin/v1/users", {"name": "u", "role": "root"}, "role", "invalid_value"),
        ("POST", "/admin/v1/users", {"name": "u", "email": "not-an-address"}, "email", "invalid_value"),
        ("POST", "/admin/v1/users", {"name": "u", "email": "a@" + "b" * 400}, "email", "invalid_value"),
        ("POST", "/admin/v1/users", {"name": "u", "team": "'; DROP TABLE users;"}, "team", "invalid_value"),
        ("POST", "/admin/v1/users", {"name": "u", "role": "team_admin"}, "team", "invalid_value"),
        ("POST", "/admin/v1/service-accounts", {"name": "s", "kind": "user"}, "kind", "unknown_parameter"),
        ("PATCH", "/admin/v1/users/x", {"admin": True}, "admin", "unknown_parameter"),
        ("PATCH", "/admin/v1/service-accounts/x", {"kind": "user"}, "kind", "unknown_parameter"),
        ("PATCH", "/admin/v1/teams/x", {"name": 5}, "name", "invalid_value"),
        ("PATCH", "/admin/v1/tenants/default", {"id": "other"}, "id", "unknown_parameter"),
        ("POST", "/admin/v1/service-accounts", {"name": "s" * 201}, "name", "invalid_value"),
        ("POST", "/admin/v1/keys", {"models": ["m"], "role": "root"}, "role", "invalid_value"),
        ("POST", "/admin/v1/keys", {"models": ["m"], "tags": ["a b"]}, "tags[0]", "invalid_value"),
        ("POST", "/admin/v1/keys", {"models": ["m"], "tags": ["t"] * 21}, "tags", "invalid_value"),
        ("POST", "/admin/v1/keys", {"models": ["m"], "tags": "t"}, "tags", "invalid_value"),
        ("POST", "/admin/v1/keys", {"models": ["m"], "service_account": "x" * 65}, "service_account",
         "invalid_value"),
        ("POST", "/admin/v1/keys", {"models": ["m"], "user": "u", "service_account": "s"}, "service_account",
         "invalid_value"),
        ("GET", "/admin/v1/users?limit=0", None, "limit", "invalid_value"),
        ("GET", "/admin/v1/users?kind=robot", None, "kind", "invalid_value"),
        ("GET", "/admin/v1/teams?tenant=a%20b", None, "tenant", "invalid_value"),
        ("GET", "/admin/v1/tenants?after=" + "x" * 65, None, "after", "invalid_value"),
        ("GET", "/admin/v1/audit?tenant=" + "x" * 65, None, "tenant", "invalid_value"),
        ("GET", "/admin/v1/keys?tag=" + "x" * 65, None, "tag", "invalid_value"),
        ("GET", "/admin/v1/keys?tenant=a%2Fb", None, "tenant", "invalid_value"),
        # A misspelt or repeated filter is not ignored: the list would show what was not asked.
        ("GET", "/admin/v1/keys?usr=someone", None, "usr", "unknown_parameter"),
        ("GET", "/admin/v1/keys?user=a&user=b", None, "user", "duplicate_parameter"),
        ("GET", "/admin/v1/users?teem=x", None, "teem", "unknown_parameter"),
        ("GET", "/admin/v1/service-accounts?role=viewer&role=developer", None, "role", "duplicate_parameter"),
        ("GET", "/admin/v1/teams?limit=1&limit=2", None, "limit", "duplicate_parameter"),
        ("GET", "/admin/v1/tenants?page=2", None, "page", "unknown_parameter"),
        # The lists of catalog objects too (they once ignored what they do not take).
        ("GET", "/admin/v1/providers?tenant=x", None, "tenant", "unknown_parameter"),
        ("GET", "/admin/v1/models?limit=1&limit=2", None, "limit", "duplicate_parameter"),
        ("GET", "/admin/v1/services?limit=1", None, "limit", "unknown_parameter"),
        ("GET", "/admin/v1/apis?after=x", None, "after", "unknown_parameter"),
        ("GET", "/admin/v1/apis?status=draft&status=retired", None, "status", "duplicate_parameter"),
        ("GET", "/admin/v1/prompts?teams=x", None, "teams", "unknown_parameter"),
        ("GET", "/admin/v1/mcp/servers?page=2", None, "page", "unknown_parameter"),
        ("PATCH", "/admin/v1/users/x", {"role": 3}, "role", "invalid_value"),
        # Fields required on creation cannot be cleared.
        ("PATCH", "/admin/v1/teams/x", {"name": None}, "name", "invalid_value"),
        ("PATCH", "/admin/v1/users/x", {"name": None}, "name", "invalid_value"),
        ("PATCH", "/admin/v1/users/x", {"role": None}, "role", "invalid_value"),
        ("PATCH", "/admin/v1/service-accounts/x", {"name": None}, "name", "invalid_value"),
    ],
)
def test_bad_input_is_400_naming_the_field(
    admin: Admin, method: str, path: str, body: Any, param: str, code: str
) -> None:
    resp = admin.call(method, path, json=body)
    got = error(resp, 400)
    assert (got["type"], got["code"], got["param"]) == ("invalid_request_error", code, param), got
    assert admin.ok("GET", "/admin/v1/tenants/default")["id"] == "default"


# -- the command line, against the running gateway ---------------------------------------------


def cli(gateway: Gateway, *args: str, key: str = MASTER_KEY) -> tuple[int, str]:
    proc = spawn([*args, "--url", gateway.url, "--key", key], env={"COLUMNS": "250"})
    code = proc.wait_exit(60)
    return code, proc.output


def test_the_command_line_manages_tenants_teams_and_users(
    gateway: Gateway, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    code, output = cli(gateway, "tenants", "create", "cli-co", "--name", "CLI Co", "--json")
    assert code == 0, output
    assert json.loads(output)[0]["name"] == "CLI Co"
    code, table = cli(gateway, "tenants", "list")
    assert code == 0 and "cli-co" in table and "CLI Co" in table
    code, output = cli(gateway, "teams", "create", "ops", "--tenant", "cli-co", "--json")
    team = json.loads(output)[0]
    assert code == 0 and team["tenant"] == "cli-co"
    code, output = cli(gateway, "users", "create", "Lin", "--role", "team_admin", "--team", team["id"],
                       "--email", "lin@cli.test", "--tenant", "cli-co", "--json")
    assert code == 0, output
    lin = json.loads(output)[0]
    # No --tenant: the team's id says which tenant.
    code, output = cli(gateway, "users", "create", "deployer", "--service-account", "--team", team["id"],
                       "--json")
    bot = json.loads(output)[0]
    assert code == 0 and (bot["object"], bot["tenant"]) == ("service_account", "cli-co")
    code, table = cli(gateway, "users", "list", "--tenant", "cli-co", "--team", team["id"])
    assert code == 0 and lin["id"] in table and bot["id"] in table and "team_admin" in table
    code, output = cli(gateway, "service-accounts", "list", "--tenant", "cli-co", "--json")
    assert code == 0 and [u["id"] for u in json.loads(output)] == [bot["id"]]
    code, output = cli(gateway, "users", "update", lin["id"], "--role", "developer", "--json")
    assert code == 0 and json.loads(output)[0]["role"] == "developer"
    code, output = cli(gateway, "teams", "update", team["id"], "--name", "operations", "--json")
    assert code == 0 and json.loads(output)[0]["name"] == "operations"
    code, output = cli(gateway, "users", "show", lin["id"])
    assert code == 0 and "lin@cli.test" in output
    code, output = cli(gateway, "keys", "create", "-m", "gpt-4o-mini", "--service-account", bot["id"],
                       "--role", "viewer", "--tag", "deploy", "--tag", "ci", "--json")
    assert code == 0, output
    robot_key = json.loads(output)
    assert (robot_key["tenant"], robot_key["team"], robot_key["service_account"], robot_key["role"],
            robot_key["tags"]) == ("cli-co", team["id"], bot["id"], "viewer", ["deploy", "ci"])
    code, output = cli(gateway, "keys", "revoke", robot_key["id"])
    assert code == 0, output

    # The same commands as a tenant admin of another tenant: that tenant's records are not there.
    other = worlds[0].keys["tenant_admin"]
    code, output = cli(gateway, "users", "show", lin["id"], key=other)
    assert code == 1 and "HTTP 404" in output and "user_not_found" in output and "Traceback" not in output
    code, output = cli(gateway, "tenants", "list", "--json", key=other)
    assert code == 0 and [t["id"] for t in json.loads(output)] == [worlds[0].tenant]
    code, output = cli(gateway, "tenants", "delete", worlds[0].tenant, key=other)
    assert code == 1 and "permission_denied" in output

    code, output = cli(gateway, "teams", "delete", team["id"])
    assert code == 1 and "HTTP 409" in output and "conflict" in output
    for args in (["service-accounts", "delete", bot["id"]], ["users", "delete", lin["id"]],
                 ["teams", "delete", team["id"]], ["tenants", "delete", "cli-co"]):
        code, output = cli(gateway, *args)
        assert code == 0 and f"deleted {args[2]}" in output, output
    code, output = cli(gateway, "tenants", "show", "cli-co")
    assert code == 1 and "tenant_not_found" in output
    code, output = cli(gateway, "teams", "update", "team_x")
    assert code == 2 and "nothing to change" in output


MARKUP_NAMES = ("ops [/team]", "[bold]x[/bold]")


def test_the_command_line_prints_names_that_look_like_rich_markup_as_written(
        gateway: Gateway, admin: Admin) -> None:
    """Names are other people's text: a closing tag that matches nothing used to crash every
    listing, and ``[bold]`` was styled instead of shown."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    admin.ok("POST", "/admin/v1/tenants", json={"id": tenant, "name": "[/t] corp"}, status=201)
    teams = [admin.ok("POST", "/admin/v1/teams", json={"tenant": tenant, "name": name}, status=201)["id"]
             for name in MARKUP_NAMES]
    user = admin.ok("POST", "/admin/v1/users", status=201, json={
        "tenant": tenant, "name": "[/u] Lin", "role": "developer", "team": teams[0]})["id"]
    bot = admin.ok("POST", "/admin/v1/service-accounts", status=201, json={
        "tenant": tenant, "name": "[red]deployer[/]", "team": teams[1]})["id"]
    shown = {
        ("tenants", "list"): ["[/t] corp"],
        ("tenants", "show", tenant): ["[/t] corp"],
        ("teams", "list", "--tenant", tenant): list(MARKUP_NAMES),
        ("teams", "show", teams[0]): [MARKUP_NAMES[0]],
        ("users", "list", "--tenant", tenant): ["[/u] Lin", "[red]deployer[/]"],
        ("users", "show", user): ["[/u] Lin"],
        ("service-accounts", "list", "--tenant", tenant): ["[red]deployer[/]"],
        ("service-accounts", "show", bot): ["[red]deployer[/]"],
    }
    for args, names in shown.items():
        code, output = cli(gateway, *args)
        assert code == 0 and "Traceback" not in output, (args, output)
        for name in names:
            assert name in output, (args, name, output)


def test_a_deleted_tenants_id_is_never_given_to_a_new_tenant(admin: Admin) -> None:
    # A tenant with data of its own: a rate limit and audit entries, set by its admin.
    tenant = f"gone-{uuid.uuid4().hex[:8]}"
    admin.ok("POST", "/admin/v1/tenants", {"id": tenant, "name": "Old customer"}, status=201)
    key = admin.ok("POST", "/admin/v1/keys", {"models": ["*"], "tenant": tenant, "role": "tenant_admin"},
                   status=201)
    admin.as_key(key["key"]).ok("PUT", "/admin/v1/limits", {"scope": "tenant", "rpm": 5})
    admin.ok("DELETE", f"/admin/v1/keys/{key['id']}")
    admin.ok("DELETE", f"/admin/v1/tenants/{tenant}")
    # The id stays retired: a new customer cannot inherit the old one's limits, prompts, audit.
    again = admin.call("POST", "/admin/v1/tenants", {"id": tenant, "name": "New customer"})
    assert error(again, 409)["code"] == "tenant_id_retired"
    assert error(admin.call("GET", f"/admin/v1/tenants/{tenant}"), 404)["code"] == "tenant_not_found"
    issued = admin.call("POST", "/admin/v1/keys", {"models": ["*"], "tenant": tenant})
    assert error(issued, 404)["code"] == "tenant_not_found"
    assert admin.as_key(key["key"]).call("GET", "/admin/v1/limits").status_code == 401


def test_a_subscription_names_a_team_of_the_tenant(
    admin: Admin, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    a, b = worlds
    tenant_admin = a.caller(admin, "tenant_admin")
    for team in ("team_doesnotexist", b.team1):  # none, or another tenant's
        resp = tenant_admin.call("POST", "/admin/v1/subscriptions", {"model": GATED, "team": team})
        assert error(resp, 404)["code"] == "team_not_found"
    # A team of its own tenant is subscribed as before.
    mine = tenant_admin.call("POST", "/admin/v1/subscriptions", {"model": GATED, "team": a.team2})
    assert mine.status_code in (201, 409), mine.text  # the world already asked for team2


# What the platform admin may create in another tenant, each naming a tenant that does not exist:
# nothing is kept for it (404 tenant_not_found, as for teams, users, limits and budgets).
MADE_UP_TENANT_CASES = [
    ("/admin/v1/services", {"name": "svc-nowhere", "url": "https://svc.example"}),
    ("/admin/v1/prompts", {"name": "p-nowhere", "model": "gpt-4o-mini",
                           "messages": [{"role": "user", "content": "hi"}]}),
    ("/admin/v1/apis", {"name": "api-nowhere", "prompt": "p-nowhere"}),
    ("/admin/v1/subscriptions", {"model": GATED, "team": "team_nowhere"}),
    ("/admin/v1/mcp/servers", {"name": "mcp-nowhere", "url": "https://mcp.example/mcp"}),
    ("/admin/v1/teams", {"name": "t-nowhere"}),
]


@pytest.fixture(scope="module")
def tenant_here(gateway: Gateway) -> str:
    Admin(gateway.url).ok("POST", "/admin/v1/tenants", {"id": "tenant-here"}, status=201)
    return "tenant-here"


def _path_id(value: Any) -> str:
    return value if isinstance(value, str) else ""


@pytest.mark.parametrize(("path", "body"), MADE_UP_TENANT_CASES, ids=_path_id)
def test_a_creation_in_a_tenant_that_does_not_exist_is_404(
    admin: Admin, tenant_here: str, path: str, body: dict[str, Any]
) -> None:
    resp = admin.call("POST", path, {**body, "tenant": "tenant-nowhere"})
    assert error(resp, 404)["code"] == "tenant_not_found", (path, resp.text)
    # The same body in a tenant that exists gets past the tenant (whatever else it then says).
    there = admin.call("POST", path, {**body, "tenant": tenant_here})
    assert there.status_code != 404 or there.json()["error"]["code"] != "tenant_not_found", there.text


# A prompt or an API owned by a team the tenant does not have would be managed by nobody but the
# tenant's admins: the team an admin names must be one of the tenant's (as for services).
MADE_UP_TEAM_CASES = [
    ("/admin/v1/prompts", {"name": "p-team", "model": "gpt-4o-mini",
                           "messages": [{"role": "user", "content": "hi"}]}),
    ("/admin/v1/apis", {"name": "api-team", "prompt": "p-team"}),
]


@pytest.mark.parametrize(("path", "body"), MADE_UP_TEAM_CASES, ids=_path_id)
def test_a_prompt_or_api_of_a_team_that_does_not_exist_is_404(
    admin: Admin, worlds: tuple[TenantWorld, TenantWorld], path: str, body: dict[str, Any]
) -> None:
    a, b = worlds
    tenant_admin = a.caller(admin, "tenant_admin")
    for caller, extra in ((admin, {"tenant": a.tenant}), (tenant_admin, {})):
        for team in ("team_nowhere", b.team1):  # none, or another tenant's
            resp = caller.call("POST", path, {**body, **extra, "team": team})
            assert error(resp, 404)["code"] == "team_not_found", (path, team, resp.text)
    # One of the tenant's teams: created.
    if path == "/admin/v1/apis":
        prompt = {**MADE_UP_TEAM_CASES[0][1], "tenant": a.tenant, "team": a.team1}
        admin.ok("POST", "/admin/v1/prompts", prompt, status=201)
    admin.ok("POST", path, {**body, "tenant": a.tenant, "team": a.team1}, status=201)


# Every admin list that takes ?tenant=: a tenant the platform admin names must exist (404
# tenant_not_found, as on creation), so a typo is not read as "nothing there".
TENANT_CHECKED_LISTS = [
    "/admin/v1/teams", "/admin/v1/users", "/admin/v1/service-accounts", "/admin/v1/keys",
    "/admin/v1/limits", "/admin/v1/budgets", "/admin/v1/services", "/admin/v1/prompts",
    "/admin/v1/apis", "/admin/v1/subscriptions", "/admin/v1/mcp/servers", "/admin/v1/catalog",
    "/admin/v1/catalog/openapi.json", "/admin/v1/alerts",
]
# The lists that read any tenant's name without a record: a JWT's tenant claim needs none (token
# revocations), and what is kept of a tenant outlives its record (the audit log, usage, logs,
# analytics). Alert incidents outlive it too, but their list refuses a tenant that never existed
# (tests/e2e/test_alerts.py).
TENANT_UNCHECKED_LISTS = {
    "/admin/v1/token-revocations", "/admin/v1/audit", "/admin/v1/usage", "/admin/v1/logs",
    "/admin/v1/analytics",
}


def test_every_list_taking_a_tenant_is_in_one_table(gateway: Gateway) -> None:
    """The tables below cover every list route with ?tenant=: a new one must choose."""
    doc = httpx.get(f"{gateway.url}/admin/v1/openapi.json", timeout=10).json()
    taking = {path for path, ops in doc["paths"].items() if "{" not in path and "get" in ops
              and any(p["in"] == "query" and p["name"] == "tenant" for p in ops["get"].get("parameters", []))}
    assert taking == set(TENANT_CHECKED_LISTS) | {
        p for p in taking if any(p.startswith(u) for u in TENANT_UNCHECKED_LISTS)}
    assert set(TENANT_CHECKED_LISTS) <= taking


@pytest.mark.parametrize("path", TENANT_CHECKED_LISTS)
def test_a_list_of_a_tenant_that_does_not_exist_is_404(admin: Admin, tenant_here: str, path: str) -> None:
    resp = admin.call("GET", path, params={"tenant": "tenant-nowhere"})
    assert error(resp, 404)["code"] == "tenant_not_found", (path, resp.text)
    # A tenant that exists, with nothing in it: listed (empty), not refused.
    there = admin.call("GET", path, params={"tenant": tenant_here})
    assert there.status_code == 200, (path, there.text)
    # The platform admin's own tenant is its own, named or not.
    assert admin.call("GET", path, params={"tenant": "default"}).status_code == 200, path


def test_token_revocations_list_a_tenant_without_a_record(admin: Admin) -> None:
    """A JWT's tenant claim needs no tenant record: its revocations are listed (and created) by
    name, as documented."""
    made = admin.ok("POST", "/admin/v1/token-revocations", {"user": "u-1", "tenant": "jwt-only"}, status=201)
    listed = admin.ok("GET", "/admin/v1/token-revocations", params={"tenant": "jwt-only"})
    assert [r["id"] for r in listed["data"]] == [made["id"]]
