"""Service-account auth for Vertex AI: key loading, the signed JWT, token caching and refresh."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from switchboard.errors import UpstreamAuthFailed, UpstreamError, UpstreamUnreachable, error_class
from switchboard.upstream.google_auth import (
    JWT_BEARER_GRANT,
    MIN_CACHE,
    ServiceAccount,
    ServiceAccountAuth,
    load_service_account,
    service_account_from_info,
    signed_assertion,
)
from switchboard.upstream.request import UpstreamRequest

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()


def info(token_uri: str = "https://oauth2.example/token", **changes: Any) -> dict[str, Any]:
    base = {
        "type": "service_account",
        "project_id": "proj-1",
        "private_key_id": "kid-123",
        "private_key": PEM,
        "client_email": "sa@proj-1.iam.gserviceaccount.com",
        "token_uri": token_uri,
    }
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def b64json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_signed_assertion_structure_and_signature() -> None:
    account = service_account_from_info(info())
    jwt = signed_assertion(account, 1_700_000_000)
    head, claims, sig = jwt.split(".")
    assert b64json(head) == {"alg": "RS256", "typ": "JWT", "kid": "kid-123"}
    assert b64json(claims) == {
        "iss": "sa@proj-1.iam.gserviceaccount.com",
        "scope": "https://www.googleapis.com/auth/cloud-platform",
        "aud": "https://oauth2.example/token",
        "iat": 1_700_000_000,
        "exp": 1_700_003_600,
    }
    signature = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    KEY.public_key().verify(signature, f"{head}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())


def test_load_from_file_and_repr(tmp_path: Path) -> None:
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(info(token_uri=None)))
    account = load_service_account(path)
    assert account.token_uri == "https://oauth2.googleapis.com/token"  # Google's default
    assert account.project_id == "proj-1"
    assert "PRIVATE" not in repr(account) and "sa@proj-1" in repr(account)


ec_pem = (
    ec.generate_private_key(ec.SECP256R1())
    .private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    .decode()
)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read"),
        ("not json", "not a JSON service-account key file"),
        ("[1]", "not a JSON service-account key file"),
        (json.dumps(info(type="authorized_user")), "not a service account"),
        (json.dumps(info(client_email=None, private_key_id="")), "lacks client_email, private_key_id"),
        (
            json.dumps(info(private_key="-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n")),
            "not a PEM",
        ),
        (json.dumps(info(private_key=ec_pem)), "must be an RSA key"),
    ],
)
def test_load_errors_are_clear_and_secret_free(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "key.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=expected) as err:
        load_service_account(path)
    assert "BEGIN" not in str(err.value) and "key.json" in str(err.value)


# -- the token exchange, against a local token endpoint ------------------------------------------


@dataclass
class TokenEndpoint:
    url: str
    calls: list[dict[str, str]] = field(default_factory=list)
    answer: Callable[[int], Awaitable[web.Response]] | None = None


@asynccontextmanager
async def token_endpoint() -> AsyncIterator[TokenEndpoint]:
    """A local token endpoint, in the test's own event loop."""
    state = TokenEndpoint("")

    async def token(request: web.Request) -> web.Response:
        state.calls.append({k: str(v) for k, v in (await request.post()).items()})
        if state.answer is not None:
            return await state.answer(len(state.calls))
        return web.json_response({"access_token": f"tok-{len(state.calls)}", "expires_in": 3599})

    app = web.Application()
    app.router.add_post("/token", token)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("/token"))
    try:
        yield state
    finally:
        await server.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def auth_for(
    endpoint: TokenEndpoint, clock: Clock | None = None
) -> tuple[ServiceAccountAuth, ServiceAccount]:
    account = service_account_from_info(info(token_uri=endpoint.url))
    return ServiceAccountAuth(account, provider="vtx", timeout=5, clock=clock or Clock()), account


async def bearer(auth: ServiceAccountAuth) -> str:
    request = UpstreamRequest("POST", "https://x.test", b"{}", {})
    await auth.apply(request)
    return request.headers["Authorization"]


async def test_token_is_fetched_signed_and_cached() -> None:
    async with token_endpoint() as endpoint:
        await _test_token_is_fetched_signed_and_cached(endpoint)


async def _test_token_is_fetched_signed_and_cached(endpoint: TokenEndpoint) -> None:
    auth, _ = auth_for(endpoint)
    try:
        assert await bearer(auth) == "Bearer tok-1"
        assert await bearer(auth) == "Bearer tok-1"
    finally:
        await auth.close()
    [form] = endpoint.calls
    assert form["grant_type"] == JWT_BEARER_GRANT
    head, claims, _ = form["assertion"].split(".")
    assert b64json(claims)["aud"] == endpoint.url and b64json(head)["kid"] == "kid-123"


async def test_refreshed_five_minutes_before_expiry() -> None:
    async with token_endpoint() as endpoint:
        await _test_refreshed_five_minutes_before_expiry(endpoint)


async def _test_refreshed_five_minutes_before_expiry(endpoint: TokenEndpoint) -> None:
    clock = Clock()
    auth, _ = auth_for(endpoint, clock)
    try:
        assert await bearer(auth) == "Bearer tok-1"
        clock.now += 3599 - 301
        assert await bearer(auth) == "Bearer tok-1"
        clock.now += 2
        assert await bearer(auth) == "Bearer tok-2"
        # A request sent with the old token may still be answering: both are scrubbed from errors.
        assert {"tok-1", "tok-2"} <= set(auth.secrets())
    finally:
        await auth.close()


async def test_concurrent_requests_share_one_refresh() -> None:
    async with token_endpoint() as endpoint:
        await _test_concurrent_requests_share_one_refresh(endpoint)


