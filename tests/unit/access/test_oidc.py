"""The JWT verifier against a real (test) identity provider: signatures, algorithms, claims, the
mapping to principals, the JWKS cache with its refetch bounds, key rotation, an unreachable
provider, and the verified-token cache."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, get_args

import jwt
import pytest
from jwt.algorithms import RSAAlgorithm
from pydantic import ValidationError

from switchboard.access import roles
from switchboard.access.oidc import OidcVerifier, claim, issuer_tag
from switchboard.access.tokens import looks_like_jwt
from switchboard.config.schema import AuthConfig, OidcIssuerConfig, RoleName
from switchboard.errors import GatewayError
from switchboard.pipeline.auth import Authenticator
from tests.oidc_provider import AUDIENCE, BAD, IdentityProvider, b64, bad_tokens, hand_made, new_key

SECRET = "an-hmac-secret-shared-with-the-identity-provider-0123456789abc"


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider().start()
    yield provider
    provider.stop()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def issuer_config(idp: IdentityProvider, **overrides: Any) -> OidcIssuerConfig:
    fields: dict[str, Any] = {
        "issuer": idp.issuer,
        "audience": [AUDIENCE, "other"],
        "claims": {"tenant": "tenant", "team": "groups.team", "user": "preferred_username",
                   "role": "realm_access.roles"},
        "roles": {"sb-admin": "tenant_admin", "sb-dev": "developer", "sb-root": "platform_admin"},
        "models": ["gpt-*"],
        **overrides,
    }
    return OidcIssuerConfig.model_validate(fields)


@asynccontextmanager
async def verifier(*configs: OidcIssuerConfig, **kwargs: Any) -> AsyncIterator[OidcVerifier]:
    v = OidcVerifier(configs, **kwargs)
    await v.start()
    try:
        yield v
    finally:
        await v.close()


def person(**claims: Any) -> dict[str, Any]:
    return {"tenant": "acme", "groups": {"team": "team-a"}, "preferred_username": "alice@acme.test",
            "realm_access": {"roles": ["offline_access", "sb-dev"]}, **claims}


async def refused(v: OidcVerifier, token: str) -> GatewayError:
    with pytest.raises(GatewayError) as err:
        await v.verify(token)
    return err.value


async def test_a_token_becomes_the_principal_its_claims_say(idp: IdentityProvider) -> None:
    async with verifier(issuer_config(idp)) as v:
        principal = await v.verify(idp.token(**person(sub="f81d4fae-7dec")))
    assert principal.id == f"oidc:{issuer_tag(idp.issuer)}:f81d4fae-7dec"
    mapped = (principal.tenant_id, principal.team_id, principal.user_id)
    assert mapped == ("acme", "team-a", "alice@acme.test")
    assert principal.role == "developer" and principal.key_id is None
    assert principal.allowed_models == ("gpt-*",)


async def test_the_most_powerful_mapped_role_wins_and_the_default_applies(idp: IdentityProvider) -> None:
    async with verifier(issuer_config(idp)) as v:
        both = await v.verify(idp.token(**person(realm_access={"roles": ["sb-dev", "sb-admin"]})))
        assert both.role == "tenant_admin"
        root = await v.verify(idp.token(**person(realm_access={"roles": ["sb-root"]})))
        assert root.role == "platform_admin"  # only because the mapping names it
        unmapped = await v.verify(idp.token(**person(realm_access={"roles": ["admin", 7]})))
        assert unmapped.role == "developer"  # default_role
        single = await v.verify(idp.token(**person(realm_access={"roles": "sb-admin"})))
        assert single.role == "tenant_admin"


async def test_no_mappable_role_and_no_default_is_403(idp: IdentityProvider) -> None:
    async with verifier(issuer_config(idp, default_role=None)) as v:
        error = await refused(v, idp.token(**person(realm_access={"roles": ["admin"]})))
    assert (error.status, error.code) == (403, "token_role_not_mapped")


async def test_fixed_tenant_namespaced_claims_and_every_model(idp: IdentityProvider) -> None:
    config = issuer_config(idp, tenant="globex", claims={"role": "https://sb.example/roles"},
                           roles={"admins": "tenant_admin"}, models=["*"])
    async with verifier(config) as v:
        principal = await v.verify(idp.token(**{"https://sb.example/roles": ["admins"], "sub": "auth0|42"}))
    assert (principal.tenant_id, principal.team_id, principal.user_id) == ("globex", None, "auth0|42")
    assert principal.role == "tenant_admin" and principal.allowed_models is None


async def test_a_long_subject_gets_a_bounded_stable_id(idp: IdentityProvider) -> None:
    async with verifier(issuer_config(idp, claims={})) as v:
        first = await v.verify(idp.token(sub="s" * 300))
        second = await v.verify(idp.token(sub="s" * 300, jti="other"))
    tag = issuer_tag(idp.issuer)
    assert first.id == second.id and first.id.startswith(f"oidc:{tag}:~") and len(first.id) <= 64


async def test_the_same_subject_of_two_issuers_is_two_callers(idp: IdentityProvider) -> None:
    """``sub`` is unique only within its issuer: ids (owners of files, batches, sessions) differ."""
    other = IdentityProvider(realm="/realms/other").start()
    try:
        async with verifier(issuer_config(idp), issuer_config(other)) as v:
            first = await v.verify(idp.token(**person(sub="alice")))
            second = await v.verify(other.token(**person(sub="alice")))
    finally:
        other.stop()
    assert first.id != second.id
    assert first.id.endswith(":alice") and second.id.endswith(":alice")


@pytest.mark.parametrize("alg", ["ES256", "ES384", "EdDSA", "PS256"])
async def test_other_asymmetric_algorithms(idp: IdentityProvider, alg: str) -> None:
    key = idp.publish(new_key(alg))
    try:
        async with verifier(issuer_config(idp)) as v:
            assert (await v.verify(idp.token(key=key, **person()))).tenant_id == "acme"
    finally:
        idp.keys.remove(key)


@pytest.mark.parametrize("name", BAD)
async def test_each_bad_token_gets_its_code(idp: IdentityProvider, name: str) -> None:
    token, code = bad_tokens(idp, person())[name]
    async with verifier(issuer_config(idp)) as v:
        error = await refused(v, token)
        assert (error.status, error.code) == (401, code), error.message
        assert error.type == "authentication_error"
        assert (await v.verify(idp.token(**person()))).tenant_id == "acme"  # still serving


def test_the_bad_token_table_is_complete(idp: IdentityProvider) -> None:
    assert sorted(bad_tokens(idp, person())) == sorted(BAD)


@pytest.mark.parametrize("claims", [{"sub": 42}, {"jti": 7}, {"iat": "now"}, {"sub": ""}])
async def test_claims_of_the_wrong_type(idp: IdentityProvider, claims: dict[str, Any]) -> None:
    token = hand_made({"alg": "RS256", "kid": idp.key.kid}, {**idp.claims(**person()), **claims},
                      lambda data: jwt.get_algorithm_by_name("RS256").sign(data, idp.key.private))
    async with verifier(issuer_config(idp)) as v:
        assert (await refused(v, token)).code == "token_claims_invalid"


async def test_hs256_only_with_the_configured_shared_secret(idp: IdentityProvider) -> None:
    config = issuer_config(idp, algorithms=["RS256", "HS256"], shared_secret=SECRET)
    good = idp.claims(**person())
    async with verifier(config) as v:
        assert (await v.verify(jwt.encode(good, SECRET, algorithm="HS256"))).tenant_id == "acme"
        # The RSA public key (as a JWKS publishes it) is never an HMAC secret.
        confused = hand_made({"alg": "HS256", "kid": idp.key.kid}, good,
                             lambda data: hmac.new(idp.key.public_pem, data, hashlib.sha256).digest())
        assert (await refused(v, confused)).code == "token_signature_invalid"
        wrong_secret = jwt.encode(good, "x" * 40, algorithm="HS256")
        assert (await refused(v, wrong_secret)).code == "token_signature_invalid"
        not_listed = jwt.encode(good, SECRET, algorithm="HS384")
        assert (await refused(v, not_listed)).code == "token_algorithm_not_allowed"


async def test_leeway_accepts_a_token_just_expired(idp: IdentityProvider) -> None:
    async with verifier(issuer_config(idp, leeway_seconds=60)) as v:
        token = idp.token(exp=int(idp.claims()["iat"]) - 30, **person())
        assert (await v.verify(token)).tenant_id == "acme"


async def test_verified_tokens_are_cached_until_they_expire(idp: IdentityProvider) -> None:
    clock = Clock(idp.claims()["iat"])
    token = idp.token(exp=int(clock.now) + 100, **person())
    async with verifier(issuer_config(idp, leeway_seconds=0, token_cache_seconds=3600), clock=clock) as v:
        first = await v.verify(token)
        for _ in range(50):
            assert await v.verify(token) is first
        assert v.verifications == 1
        clock.now += 101
        # PyJWT checks exp against the real time; the cache entry is what ran out here.
        assert (await v.verify(token)) is not first and v.verifications == 2


async def test_the_token_cache_is_bounded(idp: IdentityProvider) -> None:
    async with verifier(issuer_config(idp), cache_entries=3) as v:
        tokens = [idp.token(jti=str(i), **person()) for i in range(5)]
        for token in tokens:
            await v.verify(token)
        assert len(v._verified) == 3
        await v.verify(tokens[-1])
        assert v.verifications == 5


async def test_unknown_kids_refetch_the_jwks_at_most_once_per_cooldown(idp: IdentityProvider) -> None:
    clock = Clock(1000.0)
    async with verifier(issuer_config(idp), monotonic=clock) as v:
        assert (await v.verify(idp.token(**person()))).tenant_id == "acme"
        issuer = v.issuer(idp.issuer)
        assert issuer is not None and issuer.fetches == 1
        for i in range(20):
            made_up = idp.token(key=new_key("ES256", kid=f"made-up-{i}"), **person())
            assert (await refused(v, made_up)).code == "token_unknown_kid"
        assert issuer.fetches == 1  # within the cooldown of the first fetch
        clock.now += 31
        for _ in range(5):
            await refused(v, idp.token(key=new_key("ES256", kid="made-up"), **person()))
        assert issuer.fetches == 2


async def test_key_rotation_is_picked_up_and_withdrawn_keys_stop_working(idp: IdentityProvider) -> None:
    clock = Clock(1000.0)
    async with verifier(issuer_config(idp), monotonic=clock) as v:
        old_token = idp.token(**person())
        await v.verify(old_token)
        new = idp.rotate()
        try:
            clock.now += 31  # past the refetch cooldown
            assert (await v.verify(idp.token(**person(tenant="rotated")))).tenant_id == "rotated"
            # The old key was withdrawn: tokens it signed are no longer trusted, cached or not.
            assert (await refused(v, old_token)).code == "token_unknown_kid"
        finally:
            idp.keys.append(new)


async def test_an_unreachable_provider(idp: IdentityProvider) -> None:
    clock = Clock(1000.0)
    idp.down = True
    try:
        async with verifier(issuer_config(idp), monotonic=clock) as v:
            error = await refused(v, idp.token(**person()))
            assert (error.status, error.code, error.type) == (503, "oidc_unavailable", "api_error")
            issuer = v.issuer(idp.issuer)
            assert issuer is not None
            for _ in range(10):
                await refused(v, idp.token(**person()))
            assert issuer.fetches == 1  # a failed fetch is not retried on every request
            idp.down = False
            clock.now += 5
            token = idp.token(**person())
            assert (await v.verify(token)).tenant_id == "acme"
            # Down again after the cache expired: the keys held keep working.
            idp.down = True
            clock.now += 601
            assert (await v.verify(idp.token(jti="later", **person()))).tenant_id == "acme"
            await until(lambda: issuer.fetches == 3)  # the refetch, in the background
    finally:
        idp.down = False


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.01)


async def test_an_expired_key_set_is_refetched_without_holding_callers(idp: IdentityProvider) -> None:
    """A provider that hangs once the keys are held: tokens are still verified with the keys held
    while one refetch waits on the provider in the background, for as long as the test holds it."""
    clock = Clock(1000.0)
    config = issuer_config(idp, http_timeout_seconds=10, jwks_refetch_cooldown_seconds=1)
    async with verifier(config, monotonic=clock) as v:
        assert (await v.verify(idp.token(**person()))).tenant_id == "acme"
        issuer = v.issuer(idp.issuer)
        assert issuer is not None and issuer.fetches == 1
        asked = idp.jwks_fetches  # the provider serves the whole module: its count so far
        hold = idp.hold = threading.Event()
        try:
            clock.now += 601  # past jwks_cache_seconds
            assert (await v.verify(idp.token(jti="t0", **person()))).tenant_id == "acme"
            await until(lambda: idp.jwks_fetches == asked + 1)  # the refetch is with the provider, held
            for i in range(1, 5):
                assert (await v.verify(idp.token(jti=f"t{i}", **person()))).tenant_id == "acme"
            # Every verify above answered while the refetch was (and still is) pending: none
            # waited for it, or its end (the provider answering or the timeout) would be behind us.
            assert issuer.fetching and issuer.fetches == 2  # one refetch for all of them
            hold.set()
            await until(lambda: not issuer.fetching)
            assert issuer.fetches == 2
        finally:
            hold.set()
            idp.hold = None


def _jwks_with(*keys: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


@pytest.mark.parametrize(
    "body",
    [b"x" * (1024 * 1024 + 10), b"<html>not json</html>", b"[1, 2]", b'{"keys": "none"}',
     b'{"keys": []}',
     _jwks_with({"kty": "RSA", "kid": "listed-alg", "alg": ["RS256"], "n": "AQAB", "e": "AQAB"},
                {"kty": "RSA", "kid": "bad-modulus", "n": "%%%", "e": "AQAB"},
                {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"})],
    ids=["oversized", "not json", "not an object", "no key list", "no key", "no usable key"],
)
async def test_an_unusable_jwks_is_like_an_unreachable_provider(idp: IdentityProvider, body: bytes) -> None:
    idp.jwks_body = body
    try:
        async with verifier(issuer_config(idp)) as v:
            assert (await refused(v, idp.token(**person()))).code == "oidc_unavailable"
    finally:
        idp.jwks_body = None


async def test_symmetric_and_encryption_keys_in_the_jwks_are_never_used(idp: IdentityProvider) -> None:
    signing = idp.key.jwk()
    secret = b64(b"s" * 32)
    idp.jwks_body = _jwks_with(
        {"kty": "oct", "kid": "sym", "k": secret, "alg": "HS256"},
        {**signing, "kid": "enc", "use": "enc"},
        {"kty": "RSA", "kid": "broken", "n": "??", "e": "AQAB"},
        signing,
    )
    config = issuer_config(idp, algorithms=["RS256", "HS256"], shared_secret=SECRET)
    try:
        async with verifier(config, monotonic=Clock(0.0)) as v:
            assert (await v.verify(idp.token(**person()))).tenant_id == "acme"
            claims = idp.claims(**person())
            with_oct_secret = hand_made({"alg": "HS256", "kid": "sym"}, claims,
                                        lambda data: hmac.new(b"s" * 32, data, hashlib.sha256).digest())
            assert (await refused(v, with_oct_secret)).code == "token_signature_invalid"
            enc = idp.token(headers={"kid": "enc"}, **person())
            assert (await refused(v, enc)).code == "token_unknown_kid"
            broken = idp.token(headers={"kid": "broken"}, **person())
            assert (await refused(v, broken)).code == "token_unknown_kid"
    finally:
        idp.jwks_body = None


async def test_unusable_keys_are_skipped_logged_once_and_the_others_work(
    idp: IdentityProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """A key PyJWT cannot load (it raises TypeError for an ``alg`` that is a list,
    NotImplementedError for ``"none"``) rejected the whole set: every token of the issuer was
    503. It is skipped, logged once with its kid and never its material; a published private key
    (anyone could sign with it, and PyJWT cannot verify with an RSA one) is skipped alike."""
    signing = idp.key.jwk()
    leaked = new_key("RS256", kid="leaked")
    leaked_jwk = {**RSAAlgorithm.to_jwk(leaked.private, as_dict=True), "kid": "leaked"}
    idp.jwks_body = _jwks_with(
        {**signing, "kid": "listed-alg", "alg": ["RS256"]},
        {**signing, "kid": "alg-none", "alg": "none"},
        {"kty": "EC", "kid": "bad-curve", "crv": {"name": "P-256"}, "x": "AA", "y": "AA"},
        leaked_jwk,
        signing,
    )
    clock = Clock(1000.0)
    try:
        with caplog.at_level(logging.WARNING, logger="switchboard.access"):
            async with verifier(issuer_config(idp), monotonic=clock) as v:
                assert (await v.verify(idp.token(**person()))).tenant_id == "acme"
                for kid in ("listed-alg", "alg-none", "bad-curve"):
                    named = idp.token(headers={"kid": kid}, **person())
                    assert (await refused(v, named)).code == "token_unknown_kid"
                forged = idp.token(key=leaked, **person(tenant="elsewhere"))
                assert (await refused(v, forged)).code == "token_unknown_kid"
                issuer = v.issuer(idp.issuer)
                assert issuer is not None
                clock.now += 601  # past jwks_cache_seconds: the same set is fetched again
                assert (await v.verify(idp.token(jti="again", **person()))).tenant_id == "acme"
                await until(lambda: issuer.fetches >= 2 and not issuer.fetching)
    finally:
        idp.jwks_body = None
    notes = [r.getMessage() for r in caplog.records if "skipped an unusable key" in r.getMessage()]
    assert sorted(n.rsplit(": ", 1)[1] for n in notes) == [
        "kid 'alg-none', NotImplementedError", "kid 'bad-curve', InvalidKeyError",
        "kid 'leaked', it holds private key material", "kid 'listed-alg', TypeError",
    ]
    assert leaked_jwk["d"] not in caplog.text and signing["n"] not in caplog.text


async def test_a_token_without_kid_needs_an_unambiguous_jwks(idp: IdentityProvider) -> None:
    token = jwt.encode(idp.claims(**person()), idp.key.private, algorithm="RS256")
    idp.jwks_body = _jwks_with({k: v for k, v in idp.key.jwk().items() if k != "kid"})
    try:
        async with verifier(issuer_config(idp)) as v:
            assert (await v.verify(token)).tenant_id == "acme"
    finally:
        idp.jwks_body = None
    extra = idp.publish(new_key("ES256"))
    try:
        async with verifier(issuer_config(idp)) as v:
            assert (await refused(v, token)).code == "token_unknown_kid"
    finally:
        idp.keys.remove(extra)


async def test_an_explicit_jwks_url_skips_discovery(idp: IdentityProvider) -> None:
    before = idp.hits["discovery"]
    async with verifier(issuer_config(idp, discovery=False, jwks_url=idp.jwks_url)) as v:
        assert (await v.verify(idp.token(**person()))).tenant_id == "acme"
    assert idp.hits["discovery"] == before


async def test_a_discovery_document_for_another_issuer_is_not_trusted(idp: IdentityProvider) -> None:
    other = IdentityProvider(realm="/realms/other").start()
    try:
        # Configured under the other realm's issuer, but discovery there names itself, so the
        # configured issuer (this realm) does not match and no keys are trusted.
        config = issuer_config(idp, issuer=other.issuer)
        tampered = other.issuer
        other.issuer = idp.issuer  # the document now claims to be someone else
        async with verifier(config) as v:
            error = await refused(v, idp.token(iss=tampered, **person()))
        assert error.code == "oidc_unavailable"
    finally:
        other.stop()


@pytest.mark.parametrize("document", ["discovery", "jwks"])
async def test_a_redirect_from_the_identity_provider_is_not_followed(
    document: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The documents are read where the configuration says, as every other outbound call of the
    gateway: a redirect is a failed fetch (503 to the caller), logged with where it pointed."""
    moving = IdentityProvider(realm="/realms/moving").start()
    moving.redirected = {document}
    try:
        discovery = f"{moving.issuer}/.well-known/openid-configuration"
        url = discovery if document == "discovery" else moving.jwks_url
        with caplog.at_level(logging.WARNING, logger="switchboard.access"):
            async with verifier(issuer_config(moving)) as v:
                error = await refused(v, moving.token(**person()))
        assert (error.status, error.code) == (503, "oidc_unavailable")
        assert (f"{url} answered with a redirect (HTTP 302) to {moving.moved(url)}, which is not followed"
                in caplog.text), caplog.text
    finally:
        moving.stop()


