"""Searching the request log end to end (``GET /admin/v1/logs``): a request made with the OpenAI
SDK is found by its ``x-request-id`` with the contract's fields; every filter finds its request;
the cursor walks every record once; a tenant admin never reads another tenant's records; each
role sees its reach; bodies come with a record when stored; bad input is a 400 with a code. On
the embedded default (SQLite) and a cluster (PostgreSQL + Redis).

Most bodies are written straight into ``request_bodies`` here, to control them exactly; one test
has the request log capture a body (with a redaction) and finds it by its words."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa

from switchboard.stores import UsageRecord
from switchboard.stores.factory import open_at, open_database
from switchboard.stores.sql.tables import request_bodies, usage_records
from tests.e2e.sdk import ask
from tests.e2e.test_usage import Deployment, _config, deployment  # noqa: F401 - the module's gateways
from tests.servers import MASTER_KEY, Mock, start_gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


@dataclass
class World:
    deployment: Deployment
    tenants: tuple[str, str]
    team: str
    other_team: str
    keys: dict[str, dict[str, Any]]  # name -> the created key (id, key)
    calls: dict[str, str]  # name -> request id
    records: dict[str, dict[str, Any]]  # name -> the record as the API shows it
    word: str  # a word only the "plain" request's stored body holds
    word_b: str  # a word only tenant b's stored body holds

    def get(self, caller: str = MASTER_KEY, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.deployment.gateway.url}/admin/v1/logs", params=params,
                         headers={"Authorization": f"Bearer {caller}"}, timeout=30)

    def ids(self, caller: str = MASTER_KEY, **params: Any) -> list[str]:
        resp = self.get(caller, **params)
        assert resp.status_code == 200, resp.text
        return [r["request_id"] for r in resp.json()["data"]]


def _post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = httpx.post(url + path, json=body, headers=ADMIN, timeout=30)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def lookup(url: str, request_id: str, timeout: float = 20.0) -> dict[str, Any]:
    """The record of one request once the ledger has it (it is written behind the response)."""
    deadline = time.monotonic() + timeout
    while True:
        resp = httpx.get(f"{url}/admin/v1/logs", params={"request_id": request_id}, headers=ADMIN, timeout=30)
        assert resp.status_code == 200, resp.text
        if resp.json()["data"]:
            return dict(resp.json()["data"][0])
        assert time.monotonic() < deadline, f"{request_id} never reached the request log"
        time.sleep(0.1)


def call(d: Deployment, key: str, model: str, text: str) -> str:
    """One chat completion; its request id, whether it succeeded or not."""
    try:
        raw = d.sdk(key).chat.completions.with_raw_response.create(model=model, messages=ask(text))
    except openai.APIStatusError as exc:
        return str(exc.response.headers["x-request-id"])
    return str(raw.headers["x-request-id"])


def stream_to_the_end(d: Deployment, key: str = MASTER_KEY) -> str:
    """A stream the official SDK reads to its end; its request id."""
    with d.sdk(key).chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", stream=True, messages=ask("read it all")) as whole:
        list(whole.parse())
        return str(whole.headers["x-request-id"])


def abandon_a_stream(d: Deployment, key: str = MASTER_KEY) -> str:
    """A stream the official SDK reads the first chunk of, then closes; its request id."""
    with d.sdk(key).chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", stream=True,
            messages=ask("mock:chunk_delay_ms=200 a long answer the client leaves")) as left:
        stream = left.parse()
        assert next(iter(stream)).choices  # the stream began
        stream.close()  # the client leaves mid-way
        return str(left.headers["x-request-id"])


async def _store_bodies(database: str, rows: list[dict[str, Any]]) -> None:
    """Store bodies as the gateway does: each with its record's own id (log_id), which the
    gateway gives a record only when it keeps the request's body (these records had none)."""
    engine, _ = await open_database(database)
    u = usage_records
    try:
        async with engine.begin() as conn:
            for row in rows:
                row["log_id"] = uuid.uuid4().hex
                of_request = (u.c.request_id == row["request_id"], u.c.tenant_id == row["tenant_id"])
                updated = await conn.execute(sa.update(u).where(*of_request).values(log_id=row["log_id"]))
                assert updated.rowcount == 1
            await conn.execute(sa.insert(request_bodies), rows)
    finally:
        await engine.dispose()


