"""JWT callers end to end: tokens from external identity providers (test IdPs serving OIDC
discovery and a JWKS) passed to the official SDK as its api_key, through the real gateway, on
the embedded default (SQLite) and on a cluster (PostgreSQL and Redis). Claims map to tenant,
team, user and role; the role decides what the admin API allows; ``models`` limits the models;
every bad token gets its own code and the server keeps serving; key rotation is picked up with
a bounded number of JWKS fetches."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml
from jwt.algorithms import RSAAlgorithm

from switchboard.access.oidc import issuer_tag
from tests.e2e.sdk import ask, stream_text
from tests.oidc_provider import BAD, IdentityProvider, bad_tokens, new_key
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, refused_port, spawn, start_gateway
from tests.services import Postgres, RedisServer

COOLDOWN = 2.0  # jwks_refetch_cooldown_seconds of the Keycloak-style issuer
PARTNER_ROLES = "https://switchboard.example/roles"


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    """Keycloak-style: a realm issuer, roles under realm_access.roles, RS256."""
    provider = IdentityProvider(realm="/realms/acme").start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def partner() -> Iterator[IdentityProvider]:
    """Auth0-style: a namespaced roles claim, ES256, the JWKS URL given (no discovery)."""
    provider = IdentityProvider(realm="/partner", alg="ES256").start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def slow() -> Iterator[IdentityProvider]:
    """A provider whose key set expires every second: the test makes it hang."""
    provider = IdentityProvider(realm="/slow").start()
    yield provider
    provider.stop()


# Keys PyJWT cannot load (or must not use), published in one JWKS with a good one.
UNUSABLE_JWKS: list[dict[str, Any]] = [
    {**new_key("RS256").jwk(), "kid": "alg-as-a-list", "alg": ["RS256"]},  # TypeError in PyJWT
    {**new_key("RS256").jwk(), "kid": "alg-none", "alg": "none"},  # NotImplementedError
    {"kty": "RSA", "kid": "bad-modulus", "use": "sig", "n": "%%%not-a-modulus%%%", "e": "AQAB"},
    {"kty": "XYZ", "kid": "unknown-kty", "x": "AQAB"},
]
# A private key published by mistake: anyone could sign with it.
PUBLISHED_PRIVATE = new_key("RS256", kid="published-private")


@pytest.fixture(scope="module")
def messy() -> Iterator[IdentityProvider]:
    """A provider whose JWKS lists unusable keys before the one it signs with."""
    provider = IdentityProvider(realm="/messy")
    private_jwk = RSAAlgorithm.to_jwk(PUBLISHED_PRIVATE.private, as_dict=True)
    provider.extra_jwks = [*UNUSABLE_JWKS, {**private_jwk, "kid": PUBLISHED_PRIVATE.kid, "use": "sig"}]
    provider.start()
    yield provider
    provider.stop()


# One kid under two key types (RFC 7517 allows it: a kid is unique per key type).
TWIN_KID = "twin-2026"


@pytest.fixture(scope="module")
def twin() -> Iterator[IdentityProvider]:
    """A provider publishing an RSA and an EC key under the same kid, signing with either."""
    provider = IdentityProvider(realm="/twin")
    provider.keys = [new_key("RS256", kid=TWIN_KID), new_key("ES256", kid=TWIN_KID)]
    provider.start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def userless() -> Iterator[IdentityProvider]:
    """An issuer configured to take no user from its tokens (claims.user null)."""
    provider = IdentityProvider(realm="/userless").start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def plain() -> Iterator[IdentityProvider]:
    """An issuer configured with neither a tenant nor a tenant claim: its callers are `default`'s."""
    provider = IdentityProvider(realm="/plain").start()
    yield provider
    provider.stop()


