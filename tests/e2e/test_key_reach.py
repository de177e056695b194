"""A developer key's "own" reach over its user's other keys ends at its team (docs/access.md,
"Reach"), end to end on the embedded default (SQLite) and a cluster (PostgreSQL + Redis): a key a
team admin issues to a user who also holds another team's key reaches neither that key (read,
rotate, revoke, change) nor its request log, usage or analytics, while it still reaches its
user's keys of its own team; a key of no team reaches its user's keys of no team."""

from __future__ import annotations

import uuid
from typing import Any

from tests.e2e.sdk import ask
from tests.e2e.tenancy_world import Admin
from tests.e2e.test_usage import Deployment, deployment  # noqa: F401 - the module's gateways


def _ids(listing: dict[str, Any]) -> set[str]:
    return {item["id"] for item in listing["data"]}


def _call(d: Deployment, key: str) -> str:
    raw = d.sdk(key).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=ask("reach"))
    return str(raw.headers["x-request-id"])


def _refused(caller: Admin, key_id: str) -> None:
    for method, path, body in (("GET", f"/admin/v1/keys/{key_id}", None),
                               ("POST", f"/admin/v1/keys/{key_id}/rotate", {"grace_seconds": 0}),
                               ("PATCH", f"/admin/v1/keys/{key_id}", {"name": "mine now"}),
                               ("DELETE", f"/admin/v1/keys/{key_id}", None)):
        resp = caller.call(method, path, body)
        assert resp.status_code == 404, f"{method} {path}: {resp.status_code} {resp.text}"
        assert resp.json()["error"]["code"] == "key_not_found"


def _seen(caller: Admin, d: Deployment) -> tuple[set[str], set[str], set[str]]:
    """The request ids of the log, and the keys of the usage report and of analytics, as
    ``caller`` reads them."""
    logs = {r["request_id"] for r in caller.ok("GET", "/admin/v1/logs", params={"limit": 200})["data"]}
    usage = {r["key"] for r in caller.ok("GET", "/admin/v1/usage", params={"group_by": "key"})["data"]}
    series = caller.ok("GET", "/admin/v1/analytics", params={"group_by": "key"})["series"]
    return logs, usage, {s["group"] for s in series if s["totals"]["requests"]}


def test_a_key_does_not_reach_its_users_keys_of_another_team(deployment: Deployment) -> None:  # noqa: F811
    d = deployment
    admin = Admin(d.gateway.url)
    tenant = f"reach-{uuid.uuid4().hex[:8]}"
    admin.ok("POST", "/admin/v1/tenants", {"id": tenant}, status=201)
    t1, t2 = (admin.ok("POST", "/admin/v1/teams", {"tenant": tenant, "name": n}, status=201)["id"]
              for n in ("one", "two"))
    people = {}
    for name, role, team in (("boss", "tenant_admin", None), ("lead", "team_admin", t1),
                             ("u", "developer", None)):
        body = {"tenant": tenant, "name": name, "role": role, **({"team": team} if team else {})}
        people[name] = admin.ok("POST", "/admin/v1/users", body, status=201)["id"]
    boss = admin.as_key(admin.ok("POST", "/admin/v1/keys", {"models": ["*"], "user": people["boss"],
                                                             "role": "tenant_admin"}, status=201)["key"])
    lead = admin.as_key(admin.ok("POST", "/admin/v1/keys", {"models": ["*"], "user": people["lead"],
                                                             "role": "team_admin"}, status=201)["key"])
    user = people["u"]

    # A tenant admin issues team two's key to a user of no team, who then joins team one: the
    # key stays in team two (only keys of the user's former team, none, follow it).
    k2 = boss.ok("POST", "/admin/v1/keys", {"models": ["*"], "user": user, "team": t2}, status=201)
    assert k2["team"] == t2
    boss.ok("PATCH", f"/admin/v1/users/{user}", {"team": t1})
    assert boss.ok("GET", f"/admin/v1/keys/{k2['id']}")["team"] == t2
    # Team one's admin issues the user a developer key, and another it calls models with.
    k1 = lead.ok("POST", "/admin/v1/keys", {"models": ["*"], "user": user}, status=201)
    other = lead.ok("POST", "/admin/v1/keys", {"models": ["*"], "user": user}, status=201)
    assert (k1["team"], k1["role"], other["team"]) == (t1, "developer", t1)
    mine, theirs = _call(d, other["key"]), _call(d, k2["key"])
    d.wait_for({mine, theirs}, tenant=tenant)

    dev = admin.as_key(k1["key"])
    _refused(dev, k2["id"])
    assert _ids(dev.ok("GET", "/admin/v1/keys", params={"limit": 1000})) == {k1["id"], other["id"]}
    assert _ids(dev.ok("GET", "/admin/v1/keys", params={"user": user})) == {k1["id"], other["id"]}
    logs, usage, analytics = _seen(dev, d)
    assert (logs, usage, analytics) == ({mine}, {other["id"]}, {other["id"]})
    assert dev.ok("GET", "/admin/v1/logs", params={"request_id": theirs})["data"] == []
    # Team two's key is as it was, live: nothing above rotated, changed or revoked it.
    shown = boss.ok("GET", f"/admin/v1/keys/{k2['id']}")
    assert (shown["enabled"], shown["name"], shown["updated_at"]) == (True, None, None)
    # The developer still acts on its user's keys of its own team.
    assert dev.ok("PATCH", f"/admin/v1/keys/{other['id']}", {"name": "ci"})["name"] == "ci"
    rotated = dev.ok("POST", f"/admin/v1/keys/{other['id']}/rotate", {"grace_seconds": 0}, status=201)
    dev.ok("DELETE", f"/admin/v1/keys/{rotated['id']}")


def test_a_key_of_no_team_reaches_its_users_keys_of_no_team(deployment: Deployment) -> None:  # noqa: F811
    d = deployment
    admin = Admin(d.gateway.url)
    tenant = f"reach-{uuid.uuid4().hex[:8]}"
    admin.ok("POST", "/admin/v1/tenants", {"id": tenant}, status=201)
    team = admin.ok("POST", "/admin/v1/teams", {"tenant": tenant, "name": "one"}, status=201)["id"]
    user = admin.ok("POST", "/admin/v1/users", {"tenant": tenant, "name": "v"}, status=201)["id"]
    own, spare = (admin.ok("POST", "/admin/v1/keys", {"models": ["*"], "user": user}, status=201)
                  for _ in range(2))
    teamed = admin.ok("POST", "/admin/v1/keys", {"models": ["*"], "user": user, "team": team}, status=201)
    assert (own["team"], spare["team"], teamed["team"]) == (None, None, team)
    mine, theirs = _call(d, spare["key"]), _call(d, teamed["key"])
    d.wait_for({mine, theirs}, tenant=tenant)

    dev = admin.as_key(own["key"])
    assert _ids(dev.ok("GET", "/admin/v1/keys")) == {own["id"], spare["id"]}
    assert dev.ok("GET", f"/admin/v1/keys/{spare['id']}")["id"] == spare["id"]
    _refused(dev, teamed["id"])
    assert _seen(dev, d) == ({mine}, {spare["id"]}, {spare["id"]})