def store_body(d: Deployment, record: dict[str, Any], request: str, response: str | None) -> None:
    created = datetime.fromisoformat(record["created_at"].replace("Z", "+00:00"))
    asyncio.run(_store_bodies(d.database, [{
        "request_id": record["request_id"], "created_at": created, "tenant_id": record["tenant"],
        "request": request, "response": response, "request_headers": {"user-agent": "e2e"},
        "truncated": False}]))


def build_world(d: Deployment) -> World:
    url = d.gateway.url
    tenants = (f"acme-{uuid.uuid4().hex[:6]}", f"globex-{uuid.uuid4().hex[:6]}")
    for tenant in tenants:
        _post(url, "/admin/v1/tenants", {"id": tenant, "name": tenant})
    team = _post(url, "/admin/v1/teams", {"tenant": tenants[0], "name": "logs"})["id"]
    other_team = _post(url, "/admin/v1/teams", {"tenant": tenants[0], "name": "others"})["id"]
    in_team = {"models": ["*"], "tenant": tenants[0], "team": team}
    keys = {
        "a": _post(url, "/admin/v1/keys", {"models": ["*"], "tenant": tenants[0], "user": "alice"}),
        "team_a": _post(url, "/admin/v1/keys", in_team),
        "team_admin": _post(url, "/admin/v1/keys", {**in_team, "role": "team_admin"}),
        "viewer": _post(url, "/admin/v1/keys", {**in_team, "role": "viewer"}),
        "b": _post(url, "/admin/v1/keys", {"models": ["*"], "tenant": tenants[1]}),
        "admin_a": _post(url, "/admin/v1/keys",
                         {"models": ["*"], "tenant": tenants[0], "role": "tenant_admin"}),
    }
    calls = {
        "plain": call(d, keys["a"]["key"], "gpt-4o-mini", "hello log"),
        "slow": call(d, keys["a"]["key"], "gpt-4o-mini", "slowly mock:latency_ms=700"),
        "failed": call(d, keys["a"]["key"], "gpt-4o-mini", "fail mock:status=500"),
        "house": call(d, keys["a"]["key"], "house-model", "unpriced"),
        "team": call(d, keys["team_a"]["key"], "gpt-4o-mini", "from the team"),
        "b": call(d, keys["b"]["key"], "gpt-4o-mini", "from tenant b"),
    }
    records = {name: lookup(url, rid) for name, rid in calls.items()}
    word, word_b = f"pelican{uuid.uuid4().hex[:8]}", f"walrus{uuid.uuid4().hex[:8]}"
    store_body(d, records["plain"], f'{{"messages": [{{"role": "user", "content": "about the {word}"}}]}}',
               '{"choices": [{"message": {"content": "a reply"}}]}')
    store_body(d, records["b"], f'{{"messages": [{{"role": "user", "content": "{word_b} {word}"}}]}}', None)
    return World(d, tenants, team, other_team, keys, calls, records, word, word_b)


@pytest.fixture(scope="module")
def world(deployment: Deployment) -> World:  # noqa: F811
    return build_world(deployment)