def oidc_config(idp: IdentityProvider, partner: IdentityProvider, down_issuer: str,
                slow: IdentityProvider, messy: IdentityProvider,
                userless: IdentityProvider, plain: IdentityProvider,
                twin: IdentityProvider) -> list[dict[str, Any]]:
    return [
        {
            "issuer": idp.issuer,
            "audience": "switchboard",
            "claims": {"tenant": "tenant", "team": "team", "user": "preferred_username",
                       "role": "realm_access.roles"},
            "roles": {"sb-admin": "tenant_admin", "sb-team-admin": "team_admin", "sb-dev": "developer",
                      "sb-viewer": "viewer"},
            "default_role": None,
            "models": ["gpt-4o-mini", "text-embedding-*"],
            "jwks_refetch_cooldown_seconds": COOLDOWN,
        },
        {
            "issuer": partner.issuer,
            "audience": ["partner-gateway", "switchboard"],
            "discovery": False,
            "jwks_url": partner.jwks_url,
            "algorithms": ["ES256"],
            "tenant": "partners",
            "claims": {"role": PARTNER_ROLES},
            "roles": {"admin": "tenant_admin"},
        },
        # An identity provider nobody answers for.
        {"issuer": down_issuer, "audience": "switchboard", "http_timeout_seconds": 2},
        {"issuer": slow.issuer, "audience": "switchboard", "tenant": "slowpoke", "jwks_cache_seconds": 1,
         "http_timeout_seconds": 3, "token_cache_seconds": 0},
        {"issuer": messy.issuer, "audience": "switchboard", "tenant": "messy"},
        {"issuer": userless.issuer, "audience": "switchboard", "tenant": "userless",
         "claims": {"user": None, "team": "team", "role": "realm_access.roles"},
         "roles": {"lead": "team_admin"}, "default_role": "developer"},
        {"issuer": plain.issuer, "audience": "switchboard"},
        {"issuer": twin.issuer, "audience": "switchboard", "tenant": "twin",
         "algorithms": ["RS256", "ES256"]},
    ]


@dataclass
class Deployment:
    kind: str
    gateway: Gateway
    down_issuer: str
    presented: set[str] = field(default_factory=set)  # every token sent, to check the log for

    def sdk(self, token: str) -> openai.OpenAI:
        self.presented.add(token)
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=token, max_retries=0, timeout=30)

    def admin(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        self.presented.add(token)
        url = f"{self.gateway.url}/admin/v1{path}"
        return httpx.request(method, url, headers=bearer(token), timeout=10, **kwargs)

    def models(self, token: str) -> httpx.Response:
        self.presented.add(token)
        return httpx.get(f"{self.gateway.base_url}/models", headers=bearer(token), timeout=10)

    def serving(self, idp: IdentityProvider) -> bool:
        """A good token still works (the server kept serving)."""
        return bool(self.sdk(idp.token(**person())).models.list().data)


def person(roles: tuple[str, ...] = ("sb-dev",), **claims: Any) -> dict[str, Any]:
    return {"tenant": "acme", "team": "team-a", "preferred_username": "alice",
            "realm_access": {"roles": ["offline_access", *roles]}, **claims}


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def deployment(
    request: pytest.FixtureRequest,
    mock_upstream: Mock,
    idp: IdentityProvider,
    partner: IdentityProvider,
    slow: IdentityProvider,
    messy: IdentityProvider,
    userless: IdentityProvider,
    plain: IdentityProvider,
    twin: IdentityProvider,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    config = openai_config(mock_upstream)
    if request.param == "cluster":
        postgres: Postgres = request.getfixturevalue("postgres")
        redis: RedisServer = request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"jwt_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
    down_issuer = f"http://127.0.0.1:{refused_port()}/nobody"
    config["auth"]["oidc"] = oidc_config(idp, partner, down_issuer, slow, messy, userless, plain, twin)
    config["files"] = {"provider": "local-openai"}
    gw = start_gateway(config, tmp_path_factory.mktemp(f"jwt-{request.param}"))
    deployment = Deployment(request.param, gw, down_issuer)
    yield deployment
    gw.process.stop()
    gw.process.wait_exit()
    # Tokens are credentials: none was ever written to the log, good or bad.
    signatures = {t.rsplit(".", 1)[-1] for t in deployment.presented}
    leaked = [s for s in signatures if len(s) >= 32 and s in gw.process.output]
    assert signatures and not leaked, f"{len(leaked)} token(s) in the gateway's output"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _code(resp: httpx.Response) -> tuple[int, str]:
    return resp.status_code, resp.json()["error"]["code"]


def new_tenant(deployment: Deployment, prefix: str) -> str:
    """A tenant with a record, made with the master key: its id."""
    tenant = f"{prefix}-{uuid.uuid4().hex[:6]}"
    made = httpx.post(f"{deployment.gateway.url}/admin/v1/tenants", headers=bearer(MASTER_KEY), timeout=10,
                      json={"id": tenant, "name": prefix})
    assert made.status_code == 201, made.text
    return tenant


def new_team(deployment: Deployment, tenant: str, **fields: Any) -> str:
    """A team of ``tenant``, made with the master key: its id."""
    made = httpx.post(f"{deployment.gateway.url}/admin/v1/teams", headers=bearer(MASTER_KEY), timeout=10,
                      json={"name": "search", "tenant": tenant, **fields})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def test_a_jwt_caller_uses_its_models_through_the_sdk(deployment: Deployment, idp: IdentityProvider) -> None:
    client = deployment.sdk(idp.token(**person()))
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=ask("hello jwt"))
    assert reply.choices[0].message.content.endswith("You said: hello jwt")
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=ask("streamed"), stream=True))
    assert stream_text(chunks).endswith("You said: streamed")
    assert client.embeddings.create(model="text-embedding-3-small", input="x").data
    assert sorted(m.id for m in client.models.list()) == ["gpt-4o-mini", "text-embedding-3-small"]
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client.chat.completions.create(model="slow-model", messages=ask("x"))
    assert denied.value.status_code == 403
    assert denied.value.body["code"] == "model_not_allowed"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("slow-model")


