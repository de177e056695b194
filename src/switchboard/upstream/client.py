"""The only outbound HTTP: one pooled keep-alive aiohttp session per provider.

aiohttp was measured against httpx for this path (see docs/architecture.md): it costs about
half the CPU per proxied request. Foreign exceptions are translated to gateway errors here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import aiohttp

from switchboard.config.schema import Timeouts
from switchboard.errors import UpstreamBadGateway, UpstreamTimeout, UpstreamUnreachable
from switchboard.upstream.auth import UpstreamAuth
from switchboard.upstream.request import UpstreamRequest


def client_timeout(t: Timeouts) -> aiohttp.ClientTimeout:
    # sock_read bounds the wait for the headers and every later gap between reads.
    return aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect, connect=t.connect, sock_read=t.first_byte)


@dataclass(slots=True)
class UpstreamReply:
    status: int
    headers: Mapping[str, str]
    body: bytes


class UpstreamClient:
    def __init__(self, provider: str, auth: UpstreamAuth, max_connections: int, headers: dict[str, str]) -> None:
        self.provider = provider
        self.auth = auth
        self._max_connections = max_connections
        self._headers = headers
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=75
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            headers=self._headers,
            raise_for_status=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self.auth.close()

    @contextmanager
    def _translated(self) -> Iterator[None]:
        where = f"provider '{self.provider}'"
        try:
            yield
        except (TimeoutError, asyncio.TimeoutError):
            raise UpstreamTimeout(f"{where} did not answer in time") from None
        except aiohttp.ClientConnectorError:
            raise UpstreamUnreachable(f"cannot connect to {where}") from None
        except aiohttp.ClientError as exc:
            raise UpstreamBadGateway(f"connection to {where} failed: {type(exc).__name__}") from None

    async def _open(self, request: UpstreamRequest, timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        assert self._session is not None, "client not started"
        await self.auth.apply(request)
        return await self._session.request(
            request.method, request.url, data=request.body, headers=request.headers, timeout=timeout
        )

    async def send(self, request: UpstreamRequest, timeout: aiohttp.ClientTimeout) -> UpstreamReply:
        with self._translated():
            resp = await self._open(request, timeout)
            try:
                body = await resp.read()
            finally:
                resp.release()
        return UpstreamReply(resp.status, resp.headers, body)

    async def open_stream(self, request: UpstreamRequest, timeout: aiohttp.ClientTimeout) -> UpstreamStream:
        """Send and wait for the headers; an error status is read whole and returned as a reply."""
        with self._translated():
            resp = await self._open(request, timeout)
        return UpstreamStream(self, resp)


class UpstreamStream:
    """An open streaming response. Iterate :meth:`chunks` exactly once; it always closes."""

    def __init__(self, client: UpstreamClient, response: aiohttp.ClientResponse) -> None:
        self._client = client
        self.response = response
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    async def read_all(self) -> bytes:
        with self._client._translated():
            try:
                return await self.response.read()
            finally:
                self.response.release()

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            with self._client._translated():
                async for data in self.response.content.iter_any():
                    yield data
        finally:
            # Closing (not releasing) drops a connection whose body was not read to the end.
            self.response.close()
