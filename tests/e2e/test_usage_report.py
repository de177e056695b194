"""Usage reports end to end (``GET /admin/v1/usage`` and ``switchboard usage``): calls made through
the gateway with keys of two tenants show up summed per tenant, key and model, each role sees only
its reach, CSV cells cannot start a formula, and bad input is a 400 with a code. On the embedded
default (SQLite) and a cluster (PostgreSQL + Redis)."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

from switchboard.http.admin.usage import neutralise, to_csv
from tests.e2e.sdk import ask
from tests.e2e.test_usage import Deployment, deployment  # noqa: F401 - the module's gateways
from tests.servers import MASTER_KEY, spawn

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


@dataclass
class World:
    deployment: Deployment
    tenants: tuple[str, str]
    keys: dict[str, dict[str, Any]]  # name -> the created key (id, key)
    sent: dict[tuple[str, str], dict[str, Any]]  # (key name, model) -> requests, tokens, cost
    team: str  # a team of the first tenant, with a key that made a call, a team admin and a viewer
    other_team: str

    def get(self, caller: str = MASTER_KEY, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.deployment.gateway.url}/admin/v1/usage", params=params,
                         headers={"Authorization": f"Bearer {caller}"}, timeout=30)

    def report(self, caller: str = MASTER_KEY, **params: Any) -> list[dict[str, Any]]:
        resp = self.get(caller, **params)
        assert resp.status_code == 200, resp.text
        return list(resp.json()["data"])


def _post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = httpx.post(url + path, json=body, headers=ADMIN, timeout=30)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


@pytest.fixture(scope="module")
def world(deployment: Deployment) -> World:  # noqa: F811
    url = deployment.gateway.url
    tenants = (f"acme-{uuid.uuid4().hex[:6]}", f"globex-{uuid.uuid4().hex[:6]}")
    for tenant in tenants:
        _post(url, "/admin/v1/tenants", {"id": tenant, "name": tenant})
    team = _post(url, "/admin/v1/teams", {"tenant": tenants[0], "name": "reports"})["id"]
    other_team = _post(url, "/admin/v1/teams", {"tenant": tenants[0], "name": "others"})["id"]
    in_team = {"models": ["*"], "tenant": tenants[0], "team": team}
    keys = {
        "a": _post(url, "/admin/v1/keys", {"models": ["*"], "tenant": tenants[0]}),
        "team_a": _post(url, "/admin/v1/keys", in_team),
        "team_admin": _post(url, "/admin/v1/keys", {**in_team, "role": "team_admin"}),
        "viewer": _post(url, "/admin/v1/keys", {**in_team, "role": "viewer"}),
        "b": _post(url, "/admin/v1/keys", {"models": ["*"], "tenant": tenants[1]}),
        "admin_a": _post(url, "/admin/v1/keys",
                         {"models": ["*"], "tenant": tenants[0], "role": "tenant_admin"}),
    }
    sent: dict[tuple[str, str], dict[str, Any]] = {}
    calls = (("a", "gpt-4o-mini"), ("a", "gpt-4o-mini"), ("team_a", "gpt-4o-mini"),
             ("b", "gpt-4o-mini"), ("b", "house-model"))
    for name, model in calls:
        raw = deployment.sdk(keys[name]["key"]).chat.completions.with_raw_response.create(
            model=model, messages=ask(f"report me {uuid.uuid4().hex[:4]}"))
        usage = raw.parse().usage
        assert usage is not None
        totals = sent.setdefault((name, model), {"requests": 0, "prompt_tokens": 0,
                                                 "completion_tokens": 0, "cost": Decimal(0)})
        totals["requests"] += 1
        totals["prompt_tokens"] += usage.prompt_tokens
        totals["completion_tokens"] += usage.completion_tokens
        totals["cost"] += Decimal(raw.headers.get("x-switchboard-cost-usd", "0"))
    w = World(deployment, tenants, keys, sent, team, other_team)
    deadline = time.monotonic() + 20  # records reach the ledger within about half a second
    while sum(r["requests"] for r in w.report(group_by="tenant") if r["tenant"] in tenants) < 5:
        assert time.monotonic() < deadline, "the calls never reached the report"
        time.sleep(0.1)
    return w


def test_the_report_sums_calls_per_tenant_key_and_model(world: World) -> None:
    rows = world.report(group_by="tenant,key,model")
    mine = {(r["key"], r["model"]): r for r in rows if r["tenant"] in world.tenants}
    expected = {(world.keys[name]["id"], model): totals for (name, model), totals in world.sent.items()}
    assert set(mine) == set(expected)
    for group, totals in expected.items():
        row = mine[group]
        assert (row["requests"], row["prompt_tokens"], row["completion_tokens"], row["errors"]) == (
            totals["requests"], totals["prompt_tokens"], totals["completion_tokens"], 0)
        assert Decimal(row["cost_usd"]) == totals["cost"]
    house = mine[(world.keys["b"]["id"], "house-model")]
    assert house["unpriced"] == 1 and Decimal(house["cost_usd"]) == 0
    by_tenant = {r["tenant"]: r["requests"] for r in world.report(group_by="tenant")}
    assert (by_tenant[world.tenants[0]], by_tenant[world.tenants[1]]) == (3, 2)
    first = world.get(group_by="model", tenant=world.tenants[1], limit=1).json()
    assert [r["model"] for r in first["data"]] == ["gpt-4o-mini"] and first["has_more"] is True
    one = world.report(group_by="model", tenant=world.tenants[1], model="house-model")
    assert [(r["model"], r["requests"]) for r in one] == [("house-model", 1)]
    day = world.report(group_by="day", tenant=world.tenants[0])
    assert len(day) in (1, 2) and sum(r["requests"] for r in day) == 3
    assert all(r["day"].endswith("T00:00:00Z") for r in day)
    past = world.report(tenant=world.tenants[0], since="2020-01-01T00:00:00Z", until="2020-01-02T00:00:00Z")
    assert past == []
    assert world.report(since="0001-01-02T00:00:00Z", until="9999-12-31T00:00:00Z") != []


def test_each_role_sees_only_its_reach(world: World) -> None:
    admin_a = world.keys["admin_a"]["key"]
    rows = world.report(admin_a, group_by="tenant,key")
    assert {r["tenant"] for r in rows} == {world.tenants[0]}
    assert {r["key"] for r in rows} == {world.keys["a"]["id"], world.keys["team_a"]["id"]}
    other = world.get(admin_a, tenant=world.tenants[1])
    assert other.status_code == 404 and other.json()["error"]["code"] == "tenant_not_found"
    # A developer key sees its own calls only.
    mine = world.report(world.keys["b"]["key"], group_by="key")
    assert [r["key"] for r in mine] == [world.keys["b"]["id"]]
    assert world.report(world.keys["b"]["key"], key=world.keys["a"]["id"]) == []
    # A team admin and a viewer see their team's calls, and no other team's.
    for role in ("team_admin", "viewer"):
        caller = world.keys[role]["key"]
        rows = world.report(caller, group_by="team,key")
        assert [(r["team"], r["key"], r["requests"]) for r in rows] == [
            (world.team, world.keys["team_a"]["id"], 1)]
        other = world.get(caller, team=world.other_team)
        assert other.status_code == 404 and other.json()["error"]["code"] == "team_not_found"


def test_csv_export(world: World) -> None:
    resp = world.get(group_by="key,model", tenant=world.tenants[1], format="csv")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    assert 'attachment; filename="usage-' in resp.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(resp.text)))
    assert table[0][:3] == ["key", "model", "requests"] and "cost_usd" in table[0]
    assert sorted(row[1] for row in table[1:]) == ["gpt-4o-mini", "house-model"]


def test_csv_cells_cannot_start_a_formula() -> None:
    assert [neutralise(v) for v in ("=1+1", "+cmd", "-2", "@SUM(A1)", "\tx", "\rx", "ok", None, 3)] == [
        "'=1+1", "'+cmd", "'-2", "'@SUM(A1)", "'\tx", "'\rx", "ok", "", "3"]
    text = to_csv(("key", "requests"), [{"key": '=HYPERLINK("http://x")', "requests": 1}])
    assert list(csv.reader(io.StringIO(text))) == [["key", "requests"], ['\'=HYPERLINK("http://x")', "1"]]


@pytest.mark.parametrize(("params", "code"), [
    ({"group_by": "model,colour"}, "invalid_group_by"),
    ({"group_by": "model,model"}, "invalid_group_by"),
    ({"since": "yesterday"}, "invalid_time"),
    ({"since": "2026-06-01T00:00:00"}, "invalid_time"),  # no zone
    ({"until": "9999-12-31T23:59:59-14:00"}, "invalid_time"),  # past the calendar's end in UTC
    ({"since": "2026-06-02T00:00:00Z", "until": "2026-06-01T00:00:00Z"}, "invalid_time_range"),
    ({"format": "xml"}, "invalid_format"),
    ({"colour": "red"}, "unknown_parameter"),
    ({"model": "m" * 5000}, "invalid_value"),
    ({"limit": "0"}, "invalid_value"),
    ({"limit": "ten"}, "invalid_value"),
    # Digits Python's str.isdigit takes and int() does not ('²'), or reads as 5 (U+0665): not ASCII.
    ({"limit": "\u00b2"}, "invalid_value"),
    ({"limit": "\u0665"}, "invalid_value"),
    ({"api_version": "\u00b2"}, "invalid_value"),
    # A blank filter is a mistake, not a filter on records without that field.
    ({"team": ""}, "invalid_value"),
    ({"model": " "}, "invalid_value"),
    ({"group_by": ""}, "invalid_value"),
])
def test_bad_input_is_a_400_with_a_code(world: World, params: dict[str, str], code: str) -> None:
    resp = world.get(**params)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error"
    assert world.get(group_by="model").status_code == 200  # still serving


def cli(world: World, *args: str) -> tuple[int, str]:
    proc = spawn(["usage", *args, "--url", world.deployment.gateway.url, "--key", MASTER_KEY],
                 env={"COLUMNS": "250"})
    return proc.wait_exit(60), proc.output


def test_the_cli_prints_a_table_json_and_csv(world: World) -> None:
    code, output = cli(world, "--group-by", "tenant,model", "--tenant", world.tenants[1])
    assert code == 0, output
    assert world.tenants[1] in output and "house-model" in output and "cost usd" in output
    code, output = cli(world, "--group-by", "model", "--tenant", world.tenants[0], "--json")
    assert code == 0, output
    report = json.loads(output)
    assert [(r["model"], r["requests"]) for r in report["data"]] == [("gpt-4o-mini", 3)]
    code, output = cli(world, "--group-by", "model", "--tenant", world.tenants[0], "--csv")
    assert code == 0 and output.splitlines()[1].startswith("gpt-4o-mini,3,"), output
    code, output = cli(world, "--group-by", "colour")
    assert code == 1 and "invalid_group_by" in output and "Traceback" not in output
    # The prompt API filters (docs/prompt-apis.md) are the API's: sent, not ignored.
    code, output = cli(world, "--group-by", "model", "--tenant", world.tenants[0], "--api", "no-such-api",
                       "--json")
    assert code == 0 and json.loads(output)["data"] == [], output
    code, output = cli(world, "--group-by", "api,api_version", "--api-version", "two")
    assert code == 1 and "api_version: expected a whole number" in output, output