def test_a_jwt_works_for_anthropic_clients(deployment: Deployment, idp: IdentityProvider) -> None:
    token = idp.token(**person())
    client = anthropic.Anthropic(base_url=deployment.gateway.url, api_key=token, max_retries=0)
    hi = [{"role": "user", "content": "hi"}]
    assert client.messages.create(model="gpt-4o-mini", max_tokens=50, messages=hi).content  # type: ignore[arg-type]


def test_roles_and_tenants_from_claims_decide_the_admin_api(
    deployment: Deployment, idp: IdentityProvider
) -> None:
    acme_admin = idp.token(sub="kc-alice", **person(roles=("sb-admin",)))
    created = deployment.admin("POST", "/keys", acme_admin, json={"models": ["gpt-4o-mini"], "name": "ci"})
    assert created.status_code == 201, created.text
    key = created.json()
    alice = f"oidc:{issuer_tag(idp.issuer)}:kc-alice"
    assert (key["tenant"], key["created_by"]) == ("acme", alice)
    # The audit log records the JWT caller with its role, in its tenant.
    audit = deployment.admin("GET", "/audit", acme_admin, params={"resource_id": key["id"]})
    assert audit.status_code == 200, audit.text
    [entry] = audit.json()["data"]
    assert (entry["actor"], entry["actor_role"]) == (alice, "tenant_admin")
    assert entry["action"] == "key.create"
    # Another tenant's admin sees neither the key nor its audit entry.
    globex_admin = idp.token(sub="kc-bob", **person(roles=("sb-admin",), tenant="globex"))
    assert _code(deployment.admin("GET", f"/keys/{key['id']}", globex_admin)) == (404, "key_not_found")
    other = deployment.admin("GET", "/audit", globex_admin, params={"resource_id": key["id"]})
    assert other.status_code == 200 and other.json()["data"] == []
    # A developer and a viewer of the same tenant may not read the audit log.
    for role in ("sb-dev", "sb-viewer"):
        token = idp.token(**person(roles=(role,)))
        assert _code(deployment.admin("GET", "/audit", token)) == (403, "permission_denied")
    # The key the JWT caller issued works.
    assert deployment.sdk(key["key"]).models.list().data


def test_a_fixed_tenant_issuer_with_namespaced_roles(
    deployment: Deployment, partner: IdentityProvider
) -> None:
    admin = partner.token(aud="partner-gateway", **{PARTNER_ROLES: ["admin"]})
    created = deployment.admin("POST", "/keys", admin, json={"models": ["*"]})
    assert created.status_code == 201 and created.json()["tenant"] == "partners"
    assert deployment.admin("GET", "/audit", admin).status_code == 200
    developer = partner.token()  # no role claim: the default role, developer, and every model
    assert _code(deployment.admin("GET", "/audit", developer)) == (403, "permission_denied")
    everything = deployment.sdk(developer).models.list().data
    assert {"gpt-4o-mini", "slow-model"} <= {m.id for m in everything}