def test_a_request_made_with_the_sdk_is_found_by_its_request_id(deployment: Deployment) -> None:  # noqa: F811
    raw = deployment.sdk().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=ask("find me in the log"))
    usage = raw.parse().usage
    assert usage is not None
    rid = raw.headers["x-request-id"]
    record = lookup(deployment.gateway.url, rid)
    assert record["request_id"] == rid
    assert (record["model"], record["status"]) == ("gpt-4o-mini", 200)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (
        usage.prompt_tokens, usage.completion_tokens)
    # cost_usd is a decimal string, as in GET /admin/v1/usage, equal to the response's cost header.
    assert isinstance(record["cost_usd"], str)
    assert Decimal(record["cost_usd"]) == Decimal(raw.headers["x-switchboard-cost-usd"]) > 0
    assert isinstance(record["latency_ms"], int) and record["latency_ms"] >= 0
    assert (record["provider"], record["stream"], record["error_code"]) == ("local-openai", False, None)
    assert isinstance(record["deployment"], str) and record["deployment"]
    assert isinstance(record["attempts"], list) and record["attempts"]
    assert "request" not in record  # no body stored for it


def test_each_filter_finds_its_request(world: World) -> None:
    r = world.records
    tenant = world.tenants[0]
    failed, slow = r["failed"], r["slow"]
    assert failed["status"] >= 500 and failed["error_code"], failed
    assert slow["latency_ms"] >= 700
    assert Decimal(r["plain"]["cost_usd"]) > 0 and Decimal(r["house"]["cost_usd"]) == 0
    alice = ("plain", "slow", "failed", "house")
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({"request_id": world.calls["team"]}, {"team"}),
        ({"tenant": world.tenants[1]}, {"b"}),
        ({"team": world.team}, {"team"}),
        ({"key": world.keys["team_a"]["id"]}, {"team"}),
        ({"user": "alice"}, {"plain", "slow", "failed", "house"}),
        ({"model": "house-model"}, {"house"}),
        ({"deployment": r["house"]["deployment"]}, {"house"}),
        ({"provider": "local-openai", "model": "house-model"}, {"house"}),
        ({"status": str(failed["status"])}, {"failed"}),
        ({"status": f"{failed['status'] // 100}xx"}, {"failed"}),
        ({"status": "2xx", "key": world.keys["team_a"]["id"]}, {"team"}),
        ({"error_code": failed["error_code"]}, {"failed"}),
        ({"min_latency_ms": "700"}, {"slow"}),
        ({"max_latency_ms": str(slow["latency_ms"] - 1), "user": "alice"}, {"plain", "failed", "house"}),
        ({"min_cost_usd": r["plain"]["cost_usd"], "max_cost_usd": r["plain"]["cost_usd"], "user": "alice"},
         {n for n in alice if Decimal(r[n]["cost_usd"]) == Decimal(r["plain"]["cost_usd"])}),
        ({"max_cost_usd": "0", "user": "alice"}, {n for n in alice if Decimal(r[n]["cost_usd"]) == 0}),
        ({"min_cost_usd": "0.000000001", "user": "alice"},
         {n for n in alice if Decimal(r[n]["cost_usd"]) > 0}),
        ({"q": world.word}, {"plain"}),
        ({"q": world.word_b}, set()),  # tenant b's body, not tenant a's
        ({"from": r["team"]["created_at"], "to": r["team"]["created_at"], "tenant": tenant}, set()),
    ]
    by_id = {rid: name for name, rid in world.calls.items()}
    for params, expected in cases:
        found = world.ids(**{"tenant": tenant, **params})
        assert {by_id.get(i, i) for i in found} == expected, params


def test_bodies_come_with_a_record_when_stored(world: World) -> None:
    plain = world.get(request_id=world.calls["plain"]).json()["data"][0]
    assert world.word in plain["request"]
    assert plain["response"] == '{"choices": [{"message": {"content": "a reply"}}]}'
    assert (plain["request_headers"], plain["truncated"]) == ({"user-agent": "e2e"}, False)
    listed = world.get(tenant=world.tenants[0], user="alice").json()["data"]
    assert all("request" not in rec for rec in listed)  # a list carries bodies only when asked
    listed = world.get(tenant=world.tenants[0], user="alice", include_bodies="true").json()["data"]
    assert {rec["request_id"] for rec in listed if "request" in rec} == {world.calls["plain"]}


