"""The admin API while the database is down (cluster mode): reads such as the alerts and the
analytics answer a clear ``503 store_unavailable`` with ``Retry-After`` (one warning line, no
traceback) while model calls keep being served, and answer again once the database is back.
A model call whose key must be read from the database gets the same 503 (not a 500 with a
traceback per request), and everything answered meanwhile reaches the usage ledger. JWT callers
are treated as key callers: one whose tenant and team were read before is served, a new token of
it included, and one whose were not gets the same 503. A change-feed message while the database
is down logs one warning for the outage, not a traceback per message."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis

from tests.oidc_provider import IdentityProvider
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway
from tests.services import Postgres, RedisServer, _pg_bin, start_postgres, start_redis

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
READS = ("/admin/v1/alerts", "/admin/v1/analytics", "/admin/v1/keys")
UNAVAILABLE = {"message": "the database or Redis cannot be reached right now; try again shortly",
               "type": "api_error", "param": None, "code": "store_unavailable"}


def _pg_ctl(pg: Postgres, *args: str) -> None:
    subprocess.run([*pg._as_user, _pg_bin("pg_ctl"), "-D", str(pg.directory / "data"), *args],
                   check=True, capture_output=True, timeout=60)


def _pg_start(pg: Postgres) -> None:
    options = f"-p {pg.port} -c listen_addresses=127.0.0.1 -k {pg.directory} -c fsync=off"
    _pg_ctl(pg, "-o", options, "-l", str(pg.directory / "log"), "-w", "start")


def _cluster(mock: Mock, redis: RedisServer, pg: Postgres, database: str) -> dict[str, Any]:
    """The config of a gateway on its own database of ``pg`` (which the test stops) and Redis."""
    config = openai_config(mock)
    config["database"] = {"url": pg.create_database(database)}
    config["redis"] = {"url": redis.url}
    return config


def _until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_admin_reads_answer_503_while_the_database_is_down(
    mock_upstream: Mock, redis_server: RedisServer, tmp_path: Path
) -> None:
    pg = start_postgres()  # its own server: the test stops it
    try:
        config = _cluster(mock_upstream, redis_server, pg, "outage")
        config["alerts"] = {"rules": [{"name": "breakers", "kind": "breaker"}]}
        gw = start_gateway(config, tmp_path)
        try:
            for path in READS:
                assert httpx.get(gw.url + path, headers=ADMIN, timeout=10).status_code == 200
            _pg_ctl(pg, "stop", "-m", "fast", "-w")
            for path in READS:
                resp = httpx.get(gw.url + path, headers=ADMIN, timeout=30)
                assert resp.status_code == 503, (path, resp.text)
                assert resp.headers["retry-after"] == "5"
                assert resp.json() == {"error": {
                    "message": "the database or Redis cannot be reached right now; try again shortly",
                    "type": "api_error", "param": None, "code": "store_unavailable"}}
            chat = httpx.post(f"{gw.base_url}/chat/completions", headers=ADMIN, timeout=30, json={
                "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "still there?"}]})
            assert chat.status_code == 200  # the request path does not need the database

            _pg_start(pg)
            deadline = time.monotonic() + 30
            while httpx.get(gw.url + "/admin/v1/alerts", headers=ADMIN, timeout=10).status_code != 200:
                assert time.monotonic() < deadline, "the admin API did not come back with the database"
                time.sleep(0.1)
        finally:
            gw.process.stop()
        gw.process.wait_exit()
        assert "a store is unreachable (ConnectionRefusedError)" in gw.process.output
        assert "unexpected error" not in gw.process.output and "Traceback" not in gw.process.output
    finally:
        pg.stop()


def _sdk(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30)


def _ask(client: openai.OpenAI) -> str:
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    return reply.id


def _ledger_count(gw: Gateway, key_id: str) -> int:
    rows = httpx.get(f"{gw.url}/admin/v1/usage?key={key_id}", headers=ADMIN, timeout=10).json()["data"]
    return int(rows[0]["requests"]) if rows else 0


def test_a_database_restart_costs_model_calls_a_clear_503_at_most_and_nothing_in_the_ledger(
    mock_upstream: Mock, redis_server: RedisServer, tmp_path: Path
) -> None:
    pg = start_postgres()  # its own server: the test restarts it
    try:
        config = _cluster(mock_upstream, redis_server, pg, "restart")
        config["auth"]["last_used_interval_seconds"] = 0.5  # written (and failing) often
        gw = start_gateway(config, tmp_path)
        try:
            keys = [httpx.post(f"{gw.url}/admin/v1/keys", json={"models": ["*"]}, headers=ADMIN,
                               timeout=10).json() for _ in range(2)]
            seen, unseen = (_sdk(gw, k["key"]) for k in keys)
            _ask(seen)  # its record is in the key cache now; the other key's is not
            _pg_ctl(pg, "stop", "-m", "fast", "-w")  # every pooled connection dies with it

            for _ in range(3):  # a key the gateway must read from the database: a clear 503
                with pytest.raises(openai.APIStatusError) as refused:
                    _ask(unseen)
                assert refused.value.status_code == 503
                assert refused.value.response.headers["retry-after"] == "5"
                assert refused.value.body == {
                    "message": "the database or Redis cannot be reached right now; try again shortly",
                    "type": "api_error", "param": None, "code": "store_unavailable"}
            during = [_ask(seen) for _ in range(3)]  # a cached key is served: spooled for the ledger
            # The background work keeps failing meanwhile: the periodic reload of the model table
            # (every 10 s), the keys' last-used times (every 0.5 s here).
            gw.process.wait_for_all("reloading the model table failed", timeout=20)
            # Past its cache entry's 10 s the cached key keeps working: its record as last read
            # is served while the database cannot be read (auth.key_cache_stale_seconds).
            deadline = time.monotonic() + 30
            while "records read before are served" not in gw.process.output:
                during.append(_ask(seen))
                assert time.monotonic() < deadline, "the cached key's entry never expired"
                time.sleep(0.2)
            during.append(_ask(seen))

            _pg_start(pg)
            ready = f"{gw.url}/health/ready"
            _until(lambda: httpx.get(ready, timeout=10).json()["checks"]["database"] == "ok",
                   "/health/ready did not see the database back")
            assert _ask(unseen) and _ask(seen)  # read from the database again, no restart needed
            assert httpx.get(f"{gw.url}/admin/v1/keys", headers=ADMIN, timeout=10).status_code == 200
            # Every call answered is in the ledger: those of the outage replayed from the spool.
            _until(lambda: _ledger_count(gw, keys[0]["id"]) == 1 + len(during) + 1,
                   "the ledger lacks calls answered while the database was down")
            assert _ledger_count(gw, keys[1]["id"]) == 1
        finally:
            gw.process.stop()
        gw.process.wait_exit()
        output = gw.process.output
        # One warning each for the outage, not one per request or per try, and no traceback.
        assert output.count("a store is unreachable (") == 1, output
        assert output.count("reloading the model table failed") == 1, output
        assert output.count("recording the keys' last-used times failed") == 1, output
        assert output.count("usage ledger: the database is") == 1, output
        assert output.count("reading keys from the store failed") == 1, output
        assert "usage ledger: spooled records replayed into the database" in output
        assert "unexpected error" not in output and "Traceback" not in output
    finally:
        pg.stop()


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider(realm="/realms/outage").start()
    yield provider
    provider.stop()


def _jwt_cluster(
    mock: Mock, redis: RedisServer, pg: Postgres, name: str, idp: IdentityProvider
) -> dict[str, Any]:
    """The cluster config with the test identity provider's tokens accepted as developers."""
    config = _cluster(mock, redis, pg, name)
    config["auth"]["oidc"] = [{
        "issuer": idp.issuer, "audience": "switchboard",
        "claims": {"tenant": "tenant", "team": "team", "role": "realm_access.roles"},
        "roles": {"sb-dev": "developer"}, "models": ["gpt-4o-mini"],
    }]
    return config