def test_jwt_callers_manage_the_tenant_their_claims_name(
    deployment: Deployment, idp: IdentityProvider
) -> None:
    # No tenant record for "initech": the token's claim is what puts its admin there.
    boss = idp.token(sub="kc-carol", **person(roles=("sb-admin",), tenant="initech"))
    team = deployment.admin("POST", "/teams", boss, json={"name": "search"})
    assert team.status_code == 201 and team.json()["tenant"] == "initech", team.text
    body = {"name": "Dana", "team": team.json()["id"], "role": "developer"}
    user = deployment.admin("POST", "/users", boss, json=body)
    assert user.status_code == 201, user.text
    listed = deployment.admin("GET", "/users", boss).json()["data"]
    assert [u["id"] for u in listed] == [user.json()["id"]]
    acme_admin = idp.token(**person(roles=("sb-admin",)))
    dana = f"/users/{user.json()['id']}"
    assert _code(deployment.admin("GET", dana, acme_admin)) == (404, "user_not_found")
    # A developer's token issues keys for its own user only.
    dev = idp.token(sub="kc-erin", **person(tenant="initech", team="t-9", preferred_username="erin"))
    own = deployment.admin("POST", "/keys", dev, json={"models": ["gpt-4o-mini"]})
    assert own.status_code == 201, own.text
    assert (own.json()["tenant"], own.json()["team"], own.json()["user"]) == ("initech", "t-9", "erin")
    other = deployment.admin("POST", "/keys", dev, json={"models": ["*"], "user": user.json()["id"]})
    assert _code(other) == (404, "user_not_found")


def test_the_same_subject_at_two_issuers_owns_nothing_of_the_other(
    deployment: Deployment, idp: IdentityProvider, partner: IdentityProvider
) -> None:
    """``sub`` is unique only within its issuer: two providers' "sam" in one tenant are two
    callers, and neither sees the other's files."""
    sub = f"sam-{uuid.uuid4().hex[:6]}"
    staff = deployment.sdk(idp.token(sub=sub, **person(tenant="partners")))
    contractor = deployment.sdk(partner.token(sub=sub))
    mine = staff.files.create(file=("in.jsonl", b'{"secret": "payroll"}\n'), purpose="batch")
    theirs = contractor.files.create(file=("in.jsonl", b'{"x": 1}\n'), purpose="batch")
    assert [f.id for f in staff.files.list()] == [mine.id]
    assert [f.id for f in contractor.files.list()] == [theirs.id]
    with pytest.raises(openai.NotFoundError):
        contractor.files.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        contractor.files.content(mine.id)


def test_a_team_claim_naming_another_tenants_team_is_refused(
    deployment: Deployment, idp: IdentityProvider
) -> None:
    """A token's team need not have a record, but one of another tenant would let its caller
    file users, keys and subscriptions of its tenant under that team: refused, 401."""
    tenant = new_tenant(deployment, "globex")
    team = new_team(deployment, tenant)
    lead = idp.token(sub="kc-mallory", **person(roles=("sb-team-admin",), team=team))  # tenant acme
    for resp in (deployment.models(lead),
                 deployment.admin("POST", "/users", lead, json={"name": "x", "role": "developer"}),
                 deployment.admin("POST", "/keys", lead, json={"models": ["gpt-4o-mini"]})):
        assert _code(resp) == (401, "token_claims_invalid"), resp.text
    # The same team with its own tenant's claim is that team's admin.
    own = idp.token(sub="kc-grace", **person(roles=("sb-team-admin",), team=team, tenant=tenant))
    key = deployment.admin("POST", "/keys", own, json={"models": ["gpt-4o-mini"]})
    assert key.status_code == 201 and (key.json()["tenant"], key.json()["team"]) == (tenant, team)
    assert deployment.serving(idp)


