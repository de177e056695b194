"""Google service-account credentials (Vertex AI): a signed JWT exchanged for an access token.

The OAuth 2.0 JWT bearer flow for service accounts
(https://developers.google.com/identity/protocols/oauth2/service-account#authorizingrequests):
an RS256 JWT (header ``kid`` = private_key_id; claims iss = client_email, scope, aud = token_uri,
iat, exp = iat + 1 h) signed with the key's private key is POSTed form-encoded to ``token_uri``
with ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``; the answer's ``access_token``
is sent as ``Authorization: Bearer``. Tokens are cached and refreshed five minutes before they
expire, but kept at least ``MIN_CACHE`` seconds (a token endpoint promising a short or no
lifetime must not make every request fetch a token, one at a time under the lock); concurrent
requests share one refresh (and its failure). Signing uses ``cryptography``
directly, so no JWT library is needed. The key file is read once, at start-up.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from switchboard.errors import UpstreamAuthFailed, UpstreamError, UpstreamTimeout, UpstreamUnreachable
from switchboard.jsonio import loads, loads_object
from switchboard.upstream.outbound import Outbound
from switchboard.upstream.request import UpstreamRequest

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
TOKEN_LIFETIME = 3600
REFRESH_MARGIN = 300.0
# The shortest time a token is used before the next is fetched, whatever its ``expires_in`` says.
MIN_CACHE = 60.0
_REQUIRED = ("client_email", "private_key", "private_key_id")


@dataclass(frozen=True)
class ServiceAccount:
    client_email: str
    private_key_id: str
    token_uri: str
    project_id: str | None
    key: rsa.RSAPrivateKey = field(repr=False)
    # The private key's PEM body lines, so that echoed key material can be scrubbed.
    key_material: tuple[str, ...] = field(default=(), repr=False)

    def __repr__(self) -> str:  # never print the key
        return f"ServiceAccount({self.client_email})"


def load_service_account(path: str | Path) -> ServiceAccount:
    """Read a service-account JSON key file; ValueError says what is wrong (never its secrets)."""
    try:
        raw = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc.strerror or type(exc).__name__}") from None
    try:
        info = loads(raw)  # a key file saved by an editor that writes a byte order mark
    except orjson.JSONDecodeError:
        raise ValueError(f"{str(path)!r} is not a JSON service-account key file") from None
    if not isinstance(info, dict):
        raise ValueError(f"{str(path)!r} is not a JSON service-account key file")
    return service_account_from_info(info, str(path))


def service_account_from_info(info: dict[str, Any], source: str = "the key") -> ServiceAccount:
    if info.get("type", "service_account") != "service_account":
        raise ValueError(f"{source!r} holds credentials of type {info.get('type')!r}, not a service account")
    missing = [k for k in _REQUIRED if not isinstance(info.get(k), str) or not info[k]]
    if missing:
        raise ValueError(f"{source!r} lacks {', '.join(missing)}")
    try:
        key = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    except (ValueError, TypeError):
        raise ValueError(f"{source!r}: private_key is not a PEM-encoded private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{source!r}: private_key must be an RSA key")
    token_uri = info.get("token_uri") or DEFAULT_TOKEN_URI
    project = info.get("project_id")
    return ServiceAccount(
        client_email=info["client_email"],
        private_key_id=info["private_key_id"],
        token_uri=str(token_uri),
        project_id=project if isinstance(project, str) and project else None,
        key=key,
        key_material=tuple(
            line.strip() for line in info["private_key"].splitlines() if line.strip() and "-----" not in line
        ),
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_assertion(account: ServiceAccount, issued_at: int, scope: str = CLOUD_PLATFORM_SCOPE) -> str:
    header = {"alg": "RS256", "typ": "JWT", "kid": account.private_key_id}
    claims = {
        "iss": account.client_email,
        "scope": scope,
        "aud": account.token_uri,
        "iat": issued_at,
        "exp": issued_at + TOKEN_LIFETIME,
    }
    signing_input = f"{_b64url(orjson.dumps(header))}.{_b64url(orjson.dumps(claims))}".encode()
    signature = account.key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode()}.{_b64url(signature)}"


class ServiceAccountAuth:
    """An UpstreamAuth scheme: ``Authorization: Bearer <access token>`` from a service account."""

    def __init__(
        self,
        account: ServiceAccount,
        provider: str,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._account = account
        self._provider = provider
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._lock: asyncio.Lock | None = None
        self._token: str | None = None
        # The token before the current one: a request sent with it may still be answering (a
        # stream outlives a refresh), and its error may echo it.
        self._previous: str | None = None
        self._fresh_until = 0.0  # when the next request fetches a new token
        self._refreshes = 0  # refreshes finished, so a waiter can tell one ran while it waited
        self._failure: UpstreamAuthFailed | UpstreamUnreachable | None = None
        # The provider's TLS context and proxy (providers[].tls, .proxy): the token endpoint is
        # reached the same way as the provider.
        self._outbound: Outbound | None = None

    def __repr__(self) -> str:
        return f"ServiceAccountAuth({self._account.client_email})"

    def route(self, outbound: Outbound) -> None:
        """Fetch tokens through the provider's own proxy and TLS context (before first use)."""
        self._outbound = outbound

    async def apply(self, request: UpstreamRequest) -> None:
        request.headers["Authorization"] = f"Bearer {await self.token()}"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def secrets(self) -> list[str]:
        held = [*self._account.key_material]
        held += [t for t in (self._token, self._previous) if t is not None]
        return held

    def _fresh(self) -> str | None:
        if self._token is not None and self._clock() < self._fresh_until:
            return self._token
        return None

    async def token(self) -> str:
        token = self._fresh()
        if token is not None:
            return token
        if self._lock is None:
            self._lock = asyncio.Lock()
        seen = self._refreshes
        async with self._lock:
            token = self._fresh()
            if token is not None:
                return token
            if self._refreshes != seen and self._failure is not None:
                # The refresh this caller waited for failed: share its outcome, don't retry at once.
                raise type(self._failure)(self._failure.message)
            try:
                token, self._fresh_until = await self._refresh()
                self._previous, self._token = self._token, token
            except (UpstreamAuthFailed, UpstreamUnreachable) as exc:
                # (A cancelled refresh counts as none: whoever waited tries again itself.)
                self._failure, self._refreshes = exc, self._refreshes + 1
                raise
            self._failure, self._refreshes = None, self._refreshes + 1
            return self._token

    def _fail(self, why: str) -> UpstreamAuthFailed:
        return UpstreamAuthFailed(
            f"provider '{self._provider}' could not get a Google access token for service account "
            f"{self._account.client_email}: {why}; check credentials_file"
        )

    async def _refresh(self) -> tuple[str, float]:
        """A new access token and until when it is used."""
        now = self._clock()
        form = {"grant_type": JWT_BEARER_GRANT, "assertion": signed_assertion(self._account, int(now))}
        if self._session is None:
            self._session = self._open_session()
        try:
            async with self._session.post(self._account.token_uri, data=form, allow_redirects=False) as resp:
                status, body = resp.status, await resp.read()
        except aiohttp.ClientProxyConnectionError:
            raise self._unreachable("cannot connect to the proxy {proxy}") from None
        except aiohttp.ClientHttpProxyError as exc:
            raise self._unreachable(f"the proxy {{proxy}} refused the tunnel: HTTP {exc.status}") from None
        except TimeoutError:
            raise UpstreamTimeout(f"provider '{self._provider}': its token endpoint did not answer in time "
                                  "(an access token is needed for the call)") from None
        except aiohttp.ClientError as exc:
            why = f"the token endpoint could not be reached ({type(exc).__name__})"
            raise self._unreachable(why) from None
        answer = _object(body)
        if status == 429 or status >= 500:
            # Google's OAuth service unavailable, not a refused key: retried and fallen back from,
            # as the provider's own 5xx would be, never a credentials error.
            raise UpstreamError(f"provider '{self._provider}': its token endpoint answered HTTP {status}"
                                f"{_oauth_error(answer)} (an access token is needed for the call)")
        if status != 200:
            raise self._fail(f"the token endpoint answered HTTP {status}{_oauth_error(answer)}")
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise self._fail("the token endpoint sent no access token")
        return token, now + cached_for(answer.get("expires_in"))

    def _open_session(self) -> aiohttp.ClientSession:
        outbound = self._outbound
        if outbound is None:
            return aiohttp.ClientSession(timeout=self._timeout, trust_env=False)
        connector = aiohttp.TCPConnector(ssl=outbound.ssl if outbound.ssl is not None else True)
        proxy = outbound.proxy.url if outbound.proxy is not None else None
        return aiohttp.ClientSession(connector=connector, timeout=self._timeout, trust_env=False, proxy=proxy)

    def _unreachable(self, why: str) -> UpstreamUnreachable:
        """The proxy failed the token fetch: a connection error of the provider's, as its calls'
        would be (retried, fallen back from), naming the proxy (``{proxy}`` in ``why``) as
        ``http://host:port``, none of its credentials."""
        proxy = self._outbound.proxy if self._outbound is not None else None
        why = why.format(proxy=proxy.shown if proxy is not None else "")
        where = f"provider '{self._provider}'"
        return UpstreamUnreachable(f"cannot connect to {where} for its access token: {why}")


def cached_for(expires_in: Any) -> float:
    """How long a token whose answer said ``expires_in`` is used: until five minutes before it
    expires, at least ``MIN_CACHE`` seconds. An ``expires_in`` that is no number of seconds
    (missing, a string, ``true``, which Python would count as 1) is no lifetime: the hour the
    assertion asks for (``TOKEN_LIFETIME``) is assumed, as Google's tokens last."""
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        expires_in = TOKEN_LIFETIME
    return max(float(expires_in) - REFRESH_MARGIN, MIN_CACHE)


def _object(body: bytes) -> dict[str, Any]:
    # A byte order mark before the JSON is ignored, as in every other upstream answer.
    return loads_object(body) or {}


def _oauth_error(answer: dict[str, Any]) -> str:
    """The OAuth error code and description (RFC 6749 section 5.2): they never hold secrets."""
    error = answer.get("error")
    if not isinstance(error, str):
        return ""
    description = answer.get("error_description")
    text = f"{error}: {description}" if isinstance(description, str) and description else error
    return f" ({text[:200]})"