def _jwt(idp: IdentityProvider, tenant: str, team: str, **claims: Any) -> str:
    return idp.token(tenant=tenant, team=team, realm_access={"roles": ["sb-dev"]}, **claims)


def test_a_known_jwt_caller_is_served_and_an_unknown_one_gets_a_clear_503(
    mock_upstream: Mock, redis_server: RedisServer, idp: IdentityProvider, tmp_path: Path
) -> None:
    pg = start_postgres()  # its own server: the test stops it
    try:
        config = _jwt_cluster(mock_upstream, redis_server, pg, "jwt_outage", idp)
        gw = start_gateway(config, tmp_path)
        try:
            known = _jwt(idp, "acme", "team-a", sub="alice")
            assert _ask(_sdk(gw, known))  # the tenant and team are read now
            _pg_ctl(pg, "stop", "-m", "fast", "-w")  # every pooled connection dies with it

            assert _ask(_sdk(gw, known))  # the verified token, as cached
            # A new token of the same tenant and team (another user, a refreshed token) is
            # verified again: the tenant and team read before are used meanwhile.
            for user in ("bob", "carol"):
                assert _ask(_sdk(gw, _jwt(idp, "acme", "team-a", sub=user)))
            # Past the cache entry's 10 s as well: served as last read, the store asked again at
            # most once a second.
            deadline = time.monotonic() + 30
            while "reading tenancy from the store failed" not in gw.process.output:
                fresh = _jwt(idp, "acme", "team-a", sub=f"user-{time.monotonic_ns()}")
                assert _ask(_sdk(gw, fresh))
                assert time.monotonic() < deadline, "the tenant's entry never expired"
                time.sleep(0.2)
            assert _ask(_sdk(gw, _jwt(idp, "acme", "team-a", sub="erin")))

            # A tenant, or a team, never read: nothing to go by, a clear 503, not a 500.
            for tenant, team in (("globex", "team-a"), ("acme", "team-z")):
                started = time.monotonic()
                with pytest.raises(openai.APIStatusError) as refused:
                    _ask(_sdk(gw, _jwt(idp, tenant, team, sub="dave")))
                assert time.monotonic() - started < 10
                assert refused.value.status_code == 503, refused.value.body
                assert refused.value.response.headers["retry-after"] == "5"
                assert refused.value.body == UNAVAILABLE
        finally:
            gw.process.stop()
        gw.process.wait_exit()
        output = gw.process.output
        assert "unexpected error" not in output and "Traceback" not in output, output
        assert output.count("reading tenancy from the store failed") == 1, output
    finally:
        pg.stop()