async def test_two_issuers_each_with_their_own_keys(idp: IdentityProvider) -> None:
    other = IdentityProvider(realm="/realms/partners", alg="ES256").start()
    try:
        config = issuer_config(other, tenant="partners", claims={}, models=["*"])
        async with verifier(issuer_config(idp), config) as v:
            assert (await v.verify(idp.token(**person()))).tenant_id == "acme"
            assert (await v.verify(other.token())).tenant_id == "partners"
            # A token naming one issuer but signed with the other's key.
            forged = other.token(key=idp.key, alg="RS256")
            assert (await refused(v, forged)).code in ("token_unknown_kid", "token_algorithm_not_allowed")
    finally:
        other.stop()


def test_claims_by_name_or_dotted_path() -> None:
    claims = {"a": {"b": {"c": 1}}, "https://x.example/roles": ["r"], "flat": "v"}
    assert claim(claims, "a.b.c") == 1
    assert claim(claims, "https://x.example/roles") == ["r"]
    assert claim(claims, "flat.deeper") is None and claim(claims, "missing") is None


def test_jwt_shape() -> None:
    assert looks_like_jwt("a.b.c") and not looks_like_jwt("sk-sb-abc") and not looks_like_jwt("a.b.c.d")


async def test_the_authenticator_hands_only_jwt_shaped_tokens_to_the_verifier(idp: IdentityProvider) -> None:
    async with verifier(issuer_config(idp)) as v:
        auth = Authenticator("master-key-123", None, v)
        principal = await auth.authenticate({"authorization": f"Bearer {idp.token(**person())}"})
        assert principal.tenant_id == "acme"
        with pytest.raises(GatewayError) as err:
            await auth.authenticate({"authorization": "Bearer not-a-jwt"})
        assert err.value.code == "invalid_api_key" and v.verifications == 1
    without = Authenticator("master-key-123", None)
    with pytest.raises(GatewayError) as err:
        await without.authenticate({"x-api-key": idp.token(**person())})
    assert err.value.code == "invalid_api_key"


