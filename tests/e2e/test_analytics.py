"""Analytics end to end (``GET /admin/v1/analytics`` and ``switchboard analytics rebuild``): calls
made through the gateway with the OpenAI SDK, by keys of two tenants and two teams, some failing
upstream, show up in the rollups per model, key, team and tag, per hour and per day; the totals
equal the usage report's exactly; percentiles are within a histogram bucket of the exact ones;
each role sees only its reach; bad input is a 400 with a code; a rebuild recounts the rollups from
the ledger. On the embedded default (SQLite) and a cluster (PostgreSQL + Redis)."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa

from switchboard.stores import UsageRecord
from switchboard.stores.factory import open_at
from switchboard.stores.histogram import bucket_of, bucket_range
from switchboard.stores.protocols import usage_row
from switchboard.stores.sql.engine import create_engine
from switchboard.stores.sql.tables import analytics_hourly, analytics_tags_hourly
from tests.e2e.sdk import ask
from tests.e2e.test_usage import Deployment, deployment  # noqa: F401 - the module's gateways
from tests.servers import MASTER_KEY, UPSTREAM_KEY, spawn

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


@dataclass
class World:
    deployment: Deployment
    tenants: tuple[str, str]
    teams: tuple[str, str]  # of the first tenant
    keys: dict[str, dict[str, Any]]  # name -> the created key (id, key)
    records: dict[str, UsageRecord]  # the first tenant's calls, as the ledger stored them

    def get(self, caller: str = MASTER_KEY, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.deployment.gateway.url}/admin/v1/analytics", params=params,
                         headers={"Authorization": f"Bearer {caller}"}, timeout=30)

    def analytics(self, caller: str = MASTER_KEY, **params: Any) -> dict[str, Any]:
        resp = self.get(caller, **params)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def by_group(self, caller: str = MASTER_KEY, **params: Any) -> dict[str | None, int]:
        body = self.analytics(caller, **params)
        return {s["group"]: s["totals"]["requests"] for s in body["series"]}


def _post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = httpx.post(url + path, json=body, headers=ADMIN, timeout=30)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _call(gateway: Deployment, key: str, model: str, text: str = "chart me", stream: bool = False) -> str:
    """One chat completion through the SDK; its request id (failures included)."""
    client = gateway.sdk(key)
    try:
        if stream:
            with client.chat.completions.with_streaming_response.create(
                    model=model, messages=ask(text), stream=True) as resp:
                list(resp.iter_lines())
                return str(resp.headers["x-request-id"])
        raw = client.chat.completions.with_raw_response.create(model=model, messages=ask(text))
        return str(raw.headers["x-request-id"])
    except openai.APIStatusError as exc:
        assert exc.status_code == 502, exc  # the upstream failed
        return str(exc.response.headers["x-request-id"])


@pytest.fixture(scope="module")
def world(deployment: Deployment) -> World:  # noqa: F811
    url = deployment.gateway.url
    tenants = (f"acme-{uuid.uuid4().hex[:6]}", f"globex-{uuid.uuid4().hex[:6]}")
    for tenant in tenants:
        _post(url, "/admin/v1/tenants", {"id": tenant, "name": tenant})
    teams = tuple(_post(url, "/admin/v1/teams", {"tenant": tenants[0], "name": name})["id"]
                  for name in ("charts", "others"))
    one = {"models": ["*"], "tenant": tenants[0], "team": teams[0]}
    keys = {
        "dev1": _post(url, "/admin/v1/keys", {**one, "tags": ["alpha", "shared"]}),
        "dev2": _post(url, "/admin/v1/keys", {"models": ["*"], "tenant": tenants[0], "team": teams[1],
                                              "tags": ["beta"]}),
        "team_admin": _post(url, "/admin/v1/keys", {**one, "role": "team_admin"}),
        "viewer": _post(url, "/admin/v1/keys", {**one, "role": "viewer"}),
        "admin": _post(url, "/admin/v1/keys",
                       {"models": ["*"], "tenant": tenants[0], "role": "tenant_admin"}),
        "other": _post(url, "/admin/v1/keys", {"models": ["*"], "tenant": tenants[1], "tags": ["shared"]}),
    }
    dev1, dev2, other = keys["dev1"]["key"], keys["dev2"]["key"], keys["other"]["key"]
    ids = [
        _call(deployment, dev1, "gpt-4o-mini"),
        _call(deployment, dev1, "gpt-4o-mini", "a longer question, to make more tokens than the others"),
        _call(deployment, dev1, "gpt-4o-mini", stream=True),
        _call(deployment, dev1, "gpt-4o-mini", "mock:status=500"),
        _call(deployment, dev1, "house-model"),
        _call(deployment, dev2, "gpt-4o-mini"),
        _call(deployment, dev2, "gpt-4o-mini", stream=True),
    ]
    other_ids = [_call(deployment, other, "gpt-4o-mini"), _call(deployment, other, "gpt-4o-mini")]
    records = deployment.wait_for(set(ids), tenant=tenants[0])
    deployment.wait_for(set(other_ids), tenant=tenants[1])
    return World(deployment, tenants, teams, keys, {rid: records[rid] for rid in ids})


def test_series_and_totals_per_model_key_team_and_tag(world: World) -> None:
    a, b = world.tenants
    k = {name: key["id"] for name, key in world.keys.items()}
    body = world.analytics(tenant=a)
    assert body["object"] == "analytics" and body["interval"] == "hour" and body["group_by"] is None
    assert body["tenant"] == a and body["from"].endswith(":00:00Z") and body["to"].endswith(":00:00Z")
    [series] = body["series"]
    assert series["group"] is None and 1 <= len(series["points"]) <= 2  # the calls may straddle an hour
    totals = body["totals"]
    assert (totals["requests"], totals["errors"], totals["error_rate"]) == (7, 1, round(1 / 7, 4))
    assert series["totals"] == totals
    assert sum(p["requests"] for p in series["points"]) == 7
    assert all(p["start"].endswith(":00:00Z") for p in series["points"])
    assert totals["total_tokens"] == totals["prompt_tokens"] + totals["completion_tokens"] > 0
    assert totals["prompt_tokens"] == sum(r.prompt_tokens for r in world.records.values())

    assert world.by_group(tenant=a, group_by="model") == {"gpt-4o-mini": 6, "house-model": 1}
    assert world.by_group(tenant=a, group_by="key") == {k["dev1"]: 5, k["dev2"]: 2}
    assert world.by_group(tenant=a, group_by="team") == {world.teams[0]: 5, world.teams[1]: 2}
    assert world.by_group(tenant=a, group_by="tag") == {"alpha": 5, "shared": 5, "beta": 2}
    assert world.by_group(tenant=a, group_by="provider") == {"local-openai": 7}
    assert world.by_group(tenant=a, group_by="user") == {None: 7}  # keys without a user
    assert world.by_group(tenant=b, group_by="tag") == {"shared": 2}
    assert world.by_group(tenant=a, group_by="model", key=k["dev1"]) == {"gpt-4o-mini": 4, "house-model": 1}
    assert world.by_group(tenant=a, group_by="key", tag="beta") == {k["dev2"]: 2}
    assert world.by_group(tenant=a, model="house-model") == {None: 1}
    every = world.by_group(group_by="tenant")
    # Other tests of the module add calls of tenant b (an untagged key): its own total, whatever ran first.
    assert (every[a], every[b]) == (7, world.analytics(tenant=b)["totals"]["requests"])
    assert every[b] >= 2
    # Per UTC day: the day's points are the hours summed.
    day = world.analytics(tenant=a, interval="day", group_by="key")
    assert day["interval"] == "day"
    [first] = [s for s in day["series"] if s["group"] == k["dev1"]]
    assert all(p["start"].endswith("T00:00:00Z") for p in first["points"])
    assert sum(p["requests"] for p in first["points"]) == 5 and first["totals"]["errors"] == 1
    assert first["totals"]["error_rate"] == 0.2
    # Days of another time zone (UTC+14): the same calls, on local days.
    local = world.analytics(tenant=a, interval="day", tz="Pacific/Kiritimati")
    assert local["tz"] == "Pacific/Kiritimati" and local["totals"] == body["totals"]
    starts = [p["start"] for p in local["series"][0]["points"]]
    assert 1 <= len(starts) <= 2 and all(s.endswith("T00:00:00+14:00") for s in starts)
    # A range with nothing in it.
    empty = world.analytics(tenant=a, **{"from": "2020-01-01T00:00:00Z", "to": "2020-01-02T00:00:00Z"})
    assert empty["totals"]["requests"] == 0 and empty["series"][0]["points"] == []
    assert empty["totals"]["latency_ms"] == {"avg": None, "p50": None, "p95": None, "p99": None}


def test_totals_equal_the_usage_report_exactly(world: World) -> None:
    a = world.tenants[0]
    body = world.analytics(tenant=a, group_by="model")
    usage = httpx.get(f"{world.deployment.gateway.url}/admin/v1/usage", headers=ADMIN, timeout=30,
                      params={"tenant": a, "since": body["from"], "until": body["to"], "group_by": "model"})
    assert usage.status_code == 200, usage.text
    rows = {r["model"]: r for r in usage.json()["data"]}
    series = {s["group"]: s["totals"] for s in body["series"]}
    assert set(rows) == set(series)
    for model, row in rows.items():
        got = series[model]
        assert (got["requests"], got["errors"], got["prompt_tokens"], got["completion_tokens"],
                got["cost_usd"], got["reasoning_tokens"], got["cached_tokens"]) == (
            row["requests"], row["errors"], row["prompt_tokens"], row["completion_tokens"],
            row["cost_usd"], row["reasoning_tokens"], row["cache_read_tokens"])
    total = body["totals"]
    assert total["requests"] == sum(r["requests"] for r in rows.values())
    assert total["cost_usd"] == series["gpt-4o-mini"]["cost_usd"]  # house-model is unpriced: 0


def test_totals_grouped_by_tag_count_each_record_once_untagged_included(world: World) -> None:
    a, b = world.tenants
    url = world.deployment.gateway.url
    plain = _post(url, "/admin/v1/keys", {"models": ["*"], "tenant": b})  # a key without tags
    world.deployment.wait_for({_call(world.deployment, plain["key"], "gpt-4o-mini")}, tenant=b)
    whole = world.analytics(tenant=b)
    span = {"from": whole["from"], "to": whole["to"]}
    by_tag = world.analytics(tenant=b, group_by="tag", **span)
    assert {s["group"]: s["totals"]["requests"] for s in by_tag["series"]} == {"shared": 2}
    assert whole["totals"]["requests"] == 3 and by_tag["totals"] == whole["totals"]
    usage = httpx.get(f"{url}/admin/v1/usage", headers=ADMIN, timeout=30,
                      params={"tenant": b, "since": span["from"], "until": span["to"]})
    assert usage.status_code == 200, usage.text
    (row,) = usage.json()["data"]
    assert (row["requests"], row["cost_usd"]) == (3, by_tag["totals"]["cost_usd"])
    # A record counts under each of its key's tags in the series, once in the totals.
    whole = world.analytics(tenant=a, **span)
    by_tag = world.analytics(tenant=a, group_by="tag", **span)
    assert sum(s["totals"]["requests"] for s in by_tag["series"]) == 12
    assert by_tag["totals"] == whole["totals"] and whole["totals"]["requests"] == 7
    assert world.analytics(tenant=a, group_by="tag", tag="alpha", **span)["totals"]["requests"] == 5


def nearest_rank(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)), 1) - 1]


def test_percentiles_are_within_a_bucket_of_the_exact_ones(world: World) -> None:
    totals = world.analytics(tenant=world.tenants[0])["totals"]
    latencies = [r.latency_ms for r in world.records.values()]
    ttfts = [r.ttft_ms for r in world.records.values() if r.ttft_ms is not None]
    assert totals["latency_ms"]["avg"] == round(sum(latencies) / len(latencies), 1)
    for name, values in (("latency_ms", latencies), ("ttft_ms", ttfts)):
        timing = totals[name]
        if not values:
            assert timing["p50"] is None
            continue
        for label, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            lower, upper = bucket_range(bucket_of(nearest_rank(values, q)))
            # Rounded to 0.1 ms in the answer.
            assert lower - 0.05 <= timing[label] <= upper + 0.05, (name, label, values, timing)


def test_each_role_sees_only_its_reach(world: World) -> None:
    a, b = world.tenants
    k = {name: key["id"] for name, key in world.keys.items()}
    admin = world.keys["admin"]["key"]
    assert world.by_group(admin, group_by="tenant") == {a: 7}
    other = world.get(admin, tenant=b)
    assert other.status_code == 404 and other.json()["error"]["code"] == "tenant_not_found"
    assert world.by_group(admin, group_by="key") == {k["dev1"]: 5, k["dev2"]: 2}
    # A developer key sees its own calls only.
    dev2 = world.keys["dev2"]["key"]
    assert world.by_group(dev2, group_by="key") == {k["dev2"]: 2}
    assert world.by_group(dev2, group_by="tag") == {"beta": 2}
    assert world.by_group(dev2, key=k["dev1"]) == {None: 0}
    assert world.by_group(world.keys["other"]["key"], group_by="tenant") == {b: 2}
    # A team admin and a viewer see their team's calls, and no other team's.
    for role in ("team_admin", "viewer"):
        caller = world.keys[role]["key"]
        assert world.by_group(caller, group_by="key") == {k["dev1"]: 5}
        assert world.by_group(caller, group_by="tag") == {"alpha": 5, "shared": 5}
        resp = world.get(caller, team=world.teams[1])
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "team_not_found"


@pytest.mark.parametrize(("params", "code"), [
    ({"interval": "week"}, "invalid_interval"),
    ({"group_by": "colour"}, "invalid_group_by"),
    ({"group_by": "model,key"}, "invalid_group_by"),
    ({"from": "yesterday"}, "invalid_time"),
    ({"to": "2026-06-01T00:00:00"}, "invalid_time"),  # no zone
    # Outside the times the answer can name: not answered as another range (1970, 9000).
    ({"from": "0001-01-01T00:00:00Z", "to": "0001-01-01T05:00:00Z"}, "invalid_time"),
    ({"from": "9999-12-31T00:00:00Z", "to": "9999-12-31T23:59:59Z"}, "invalid_time"),
    ({"from": "2026-06-02T00:00:00Z", "to": "2026-06-01T00:00:00Z"}, "invalid_time_range"),
    # Within one hour: both widened to the same whole hour, still from after to.
    ({"from": "2026-06-01T10:45:00Z", "to": "2026-06-01T10:15:00Z"}, "invalid_time_range"),
    ({"from": "2026-06-01T11:00:00+01:00", "to": "2026-06-01T09:59:59Z"}, "invalid_time_range"),
    ({"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "range_too_large"),
    ({"colour": "red"}, "unknown_parameter"),
    ({"since": "2026-06-01T00:00:00Z"}, "unknown_parameter"),
    ({"model": "m" * 5000}, "invalid_value"),
    # A blank filter is no filter of an absent dimension ('' in the rollups): refused, as on logs.
    ({"model": ""}, "invalid_value"),
    ({"team": ""}, "invalid_value"),
    ({"deployment": " "}, "invalid_value"),
    ({"tenant": ""}, "invalid_value"),
    ({"tag": "eu", "model": "gpt-4o-mini"}, "invalid_combination"),
    ({"group_by": "tag", "provider": "local-openai"}, "invalid_combination"),
    ({"tag": "eu", "group_by": "deployment"}, "invalid_combination"),
    ({"interval": "day", "tz": "Mars/Olympus_Mons"}, "invalid_timezone"),
    ({"interval": "day", "tz": "../../etc/passwd"}, "invalid_timezone"),
    ({"tz": "Europe/Paris"}, "invalid_combination"),  # hours are the same everywhere
])
def test_bad_input_is_a_400_with_a_code(world: World, params: dict[str, str], code: str) -> None:
    resp = world.get(**params)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error"
    assert world.get(group_by="model").status_code == 200  # still serving


def test_the_longest_range_is_measured_as_given_not_as_widened(world: World) -> None:
    """``max_range_days`` (400 here) is the range asked for: one of exactly 400 days off the hour
    is answered (widened to whole hours it spans a little more), one second more is not."""
    exact = world.get(**{"from": "2025-01-01T00:30:00Z", "to": "2026-02-05T00:30:00Z"})
    assert exact.status_code == 200, exact.text
    longer = world.get(**{"from": "2025-01-01T00:30:00Z", "to": "2026-02-05T00:30:01Z"})
    assert longer.status_code == 400 and longer.json()["error"]["code"] == "range_too_large"


def test_a_parameter_given_twice_is_a_400(world: World) -> None:
    resp = httpx.get(f"{world.deployment.gateway.url}/admin/v1/analytics?interval=hour&interval=day",
                     headers=ADMIN, timeout=30)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "duplicate_parameter"


def test_the_cli_prints_a_table_and_json(world: World) -> None:
    gw = world.deployment.gateway
    common = ["--tenant", world.tenants[0], "--url", gw.url, "--key", MASTER_KEY]
    proc = spawn(["analytics", "show", "--group-by", "model", *common], env={"COLUMNS": "250"})
    code = proc.wait_exit(60)
    assert code == 0 and "gpt-4o-mini" in proc.output and "house-model" in proc.output, proc.output
    assert "latency p50" in proc.output and "total" in proc.output
    proc = spawn(["analytics", "show", "--group-by", "tag", "--interval", "day", "--json", *common])
    code = proc.wait_exit(60)
    assert code == 0, proc.output
    answer = json.loads(proc.output)
    tags = {s["group"]: s["totals"]["requests"] for s in answer["series"]}
    assert tags == {"alpha": 5, "shared": 5, "beta": 2}
    proc = spawn(["analytics", "show", "--group-by", "colour", *common])
    assert proc.wait_exit(60) == 1 and "invalid_group_by" in proc.output and "Traceback" not in proc.output
    # Brackets in the server's message (or in a group's name) are printed, not read as markup.
    proc = spawn(["analytics", "show", "--interval", "day", "--tz", "[/bad]", *common])
    assert proc.wait_exit(60) == 1, proc.output
    assert "invalid_timezone" in proc.output and "[/bad]" in proc.output and "Traceback" not in proc.output


async def _replay(database: str, records: list[UsageRecord]) -> None:
    stores = await open_at(database, None)
    try:
        await stores.ledger.append_rows([usage_row(r) for r in records])  # as the spool replays
        assert await stores.ledger.append(records) == 0
    finally:
        await stores.close()


def test_records_stored_again_are_not_counted_twice(world: World) -> None:
    a = world.tenants[0]
    before = world.analytics(tenant=a, group_by="key")
    asyncio.run(_replay(world.deployment.database, list(world.records.values())))
    span = {"from": before["from"], "to": before["to"]}
    assert world.analytics(tenant=a, group_by="key", **span) == before


async def _drop_rollups(database: str, tenant: str) -> None:
    engine = create_engine(database)
    try:
        async with engine.begin() as conn:
            for table in (analytics_hourly, analytics_tags_hourly):
                await conn.execute(sa.delete(table).where(table.c.tenant_id == tenant))
    finally:
        await engine.dispose()


def test_rebuild_recounts_the_rollups_from_the_ledger(world: World) -> None:
    """Last in the module: it drops the first tenant's rollups (as for records stored before the
    rollups existed) and the rebuild puts back exactly what was there."""
    a = world.tenants[0]
    before = world.analytics(tenant=a, group_by="tag")
    asyncio.run(_drop_rollups(world.deployment.database, a))
    span = {"from": before["from"], "to": before["to"]}
    assert world.analytics(tenant=a, **span)["totals"]["requests"] == 0
    gw = world.deployment.gateway
    proc = spawn(["analytics", "rebuild", "--from", before["from"], "--to", before["to"], "--tenant", a,
                  "--config", str(gw.config_path)],
                 env={"SWITCHBOARD_MASTER_KEY": MASTER_KEY, "UPSTREAM_KEY": UPSTREAM_KEY,
                      "SWITCHBOARD_DATA_DIR": str(world.deployment.tmp / "data")})
    code = proc.wait_exit(120)
    assert code == 0 and "7 record(s) counted" in proc.output, proc.output
    assert world.analytics(tenant=a, group_by="tag", **span) == before
    early = spawn(["analytics", "rebuild", "--from", "0001-01-01T00:00:00Z", "--to", "0001-01-01T01:00:00Z",
                   "--config", str(gw.config_path)],
                  env={"SWITCHBOARD_MASTER_KEY": MASTER_KEY, "UPSTREAM_KEY": UPSTREAM_KEY,
                       "SWITCHBOARD_DATA_DIR": str(world.deployment.tmp / "data")})
    assert early.wait_exit(120) == 0, early.output
    assert "rebuilt the analytics rollups from 0001-01-01T00:00:00Z: 0 record(s) counted" in early.output
    bad = spawn(["analytics", "rebuild", "--from", "yesterday", "--config", str(gw.config_path)])
    assert bad.wait_exit(60) == 2 and "RFC 3339" in bad.output
    # Past the calendar's end in UTC (an offset), or rounded up to an hour past it: a usage error
    # naming the option, not an OverflowError's traceback.
    for option, value in [("--from", "0001-01-01T00:00:00+14:00"), ("--to", "9999-12-31T23:59:59-12:00"),
                          ("--to", "9999-12-31T23:30:00Z")]:
        times = {"--from": "2026-01-01T00:00:00Z", option: value}
        edge = spawn(["analytics", "rebuild", *(part for pair in times.items() for part in pair),
                      "--config", str(gw.config_path)], env={"COLUMNS": "250"})
        assert edge.wait_exit(60) == 2, edge.output
        assert f"Invalid value for {option}: out of range" in edge.output and "Traceback" not in edge.output