def test_a_token_naming_a_deleted_tenant_is_refused(deployment: Deployment, idp: IdentityProvider) -> None:
    """A token's tenant need not have a record, but a deleted tenant's id is retired with its
    audit log, usage and request logs still filed under it: a token naming it read them and filed
    new teams, keys and requests under it. Refused, 401; a tenant that never had a record is not."""
    master = {"Authorization": f"Bearer {MASTER_KEY}"}
    tenant = new_tenant(deployment, "gone")
    admin = idp.token(sub="kc-ivan", **person(roles=("sb-admin",), tenant=tenant))
    assert deployment.models(admin).status_code == 200  # its tenancy read and cached
    gone = httpx.delete(f"{deployment.gateway.url}/admin/v1/tenants/{tenant}", headers=master, timeout=10)
    assert gone.status_code == 200, gone.text
    fresh = idp.token(sub="kc-judy", **person(roles=("sb-admin",), tenant=tenant))
    for resp in (deployment.models(fresh),
                 deployment.admin("GET", "/audit", fresh),
                 deployment.admin("POST", "/teams", fresh, json={"name": "again"})):
        assert _code(resp) == (401, "token_claims_invalid"), resp.text
        assert "tenant was deleted" in resp.json()["error"]["message"]
    # Nothing was filed under the retired id.
    audit = httpx.get(f"{deployment.gateway.url}/admin/v1/audit", headers=master, timeout=10,
                      params={"tenant": tenant, "action": "team.create"})
    assert audit.status_code == 200 and audit.json()["data"] == [], audit.text
    never = idp.token(sub="kc-ken", **person(tenant=f"never-{uuid.uuid4().hex[:6]}"))
    assert deployment.models(never).status_code == 200
    assert deployment.serving(idp)


def test_a_token_naming_a_deleted_team_is_refused(deployment: Deployment, idp: IdentityProvider) -> None:
    """A team claim need not have a record, but team ids are the gateway's own: one without a
    record was deleted. Its team admin created users and keys filed under the team that was gone
    (outside the regions it had). Refused, 401; a team claim of another form is not."""
    master = {"Authorization": f"Bearer {MASTER_KEY}"}
    tenant = new_tenant(deployment, "teamless")
    team = new_team(deployment, tenant, allowed_regions=["eu"])
    lead = idp.token(sub="kc-lena", **person(roles=("sb-team-admin",), tenant=tenant, team=team))
    assert deployment.models(lead).status_code == 200  # its tenancy read and cached
    gone = httpx.delete(f"{deployment.gateway.url}/admin/v1/teams/{team}", headers=master, timeout=10)
    assert gone.status_code == 200, gone.text
    fresh = idp.token(sub="kc-mike", **person(roles=("sb-team-admin",), tenant=tenant, team=team))
    for resp in (deployment.models(fresh),
                 deployment.admin("POST", "/users", fresh, json={"name": "x", "role": "developer"}),
                 deployment.admin("POST", "/keys", fresh, json={"models": ["gpt-4o-mini"]})):
        assert _code(resp) == (401, "token_claims_invalid"), resp.text
        assert "team was deleted" in resp.json()["error"]["message"]
    users = httpx.get(f"{deployment.gateway.url}/admin/v1/users", headers=master, timeout=10,
                      params={"tenant": tenant})
    assert users.status_code == 200 and users.json()["data"] == [], users.text
    outside = idp.token(sub="kc-nora", **person(tenant=tenant, team="team-from-the-idp"))
    assert deployment.models(outside).status_code == 200


def test_an_issuer_without_a_tenant_puts_its_callers_under_default_tenants_limits(
    deployment: Deployment, plain: IdentityProvider
) -> None:
    """An issuer with no tenant setting puts its callers in `default`: the rate limits the
    default tenant sets (and its budgets and regions) hold them as they hold its keys. They ran
    with no tenant, as the master key does, and none of these applied."""
    master = {"Authorization": f"Bearer {MASTER_KEY}"}
    limits = f"{deployment.gateway.url}/admin/v1/limits"
    limit = httpx.put(limits, headers=master, timeout=10, json={"scope": "tenant", "rpm": 1})
    assert limit.status_code in (200, 201), limit.text
    assert limit.json()["tenant"] == "default"
    try:
        client = deployment.sdk(plain.token(sub=f"plain-{uuid.uuid4().hex[:8]}"))
        assert client.chat.completions.create(model="gpt-4o-mini", messages=ask("once")).choices
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(model="gpt-4o-mini", messages=ask("twice"))
        assert limited.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    finally:
        gone = httpx.delete(f"{limits}/{limit.json()['id']}", headers=master, timeout=10)
        assert gone.status_code == 200, gone.text


