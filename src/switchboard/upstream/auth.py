"""Upstream credentials. Each scheme is a small class applying itself to an UpstreamRequest.

Credentials are read from the config once, kept out of reprs, and never written to logs or
responses. Schemes that need I/O (token exchange) do it here, not in the adapters.
"""

from __future__ import annotations

from typing import Protocol

from switchboard.errors import UpstreamError
from switchboard.upstream.request import UpstreamRequest
from switchboard.upstream.scrub import header_secrets


class UpstreamAuth(Protocol):
    async def apply(self, request: UpstreamRequest) -> None: ...

    async def close(self) -> None: ...

    def secrets(self) -> list[str]:
        """Every credential this scheme sends or holds, for scrubbing upstream error text."""
        ...


class StaticHeaderAuth:
    """A fixed header such as ``Authorization: Bearer …`` or ``api-key: …``; none when no key."""

    __slots__ = ("headers",)

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers

    @classmethod
    def bearer(cls, key: str | None) -> StaticHeaderAuth:
        return cls({"Authorization": f"Bearer {key}"} if key else {})

    @classmethod
    def header(cls, name: str, key: str | None) -> StaticHeaderAuth:
        return cls({name: key} if key else {})

    async def apply(self, request: UpstreamRequest) -> None:
        if self.headers:
            request.headers.update(self.headers)

    async def close(self) -> None:
        return None

    def secrets(self) -> list[str]:
        return header_secrets(self.headers)

    def __repr__(self) -> str:
        return f"StaticHeaderAuth({', '.join(self.headers)})"


class RotatingAuth:
    """Several credentials of one provider used in turn, one per request (round robin), so
    their rate limits add up. Applied per request; one credential stays a session header."""

    __slots__ = ("_next", "_schemes")

    def __init__(self, schemes: list[UpstreamAuth]) -> None:
        assert schemes, "at least one credential"
        self._schemes = schemes
        self._next = 0

    async def apply(self, request: UpstreamRequest) -> None:
        scheme = self._schemes[self._next]
        self._next = (self._next + 1) % len(self._schemes)
        await scheme.apply(request)

    async def close(self) -> None:
        for scheme in self._schemes:
            await scheme.close()

    def secrets(self) -> list[str]:
        return [s for scheme in self._schemes for s in scheme.secrets()]

    def __repr__(self) -> str:
        return f"RotatingAuth({len(self._schemes)} credentials)"


class MissingCredentialAuth:
    """A stored provider given credentials of which none resolves here (an ``env:`` variable
    unset or blank, a file gone): each call is refused, naming the provider, rather than sent
    upstream without a key to fail there. Which credential and why is in the server log."""

    __slots__ = ("_provider",)

    def __init__(self, provider: str) -> None:
        self._provider = provider

    async def apply(self, request: UpstreamRequest) -> None:
        raise UpstreamError(f"provider '{self._provider}' has no usable credential on this gateway "
                            "(a reference that does not resolve; see the server log)",
                            status=503, code="upstream_credential_missing")

    async def close(self) -> None:
        return None

    def secrets(self) -> list[str]:
        return []

    def __repr__(self) -> str:
        return "MissingCredentialAuth()"
