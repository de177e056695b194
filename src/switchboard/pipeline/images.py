"""Inline remote images for providers that only accept image bytes.

Runs only when the routed adapter needs it (``needs_inline_images``): every http(s) ``image_url`` in the
messages is fetched (bounded in size and time, private addresses refused unless allowed) and
replaced by a ``data:`` URL, so adapters stay pure and never do I/O.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from switchboard import media_urls
from switchboard.config.schema import ImagesConfig
from switchboard.context import RequestContext, Result
from switchboard.errors import InvalidRequest
from switchboard.pipeline.chain import Handler
from switchboard.upstream.egress import Egress, EgressRefused

_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}


def remote_image_parts(request: dict[str, Any]) -> list[dict[str, Any]]:
    parts = []
    for msg in request.get("messages") or ():
        content = msg.get("content")
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    url = (part.get("image_url") or {}).get("url", "")
                    if isinstance(url, str) and media_urls.scheme(url) in ("http", "https"):
                        parts.append(part)
    return parts


class ImageFetcher:
    def __init__(self, config: ImagesConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        # Callers name these URLs: public addresses only, unless the operator allows private ones.
        self._egress = None if config.allow_private_networks else Egress()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.config.timeout)
            resolver = self._egress.resolver() if self._egress is not None else None
            connector = aiohttp.TCPConnector(resolver=resolver)
            self._session = aiohttp.ClientSession(timeout=timeout, trust_env=False, connector=connector)
        return self._session

    def _check_literal(self, host: str) -> None:
        """IP literals never reach the resolver, so they are checked here; names by the resolver."""
        if self._egress is None:
            return
        try:
            self._egress.check_host(host)
        except EgressRefused:
            raise InvalidRequest(
                f"image URL host '{host}' is a private address; fetching it is not allowed",
                param="messages",
            ) from None

    async def fetch(self, url: str) -> str:
        """The image at ``url`` as a data URL."""
        self._check_literal(urlsplit(url).hostname or "")
        limit = self.config.max_bytes
        try:
            async with self._client().get(url, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise InvalidRequest(
                        f"image URL answered HTTP {resp.status}: {url[:200]}", param="messages"
                    )
                media = resp.content_type
                if media not in _TYPES:
                    raise InvalidRequest(
                        f"image URL has unsupported content type '{media}'", param="messages"
                    )
                data = await resp.content.read(limit + 1)
        except (aiohttp.ClientError, TimeoutError):
            raise InvalidRequest(
                f"image URL could not be fetched (unreachable, or not a public address): {url[:200]}",
                param="messages",
            ) from None
        if len(data) > limit:
            raise InvalidRequest(f"image at {url[:200]} exceeds {limit} bytes", param="messages")
        return f"data:{media};base64,{base64.b64encode(data).decode()}"


class InlineImagesStage:
    name = "inline_images"

    def __init__(self, fetcher: ImageFetcher) -> None:
        self._fetcher = fetcher

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        route = ctx.route
        if (
            route is not None
            and route.inline_images  # the adapter's needs_inline_images, worked out per route
            and (parts := remote_image_parts(ctx.request))
        ):
            if not self._fetcher.config.fetch_remote:
                raise InvalidRequest(
                    f"model '{route.target.name}' needs inline images and fetching remote images is disabled",
                    param="messages",
                )
            await self._inline(parts)
        return await call_next(ctx)

    async def _inline(self, parts: list[dict[str, Any]]) -> None:
        """Each part's image fetched (each URL once) and put in its place as a data URL. A method
        of its own: its generator made ``self`` a cell of ``__call__`` on every request."""
        urls = [p["image_url"]["url"] for p in parts]
        fetched = await asyncio.gather(*(self._fetcher.fetch(u) for u in dict.fromkeys(urls)))
        by_url = dict(zip(dict.fromkeys(urls), fetched, strict=True))
        for part in parts:
            part["image_url"] = {**part["image_url"], "url": by_url[part["image_url"]["url"]]}