def test_a_user_claim_naming_a_key_id_is_refused(deployment: Deployment, idp: IdentityProvider) -> None:
    """A caller's own key and the keys of its user are within its reach alike (the request log,
    usage and analytics go by both too), and a user claim is taken as is: a developer whose
    user claim is another caller's key id would read that key's log and rotate it into a key of
    its own. The gateway's key ids are no user's: such a token is refused, 401."""
    master = {"Authorization": f"Bearer {MASTER_KEY}"}
    made = httpx.post(f"{deployment.gateway.url}/admin/v1/keys", headers=master, timeout=10,
                      json={"models": ["gpt-4o-mini"], "tenant": "acme", "name": "victim"})
    if made.status_code == 404:  # the tenant has no record yet on this deployment
        tenant = httpx.post(f"{deployment.gateway.url}/admin/v1/tenants", headers=master, timeout=10,
                            json={"id": "acme", "name": "Acme"})
        assert tenant.status_code == 201, tenant.text
        made = httpx.post(f"{deployment.gateway.url}/admin/v1/keys", headers=master, timeout=10,
                          json={"models": ["gpt-4o-mini"], "tenant": "acme", "name": "victim"})
    assert made.status_code == 201, made.text
    victim = made.json()["id"]
    mallory = idp.token(sub="kc-mallory", **person(preferred_username=victim))
    for resp in (deployment.models(mallory),
                 deployment.admin("GET", f"/keys/{victim}", mallory),
                 deployment.admin("POST", f"/keys/{victim}/rotate", mallory, json={"grace_seconds": 0}),
                 deployment.admin("GET", "/logs", mallory)):
        assert _code(resp) == (401, "token_claims_invalid"), resp.text
    # The key is as it was: not rotated, and its holder still calls with it.
    assert deployment.sdk(made.json()["key"]).models.list().data
    # A user claim merely like a key id is a user as any other.
    near = idp.token(sub="kc-nina", **person(preferred_username=victim + "0"))
    assert _code(deployment.admin("GET", f"/keys/{victim}", near)) == (404, "key_not_found")


def test_a_sub_no_store_can_hold_is_refused(deployment: Deployment, idp: IdentityProvider) -> None:
    """The caller's id (``oidc:<tag>:<sub>``) is written with what it creates: a ``sub`` holding a
    NUL (PostgreSQL's text cannot) or an unpaired surrogate (no UTF-8 can) failed those writes
    with a 500. Such a token is refused when verified, 401, and nothing is written."""
    for sub in ("kc-\x00-nul", "kc-\ud800-surrogate"):
        admin = idp.token(sub=sub, **person(roles=("sb-admin",)))
        for resp in (deployment.models(admin),
                     deployment.admin("POST", "/keys", admin, json={"models": ["gpt-4o-mini"]})):
            assert _code(resp) == (401, "token_claims_invalid"), resp.text
            assert "'sub'" in resp.json()["error"]["message"]
    assert deployment.serving(idp)


@pytest.mark.parametrize("name", BAD)
def test_each_bad_token_gets_its_code_and_the_server_keeps_serving(
    deployment: Deployment, idp: IdentityProvider, name: str
) -> None:
    token, code = bad_tokens(idp, person())[name]
    resp = deployment.models(token)
    assert _code(resp) == (401, code), resp.text
    assert resp.json()["error"]["type"] == "authentication_error"
    assert deployment.serving(idp)


def test_a_token_that_expires_beyond_any_clock_is_served(
    deployment: Deployment, idp: IdentityProvider
) -> None:
    """An ``exp`` past a float's range is a valid (very distant) time, not a crash."""
    resp = deployment.models(idp.token(exp=10**400, **person()))
    assert resp.status_code == 200, resp.text
    assert [m["id"] for m in resp.json()["data"]] == ["gpt-4o-mini", "text-embedding-3-small"]


def test_a_token_whose_role_maps_to_nothing_is_403(deployment: Deployment, idp: IdentityProvider) -> None:
    with pytest.raises(openai.PermissionDeniedError) as denied:
        deployment.sdk(idp.token(**person(roles=("sb-unknown",)))).models.list()
    assert denied.value.body["code"] == "token_role_not_mapped"  # type: ignore[index]
    assert deployment.serving(idp)