# -- configuration -------------------------------------------------------------------------


def test_role_names_match_the_permission_table() -> None:
    assert tuple(get_args(RoleName)) == roles.ROLES


def test_defaults_are_asymmetric_only() -> None:
    config = OidcIssuerConfig(issuer="https://idp.example", audience="sb")
    assert not any(a.startswith("HS") for a in config.algorithms)
    assert (config.leeway_seconds, config.jwks_cache_seconds, config.default_role) == (30, 600, "developer")
    assert config.models == ["*"] and config.claims.user == "sub"


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"issuer": "idp.example"}, "http"),
        ({"issuer": "ftp://idp.example"}, "http"),
        ({"audience": []}, "audience"),
        ({"algorithms": ["HS256"]}, "shared_secret: required"),
        ({"algorithms": ["none"]}, "algorithms"),
        ({"shared_secret": SECRET}, "no HS"),
        ({"algorithms": ["HS256"], "shared_secret": "short"}, "at least 32 bytes"),
        ({"algorithms": ["HS256", "HS512"], "shared_secret": "s" * 48}, "at least 64 bytes for HS512"),
        ({"discovery": False}, "jwks_url: required"),
        ({"jwks_url": "file:///etc/passwd"}, "http"),
        ({"tenant": "acme", "claims": {"tenant": "org"}}, "not both"),
        ({"tenant": "a b"}, "tenant"),
        ({"default_role": "platform_admin"}, "default_role"),
        ({"roles": {"x": "superuser"}}, "roles"),
        ({"leeway_seconds": -1}, "leeway_seconds"),
        ({"claims": {"role": "has space"}}, "role"),
        ({"surprise": 1}, "surprise"),
        ({"audience": "a" * 513}, "audience"),
        ({"audience": ["sb", ""]}, "audience"),
        ({"audience": ["sb", {"nested": 1}]}, "audience"),
        ({"leeway_seconds": "soon"}, "leeway_seconds"),
        ({"models": []}, "models"),
        ({"claims": {"tenant": "t" * 257}}, "tenant"),
        ({"claims": {"group": "g"}}, "group"),
        ({"issuer": "https://" + "i" * 2048 + ".example"}, "issuer"),
    ],
)
def test_bad_issuer_configs_are_refused(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError) as err:
        OidcIssuerConfig.model_validate({"issuer": "https://idp.example", "audience": "sb", **fields})
    assert problem in str(err.value)


def test_an_issuer_is_listed_once() -> None:
    one = {"issuer": "https://idp.example", "audience": "sb"}
    with pytest.raises(ValidationError, match="listed once"):
        AuthConfig.model_validate({"master_key": "12345678", "oidc": [one, one]})