def _postgres_processes(pg: Postgres) -> list[int]:
    """The postmaster and every backend it forked."""
    postmaster = int((pg.directory / "data" / "postmaster.pid").read_text().split()[0])
    found = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True, timeout=10)
    return [postmaster, *(int(pid) for pid in found.stdout.split())]


def _freeze(pg: Postgres, sig: signal.Signals) -> None:
    """SIGSTOP: a database that accepts connections (the kernel's backlog) and never answers,
    on new connections or pooled ones; SIGCONT: back."""
    for pid in _postgres_processes(pg):
        os.kill(pid, sig)


def _timed_ask(gw: Gateway, token: str) -> float:
    started = time.monotonic()
    assert _ask(_sdk(gw, token))
    return time.monotonic() - started


def test_a_jwt_caller_while_the_database_never_answers(
    mock_upstream: Mock, redis_server: RedisServer, idp: IdentityProvider, tmp_path: Path
) -> None:
    """A JWT caller whose tenant and team were read is served from the cache, past the cache
    entry too; one whose were not (or an API key never read) is answered a clear 503 within the
    request path's bound on a read (10 s), not held until the driver gives up nor answered 500;
    the gateway keeps serving meanwhile and reads the database again once it answers."""
    pg = start_postgres()  # its own server: the test freezes it
    try:
        config = _jwt_cluster(mock_upstream, redis_server, pg, "jwt_hang", idp)
        gw = start_gateway(config, tmp_path)
        try:
            assert _ask(_sdk(gw, _jwt(idp, "acme", "team-a", sub="alice")))  # tenant and team read
            unseen = httpx.post(f"{gw.url}/admin/v1/keys", json={"models": ["*"]}, headers=ADMIN,
                                timeout=10).json()["key"]  # never used: not in the key cache
            _freeze(pg, signal.SIGSTOP)
            try:
                # A new token of a tenant and team read before: from the cache, at once.
                assert _timed_ask(gw, _jwt(idp, "acme", "team-a", sub="bob")) < 2
                # A tenant, or a team, never read: a clear 503 within the bound.
                for tenant, team in (("globex", "team-a"), ("acme", "team-z")):
                    started = time.monotonic()
                    with pytest.raises(openai.APIStatusError) as refused:
                        _ask(_sdk(gw, _jwt(idp, tenant, team, sub="dave")))
                    assert time.monotonic() - started < 15
                    assert refused.value.status_code == 503, refused.value.body
                    assert refused.value.response.headers["retry-after"] == "5"
                    assert refused.value.body == UNAVAILABLE
                # An API key never read is the same: a clear 503 within the bound.
                started = time.monotonic()
                with pytest.raises(openai.APIStatusError) as refused:
                    _ask(_sdk(gw, unseen))
                assert time.monotonic() - started < 15
                assert refused.value.status_code == 503 and refused.value.body == UNAVAILABLE
                # The master key needs no database: served as ever.
                assert _ask(_sdk(gw, MASTER_KEY))
                # Past the cache entries' 10 s: the tenant and team (and its limits and budgets)
                # as last read. The request that finds the database silent waits out the bound
                # once (not once per record it needs, nor the driver's own timeouts).
                deadline = time.monotonic() + 60
                while "reading tenancy from the store failed" not in gw.process.output:
                    assert _timed_ask(gw, _jwt(idp, "acme", "team-a", sub=f"u-{time.monotonic_ns()}")) < 15
                    assert time.monotonic() < deadline, "the tenant's entry never expired"
                # Then the retries run without holding the callers.
                for n in range(3):
                    assert _timed_ask(gw, _jwt(idp, "acme", "team-a", sub=f"later-{n}")) < 2
                assert httpx.get(f"{gw.url}/health/live", timeout=10).status_code == 200
            finally:
                _freeze(pg, signal.SIGCONT)
            # The database answers again: a tenant never read is read now (a JWT's tenant needs
            # no record).
            _until(lambda: httpx.post(
                f"{gw.base_url}/chat/completions", timeout=30,
                headers={"Authorization": f"Bearer {_jwt(idp, 'globex', 'team-a', sub='eve')}"},
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "back?"}]},
            ).status_code == 200, "the database was not read again", timeout=60)
        finally:
            gw.process.stop()
        gw.process.wait_exit()
        output = gw.process.output
        assert "unexpected error" not in output and "Traceback" not in output, output
        assert output.count("reading tenancy from the store failed") == 1, output
    finally:
        pg.stop()