def test_a_jwt_without_a_configured_issuer_and_not_a_jwt(deployment: Deployment) -> None:
    stranger = IdentityProvider(realm="/stranger")  # never started: nobody trusts it
    assert _code(deployment.models(stranger.token(**person()))) == (401, "token_issuer_invalid")
    assert _code(deployment.models("a.b")) == (401, "invalid_api_key")


def test_an_unreachable_identity_provider_is_503(deployment: Deployment, idp: IdentityProvider) -> None:
    # Its keys were asked for at start-up, in the background, and the failure logged.
    deployment.gateway.process.wait_for_all("cannot fetch signing keys", deployment.down_issuer, timeout=10)
    token = idp.token(iss=deployment.down_issuer, **person())
    for _ in range(3):
        resp = deployment.models(token)
        assert _code(resp) == (503, "oidc_unavailable"), resp.text
    assert deployment.serving(idp)


def test_unusable_keys_in_a_jwks_are_skipped_and_the_others_work(
    deployment: Deployment, messy: IdentityProvider
) -> None:
    """A key PyJWT cannot load (an ``alg`` that is a list, ``"none"``, a malformed modulus) made
    the whole set unusable: every caller of the issuer got 503 ``oidc_unavailable``. Such a key is
    skipped (logged with its kid, never its material) and the others keep working; a private key
    published by mistake is skipped too (it verified nothing: a 500 per token)."""
    reply = deployment.sdk(messy.token(sub="m-1")).chat.completions.create(
        model="gpt-4o-mini", messages=ask("messy"))
    assert reply.choices[0].message.content.endswith("You said: messy")
    for kid in ("alg-as-a-list", "alg-none", "bad-modulus", "unknown-kty"):
        token = messy.token(key=new_key("RS256", kid=kid), sub="m-2")
        assert _code(deployment.models(token)) == (401, "token_unknown_kid")
    forged = messy.token(key=PUBLISHED_PRIVATE, sub="m-3", tenant="elsewhere")
    assert _code(deployment.models(forged)) == (401, "token_unknown_kid")
    output = deployment.gateway.process
    for kid in ("alg-as-a-list", "alg-none", "bad-modulus", "published-private"):
        output.wait_for_all(f"oidc issuer {messy.issuer}: skipped an unusable key", f"kid '{kid}'",
                            timeout=10)
    assert "not-a-modulus" not in output.output
    private_d = RSAAlgorithm.to_jwk(PUBLISHED_PRIVATE.private, as_dict=True)["d"]
    assert private_d not in output.output
    assert f"oidc issuer {messy.issuer}: cannot fetch" not in output.output


def test_one_kid_under_two_key_types_verifies_tokens_of_either(
    deployment: Deployment, twin: IdentityProvider
) -> None:
    """A JWKS may hold an RSA and an EC key with the same kid: the key is the one the kid names
    that fits the token's algorithm (only the last was kept: the other's tokens were refused)."""
    rsa_key, ec_key = twin.keys
    for key in (rsa_key, ec_key):
        reply = deployment.sdk(twin.token(key=key, sub=f"twin-{key.alg}")).chat.completions.create(
            model="gpt-4o-mini", messages=ask(key.alg))
        assert reply.choices[0].message.content.endswith(f"You said: {key.alg}")
    # A stranger's key under that kid still verifies nothing.
    forged = twin.token(key=new_key("ES256", kid=TWIN_KID), sub="twin-x")
    assert _code(deployment.models(forged)) == (401, "token_signature_invalid")


def test_a_token_without_a_user_is_told_so_when_it_issues_a_key(
    deployment: Deployment, userless: IdentityProvider
) -> None:
    """An issuer whose claims mapping takes no user (or team) gives callers without one: such a
    developer (or team admin) may issue no key, and the refusal names the token and its issuer
    (it named a key the caller does not have)."""
    for claims, what in (({}, "user"), ({"realm_access": {"roles": ["lead"]}}, "team")):
        token = userless.token(sub="u-1", **claims)
        resp = deployment.admin("POST", "/keys", token, json={"models": ["gpt-4o-mini"]})
        assert _code(resp) == (403, "permission_denied"), resp.text
        message = resp.json()["error"]["message"]
        assert f"a token of the issuer {userless.issuer} carries no {what}" in message, message
        assert "key that belongs" not in message
    assert deployment.models(userless.token(sub="u-1")).status_code == 200


