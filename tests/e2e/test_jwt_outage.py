"""JWT callers while the database is down (cluster mode), as key callers are (test_store_outage.py):
a caller whose tenant and team the gateway read before is served, a fresh token of it included
(a token is verified again when it is new, or its cache entry ended), for
``database.stale_while_unreachable_seconds``; a caller whose tenant or team it never read gets
the clear ``503 store_unavailable`` with ``Retry-After``, at once; none gets a 500, and the
outage is logged once, without a traceback."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.oidc_provider import IdentityProvider
from tests.servers import Gateway, Mock, openai_config, start_gateway
from tests.services import Postgres, RedisServer, _pg_bin, start_postgres

UNAVAILABLE = {"message": "the database or Redis cannot be reached right now; try again shortly",
               "type": "api_error", "param": None, "code": "store_unavailable"}


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider(realm="/realms/outage").start()
    yield provider
    provider.stop()


def _stop(pg: Postgres) -> None:
    subprocess.run([*pg._as_user, _pg_bin("pg_ctl"), "-D", str(pg.directory / "data"), "stop", "-m", "fast",
                    "-w"], check=True, capture_output=True, timeout=60)


def _ask(gw: Gateway, token: str) -> str:
    client = openai.OpenAI(base_url=gw.base_url, api_key=token, max_retries=0, timeout=30)
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    return reply.id


def _token(idp: IdentityProvider, tenant: str, team: str, **claims: Any) -> str:
    return idp.token(tenant=tenant, team=team, realm_access={"roles": ["sb-dev"]}, **claims)


def test_a_known_jwt_caller_is_served_and_an_unknown_one_gets_a_clear_503(
    mock_upstream: Mock, redis_server: RedisServer, idp: IdentityProvider, tmp_path: Path
) -> None:
    pg = start_postgres()  # its own server: the test stops it
    try:
        config = openai_config(mock_upstream)
        config["database"] = {"url": pg.create_database("jwt_outage")}
        config["redis"] = {"url": redis_server.url}
        config["auth"]["oidc"] = [{
            "issuer": idp.issuer, "audience": "switchboard",
            "claims": {"tenant": "tenant", "team": "team", "role": "realm_access.roles"},
            "roles": {"sb-dev": "developer"}, "models": ["gpt-4o-mini"],
        }]
        gw = start_gateway(config, tmp_path)
        try:
            known = _token(idp, "acme", "team-a", sub="alice")
            assert _ask(gw, known)  # the tenant and team are read now
            _stop(pg)  # every pooled connection dies with it

            assert _ask(gw, known)  # the verified token, as cached
            # A new token of the same tenant and team (another user, a refreshed token) is
            # verified again: the tenant and team read before are used meanwhile.
            for user in ("bob", "carol"):
                assert _ask(gw, _token(idp, "acme", "team-a", sub=user))
            # Past the cache entry's 10 s as well: served as last read, the store asked again at
            # most once a second.
            deadline = time.monotonic() + 30
            while "reading tenancy from the store failed" not in gw.process.output:
                assert _ask(gw, _token(idp, "acme", "team-a", sub=f"user-{time.monotonic_ns()}"))
                assert time.monotonic() < deadline, "the tenant's entry never expired"
                time.sleep(0.2)
            assert _ask(gw, _token(idp, "acme", "team-a", sub="erin"))

            # A tenant, or a team, never read: nothing to go by, a clear 503, not a 500.
            for tenant, team in (("globex", "team-a"), ("acme", "team-z")):
                started = time.monotonic()
                with pytest.raises(openai.APIStatusError) as refused:
                    _ask(gw, _token(idp, tenant, team, sub="dave"))
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
