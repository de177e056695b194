"""Authentication: who is calling. The master key for now; keys from a store come next.

``Authenticator.authenticate`` is async because looking a key up may reach a store (behind a
cache); the master key is checked first, in constant time, with no I/O.
"""

from __future__ import annotations

import hmac

from switchboard.context import Principal, RequestContext, Result
from switchboard.errors import AuthenticationFailed
from switchboard.pipeline.chain import Handler


def presented_key(headers: dict[str, str]) -> str | None:
    """The key from ``Authorization: Bearer …`` or Anthropic's ``x-api-key``."""
    value = headers.get("authorization")
    if value is not None:
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return headers.get("x-api-key") or None


class Authenticator:
    def __init__(self, master_key: str) -> None:
        self._master = master_key.encode()
        self._admin = Principal(id="master", role="admin")

    async def authenticate(self, headers: dict[str, str]) -> Principal:
        key = presented_key(headers)
        if key is None:
            raise AuthenticationFailed(
                "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key"
            )
        # Constant-time comparison so the key cannot be guessed byte by byte from timings.
        if hmac.compare_digest(key.encode("utf-8", "surrogateescape"), self._master):
            return self._admin
        raise AuthenticationFailed("invalid API key")


class AuthStage:
    name = "auth"

    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        ctx.principal = await self._auth.authenticate(ctx.headers)
        return await call_next(ctx)
