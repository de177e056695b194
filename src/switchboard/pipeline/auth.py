"""Authentication: who is calling.

The master key is checked first, in constant time, with no I/O. Otherwise a key of the gateway's
shape is hashed and looked up through the key cache (a store query only for a key not seen
lately). A key not in the cache is looked up only if its check is right (access/keys.py) or
keys from before the check are still live (access/unchecked.py): a made-up key is refused with
no query and no cache entry, and a cached key pays nothing for the check. Revoked and blocked
keys (``key_disabled``) and expired ones (``key_expired``) are refused with their own codes.
Last, when ``auth.oidc`` lists identity providers, a token of a JWT's shape (three
dot-separated segments) is verified as one (``access/oidc.py``); a key of neither shape is an
invalid API key.
"""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING, cast

from switchboard.access import keys
from switchboard.access.cache import CachedKey, KeyCache
from switchboard.access.last_used import LastUsed
from switchboard.access.roles import PLATFORM_ADMIN
from switchboard.access.tokens import looks_like_jwt
from switchboard.access.unchecked import UncheckedKeys
from switchboard.context import Principal, RequestContext, Result
from switchboard.errors import AuthenticationFailed
from switchboard.pipeline.chain import Handler

if TYPE_CHECKING:
    from switchboard.access.oidc import OidcVerifier  # built by the gateway when configured

# Every header a caller's gateway key is read from (presented_key): what forwards a caller's
# headers upstream (services/proxy.py) drops all of them.
KEY_HEADERS = frozenset({"authorization", "x-api-key", "x-goog-api-key"})

# KeyCache.peek: nothing fresh cached for the key. Typed as a record so that what peek returns
# needs no cast() call on every request.
_MISS = cast("CachedKey", object())


def presented_key(headers: dict[str, str]) -> str | None:
    """The key from ``Authorization: Bearer …``, Anthropic's ``x-api-key`` or Google's
    ``x-goog-api-key`` (a Gemini ``?key=`` is moved into that header by http/gemini/routes.py).
    It is always a Switchboard key; nothing presented here is ever sent upstream."""
    value = headers.get("authorization")
    if value is not None:
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return headers.get("x-api-key") or headers.get("x-goog-api-key") or None


class Authenticator:
    """The master key, then the gateway's API keys (through the key cache, once attached)."""

    def __init__(
        self, master_key: str, secret_key: str | None = None, oidc: OidcVerifier | None = None
    ) -> None:
        self._master = master_key.encode()
        self._oidc = oidc
        self._admin = Principal(id="master", role=PLATFORM_ADMIN)
        self._hashing: bytes | None = None
        self._checking = b""
        if secret_key:
            self.use_hashing_key(keys.hashing_key(secret_key))
        self._keys: KeyCache | None = None
        self._last_used: LastUsed | None = None
        self._unchecked: UncheckedKeys | None = None
        self._clock = time.time

    def use_hashing_key(self, hashing: bytes) -> None:
        """The key-hashing key as stored in the database (see crypto/server.py)."""
        self._hashing = hashing
        self._checking = keys.checking_key(hashing)

    def attach(self, cache: KeyCache, last_used: LastUsed | None = None,
               unchecked: UncheckedKeys | None = None) -> None:
        """Start accepting API keys (the stores are open). Without ``unchecked`` every key not
        cached is looked up, as if keys without a check were live."""
        self._keys = cache
        self._last_used = last_used
        self._unchecked = unchecked

    async def authenticate(self, headers: dict[str, str]) -> Principal:
        key = presented_key(headers)
        if key is None:
            raise AuthenticationFailed(
                "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key"
            )
        # Constant-time comparison so the key cannot be guessed byte by byte from timings.
        if hmac.compare_digest(key.encode("utf-8", "surrogateescape"), self._master):
            return self._admin
        if not keys.looks_like_key(key):
            if self._oidc is not None and looks_like_jwt(key):
                return await self._oidc.verify(key)
            raise AuthenticationFailed("invalid API key")
        if self._keys is None or self._hashing is None:
            raise AuthenticationFailed("invalid API key")
        # The lookup is by keyed hash: equal hashes mean equal keys, nothing to compare further.
        digest = keys.key_hash(key, self._hashing)
        cached = self._keys.peek(digest, _MISS)
        if cached is _MISS:
            # Not cached: a key whose check fails is made up, unless keys from before the check
            # are live (those have none). Refused here it costs no query and takes no cache
            # entry, so made-up keys neither load the database nor push valid keys out.
            unchecked = self._unchecked
            if unchecked is not None and not unchecked.live and not keys.checks_out(key, self._checking):
                raise AuthenticationFailed("invalid API key")
            cached = await self._keys.get(digest)
        if cached is None:
            raise AuthenticationFailed("invalid API key")
        record = cached.record
        if not record.enabled:
            raise AuthenticationFailed("this API key has been revoked", code="key_disabled")
        if record.blocked:  # reversible, unlike a revoke: same code, so clients treat both alike
            raise AuthenticationFailed("this API key is blocked", code="key_disabled")
        if record.expires_at is not None and record.expires_at.timestamp() <= self._clock():
            raise AuthenticationFailed("this API key has expired", code="key_expired")
        if self._last_used is not None:
            self._last_used.note(record.id)
        return cached.principal  # shared by this key's requests: stages must not change it


class AuthStage:
    name = "auth"

    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        if ctx.principal is None:  # else found before ``100 Continue`` (http/endpoint.py): once
            ctx.principal = await self._auth.authenticate(ctx.headers)
        return await call_next(ctx)
