"""Keys with a check, end to end: a key the gateway issues ends in a MAC of the rest, so a made-up
key is refused without a database query, while keys issued before the check keep working (and
made-up keys are looked up as before) until the last of them is rotated or revoked. Every test
runs on the embedded default and on a cluster; the cluster also shows two instances following
the change, with the database stopped to prove the made-up keys no longer reach it."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from switchboard.access import keys
from switchboard.stores import KeyRecord
from switchboard.stores.factory import open_at
from switchboard.stores.sql.urls import async_url
from tests.e2e.sdk import ask
from tests.e2e.test_store_outage import _pg_ctl
from tests.servers import MASTER_KEY, SECRET_KEY, Gateway, Mock, openai_config, start_gateway
from tests.services import Postgres, RedisServer, start_postgres

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
# The key-hashing key a fresh database stores: the one derived from the secret of its first start.
HASHING = keys.hashing_key(SECRET_KEY)
CHECKING = keys.checking_key(HASHING)


def made_up() -> str:
    """A key of the gateway's shape, random to the end: an attacker's, or one issued before."""
    return keys.PREFIX + secrets.token_urlsafe(48)[: keys.VISIBLE + keys.RANDOM]


def store_old_key(database: str, data_dir: Path) -> tuple[str, str]:
    """A key as a version before the check issued it, stored before the gateway starts (the
    upgrade): its key and its id."""
    key, key_id = made_up(), "key_old_" + secrets.token_hex(4)

    async def put() -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        stores = await open_at(async_url(database or None, data_dir), None)
        try:
            await stores.keys.put(KeyRecord(id=key_id, key_hash=keys.key_hash(key, HASHING),
                                            prefix=keys.prefix_of(key), tenant_id="default",
                                            role="developer", allowed_models=("gpt-4o-mini",)))
        finally:
            await stores.close()

    asyncio.run(put())
    return key, key_id


def status(gw: Gateway, key: str, client: httpx.Client | None = None) -> httpx.Response:
    url, auth = f"{gw.base_url}/models", {"Authorization": f"Bearer {key}"}
    return client.get(url, headers=auth) if client else httpx.get(url, headers=auth, timeout=30)


def chat(gw: Gateway, key: str) -> str:
    client = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30)
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=ask("checked"))
    return reply.choices[0].message.content or ""


def refused(resp: httpx.Response, code: str = "invalid_api_key") -> bool:
    return resp.status_code == 401 and resp.json()["error"]["code"] == code


@pytest.fixture(params=["embedded", "cluster"])
def world(request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A config and the data dir of one gateway, its database already holding a key from before."""
    config = openai_config(mock_upstream)
    database = ""
    if request.param == "cluster":
        postgres: Postgres = request.getfixturevalue("postgres")
        redis: RedisServer = request.getfixturevalue("redis_server")
        database = postgres.create_database(f"check_{uuid.uuid4().hex[:8]}")
        config["database"] = {"url": database}
        config["redis"] = {"url": redis.url}
    old, old_id = store_old_key(database, tmp_path / "data")
    yield {"config": config, "old": old, "old_id": old_id, "tmp": tmp_path}


def test_old_keys_keep_working_and_rotate_to_checked_keys(world: dict[str, Any]) -> None:
    gw = start_gateway(world["config"], world["tmp"])
    try:
        old = world["old"]
        assert chat(gw, old).endswith("You said: checked")
        created = httpx.post(f"{gw.url}/admin/v1/keys", json={"models": ["*"]}, headers=ADMIN, timeout=10)
        new = created.json()["key"]
        # Same shape as before (length, prefix, alphabet), the last characters a check.
        assert keys.well_formed(new) and len(new) == keys.LENGTH == 54
        assert created.json()["prefix"] == new[:14]
        assert keys.checks_out(new, CHECKING) and not keys.checks_out(old, CHECKING)
        assert chat(gw, new).endswith("You said: checked")
        for _ in range(20):
            assert refused(status(gw, made_up()))
        # Rotating the key from before gives a checked key; the old one works for its grace period.
        rotated = httpx.post(f"{gw.url}/admin/v1/keys/{world['old_id']}/rotate", json={"grace_seconds": 600},
                             headers=ADMIN, timeout=10)
        assert rotated.status_code == 201, rotated.text
        successor = rotated.json()["key"]
        assert keys.well_formed(successor) and keys.checks_out(successor, CHECKING)
        assert chat(gw, successor).endswith("You said: checked")
        assert status(gw, old).status_code == 200
        # Revoked, the old key is refused (as made up: no key without a check is live any more).
        revoked = httpx.delete(f"{gw.url}/admin/v1/keys/{world['old_id']}", headers=ADMIN, timeout=10)
        assert revoked.status_code == 200
        assert refused(status(gw, old))
        assert refused(status(gw, made_up()))
        assert status(gw, successor).status_code == 200 and status(gw, new).status_code == 200
    finally:
        gw.process.stop()