async def _test_concurrent_requests_share_one_refresh(endpoint: TokenEndpoint) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow(n: int) -> web.Response:
        arrived.set()
        await release.wait()
        return web.json_response({"access_token": f"tok-{n}", "expires_in": 3600})

    endpoint.answer = slow
    auth, _ = auth_for(endpoint)
    try:
        tasks = [asyncio.create_task(bearer(auth)) for _ in range(20)]
        await arrived.wait()  # every task has started and is now waiting on the one refresh
        release.set()
        assert set(await asyncio.gather(*tasks)) == {"Bearer tok-1"}
    finally:
        await auth.close()
    assert len(endpoint.calls) == 1


async def test_failure_is_shared_then_retried() -> None:
    async with token_endpoint() as endpoint:
        await _test_failure_is_shared_then_retried(endpoint)


async def _test_failure_is_shared_then_retried(endpoint: TokenEndpoint) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def refuse(n: int) -> web.Response:
        arrived.set()
        await release.wait()
        return web.json_response(
            {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, status=400
        )

    endpoint.answer = refuse
    auth, _ = auth_for(endpoint)
    try:
        tasks = [asyncio.create_task(bearer(auth)) for _ in range(5)]
        await arrived.wait()
        release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert len(endpoint.calls) == 1
        assert all(isinstance(r, UpstreamAuthFailed) for r in results)
        message = str(results[0])
        assert "invalid_grant: Invalid JWT Signature." in message and "HTTP 400" in message
        assert endpoint.calls[0]["assertion"] not in message and "PRIVATE" not in message
        with pytest.raises(UpstreamAuthFailed):
            await bearer(auth)
        assert len(endpoint.calls) == 2  # a later request tries again
    finally:
        await auth.close()


@pytest.mark.parametrize("expires_in", ["1" + "0" * 50, "1.7976931348623157e308", "18446744073709551615"])
async def test_an_absurdly_long_lifetime_is_taken_without_error(expires_in: str) -> None:
    """A token endpoint promising a lifetime past any date (or any integer): the token is used
    and kept, never an error (orjson reads an integer past 64 bits as a float, and the expiry is
    a float of seconds, never a date)."""
    async with token_endpoint() as endpoint:
        async def answer(n: int) -> web.Response:
            return web.Response(text=f'{{"access_token": "tok-{n}", "expires_in": {expires_in}}}',
                                content_type="application/json")

        endpoint.answer = answer
        clock = Clock()
        auth, _ = auth_for(endpoint, clock)
        try:
            assert await bearer(auth) == "Bearer tok-1"
            clock.now += 100 * 365 * 86_400
            assert await bearer(auth) == "Bearer tok-1"
        finally:
            await auth.close()
        assert len(endpoint.calls) == 1


_MISSING = object()


@pytest.mark.parametrize(("expires_in", "kept"), [
    (300, MIN_CACHE), (200, MIN_CACHE), (1, MIN_CACHE), (0, MIN_CACHE), (-30, MIN_CACHE),
    (361, MIN_CACHE + 1), (400, 100.0),
    # No lifetime at all: the hour asked for, refreshed five minutes before it ends.
    (True, 3300.0), ("3600", 3300.0), (None, 3300.0), (_MISSING, 3300.0),
])
async def test_a_short_or_invalid_lifetime_still_caches_the_token(expires_in: Any, kept: float) -> None:
    """A token endpoint answering with a lifetime within the refresh margin, none, or not a
    number (``true`` would read as 1 s) does not make every request fetch a new token: it is
    used ``kept`` seconds, at least a minute."""
    async with token_endpoint() as endpoint:
        async def answer(n: int) -> web.Response:
            body: dict[str, Any] = {"access_token": f"tok-{n}"}
            if expires_in is not _MISSING:
                body["expires_in"] = expires_in
            return web.json_response(body)

        endpoint.answer = answer
        clock = Clock()
        auth, _ = auth_for(endpoint, clock)
        try:
            assert [await bearer(auth) for _ in range(5)] == ["Bearer tok-1"] * 5
            clock.now += kept - 0.5
            assert await bearer(auth) == "Bearer tok-1"
            clock.now += 1
            assert await bearer(auth) == "Bearer tok-2"
        finally:
            await auth.close()
        assert len(endpoint.calls) == 2


async def test_answer_without_token() -> None:
    async with token_endpoint() as endpoint:
        await _test_answer_without_token(endpoint)


async def _test_answer_without_token(endpoint: TokenEndpoint) -> None:
    async def empty(n: int) -> web.Response:
        return web.json_response({"token_type": "Bearer"})

    endpoint.answer = empty
    auth, _ = auth_for(endpoint)
    try:
        with pytest.raises(UpstreamAuthFailed, match="no access token"):
            await bearer(auth)
    finally:
        await auth.close()


async def test_unreachable_token_endpoint() -> None:
    """A connection error, not a credentials error: retried and fallen back from (class
    ``connection``)."""
    auth, _ = auth_for(TokenEndpoint("http://127.0.0.1:9/token"))
    try:
        with pytest.raises(UpstreamUnreachable, match="could not be reached") as failed:
            await bearer(auth)
        assert error_class(failed.value) == "connection"
    finally:
        await auth.close()


async def test_a_token_endpoint_outage_is_a_server_error() -> None:
    async with token_endpoint() as endpoint:
        for status in (500, 503, 429):
            async def down(n: int, status: int = status) -> web.Response:
                return web.json_response({"error": "temporarily_unavailable"}, status=status)

            endpoint.answer = down
            auth, _ = auth_for(endpoint)
            try:
                with pytest.raises(UpstreamError, match=f"answered HTTP {status}") as failed:
                    await bearer(auth)
                assert error_class(failed.value) == "server_error"
                assert not isinstance(failed.value, UpstreamAuthFailed)
            finally:
                await auth.close()
