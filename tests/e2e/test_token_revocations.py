"""Revoking JWT callers end to end: an admin cuts off a user's tokens through
``/admin/v1/token-revocations`` and the real gateway refuses them at once (``401 token_revoked``),
tokens it had verified and remembered included, while a token issued after the revocation (a new
sign-in) works, unless the user is blocked; deleting the revocation lifts it. On the embedded
default (one instance) and on a cluster (two instances sharing PostgreSQL and Redis: revoked on
one, refused by the other within a bounded wait). Tenants are kept apart, bad input is 400."""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest

from tests.oidc_provider import IdentityProvider
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, spawn, start_gateway

PATH = "/admin/v1/token-revocations"
PROPAGATION = 2.0  # seconds another instance may take (the change feed; a lost message: the 10 s reload)


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider(realm="/realms/revoke").start()
    yield provider
    provider.stop()


@dataclass
class Pair:
    """Two instances of one deployment (embedded: the same instance twice)."""

    kind: str
    first: Gateway
    second: Gateway
    idp: IdentityProvider

    def token(self, user: str, *, tenant: str = "acme", roles: tuple[str, ...] = ("sb-dev",),
              **claims: Any) -> str:
        return self.idp.token(sub=f"sub-{user}", tenant=tenant, preferred_username=user,
                              realm_access={"roles": list(roles)}, **claims)

    def admin_token(self, tenant: str = "acme") -> str:
        return self.token(f"admin-{uuid.uuid4().hex[:6]}", tenant=tenant, roles=("sb-admin",))

    def call(self, method: str, path: str, token: str = MASTER_KEY, on: Gateway | None = None,
             **kwargs: Any) -> httpx.Response:
        gw = on or self.first
        return httpx.request(method, f"{gw.url}{path}", headers={"Authorization": f"Bearer {token}"},
                             timeout=10, **kwargs)

    def revoke(self, token: str = MASTER_KEY, expect: int = 201, **body: Any) -> dict[str, Any]:
        """POST a revocation: 201 when it is the user's first, 200 when it replaces one."""
        resp = self.call("POST", PATH, token, json=body)
        assert resp.status_code == expect, resp.text
        return dict(resp.json())

    def models(self, token: str, on: Gateway) -> httpx.Response:
        return self.call("GET", "/v1/models", token, on=on)


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def pair(request: pytest.FixtureRequest, mock_upstream: Mock, idp: IdentityProvider,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    config = openai_config(mock_upstream)
    config["auth"]["oidc"] = [{
        "issuer": idp.issuer,
        "audience": "switchboard",
        "claims": {"tenant": "tenant", "user": "preferred_username", "role": "realm_access.roles"},
        "roles": {"sb-platform": "platform_admin", "sb-admin": "tenant_admin", "sb-dev": "developer"},
        "models": ["gpt-4o-mini"],
    }]
    if request.param == "embedded":
        gw = start_gateway(config, tmp_path_factory.mktemp("revoke-embedded"))
        yield Pair("embedded", gw, gw, idp)
        gw.process.stop()
        return
    postgres, redis = request.getfixturevalue("postgres"), request.getfixturevalue("redis_server")
    config["database"] = {"url": postgres.create_database(f"revoke_{uuid.uuid4().hex[:8]}")}
    config["redis"] = {"url": redis.url}
    first = start_gateway(config, tmp_path_factory.mktemp("revoke-a"))
    second = start_gateway(config, tmp_path_factory.mktemp("revoke-b"))
    yield Pair("cluster", first, second, idp)
    first.process.stop()
    second.process.stop()


def _code(resp: httpx.Response) -> tuple[int, str]:
    return resp.status_code, resp.json()["error"]["code"]


def _wait_for(check: Callable[[], bool], what: str, timeout: float = PROPAGATION) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what


def _user() -> str:
    return f"alice-{uuid.uuid4().hex[:8]}"


def _issued_after(record: dict[str, Any]) -> int:
    """An ``iat`` after the revocation's ``not_before`` (a sign-in after it)."""
    return math.floor(datetime.fromisoformat(record["not_before"]).timestamp()) + 1


def test_a_revoked_callers_tokens_are_refused_at_once_and_a_new_sign_in_works(pair: Pair) -> None:
    user = _user()
    old = pair.token(user, iat=int(time.time()) - 60)
    bystander = pair.token(_user())
    namesake = pair.token(user, tenant="globex")  # the same user id in another tenant
    sdk = openai.OpenAI(base_url=pair.first.base_url, api_key=old, max_retries=0, timeout=30)
    assert sdk.models.list().data  # verified, and remembered by both instances
    assert pair.models(old, pair.second).status_code == 200

    admin = pair.admin_token()
    record = pair.revoke(admin, user=user, reason="left the company")
    assert record["object"] == "token_revocation" and record["id"].startswith("trv_")
    assert (record["tenant"], record["user"], record["block"], record["reason"]) == (
        "acme", user, False, "left the company")
    assert record["created_by_role"] == "tenant_admin" and record["expires_at"] is None

    # The instance that took the change refuses the remembered token before the admin's answer.
    with pytest.raises(openai.AuthenticationError) as refused:
        sdk.models.list()
    body: Any = refused.value.body
    assert (refused.value.status_code, body["code"]) == (401, "token_revoked")
    assert "revoked by an admin" in body["message"]
    _wait_for(lambda: pair.models(old, pair.second).status_code == 401,
              "the revoked token still works on the other instance")
    assert _code(pair.models(old, pair.second)) == (401, "token_revoked")
    assert _code(pair.models(pair.token(user, iat=None), pair.first)) == (401, "token_revoked")
    for other in (bystander, namesake):  # nobody else is affected
        assert pair.models(other, pair.first).status_code == 200

    # A sign-in after the revocation: its tokens work, on either instance.
    fresh = pair.token(user, iat=_issued_after(record))
    reply = openai.OpenAI(base_url=pair.second.base_url, api_key=fresh, max_retries=0, timeout=30)
    assert reply.chat.completions.create(model="gpt-4o-mini",
                                         messages=[{"role": "user", "content": "back"}]).choices
    assert pair.models(fresh, pair.first).status_code == 200

    listed = pair.call("GET", PATH, admin, on=pair.second, params={"user": user}).json()
    assert [r["id"] for r in listed["data"]] == [record["id"]] and listed["has_more"] is False
    audit = pair.call("GET", "/admin/v1/audit", admin, params={"resource_id": record["id"]}).json()["data"]
    assert [e["action"] for e in audit] == ["token_revocation.create"]

    # Deleting lifts it everywhere.
    deleted = pair.call("DELETE", f"{PATH}/{record['id']}", admin, on=pair.second)
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert pair.models(old, pair.second).status_code == 200
    _wait_for(lambda: pair.models(old, pair.first).status_code == 200,
              "the lifted revocation still applies on the other instance")
    assert _code(pair.call("GET", f"{PATH}/{record['id']}", admin)) == (404, "token_revocation_not_found")
    audit = pair.call("GET", "/admin/v1/audit", admin, params={"resource_id": record["id"]}).json()["data"]
    assert [e["action"] for e in audit] == ["token_revocation.delete", "token_revocation.create"]


def test_a_block_refuses_new_sign_ins_until_it_is_deleted(pair: Pair) -> None:
    user = _user()
    first = pair.revoke(user=user, tenant="acme")  # the master key names the tenant
    blocked = pair.revoke(user=user, tenant="acme", block=True, reason="under investigation", expect=200)
    assert blocked["id"] == first["id"] and blocked["block"] is True  # replaced, the same record
    assert blocked["created_at"] == first["created_at"]  # created once; the audit says when replaced
    assert pair.call("GET", f"{PATH}/{first['id']}", on=pair.second).json() == blocked
    fresh = pair.token(user, iat=_issued_after(blocked))
    for gw in (pair.first, pair.second):
        _wait_for(lambda gw=gw: pair.models(fresh, gw).status_code == 401,  # type: ignore[misc]
                  "the block does not apply on the other instance")
        refused = pair.models(fresh, gw)
        assert _code(refused) == (401, "token_revoked") and "blocked" in refused.json()["error"]["message"]
    assert pair.call("DELETE", f"{PATH}/{blocked['id']}").status_code == 200
    _wait_for(lambda: pair.models(fresh, pair.second).status_code == 200,
              "the lifted block still applies on the other instance")
    assert pair.models(fresh, pair.first).status_code == 200
    audit = pair.call("GET", "/admin/v1/audit", params={"resource_id": first["id"], "tenant": "acme"})
    actions = [e["action"] for e in audit.json()["data"]]
    assert actions == ["token_revocation.delete", "token_revocation.update", "token_revocation.create"]


def test_the_same_revocation_asked_again_changes_nothing_unless_the_role_widens_it(pair: Pair) -> None:
    """Every field equal (another admin of the same role asking): 200, nothing written or audited,
    the record as it was. A platform admin's is not the same: it covers tokens of higher roles."""
    user = _user()
    fields = {"user": user, "reason": "left", "block": False,
              "expires_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()}
    record = pair.revoke(pair.admin_token(), **fields)
    fields["not_before"] = record["not_before"]
    for admin in (pair.admin_token(), pair.admin_token()):
        again = pair.call("POST", PATH, admin, on=pair.second, json=fields)
        assert again.status_code == 200, again.text
        assert again.json() == record  # created_by, created_at: the first admin's, untouched
    assert pair.call("GET", f"{PATH}/{record['id']}", on=pair.second).json() == record

    def actions() -> list[str]:
        audit = pair.call("GET", "/admin/v1/audit", params={"resource_id": record["id"], "tenant": "acme"})
        return [e["action"] for e in audit.json()["data"]]

    assert actions() == ["token_revocation.create"]
    # One field differs: an update, audited.
    changed = pair.revoke(pair.admin_token(), expect=200, **{**fields, "reason": "left the company"})
    assert changed["id"] == record["id"] and changed["reason"] == "left the company"
    assert changed["created_at"] == record["created_at"] and changed["created_by"] != record["created_by"]
    assert actions() == ["token_revocation.update", "token_revocation.create"]
    # The platform admin asking for the same: it now covers platform-admin tokens too, an update.
    issued = math.floor(datetime.fromisoformat(record["not_before"]).timestamp()) - 5
    above = pair.token(user, roles=("sb-platform",), iat=issued)
    assert pair.models(above, pair.first).status_code == 200
    widened = pair.revoke(expect=200, **{**fields, "reason": "left the company", "tenant": "acme"})
    assert widened["created_by_role"] == "platform_admin"
    assert actions() == ["token_revocation.update", "token_revocation.update", "token_revocation.create"]
    assert _code(pair.models(above, pair.first)) == (401, "token_revoked")
    pair.call("DELETE", f"{PATH}/{record['id']}")


def test_not_before_spares_tokens_issued_after_it_and_expires_at_ends_it(pair: Pair) -> None:
    user = _user()
    now = int(time.time())
    not_before = datetime.fromtimestamp(now - 100, UTC).isoformat()
    record = pair.revoke(user=user, tenant="acme", not_before=not_before,
                         expires_at=(datetime.now(UTC) + timedelta(days=1)).isoformat())
    assert datetime.fromisoformat(record["not_before"]).timestamp() == now - 100
    assert _code(pair.models(pair.token(user, iat=now - 200), pair.first)) == (401, "token_revoked")
    assert pair.models(pair.token(user, iat=now - 50), pair.first).status_code == 200
    pair.call("DELETE", f"{PATH}/{record['id']}")


def test_a_revocation_counts_whole_seconds_as_iat_does(pair: Pair) -> None:
    """``iat`` is whole seconds, so a token in the revocation's own second may have been issued
    before it: refused, and the record's ``not_before`` (which had a fraction, so a sign-in at
    that displayed time was refused) is that second rounded up, the first ``iat`` that works."""
    user = _user()
    record = pair.revoke(user=user, tenant="acme")
    not_before = datetime.fromisoformat(record["not_before"])
    created = datetime.fromisoformat(record["created_at"])
    assert not_before.microsecond == 0 and created <= not_before < created + timedelta(seconds=1)
    start = int(not_before.timestamp())
    assert _code(pair.models(pair.token(user, iat=math.floor(created.timestamp())), pair.first)) == (
        401, "token_revoked")
    assert _code(pair.models(pair.token(user, iat=start - 1), pair.first)) == (401, "token_revoked")
    for gw in (pair.first, pair.second):
        assert pair.models(pair.token(user, iat=start), gw).status_code == 200
    # An explicit not_before with a fraction: the same rule, and the record can be sent again.
    given = datetime.fromtimestamp(start - 30.25, UTC)
    again = pair.revoke(user=user, tenant="acme", not_before=given.isoformat(), expect=200)
    assert datetime.fromisoformat(again["not_before"]).timestamp() == start - 30
    assert _code(pair.models(pair.token(user, iat=start - 31), pair.first)) == (401, "token_revoked")
    assert pair.models(pair.token(user, iat=start - 30), pair.first).status_code == 200
    back = pair.revoke(user=user, tenant="acme", not_before=record["not_before"], expect=200)
    assert back["not_before"] == record["not_before"]
    pair.call("DELETE", f"{PATH}/{record['id']}")


def test_a_caller_above_the_revokers_role_is_not_cut_off(pair: Pair) -> None:
    user = _user()
    pair.revoke(pair.admin_token(), user=user)
    # Issued before the revocation: a token minted now may carry the next second's iat, after it.
    issued = int(time.time()) - 5
    assert _code(pair.models(pair.token(user, iat=issued), pair.first)) == (401, "token_revoked")
    above = pair.token(user, roles=("sb-platform",), iat=issued)
    assert pair.models(above, pair.first).status_code == 200


def test_a_tenant_admin_neither_weakens_nor_lifts_the_platform_admins_revocation(pair: Pair) -> None:
    """As a key's block: a revocation is replaced or deleted only by its maker's role or above, so
    a tenant admin reads the platform admin's block of one of its users but cannot undo it."""
    user = _user()
    record = pair.revoke(user=user, tenant="acme", block=True)
    admin = pair.admin_token()
    assert pair.call("GET", f"{PATH}/{record['id']}", admin).json() == record
    for method, path, body in (
        ("POST", PATH, {"user": user, "block": False}),  # a replacement lifting the block
        ("POST", PATH, {"user": user, "block": True, "not_before": record["not_before"]}),  # covering less
        ("DELETE", f"{PATH}/{record['id']}", None),
    ):
        resp = pair.call(method, path, admin, on=pair.second, json=body)
        assert _code(resp) == (403, "permission_denied"), f"{method} {body}: {resp.text}"
        assert "platform_admin" in resp.json()["error"]["message"]
    assert pair.call("GET", f"{PATH}/{record['id']}").json() == record  # untouched
    assert _code(pair.models(pair.token(user), pair.second)) == (401, "token_revoked")
    audit = pair.call("GET", "/admin/v1/audit", params={"resource_id": record["id"], "tenant": "acme"})
    assert [e["action"] for e in audit.json()["data"]] == ["token_revocation.create"]
    # The platform admin lifts it; a tenant admin's own is the tenant admin's to replace and lift.
    assert pair.call("DELETE", f"{PATH}/{record['id']}").status_code == 200
    own = pair.revoke(admin, user=user, block=True)
    assert pair.revoke(pair.admin_token(), expect=200, user=user, block=False)["id"] == own["id"]
    assert pair.call("DELETE", f"{PATH}/{own['id']}", pair.admin_token(), on=pair.second).status_code == 200


def test_another_tenants_admin_can_neither_see_nor_lift_nor_create(pair: Pair) -> None:
    user = _user()
    record = pair.revoke(pair.admin_token(), user=user)
    stranger = pair.admin_token(tenant="globex")
    for method in ("GET", "DELETE"):
        assert _code(pair.call(method, f"{PATH}/{record['id']}", stranger)) == (
            404, "token_revocation_not_found")
    listed = pair.call("GET", PATH, stranger, params={"limit": 1000})
    assert listed.status_code == 200 and record["id"] not in listed.text
    assert _code(pair.call("GET", PATH, stranger, params={"tenant": "acme"})) == (404, "tenant_not_found")
    made = pair.call("POST", PATH, stranger, json={"user": user, "tenant": "acme"})
    assert _code(made) == (404, "tenant_not_found")
    # A developer may not revoke anyone, itself included.
    developer = pair.token(user, iat=_issued_after(record))
    assert _code(pair.call("POST", PATH, developer, json={"user": "bob"})) == (403, "permission_denied")
    assert _code(pair.call("GET", PATH, developer)) == (403, "permission_denied")
    # Still in force; the platform admin sees it in its tenant and reads it by id.
    assert _code(pair.models(pair.token(user, iat=int(time.time()) - 5), pair.first))[1] == "token_revoked"
    assert pair.call("GET", f"{PATH}/{record['id']}").json()["tenant"] == "acme"
    mine = pair.call("GET", PATH, params={"tenant": "acme", "limit": 1000}).json()
    assert record["id"] in {r["id"] for r in mine["data"]}


def test_the_list_is_paginated_by_id(pair: Pair) -> None:
    tenant = f"pages-{uuid.uuid4().hex[:6]}"
    made = sorted(pair.revoke(user=_user(), tenant=tenant)["id"] for _ in range(3))
    first = pair.call("GET", PATH, params={"tenant": tenant, "limit": 2}).json()
    assert [r["id"] for r in first["data"]] == made[:2] and first["has_more"] is True
    rest = pair.call("GET", PATH, params={"tenant": tenant, "limit": 2, "after": first["last_id"]}).json()
    assert [r["id"] for r in rest["data"]] == made[2:] and rest["has_more"] is False
    unknown = pair.call("GET", PATH, params={"tenant": tenant, "sort": "id"})
    assert _code(unknown) == (400, "unknown_parameter")


FUTURE = (datetime.now(UTC) + timedelta(days=1)).isoformat()
PAST = (datetime.now(UTC) - timedelta(days=1)).isoformat()


@pytest.mark.parametrize(("body", "param"), [
    ({}, "user"),
    ({"user": ""}, "user"),
    ({"user": "has space"}, "user"),
    ({"user": "ålice"}, "user"),
    ({"user": "a" * 1025}, "user"),
    ({"user": 42}, "user"),
    ({"user": None}, "user"),
    ({"user": "nul\u0000byte"}, "user"),
    ({"user": "bob", "not_before": FUTURE}, "not_before"),
    ({"user": "bob", "not_before": "yesterday"}, "not_before"),
    ({"user": "bob", "not_before": "2026-01-01T00:00:00"}, "not_before"),  # no zone
    ({"user": "bob", "expires_at": PAST}, "expires_at"),
    ({"user": "bob", "block": "yes"}, "block"),
    ({"user": "bob", "reason": "x" * 501}, "reason"),
    ({"user": "bob", "tenant": "a b"}, "tenant"),
    ({"user": "bob", "until": FUTURE}, "until"),
])
def test_bad_input_is_400(pair: Pair, body: dict[str, Any], param: str) -> None:
    resp = pair.call("POST", PATH, json=body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error


def test_a_huge_body_or_id_is_refused_cleanly(pair: Pair) -> None:
    assert pair.call("GET", f"{PATH}/{'x' * 5000}").status_code == 404
    resp = pair.call("POST", PATH, json={"user": "bob", "reason": "y" * 2_000_000})
    assert resp.status_code in (400, 413)
    assert pair.call("GET", PATH, params={"user": "u" * 2000}).status_code == 400


def _cli(pair: Pair, *args: str) -> tuple[int, str]:
    proc = spawn(["tokens", *args, "--url", pair.first.url, "--key", MASTER_KEY], env={"COLUMNS": "250"})
    code = proc.wait_exit(60)
    return code, proc.output


def test_the_tokens_cli(pair: Pair) -> None:
    user = _user()
    code, output = _cli(pair, "revoke", user, "--tenant", "acme", "--reason", "lost laptop", "--json")
    assert code == 0, output
    [made] = json.loads(output)
    assert (made["user"], made["tenant"], made["block"], made["reason"]) == (
        user, "acme", False, "lost laptop")
    earlier = pair.token(user, iat=int(time.time()) - 5)
    assert _code(pair.models(earlier, pair.first)) == (401, "token_revoked")
    code, table = _cli(pair, "list", "--tenant", "acme", "--user", user)
    assert code == 0 and made["id"] in table and "lost laptop" in table, table
    code, output = _cli(pair, "unrevoke", made["id"])
    assert code == 0 and f"lifted {made['id']}" in output
    assert pair.models(pair.token(user, iat=int(time.time()) - 5), pair.first).status_code == 200
    code, output = _cli(pair, "unrevoke", made["id"])
    assert code == 1 and "token_revocation_not_found" in output and "Traceback" not in output
    code, output = _cli(pair, "revoke", user, "--not-before", "tomorrow")
    assert code == 1 and "not_before" in output and "invalid_value" in output