# -- an admin change the database cuts off midway


def test_a_user_demotion_cut_off_midway_leaves_neither_the_user_nor_its_keys_changed(
    mock_upstream: Mock, postgres: Postgres, redis_server: RedisServer, tmp_path: Path
) -> None:
    """A user demoted while its key's row is busy, and the connection doing it is cut (a
    failover, an administrator's pg_terminate_backend): 503, and the user and its key are both
    as they were, so the admin's retry demotes both. Were the user demoted alone, the retry would
    find nothing to change, and the key would keep the rights of the user's former rank."""
    database = f"demote_{uuid.uuid4().hex[:8]}"
    gw = start_gateway(_cluster(mock_upstream, redis_server, postgres, database), tmp_path)
    holder: subprocess.Popen[bytes] | None = None

    def admin(method: str, path: str, body: Any = None) -> httpx.Response:
        return httpx.request(method, f"{gw.url}/admin/v1{path}", json=body, headers=ADMIN, timeout=60)

    try:
        team = admin("POST", "/teams", {"name": "ops"}).json()
        sam = admin("POST", "/users", {"name": "Sam", "role": "team_admin", "team": team["id"]}).json()
        key = admin("POST", "/keys", {"models": ["*"], "user": sam["id"], "role": "team_admin"}).json()
        holder = postgres.hold(database, f"SELECT 1 FROM api_keys WHERE id = '{key['id']}' FOR UPDATE")
        answers: list[httpx.Response] = []
        demoting = threading.Thread(target=lambda: answers.append(
            admin("PATCH", f"/users/{sam['id']}", {"role": "viewer"})))
        demoting.start()
        postgres.cut_waiting(database)
        demoting.join(60)
        (cut,) = answers
        assert cut.status_code == 503 and cut.json()["error"]["code"] == "store_unavailable", cut.text
        assert admin("GET", f"/users/{sam['id']}").json()["role"] == "team_admin"
        assert admin("GET", f"/keys/{key['id']}").json()["role"] == "team_admin"

        postgres.release(database, holder)
        retried = admin("PATCH", f"/users/{sam['id']}", {"role": "viewer"})
        assert retried.status_code == 200 and retried.json()["role"] == "viewer", retried.text
        assert admin("GET", f"/keys/{key['id']}").json()["role"] == "viewer"
        own = httpx.post(f"{gw.url}/admin/v1/users", json={"name": "x"}, timeout=30,
                         headers={"Authorization": f"Bearer {key['key']}"})
        assert own.status_code == 403 and own.json()["error"]["code"] == "permission_denied", own.text
    finally:
        if holder is not None and holder.poll() is None:
            postgres.release(database, holder)
        gw.process.stop()


