"""Admin writes that find nothing to write, or that the database refuses, say so.

A ``DELETE`` reads the record, then deletes it: when another delete of it is committed in
between, this one removed nothing and answers the record's 404, as a model's always did (a
service's answered 204). The moment is driven on PostgreSQL: the test deletes the row in a
transaction of its own, holding its lock, so the gateway's read still sees it and its DELETE
waits; once that wait shows in ``pg_stat_activity`` the test commits. SQLite shows no waiting
writer, so the moment cannot be caught there; the handler's code is the same for both.

A credential or a model written under a provider that the database refuses for a constraint
(the test adds one: triggers on SQLite, a CHECK on PostgreSQL) is a 409 that stores nothing, not
the provider's not-found while the provider is there (nor a 500); a model's PATCH so refused is
the same 409, not a 500 nor ``model_changed`` after retrying a write that cannot succeed, and so
is a provider's PATCH so refused."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from switchboard.stores.sql.engine import create_engine
from tests.e2e.tenancy_world import Admin
from tests.ledger import database_of
from tests.servers import Gateway, Mock, openai_config, start_gateway

WAIT_SECONDS = 30.0
REFUSED = "refuse-"  # a credential label or an upstream model id the database is made to refuse


def _start(kind: str, request: pytest.FixtureRequest, mock: Mock, tmp: Path) -> Iterator[tuple[Gateway, str]]:
    config = openai_config(mock)
    if kind == "cluster":
        config["database"] = {"url": request.getfixturevalue("postgres").create_database(
            f"lost_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": request.getfixturevalue("redis_server").url}
    gw = start_gateway(config, tmp)
    try:
        yield gw, database_of(config, tmp)
    finally:
        gw.process.stop()


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, mock_upstream: Mock,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str]]:
    yield from _start("cluster", request, mock_upstream, tmp_path_factory.mktemp("cluster"))


@pytest.fixture(scope="module")
def embedded(request: pytest.FixtureRequest, mock_upstream: Mock,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str]]:
    yield from _start("embedded", request, mock_upstream, tmp_path_factory.mktemp("embedded"))


def _provider(admin: Admin, mock: Mock) -> str:
    name = f"prov-{uuid.uuid4().hex[:8]}"
    admin.ok("POST", "/admin/v1/providers", {"name": name, "type": "openai", "api_base": mock.url + "/v1"},
             status=201)
    return name


async def _until_waiting(conn: AsyncConnection, table: str) -> None:
    """Until a DELETE of ``table`` waits on a lock (the gateway's, the test holding the row)."""
    waiting = sa.text("SELECT count(*) > 0 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                      "AND query ILIKE :query").bindparams(query=f"DELETE FROM {table} %")
    async with asyncio.timeout(WAIT_SECONDS):
        while not (await conn.execute(waiting)).scalar():
            await conn.rollback()  # the statistics are read once per transaction: a new one sees anew
            await asyncio.sleep(0.05)  # polling the database for a state, not waiting out a guess


def _delete_beaten(gw: Gateway, database: str, path: str, table: str,
                   where: dict[str, str]) -> httpx.Response:
    """``DELETE path`` while the test deletes its row (``where``) first: committed once the
    gateway's own DELETE waits for it."""
    admin = Admin(gw.url)

    async def scenario() -> httpx.Response:
        engine = create_engine(database)
        try:
            async with engine.connect() as holder, engine.connect() as watcher:
                await holder.execute(sa.text("BEGIN"))
                match = " AND ".join(f"{column} = :{column}" for column in where)
                gone = await holder.execute(sa.text(f"DELETE FROM {table} WHERE {match}").bindparams(**where))
                assert gone.rowcount == 1
                answer = asyncio.create_task(asyncio.to_thread(admin.call, "DELETE", path))
                await _until_waiting(watcher, table)
                await holder.execute(sa.text("COMMIT"))
                return await answer
        finally:
            await engine.dispose()

    return asyncio.run(scenario())


def test_a_delete_another_delete_beat_is_not_found(cluster: tuple[Gateway, str], mock_upstream: Mock) -> None:
    gw, database = cluster
    admin = Admin(gw.url)
    tenant = f"lost-{uuid.uuid4().hex[:8]}"
    admin.ok("POST", "/admin/v1/tenants", {"id": tenant}, status=201)
    service = admin.ok("POST", "/admin/v1/services", {"name": "doomed", "url": "http://svc.example.invalid:9/",
                                                      "tenant": tenant}, status=201)["name"]
    answer = _delete_beaten(gw, database, f"/admin/v1/services/{service}?tenant={tenant}", "services",
                            {"tenant_id": tenant, "name": service})
    # Before, 204: a delete answered for a service this one never removed.
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "service_not_found", answer.text
    entries = admin.ok("GET", "/admin/v1/audit", params={"tenant": tenant, "limit": 100})["data"]
    assert [e for e in entries if e["action"] == "service.delete"] == []  # nothing it did to audit

    # A model's delete in the same race, as it already answered.
    model = f"doomed-{uuid.uuid4().hex[:8]}"
    admin.ok("POST", "/admin/v1/models", {"name": model, "provider": _provider(admin, mock_upstream),
                                          "model": "gpt-4o-mini"}, status=201)
    answer = _delete_beaten(gw, database, f"/admin/v1/models/{model}", "models", {"name": model})
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "model_not_found", answer.text


async def _refuse(database: str, on: bool) -> None:
    """Make the database refuse (or take again) credentials labelled, and models of upstream ids
    starting with, ``refuse-``, and providers whose ``api_base`` holds it, as they are written: a
    CHECK constraint on PostgreSQL (``NOT VALID``: rows such a test took again before are left
    alone), triggers on SQLite."""
    engine = create_engine(database)
    try:
        async with engine.begin() as conn:
            for table, column, pattern in (("provider_credentials", "label", f"{REFUSED}%"),
                                           ("models", "model", f"{REFUSED}%"),
                                           ("providers", "api_base", f"%{REFUSED}%")):
                if conn.dialect.name == "postgresql" and on:
                    await conn.execute(sa.text(f"ALTER TABLE {table} ADD CONSTRAINT {table}_refuse "
                                               f"CHECK ({column} NOT LIKE '{pattern}') NOT VALID"))
                elif conn.dialect.name == "postgresql":
                    await conn.execute(sa.text(f"ALTER TABLE {table} DROP CONSTRAINT {table}_refuse"))
                else:  # SQLite: a trigger per statement kind
                    for event in ("INSERT", "UPDATE"):
                        trigger = f"{table}_refuse_{event.lower()}"
                        await conn.execute(sa.text(
                            f"CREATE TRIGGER {trigger} BEFORE {event} ON {table} "
                            f"WHEN NEW.{column} LIKE '{pattern}' "
                            f"BEGIN SELECT RAISE(ABORT, 'refused by the test'); END") if on
                            else sa.text(f"DROP TRIGGER {trigger}"))
    finally:
        await engine.dispose()


@pytest.mark.parametrize("kind", ["embedded", "cluster"])
def test_a_write_under_a_provider_the_database_refuses_is_a_conflict(
        kind: str, request: pytest.FixtureRequest, mock_upstream: Mock) -> None:
    gw, database = request.getfixturevalue(kind)
    admin = Admin(gw.url)
    provider = _provider(admin, mock_upstream)
    before = admin.ok("GET", f"/admin/v1/providers/{provider}")
    asyncio.run(_refuse(database, on=True))
    try:
        # Before, 404 provider_not_found for a provider that is there.
        answer = admin.call("POST", f"/admin/v1/providers/{provider}/credentials",
                            {"api_key": "sk-refused-1234", "label": f"{REFUSED}label"})
        assert answer.status_code == 409 and answer.json()["error"]["code"] == "conflict", answer.text
        assert "nothing was stored" in answer.json()["error"]["message"]
        assert admin.ok("GET", f"/admin/v1/providers/{provider}") == before
        # Before, 400 provider_not_found, for a stored provider and for one of the YAML alike.
        for owner in (provider, "local-openai"):
            name = f"refused-{uuid.uuid4().hex[:8]}"
            answer = admin.call("POST", "/admin/v1/models", {"name": name, "provider": owner,
                                                             "model": f"{REFUSED}model"})
            assert answer.status_code == 409 and answer.json()["error"]["code"] == "conflict", answer.text
            assert admin.call("GET", f"/admin/v1/models/{name}").status_code == 404
    finally:
        asyncio.run(_refuse(database, on=False))
    # The same writes, taken again.
    admin.ok("POST", f"/admin/v1/providers/{provider}/credentials",
             {"api_key": "sk-taken-1234", "label": f"{REFUSED}label"}, status=201)
    made: dict[str, Any] = admin.ok("POST", "/admin/v1/models", {"name": f"taken-{uuid.uuid4().hex[:8]}",
                                                                 "provider": provider,
                                                                 "model": f"{REFUSED}model"}, status=201)
    assert made["provider"] == provider


@pytest.mark.parametrize("kind", ["embedded", "cluster"])
def test_a_model_change_the_database_refuses_is_a_conflict(
        kind: str, request: pytest.FixtureRequest, mock_upstream: Mock) -> None:
    gw, database = request.getfixturevalue(kind)
    admin = Admin(gw.url)
    first, second = _provider(admin, mock_upstream), _provider(admin, mock_upstream)
    name = f"kept-{uuid.uuid4().hex[:8]}"
    admin.ok("POST", "/admin/v1/models", {"name": name, "provider": first, "model": "gpt-4o-mini"},
             status=201)
    before = admin.ok("GET", f"/admin/v1/models/{name}")
    asyncio.run(_refuse(database, on=True))
    try:
        # Before: kept in place or moved to a YAML provider, a 500; moved to a stored provider,
        # three tries of a write that cannot succeed and "409 model_changed, try again".
        for change in ({}, {"provider": "local-openai"}, {"provider": second}):
            answer = admin.call("PATCH", f"/admin/v1/models/{name}", {**change, "model": f"{REFUSED}model"})
            assert answer.status_code == 409, (change, answer.text)
            error = answer.json()["error"]
            assert error["code"] == "conflict" and "nothing was stored" in error["message"], error
            assert admin.ok("GET", f"/admin/v1/models/{name}") == before
        # A provider that is not there is still its 400, refusal or not.
        answer = admin.call("PATCH", f"/admin/v1/models/{name}",
                            {"provider": "prov-absent", "model": f"{REFUSED}m"})
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "provider_not_found", answer.text
    finally:
        asyncio.run(_refuse(database, on=False))
    entries = admin.ok("GET", "/admin/v1/audit", params={"limit": 100})["data"]
    assert [e for e in entries if e["action"] == "model.update" and e["resource_id"] == name] == []
    # The same change, taken again.
    moved = admin.ok("PATCH", f"/admin/v1/models/{name}", {"provider": second, "model": f"{REFUSED}model"})
    assert (moved["provider"], moved["model"]) == (second, f"{REFUSED}model")


@pytest.mark.parametrize("kind", ["embedded", "cluster"])
def test_a_provider_change_the_database_refuses_is_a_conflict(
        kind: str, request: pytest.FixtureRequest, mock_upstream: Mock) -> None:
    gw, database = request.getfixturevalue(kind)
    admin = Admin(gw.url)
    provider = _provider(admin, mock_upstream)
    before = admin.ok("GET", f"/admin/v1/providers/{provider}")
    refused = f"{mock_upstream.url}/{REFUSED}v1"
    asyncio.run(_refuse(database, on=True))
    try:
        # Before, a 500.
        answer = admin.call("PATCH", f"/admin/v1/providers/{provider}", {"api_base": refused})
        assert answer.status_code == 409, answer.text
        error = answer.json()["error"]
        assert error["code"] == "conflict" and "nothing was stored" in error["message"], error
        assert admin.ok("GET", f"/admin/v1/providers/{provider}") == before
        # A provider that is not there is still its 404, refusal or not.
        answer = admin.call("PATCH", "/admin/v1/providers/prov-absent", {"api_base": refused})
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["code"] == "provider_not_found", answer.text
    finally:
        asyncio.run(_refuse(database, on=False))
    entries = admin.ok("GET", "/admin/v1/audit", params={"limit": 100})["data"]
    assert [e for e in entries if e["action"] == "provider.update" and e["resource_id"] == provider] == []
    # The same change, taken again.
    changed = admin.ok("PATCH", f"/admin/v1/providers/{provider}", {"api_base": refused})
    assert changed["api_base"] == refused
