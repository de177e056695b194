"""What the rest of the gateway needs to know about JWT callers without the verifier
(access/oidc.py): a token's shape, the refusal of one, and a user claim as a user id. Kept apart
so that PyJWT (and the cryptography it loads) is imported only when ``auth.oidc`` lists
identity providers: the gateway imports the verifier when it builds one."""

from __future__ import annotations

import hashlib

from switchboard.errors import AuthenticationFailed


def looks_like_jwt(token: str) -> bool:
    """Three dot-separated segments: worth handing to the verifier (cheap, no decoding)."""
    return token.count(".") == 2


class TokenRefused(AuthenticationFailed):
    """401 with the code saying what was wrong with the token."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


def mapped_user(value: str) -> str:
    """A user claim's value as the caller's user id: bounded to the stores' user column (64)."""
    return bounded(value, 64)


def bounded(value: str, limit: int) -> str:
    """``value``, or if longer than ``limit`` a stable stand-in: ``~`` and 32 hex digits of a hash."""
    if len(value) <= limit:
        return value
    return "~" + hashlib.blake2b(value.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