# -- a change-feed message while the database is down


# A topic whose messages read the database again, and what its log lines call that read.
RELOADING_TOPICS = [("routing", "changed", "reloading the model table"),
                    ("mcp-servers", "default", "reloading the stored MCP servers")]


@pytest.mark.parametrize(("topic", "message", "what"), RELOADING_TOPICS,
                         ids=[t for t, _, _ in RELOADING_TOPICS])
def test_feed_messages_while_the_database_is_down_log_one_warning_not_a_traceback_each(
    mock_upstream: Mock, tmp_path: Path, topic: str, message: str, what: str
) -> None:
    """Each message on the topic of a table every instance holds (another instance's admin
    change: the model table, a tenant's stored MCP servers) reads the table again; while the
    database is down that fails each time, logged as the periodic reload's failures are: one
    warning for the outage, debug lines after, one line when it works again."""
    pg, own_redis = start_postgres(), start_redis()  # its own: the test stops them
    try:
        config = _cluster(mock_upstream, own_redis, pg, "feed_outage")
        config["server"]["log_level"] = "debug"  # the lines for the failures after the first
        gw = start_gateway(config, tmp_path)
        try:
            publisher = redis.Redis.from_url(own_redis.url)
            _pg_ctl(pg, "stop", "-m", "fast", "-w")
            for _ in range(3):  # each read once its message arrives, one after the other
                assert publisher.publish(f"sb:feed:{topic}", message) == 1
                gw.process.wait_for(f"{what} failed", timeout=20)
            _pg_start(pg)
            assert publisher.publish(f"sb:feed:{topic}", message) == 1
            gw.process.wait_for(f"{what} works again", timeout=20)
            publisher.close()
        finally:
            gw.process.stop()
        gw.process.wait_exit()
        output = gw.process.output
        warning = f"{what} failed: the database or Redis is unreachable"
        assert output.count(warning) == 1, output
        assert output.count(f"{what} failed again") >= 2, output
        assert f"{what} failed; " not in output and "Traceback" not in output, output
    finally:
        own_redis.stop()
        pg.stop()


def test_a_shutdown_while_redis_is_down_ends_cleanly_with_every_call_in_the_ledger(
    mock_upstream: Mock, postgres: Postgres, tmp_path: Path
) -> None:
    """SIGTERM while Redis is gone: the change feed cannot unsubscribe, which is a warning, not a
    traceback or a failed exit, and the calls answered before are all written to the ledger."""
    own_redis = start_redis()  # its own: the test stops it
    try:
        database = f"redis_gone_{uuid.uuid4().hex[:8]}"
        gw = start_gateway(_cluster(mock_upstream, own_redis, postgres, database), tmp_path)
        try:
            key = httpx.post(f"{gw.url}/admin/v1/keys", json={"models": ["*"]}, headers=ADMIN,
                             timeout=10).json()
            client = _sdk(gw, key["key"])
            for _ in range(3):
                _ask(client)
            own_redis.stop()
        finally:
            code = gw.process.stop()
        gw.process.wait_exit()
        output = gw.process.output
        assert code == 0, output
        assert "Traceback" not in output and "ConnectionError" not in output.replace(
            "(ConnectionError)", ""), output
        rows = postgres.rows(f"SELECT count(*) FROM usage_records WHERE key_id = '{key['id']}'", database)
        assert rows == ["3"], (rows, output)
    finally:
        own_redis.stop()
