"""Budgets through the admin API, against the real server on the embedded default (SQLite) and on
a cluster (PostgreSQL and Redis): set, replace, read, list and delete budgets on tenants, teams,
users and keys, each change audited; a key's own budget (``max_budget_usd``, ``budget_period``)
on create, read, list and rotate; bad input of every field is a 400 (or 404 for a subject that
does not exist) and the server keeps serving; ``switchboard budgets`` on the embedded default.

The live ``status`` of a budget comes from the running budgets; these tests assert the budget as
set, and only that the ``status`` field is present."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.sdk import ask
from tests.e2e.tenancy_world import deployment_fixture
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, spawn, start_gateway
from tests.services import Postgres, start_redis

deployment = deployment_fixture("deployment")

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
FIELDS = {"id", "object", "tenant", "scope", "subject", "unit", "max_amount", "period", "timezone",
          "thresholds", "downgrade", "created_at", "updated_at", "created_by", "status"}


def admin(gw: Gateway, method: str, path: str, json: Any = None, key: str = MASTER_KEY,
          params: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.request(method, gw.url + path, json=json, params=params, timeout=30,
                         headers={"Authorization": f"Bearer {key}"})


def ok(gw: Gateway, method: str, path: str, json: Any = None, status: int = 200, **kw: Any) -> Any:
    resp = admin(gw, method, path, json, **kw)
    assert resp.status_code == status, f"{method} {path}: {resp.status_code} {resp.text}"
    return resp.json()


def _team(gw: Gateway) -> str:
    return str(ok(gw, "POST", "/admin/v1/teams", {"name": f"t-{uuid.uuid4().hex[:6]}"}, status=201)["id"])


def _user(gw: Gateway) -> str:
    return str(ok(gw, "POST", "/admin/v1/users", {"name": f"u-{uuid.uuid4().hex[:6]}"}, status=201)["id"])


def _key(gw: Gateway, **extra: Any) -> dict[str, Any]:
    return dict(ok(gw, "POST", "/admin/v1/keys", {"models": ["*"], **extra}, status=201))


def _serves(gw: Gateway) -> None:
    client = openai.OpenAI(base_url=gw.base_url, api_key=_key(gw)["key"], max_retries=0, timeout=30)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=ask("still there?")).choices


# -- budgets --------------------------------------------------------------------------------------


def test_set_replace_read_list_and_delete_budgets(deployment: Gateway) -> None:
    gw, team = deployment, _team(deployment)
    body = {"scope": "team", "subject": team, "max_amount": 25.5, "period": "daily",
            "timezone": "Europe/Paris", "thresholds": [80, 50], "downgrade": {"model": "gpt-4o-mini",
                                                                           "at_percent": 90}}
    first = ok(gw, "PUT", "/admin/v1/budgets", body)
    assert set(first) == FIELDS
    assert first["id"].startswith("bud_") and first["object"] == "budget"
    assert (first["tenant"], first["scope"], first["subject"], first["unit"], first["period"]) == (
        "default", "team", team, "usd", "daily")
    assert first["max_amount"] == 25.5 and isinstance(first["max_amount"], float)
    assert first["timezone"] == "Europe/Paris" and first["thresholds"] == [50, 80]
    assert first["downgrade"] == {"model": "gpt-4o-mini", "at_percent": 90}
    assert first["created_by"] == "master"
    status = first["status"]  # the running budgets' view of the current period, when they run
    assert status is None or {"period_start", "spent", "remaining", "percent_used"} <= set(status)

    # The same (scope, subject, unit, period): replaced in place, defaults back where not given.
    again = ok(gw, "PUT", "/admin/v1/budgets", {"scope": "team", "subject": team, "max_amount": "30.10",
                                                 "period": "daily"})
    assert again["id"] == first["id"] and again["created_at"] == first["created_at"]
    assert (again["max_amount"], again["timezone"], again["thresholds"], again["downgrade"]) == (
        30.1, None, None, None)
    # Another period, another unit: other budgets on the same team.
    monthly = ok(gw, "PUT", "/admin/v1/budgets", {"scope": "team", "subject": team, "max_amount": 500})
    tokens = ok(gw, "PUT", "/admin/v1/budgets", {"scope": "team", "subject": team, "unit": "tokens",
                                                 "max_amount": 2_000_000, "period": "total",
                                                 "thresholds": []})
    assert monthly["period"] == "monthly" and monthly["id"] != first["id"]
    assert tokens["max_amount"] == 2_000_000 and isinstance(tokens["max_amount"], int)
    assert tokens["thresholds"] == []

    listed = ok(gw, "GET", "/admin/v1/budgets", params={"scope": "team"})["data"]
    mine = {b["id"]: b for b in listed if b["subject"] == team}
    assert set(mine) == {first["id"], monthly["id"], tokens["id"]}
    assert all(b["scope"] == "team" for b in listed)
    assert ok(gw, "GET", f"/admin/v1/budgets/{tokens['id']}")["max_amount"] == 2_000_000

    deleted = ok(gw, "DELETE", f"/admin/v1/budgets/{first['id']}")
    assert deleted == {"id": first["id"], "object": "budget", "deleted": True}
    gone = admin(gw, "GET", f"/admin/v1/budgets/{first['id']}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "budget_not_found"
    assert admin(gw, "DELETE", f"/admin/v1/budgets/{first['id']}").status_code == 404

    audit = ok(gw, "GET", "/admin/v1/audit", params={"resource_id": first["id"]})["data"]
    actions = sorted(e["action"] for e in audit)
    assert actions == ["budget.delete", "budget.set", "budget.set"]
    replaced = next(e for e in audit if e["action"] == "budget.set" and e["before"] is not None)
    assert replaced["before"]["max_amount"] == 25.5 and replaced["after"]["max_amount"] == 30.1


def test_budgets_on_the_tenant_a_user_and_a_key(deployment: Gateway) -> None:
    gw = deployment
    tenant = ok(gw, "PUT", "/admin/v1/budgets", {"scope": "tenant", "max_amount": 1000})
    assert tenant["subject"] == "default"
    named = ok(gw, "PUT", "/admin/v1/budgets", {"scope": "tenant", "subject": "default", "max_amount": 900})
    assert named["id"] == tenant["id"] and named["max_amount"] == 900
    user = _user(gw)
    assert ok(gw, "PUT", "/admin/v1/budgets", {"scope": "user", "subject": user, "max_amount": 5,
                                               "period": "weekly"})["subject"] == user
    key = _key(gw)
    on_key = ok(gw, "PUT", "/admin/v1/budgets", {"scope": "key", "subject": key["id"], "max_amount": 1})
    assert on_key["subject"] == key["id"]
    # A revoked key spends nothing more: no new budget on it (as for one that never existed).
    ok(gw, "DELETE", f"/admin/v1/keys/{key['id']}")
    refused = admin(gw, "PUT", "/admin/v1/budgets", {"scope": "key", "subject": key["id"], "max_amount": 2})
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "key_not_found"
    ok(gw, "DELETE", f"/admin/v1/budgets/{tenant['id']}")  # leave the tenant unbudgeted


def test_a_tenant_admin_manages_its_tenants_budgets_only(deployment: Gateway) -> None:
    gw = deployment
    tenant = f"bt-{uuid.uuid4().hex[:6]}"
    ok(gw, "POST", "/admin/v1/tenants", {"id": tenant}, status=201)
    user = ok(gw, "POST", "/admin/v1/users", {"tenant": tenant, "name": "boss", "role": "tenant_admin"},
              status=201)["id"]
    boss = _key(gw, tenant=tenant, user=user, role="tenant_admin")["key"]
    mine = ok(gw, "PUT", "/admin/v1/budgets", {"scope": "tenant", "max_amount": 10}, key=boss)
    assert mine["tenant"] == tenant and mine["created_by"] != "master"
    other = ok(gw, "PUT", "/admin/v1/budgets", {"scope": "tenant", "max_amount": 10})  # the default tenant
    resp = admin(gw, "GET", f"/admin/v1/budgets/{other['id']}", key=boss)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "budget_not_found"
    resp = admin(gw, "PUT", "/admin/v1/budgets", {"scope": "tenant", "max_amount": 1, "tenant": "default"},
                 key=boss)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "tenant_not_found"
    assert [b["id"] for b in ok(gw, "GET", "/admin/v1/budgets", key=boss)["data"]] == [mine["id"]]
    # The platform admin names the tenant.
    theirs = ok(gw, "GET", "/admin/v1/budgets", params={"tenant": tenant})["data"]
    assert [b["id"] for b in theirs] == [mine["id"]]
    missing = admin(gw, "PUT", "/admin/v1/budgets", {"scope": "tenant", "max_amount": 1, "tenant": "nope-x"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "tenant_not_found"
    ok(gw, "DELETE", f"/admin/v1/budgets/{other['id']}")


TEAM = "<team>"  # replaced by a real team id


@pytest.mark.parametrize(("body", "status", "code", "param"), [
    ({"scope": "team", "subject": TEAM, "max_amount": 1, "burst": 2}, 400, "unknown_parameter", "burst"),
    ({"scope": "galaxy", "max_amount": 1}, 400, "invalid_value", "scope"),
    ({"scope": "team", "subject": TEAM}, 400, "missing_required_parameter", "max_amount"),
    ({"scope": "team", "subject": TEAM, "max_amount": -1}, 400, "invalid_value", "max_amount"),
    ({"scope": "team", "subject": TEAM, "max_amount": 0}, 400, "invalid_value", "max_amount"),
    ({"scope": "team", "subject": TEAM, "max_amount": 1e10}, 400, "invalid_value", "max_amount"),
    ({"scope": "team", "subject": TEAM, "max_amount": 1e-10}, 400, "invalid_value", "max_amount"),
    ({"scope": "team", "subject": TEAM, "max_amount": "NaN"}, 400, "invalid_value", "max_amount"),
    ({"scope": "team", "subject": TEAM, "max_amount": "Infinity"}, 400, "invalid_value", "max_amount"),
    ({"scope": "team", "subject": TEAM, "max_amount": "lots"}, 400, "invalid_value", "max_amount"),
    ({"scope": "team", "subject": TEAM, "max_amount": True}, 400, "invalid_value", "max_amount"),
    ({"scope": "team", "subject": TEAM, "max_amount": [1]}, 400, "invalid_value", "max_amount"),
    ({"scope": "team", "subject": TEAM, "max_amount": 1.5, "unit": "tokens"}, 400, "invalid_value",
     "max_amount"),
    ({"scope": "team", "subject": TEAM, "max_amount": 10**16, "unit": "tokens"}, 400, "invalid_value",
     "max_amount"),
    ({"scope": "team", "subject": TEAM, "max_amount": 1, "unit": "eur"}, 400, "invalid_value", "unit"),
    ({"scope": "team", "subject": TEAM, "max_amount": 1, "period": "hourly"}, 400, "invalid_value",
     "period"),
    ({"scope": "team", "subject": TEAM, "max_amount": 1, "period": 7}, 400, "invalid_value", "period"),
    ({"scope": "team", "subject": TEAM, "max_amount": 1, "timezone": "Mars/Olympus"}, 400, "invalid_value",
     "timezone"),
    ({"scope": "team", "subject": TEAM, "max_amount": 1, "timezone": "../../etc/passwd"}, 400,
     "invalid_value", "timezone"),
    ({"scope": "team", "subject": TEAM, "max_amount": 1, "timezone": "Z" * 65}, 400, "invalid_value",
     "timezone"),
    ({"scope": "team", "subject": TEAM, "max_amount": 1, "timezone": "localtime"}, 400, "invalid_value",
     "timezone"),
    ({"scope": "team", "subject": TEAM, "max_amount": 1, "thresholds": [0]}, 400, "invalid_value",
     "thresholds[0]"),
    ({"scope": "team", "subject": TEAM, "max_amount": 1, "thresholds": [50, 101]}, 400, "invalid_value",
     "thresholds[1]"),
    ({"scope": "team", "subject": TEAM, "max_amount": 1, "thresholds": [50, 50]}, 400, "invalid_value",
     "thresholds"),
    ({"scope": "team", "subject": TEAM, "max_amount": 1, "thresholds": list(range(1, 12))}, 400,
     "invalid_value", "thresholds"),
    ({"scope": "team", "subject": TEAM, "max_amount": 1, "thresholds": ["50"]}, 400, "invalid_value",
     "thresholds[0]"),
    ({"scope": "team", "subject": TEAM, "max_amount": 1, "thresholds": 50}, 400, "invalid_value",
     "thresholds"),
    ({"scope": "team", "subject": TEAM, "max_amount": 1, "downgrade": {"model": "m", "at_percent": 0}}, 400,
     "invalid_value", "downgrade.at_percent"),
    ({"scope": "team", "subject": TEAM, "max_amount": 1, "downgrade": {"model": "m", "at_percent": 101}},
     400, "invalid_value", "downgrade.at_percent"),
    ({"scope": "team", "subject": TEAM, "max_amount": 1, "downgrade": {"model": "m" * 257, "at_percent": 50}},
     400, "invalid_value", "downgrade.model"),
    ({"scope": "team", "subject": TEAM, "max_amount": 1, "downgrade": {"model": "no-such-model",
                                                                       "at_percent": 50}}, 400,
     "model_not_found", "downgrade.model"),
    ({"scope": "team", "subject": TEAM, "max_amount": 1, "downgrade": {"at_percent": 50}}, 400,
     "missing_required_parameter", "downgrade.model"),
    ({"scope": "team", "subject": TEAM, "max_amount": 1, "downgrade": {"model": "m", "at_percent": 5,
                                                                       "x": 1}}, 400, "unknown_parameter",
     "downgrade.x"),
    ({"scope": "team", "subject": "s" * 257, "max_amount": 1}, 400, "invalid_value", "subject"),
    ({"scope": "team", "max_amount": 1}, 400, "invalid_value", "subject"),
    ({"scope": "tenant", "subject": "someone-else", "max_amount": 1}, 400, "invalid_value", "subject"),
    ({"scope": "team", "subject": TEAM, "max_amount": 1, "tenant": "bad tenant!"}, 400, "invalid_value",
     "tenant"),
    ({"scope": "team", "subject": "no-such-team", "max_amount": 1}, 404, "team_not_found", None),
    ({"scope": "user", "subject": "no-such-user", "max_amount": 1}, 404, "user_not_found", None),
    ({"scope": "key", "subject": "key_nope", "max_amount": 1}, 404, "key_not_found", None),
])
def test_bad_budgets_are_refused(deployment: Gateway, body: dict[str, Any], status: int, code: str,
                                 param: str | None) -> None:
    team = _team(deployment)
    body = {k: team if v == TEAM else v for k, v in body.items()}
    resp = admin(deployment, "PUT", "/admin/v1/budgets", body)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code
    if param is not None:
        assert error["param"] == param and error["type"] == "invalid_request_error"
    if body.get("timezone") == "Mars/Olympus":
        assert "Mars/Olympus" in error["message"]
    # Nothing was set for the team.
    listed = ok(deployment, "GET", "/admin/v1/budgets")["data"]
    assert not [b for b in listed if b["subject"] == team]


def test_bad_budget_requests_beyond_the_body(deployment: Gateway) -> None:
    gw = deployment
    raw = httpx.put(gw.url + "/admin/v1/budgets", content=b'{"scope": "team", ', headers=ADMIN, timeout=30)
    assert raw.status_code == 400 and raw.json()["error"]["code"] == "invalid_json"
    for query in ({"scope": "galaxy"}, {"tenant": "x" * 65}):
        resp = admin(gw, "GET", "/admin/v1/budgets", params=query)
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_value"
    # A filter the list does not take, or one given twice, is not ignored.
    for path, param, code in (("/admin/v1/budgets?subject=team-x", "subject", "unknown_parameter"),
                              ("/admin/v1/budgets?scope=team&scope=key", "scope", "duplicate_parameter")):
        resp = admin(gw, "GET", path)
        assert resp.status_code == 400, resp.text
        assert (resp.json()["error"]["param"], resp.json()["error"]["code"]) == (param, code)
    resp = admin(gw, "GET", "/admin/v1/budgets/" + "b" * 300)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "budget_not_found"
    _serves(gw)


@pytest.mark.parametrize("kind", ["embedded", "cluster"])
def test_budgets_stay_readable_when_their_counters_are_not(
    kind: str, gateway: Gateway, request: pytest.FixtureRequest, mock_upstream: Mock,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    if kind == "embedded":
        # Embedded counters live in the process: nothing can be unreachable; the status is there.
        made = ok(gateway, "PUT", "/admin/v1/budgets", {"scope": "team", "subject": _team(gateway),
                                                        "max_amount": 100})
        assert made["status"]["remaining"] == "100"
        return
    postgres: Postgres = request.getfixturevalue("postgres")
    redis = start_redis()  # our own, so stopping it leaves the shared one alone
    config = openai_config(mock_upstream)
    config["database"] = {"url": postgres.create_database(f"budgets_down_{uuid.uuid4().hex[:8]}")}
    config["redis"] = {"url": redis.url}
    gw = start_gateway(config, tmp_path_factory.mktemp("budgets-down"))
    try:
        made = ok(gw, "PUT", "/admin/v1/budgets", {"scope": "team", "subject": _team(gw), "max_amount": 100})
        assert made["status"]["remaining"] == "100"
        redis.stop()
        # The budget is read from the database; its live status is unknown for now.
        shown = ok(gw, "GET", f"/admin/v1/budgets/{made['id']}")
        assert shown["max_amount"] == 100 and shown["status"] is None
        assert [b["id"] for b in ok(gw, "GET", "/admin/v1/budgets")["data"]] == [made["id"]]
        # A change is stored and answered even though the other instances cannot be told now.
        changed = ok(gw, "PUT", "/admin/v1/budgets", {"scope": "team", "subject": made["subject"],
                                                      "max_amount": 50})
        assert changed["id"] == made["id"] and changed["max_amount"] == 50
        assert ok(gw, "GET", f"/admin/v1/budgets/{made['id']}")["max_amount"] == 50
    finally:
        gw.process.stop()
        redis.stop()


# -- a key's own budget ---------------------------------------------------------------------------


def test_a_keys_own_budget_on_create_read_list_and_rotate(deployment: Gateway) -> None:
    gw = deployment
    created = _key(gw, max_budget_usd=1.00, budget_period="daily")
    assert (created["max_budget_usd"], created["budget_period"]) == (1.0, "daily")
    assert isinstance(created["max_budget_usd"], float)
    shown = ok(gw, "GET", f"/admin/v1/keys/{created['id']}")
    assert (shown["max_budget_usd"], shown["budget_period"]) == (1.0, "daily")
    listed = {k["id"]: k for k in ok(gw, "GET", "/admin/v1/keys", params={"limit": 1000})["data"]}
    assert listed[created["id"]]["max_budget_usd"] == 1.0
    rotated = ok(gw, "POST", f"/admin/v1/keys/{created['id']}/rotate", {"grace_seconds": 0}, status=201)
    assert (rotated["max_budget_usd"], rotated["budget_period"]) == (1.0, "daily")
    assert ok(gw, "GET", f"/admin/v1/keys/{rotated['id']}")["max_budget_usd"] == 1.0

    # No period: a total budget; a string amount is read exactly, rounded half to even to the nano-USD.
    total = _key(gw, max_budget_usd="2.0000000025")
    assert (total["max_budget_usd"], total["budget_period"]) == (2.000000002, "total")
    assert ok(gw, "GET", f"/admin/v1/keys/{total['id']}")["max_budget_usd"] == 2.000000002
    plain = _key(gw)
    assert (plain["max_budget_usd"], plain["budget_period"]) == (None, None)
    # The key works (budgets are enforced by the request path, not asserted here).
    client = openai.OpenAI(base_url=gw.base_url, api_key=rotated["key"], max_retries=0, timeout=30)
    assert client.models.list().data
    audit = ok(gw, "GET", "/admin/v1/audit", params={"resource_id": created["id"]})["data"]
    made = next(e for e in audit if e["action"] == "key.create")
    assert made["after"]["max_budget_usd"] == 1.0 and "key" not in made["after"]


def test_a_keys_own_budget_reaches_the_request_path(deployment: Gateway) -> None:
    # One micro-dollar cannot cover 100 tokens of output: the key's own budget is in force.
    tiny = _key(deployment, max_budget_usd="0.000001", budget_period="monthly")["key"]
    client = openai.OpenAI(base_url=deployment.base_url, api_key=tiny, max_retries=0, timeout=30)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=ask("hi"), max_tokens=100)
    body: Any = refused.value.body
    assert body["code"] == "request_exceeds_budget" and "key budget" in body["message"]
    roomy = _key(deployment, max_budget_usd=5)["key"]
    client = openai.OpenAI(base_url=deployment.base_url, api_key=roomy, max_retries=0, timeout=30)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=ask("hi"), max_tokens=100).choices


@pytest.mark.parametrize(("extra", "code", "param"), [
    ({"max_budget_usd": -1}, "invalid_value", "max_budget_usd"),
    ({"max_budget_usd": 0}, "invalid_value", "max_budget_usd"),
    ({"max_budget_usd": 1e10}, "invalid_value", "max_budget_usd"),
    ({"max_budget_usd": 1e-12}, "invalid_value", "max_budget_usd"),
    ({"max_budget_usd": "NaN"}, "invalid_value", "max_budget_usd"),
    ({"max_budget_usd": "-Infinity"}, "invalid_value", "max_budget_usd"),
    ({"max_budget_usd": "a dollar"}, "invalid_value", "max_budget_usd"),
    ({"max_budget_usd": True}, "invalid_value", "max_budget_usd"),
    ({"max_budget_usd": {"usd": 1}}, "invalid_value", "max_budget_usd"),
    ({"max_budget_usd": "9" * 5000}, "invalid_value", "max_budget_usd"),
    ({"max_budget_usd": 1, "budget_period": "yearly"}, "invalid_value", "budget_period"),
    ({"max_budget_usd": 1, "budget_period": "d" * 5000}, "invalid_value", "budget_period"),
    ({"max_budget_usd": 1, "budget_period": 30}, "invalid_value", "budget_period"),
    ({"budget_period": "daily"}, "invalid_value", "budget_period"),
    ({"max_budget": 1}, "unknown_parameter", "max_budget"),
])
def test_bad_key_budgets_are_400(deployment: Gateway, extra: dict[str, Any], code: str, param: str) -> None:
    listed = ok(deployment, "GET", "/admin/v1/keys", params={"limit": 1000})
    assert not listed["has_more"]  # the count below is of every key, or it could not change
    before = len(listed["data"])
    resp = admin(deployment, "POST", "/admin/v1/keys", {"models": ["*"], **extra})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)
    # No key was issued.
    assert len(ok(deployment, "GET", "/admin/v1/keys", params={"limit": 1000})["data"]) == before


def test_the_server_keeps_serving_after_bad_input(deployment: Gateway) -> None:
    for body in ({"scope": "team", "max_amount": "NaN"}, {"scope": 1}, [], "x"):
        assert admin(deployment, "PUT", "/admin/v1/budgets", body).status_code == 400
    _serves(deployment)


# -- switchboard budgets (the embedded default) ---------------------------------------------------


def budgets(gateway: Gateway, *args: str) -> tuple[int, str]:
    proc = spawn(["budgets", *args, "--url", gateway.url, "--key", MASTER_KEY], env={"COLUMNS": "250"})
    code = proc.wait_exit(60)
    return code, proc.output


def test_the_budgets_cli(gateway: Gateway) -> None:
    team = _team(gateway)
    code, output = budgets(gateway, "set", "--scope", "team", "--subject", team, "--max", "12.50",
                           "--period", "weekly", "--timezone", "Asia/Tokyo", "--threshold", "75",
                           "--threshold", "25", "--downgrade-model", "gpt-4o-mini", "--downgrade-at", "90",
                           "--json")
    assert code == 0, output
    [made] = json.loads(output)
    assert (made["subject"], made["max_amount"], made["period"], made["timezone"], made["thresholds"]) == (
        team, 12.5, "weekly", "Asia/Tokyo", [25, 75])
    assert made["downgrade"] == {"model": "gpt-4o-mini", "at_percent": 90}

    code, table = budgets(gateway, "list", "--scope", "team")
    assert code == 0 and made["id"] in table and "12.5 usd" in table and "gpt-4o-mini at 90%" in table
    code, output = budgets(gateway, "show", made["id"], "--json")
    assert code == 0 and json.loads(output)[0]["id"] == made["id"]
    code, output = budgets(gateway, "set", "--scope", "team", "--subject", team, "--max", "1000",
                           "--unit", "tokens", "--json")
    assert code == 0 and json.loads(output)[0]["max_amount"] == 1000

    code, output = budgets(gateway, "delete", made["id"])
    assert code == 0 and f"deleted {made['id']}" in output
    code, output = budgets(gateway, "show", made["id"])
    assert code == 1 and "budget_not_found" in output and "Traceback" not in output
    code, output = budgets(gateway, "set", "--scope", "team", "--subject", team, "--max", "-3")
    assert code == 1 and "max_amount" in output and "invalid_value" in output
    code, output = budgets(gateway, "set", "--scope", "team", "--subject", team, "--max", "3",
                           "--downgrade-model", "m")
    assert code == 2 and "--downgrade-at" in output
    # The server's message repeats the name given: printed as written, not read as Rich markup.
    code, output = budgets(gateway, "set", "--scope", "team", "--subject", team, "--max", "3",
                           "--downgrade-model", "[/m] [bold]x", "--downgrade-at", "50")
    assert code == 1 and "no model '[/m] [bold]x' is served" in output and "Traceback" not in output, output