# A caller held up by the provider would wait out its 5 s delay; one answered at once takes well
# under that, even on a loaded machine.
ANSWERED_AT_ONCE = 3.0


def test_a_hanging_provider_does_not_hold_up_callers_whose_keys_are_held(
    deployment: Deployment, slow: IdentityProvider
) -> None:
    """Once the keys are held, an expired key set is refetched in the background: new tokens
    are answered at once with the keys held, however long the provider takes."""
    assert deployment.models(slow.token(jti=uuid.uuid4().hex)).status_code == 200
    fetches = slow.jwks_fetches
    slow.delay = 5.0
    try:
        deadline = time.monotonic() + 15
        while slow.jwks_fetches == fetches:  # until a refetch of the expired set is under way
            assert time.monotonic() < deadline, "the key set was never refetched"
            started = time.monotonic()
            resp = deployment.models(slow.token(jti=uuid.uuid4().hex))
            assert resp.status_code == 200, resp.text
            assert time.monotonic() - started < ANSWERED_AT_ONCE
        started = time.monotonic()
        assert deployment.models(slow.token(jti=uuid.uuid4().hex)).status_code == 200
        assert time.monotonic() - started < ANSWERED_AT_ONCE
    finally:
        slow.delay = 0.0


def test_made_up_key_ids_do_not_hammer_the_identity_provider(
    deployment: Deployment, idp: IdentityProvider
) -> None:
    assert deployment.serving(idp)  # the JWKS is cached
    before, started = idp.jwks_fetches, time.monotonic()
    for i in range(20):
        token = idp.token(key=new_key("ES256", kid=f"made-up-{i}"), **person())
        assert _code(deployment.models(token)) == (401, "token_unknown_kid")
    elapsed = time.monotonic() - started
    # At most one refetch per cooldown, however many unknown kids arrive.
    assert idp.jwks_fetches - before <= 1 + int(elapsed / COOLDOWN)


def test_key_rotation_is_picked_up_and_the_old_key_stops(
    deployment: Deployment, idp: IdentityProvider
) -> None:
    old_token = idp.token(**person())
    assert deployment.sdk(old_token).models.list().data
    idp.rotate()
    new_token = idp.token(**person())
    before, started = idp.jwks_fetches, time.monotonic()
    deadline = started + COOLDOWN + 10
    while True:
        resp = deployment.models(new_token)
        if resp.status_code == 200:
            break
        assert _code(resp) == (401, "token_unknown_kid")
        assert time.monotonic() < deadline, "the rotated key was not picked up"
    assert idp.jwks_fetches - before <= 1 + int((time.monotonic() - started) / COOLDOWN)
    # The old key was withdrawn: its tokens are refused, even one the gateway had verified.
    assert _code(deployment.models(old_token)) == (401, "token_unknown_kid")
    reply = deployment.sdk(new_token).chat.completions.create(model="gpt-4o-mini", messages=ask("rotated"))
    assert reply.choices[0].message.content.endswith("You said: rotated")


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("issuer", "problem"),
    [
        ({"algorithms": ["HS256"]}, "shared_secret: required with HS256 in algorithms"),
        ({"default_role": "platform_admin"}, "default_role"),
        ({"discovery": False}, "jwks_url: required when discovery is false"),
        ({"issuer": "idp.example"}, "must be an http:// or https:// URL"),
        ({"audiences": ["x"]}, "audiences"),
    ],
)
def test_bad_oidc_config_is_refused_with_one_line(
    tmp_path: Path, issuer: dict[str, Any], problem: str
) -> None:
    config = {
        "providers": [{"name": "p", "type": "openai", "api_base": "http://127.0.0.1:9/v1", "api_key": "k"}],
        "models": [{"name": "m", "provider": "p", "model": "m"}],
        "auth": {"master_key": "sk-test-master-key-123",
                 "oidc": [{"issuer": "https://idp.example", "audience": "sb", **issuer}]},
    }
    path = tmp_path / "switchboard.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = spawn(["config", "check", str(path)])
    assert proc.wait_exit(60) == 2  # a configuration error
    assert "auth.oidc" in proc.output and problem in proc.output, proc.output
    assert "Traceback" not in proc.output