def test_the_admin_api_shows_and_lists_the_keys_from_before(world: dict[str, Any]) -> None:
    """Which keys to rotate: ``checked`` false on each key from before, ``?checked=false`` lists them."""
    gw = start_gateway(world["config"], world["tmp"])
    try:
        new = httpx.post(f"{gw.url}/admin/v1/keys", json={"models": ["*"]}, headers=ADMIN, timeout=10).json()
        assert new["checked"] is True
        old = httpx.get(f"{gw.url}/admin/v1/keys/{world['old_id']}", headers=ADMIN, timeout=10).json()
        assert old["checked"] is False
        listed = httpx.get(f"{gw.url}/admin/v1/keys", params={"checked": "false"}, headers=ADMIN, timeout=10)
        assert [k["id"] for k in listed.json()["data"]] == [world["old_id"]]
        listed = httpx.get(f"{gw.url}/admin/v1/keys", params={"checked": "true"}, headers=ADMIN, timeout=10)
        assert [k["id"] for k in listed.json()["data"]] == [new["id"]]
        for value in ("maybe", "yes", "1", "False", ""):
            bad = httpx.get(f"{gw.url}/admin/v1/keys", params={"checked": value}, headers=ADMIN, timeout=10)
            assert bad.status_code == 400 and bad.json()["error"]["param"] == "checked", bad.text
            assert bad.json()["error"]["type"] == "invalid_request_error"
    finally:
        gw.process.stop()


def test_made_up_keys_stop_reaching_the_database_on_every_instance(
    mock_upstream: Mock, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Two instances; the last key from before is revoked through the first. The database is then
    stopped: the second refuses made-up keys with 401 (a lookup would be 503 store_unavailable)."""
    pg = start_postgres()  # its own server: the test stops it
    first = second = None
    try:
        database = pg.create_database("check")
        config = openai_config(mock_upstream)
        config["database"] = {"url": database}
        config["redis"] = {"url": redis_server.url}
        old, old_id = store_old_key(database, tmp_path / "data")
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        first = start_gateway(config, tmp_path / "a")
        second = start_gateway(config, tmp_path / "b")
        assert status(second, old).status_code == 200
        assert refused(status(second, made_up()))  # looked up, as before: a key from before is live
        revoked = httpx.delete(f"{first.url}/admin/v1/keys/{old_id}", headers=ADMIN, timeout=10)
        assert revoked.status_code == 200
        # The second counts the keys without a check again on the feed's message, in the database:
        # stopped before that count, it would keep the count from before (and look made-up keys
        # up) until the database is back. The same message drops the revoked key from its cache:
        # once it refuses that key, the count has been asked for.
        deadline = time.monotonic() + 10
        while not refused(status(second, old)):
            assert time.monotonic() < deadline, "the revocation never reached the second instance"

        _pg_ctl(pg, "stop", "-m", "fast", "-w")
        deadline = time.monotonic() + 10
        while not refused(resp := status(second, made_up())):
            assert resp.status_code == 503, resp.text
            assert time.monotonic() < deadline, "the second instance still looks made-up keys up"
        with httpx.Client(timeout=30) as client:
            answers = [status(second, made_up(), client) for _ in range(1000)]
        assert all(refused(resp) for resp in answers), {r.status_code for r in answers}
        assert refused(status(first, made_up()))
        # A key not seen before that passes the check is still looked up: the database decides.
        unknown = keys.new_key(HASHING)
        assert status(second, unknown).json()["error"]["code"] == "store_unavailable"
    finally:
        for gw in (first, second):
            if gw is not None:
                gw.process.stop()
        pg.stop()