def test_the_cursor_walks_every_record_exactly_once(world: World) -> None:
    everything = world.ids(tenant=world.tenants[0], limit=1000)
    assert len(everything) == 5
    walked: list[str] = []
    params: dict[str, Any] = {"tenant": world.tenants[0], "limit": 2}
    pages = 0
    while True:
        page = world.get(**params).json()
        pages += 1
        walked += [rec["request_id"] for rec in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        params["cursor"] = page["next_cursor"]
    assert (walked, pages) == (everything, 3)
    times = [rec["created_at"] for rec in world.get(tenant=world.tenants[0]).json()["data"]]
    assert times == sorted(times, reverse=True)  # newest first



async def _append(database: str, records: list[UsageRecord]) -> None:
    stores = await open_at(database, None)
    try:
        await stores.ledger.append(records)
    finally:
        await stores.close()


def test_records_sharing_a_request_id_and_time_are_each_listed_and_paged(world: World) -> None:
    """Requests a caller sent under one X-Request-Id that started in the same microsecond (two
    workers) are one record each: a lookup lists them all, with their own ``entry_id``, and the
    cursor walks them one by one; a cursor from before entry ids still reads on."""
    tenant = f"shared-{uuid.uuid4().hex[:6]}"
    _post(world.deployment.gateway.url, "/admin/v1/tenants", {"id": tenant, "name": tenant})
    at = datetime.now(UTC).replace(microsecond=123456) - timedelta(minutes=5)
    shared = f"shared-{uuid.uuid4().hex}"
    records = [UsageRecord(request_id=shared, tenant_id=tenant, model="gpt-4o-mini", created_at=at,
                           entry_id=f"{shared}-{n}") for n in range(3)]
    earlier = UsageRecord(request_id="earlier", tenant_id=tenant, model="gpt-4o-mini",
                          created_at=at - timedelta(seconds=1))
    asyncio.run(_append(world.deployment.database, [*records, earlier]))
    looked_up = world.get(tenant=tenant, request_id=shared).json()["data"]
    assert sorted(rec["entry_id"] for rec in looked_up) == [r.entry_id for r in records]
    walked: list[str] = []
    params: dict[str, Any] = {"tenant": tenant, "limit": 1}
    while True:
        page = world.get(**params).json()
        walked += [rec["entry_id"] for rec in page["data"]]
        if not page["has_more"]:
            break
        params["cursor"] = page["next_cursor"]
    assert walked == [f"{shared}-2", f"{shared}-1", f"{shared}-0", "earlier"]
    old = base64.urlsafe_b64encode(json.dumps([at.isoformat(), shared]).encode()).decode().rstrip("=")
    assert [rec["entry_id"] for rec in world.get(tenant=tenant, cursor=old).json()["data"]] == ["earlier"]

def test_a_tenant_admin_never_reads_another_tenants_logs(world: World) -> None:
    admin_a = world.keys["admin_a"]["key"]
    mine = world.ids(admin_a)
    assert set(mine) == {world.calls[n] for n in ("plain", "slow", "failed", "house", "team")}
    # Another tenant's request id reads like one that does not exist: no data, no existence leak.
    for rid in (world.calls["b"], "no-such-request"):
        resp = world.get(admin_a, request_id=rid)
        assert resp.status_code == 200 and resp.json()["data"] == [] and resp.json()["has_more"] is False
    other = world.get(admin_a, tenant=world.tenants[1])
    assert other.status_code == 404 and other.json()["error"]["code"] == "tenant_not_found"
    assert world.ids(admin_a, q=world.word_b) == []
    assert world.ids(admin_a, q=world.word) == [world.calls["plain"]]
    # The platform admin reads every tenant, and any one of them.
    assert world.ids(request_id=world.calls["b"]) == [world.calls["b"]]
    assert set(world.ids(q=world.word)) == {world.calls["plain"], world.calls["b"]}


def test_each_role_sees_only_its_reach(world: World) -> None:
    # A team admin sees its team's requests, and no other team's.
    team_admin = world.keys["team_admin"]["key"]
    assert world.ids(team_admin) == [world.calls["team"]]
    assert world.ids(team_admin, team=world.team) == [world.calls["team"]]
    assert world.ids(team_admin, request_id=world.calls["plain"]) == []
    other = world.get(team_admin, team=world.other_team)
    assert other.status_code == 404 and other.json()["error"]["code"] == "team_not_found"
    # A developer sees its own key's requests only.
    own = world.keys["a"]["key"]
    assert set(world.ids(own)) == {world.calls[n] for n in ("plain", "slow", "failed", "house")}
    assert world.ids(own, key=world.keys["team_a"]["id"]) == []
    assert world.ids(world.keys["team_a"]["key"], request_id=world.calls["plain"]) == []
    # A viewer may not read the log at all.
    resp = world.get(world.keys["viewer"]["key"])
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "permission_denied"


def _rotate(url: str, key: dict[str, Any]) -> dict[str, Any]:
    """The key rotated by itself (a developer may rotate its own key), the old one retired now."""
    resp = httpx.post(f"{url}/admin/v1/keys/{key['id']}/rotate", json={"grace_seconds": 0},
                      headers={"Authorization": f"Bearer {key['key']}"}, timeout=30)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _by_key(url: str, path: str, caller: str) -> dict[str, int]:
    resp = httpx.get(f"{url}/admin/v1/{path}", params={"group_by": "key"},
                     headers={"Authorization": f"Bearer {caller}"}, timeout=30)
    assert resp.status_code == 200, resp.text
    if path == "usage":
        return {row["key"]: row["requests"] for row in resp.json()["data"]}
    return {s["group"]: s["totals"]["requests"] for s in resp.json()["series"]}


def test_a_rotated_developer_key_keeps_its_history_and_sees_no_other(deployment: Deployment) -> None:  # noqa: F811
    """Rotation replaces a key's secret, not its history: a developer key without a user, rotated
    twice, reads the requests of its whole rotation chain in the log, the usage report and
    analytics; another developer key of the tenant, and a key of another tenant, read only theirs."""
    url = deployment.gateway.url
    tenants = (f"rot-{uuid.uuid4().hex[:6]}", f"rot-{uuid.uuid4().hex[:6]}")
    for tenant in tenants:
        _post(url, "/admin/v1/tenants", {"id": tenant, "name": tenant})
    first = _post(url, "/admin/v1/keys", {"models": ["*"], "tenant": tenants[0]})
    peer = _post(url, "/admin/v1/keys", {"models": ["*"], "tenant": tenants[0]})
    stranger = _post(url, "/admin/v1/keys", {"models": ["*"], "tenant": tenants[1]})
    assert first["role"] == "developer" and first["user"] is None and first["team"] is None
    calls = {"first": call(deployment, first["key"], "gpt-4o-mini", "before rotating")}
    second = _rotate(url, first)
    calls["second"] = call(deployment, second["key"], "gpt-4o-mini", "after one rotation")
    third = _rotate(url, second)
    calls["third"] = call(deployment, third["key"], "gpt-4o-mini", "after two rotations")
    calls["peer"] = call(deployment, peer["key"], "gpt-4o-mini", "a peer's")
    calls["stranger"] = call(deployment, stranger["key"], "gpt-4o-mini", "another tenant's")
    for rid in calls.values():
        lookup(url, rid)
    chain = {first["id"]: 1, second["id"]: 1, third["id"]: 1}

    def logs(caller: str) -> set[str]:
        resp = httpx.get(f"{url}/admin/v1/logs", headers={"Authorization": f"Bearer {caller}"}, timeout=30)
        assert resp.status_code == 200, resp.text
        return {r["request_id"] for r in resp.json()["data"]}

    assert logs(third["key"]) == {calls["first"], calls["second"], calls["third"]}
    assert _by_key(url, "usage", third["key"]) == chain
    assert _by_key(url, "analytics", third["key"]) == chain
    # Nothing of another key, in the tenant or outside it, and nothing of the chain for them.
    assert logs(peer["key"]) == {calls["peer"]}
    assert _by_key(url, "usage", peer["key"]) == {peer["id"]: 1}
    assert _by_key(url, "analytics", peer["key"]) == {peer["id"]: 1}
    assert logs(stranger["key"]) == {calls["stranger"]}
    assert _by_key(url, "usage", stranger["key"]) == {stranger["id"]: 1}


def test_a_stream_the_client_left_is_marked_and_found(deployment: Deployment) -> None:  # noqa: F811
    """The official SDK reads the first chunk of a stream and closes it: the record keeps the
    status sent (200) and says ``abandoned``; ``?abandoned=true`` finds it, and only it among
    the tenant's records, and ``?abandoned=false`` finds the stream read to its end."""
    url = deployment.gateway.url
    tenant = f"left-{uuid.uuid4().hex[:6]}"
    _post(url, "/admin/v1/tenants", {"id": tenant, "name": tenant})
    key = _post(url, "/admin/v1/keys", {"models": ["*"], "tenant": tenant})["key"]
    read, rid = stream_to_the_end(deployment, key), abandon_a_stream(deployment, key)
    record = lookup(url, rid)
    assert (record["status"], record["stream"], record["abandoned"]) == (200, True, True)
    assert lookup(url, read)["abandoned"] is False

    def found(**params: str) -> list[str]:
        resp = httpx.get(f"{url}/admin/v1/logs", params={"tenant": tenant, **params}, headers=ADMIN,
                         timeout=30)
        assert resp.status_code == 200, resp.text
        return [r["request_id"] for r in resp.json()["data"]]

    assert found(abandoned="true") == [rid]
    assert found(abandoned="false") == [read]
    assert found(abandoned="true", status="200") == [rid]
    assert found(abandoned="true", request_id=read) == []


@pytest.mark.parametrize(("params", "code"), [
    ({"cursor": "not-a-cursor"}, "invalid_cursor"),
    ({"cursor": "WyJ4IiwgInkiXQ"}, "invalid_cursor"),  # base64 of ["x", "y"]
    ({"from": "yesterday"}, "invalid_time"),
    ({"to": "2026-06-01T00:00:00"}, "invalid_time"),  # no zone
    ({"from": "2026-06-02T00:00:00Z", "to": "2026-06-01T00:00:00Z"}, "invalid_time_range"),
    ({"limit": "1001"}, "invalid_value"),
    ({"limit": "0"}, "invalid_value"),
    ({"limit": "ten"}, "invalid_value"),
    ({"min_latency_ms": "-1"}, "invalid_value"),
    ({"max_latency_ms": "99999999999"}, "invalid_value"),
    ({"min_latency_ms": "10", "max_latency_ms": "5"}, "invalid_range"),
    ({"min_cost_usd": "-0.5"}, "invalid_value"),
    ({"max_cost_usd": "NaN"}, "invalid_value"),
    ({"min_cost_usd": "2", "max_cost_usd": "1"}, "invalid_range"),
    ({"status": "abc"}, "invalid_status"),
    ({"status": "600"}, "invalid_status"),
    ({"status": "6xx"}, "invalid_status"),
    ({"include_bodies": "maybe"}, "invalid_value"),
    ({"abandoned": "yes"}, "invalid_value"),
    ({"colour": "red"}, "unknown_parameter"),
    ({"model": "m" * 5000}, "invalid_value"),
    ({"model": ""}, "invalid_value"),
    ({"request_id": "r" * 200}, "invalid_value"),
    ({"q": " "}, "invalid_value"),
])
def test_bad_input_is_a_400_with_a_code(world: World, params: dict[str, str], code: str) -> None:
    resp = world.get(**params)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error"
    assert world.get(tenant=world.tenants[0]).status_code == 200  # still serving


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def capturing(request: pytest.FixtureRequest, mock_upstream: Mock,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A gateway whose request log keeps the bodies of gpt-4o-mini calls, with a redaction."""
    config = _config(request.param, mock_upstream, request, "logsearch")
    config["request_log"] = {"bodies": [{"model": "gpt-4o-mini"}], "flush_seconds": 0.1,
                             "redact": {"patterns": [r"secret-\d{6}"]}}
    tmp = tmp_path_factory.mktemp(f"logsearch-{request.param}")
    gw = start_gateway(config, tmp)
    yield Deployment(request.param, config, gw, tmp)
    gw.process.stop()


def test_words_of_a_captured_body_find_its_request(capturing: Deployment) -> None:
    url = capturing.gateway.url
    word = f"heron{uuid.uuid4().hex[:8]}"
    raw = capturing.sdk().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=ask(f"tell me about the {word} secret-123456"))
    rid = raw.headers["x-request-id"]
    deadline = time.monotonic() + 20  # the body is written behind the response, like the record
    while True:
        found = httpx.get(f"{url}/admin/v1/logs", params={"q": word, "include_bodies": "true"},
                          headers=ADMIN, timeout=30).json()["data"]
        if found:
            break
        assert time.monotonic() < deadline, "the captured body never became searchable"
        time.sleep(0.1)
    [record] = found
    assert record["request_id"] == rid and word in record["request"] and word in record["response"]
    # What redaction removed is neither stored nor found.
    assert "secret-123456" not in record["request"] + record["response"]
    none = httpx.get(f"{url}/admin/v1/logs", params={"q": "secret-123456"}, headers=ADMIN, timeout=30)
    assert none.status_code == 200 and none.json()["data"] == []
    # Requests of a model the policy does not name have a record, no body.
    other = capturing.sdk().chat.completions.with_raw_response.create(model="house-model", messages=ask(word))
    assert "request" not in lookup(url, other.headers["x-request-id"])


def test_a_word_after_a_line_break_or_tab_in_a_body_is_found(capturing: Deployment) -> None:
    """A stored body is JSON text, where a prompt's line breaks and tabs are the escapes ``\\n``
    and ``\\t``: the word right after one is found like any other (a multi-line prompt, code)."""
    url = capturing.gateway.url
    words = [f"{kind}{uuid.uuid4().hex[:8]}" for kind in ("ibis", "crane", "stork", "nene")]
    # A line break, a tab, a carriage return and a backslash before "n" (a Windows path).
    # The reply is another text: only the request's body holds the words.
    prompt = f"first line\n{words[0]}\tsecond\t{words[1]}\r\n{words[2]} C:\\{words[3]} mock:reply=noted"
    raw = capturing.sdk().chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=ask(prompt))
    rid = raw.headers["x-request-id"]
    record = lookup(url, rid)
    deadline = time.monotonic() + 20  # the body is written behind the response, like the record
    while "request" not in record:
        assert time.monotonic() < deadline, "the captured body was never stored"
        time.sleep(0.1)
        record = lookup(url, rid)
    for word in words:
        found = httpx.get(f"{url}/admin/v1/logs", params={"q": word}, headers=ADMIN, timeout=30)
        assert found.status_code == 200, found.text
        assert [r["request_id"] for r in found.json()["data"]] == [rid], word
    if capturing.kind == "embedded":
        return  # SQLite matches substrings: "nibis…" is in "…\\nibis…" whatever the escapes
    # Full text: the escapes' letters make no words of their own ("nibis…" is not a word there).
    for word in (f"n{words[0]}", f"t{words[1]}", f"n{words[2]}"):
        none = httpx.get(f"{url}/admin/v1/logs", params={"q": word}, headers=ADMIN, timeout=30)
        assert none.status_code == 200 and none.json()["data"] == [], word
