"""Where files and batches go: an OpenAI or Azure OpenAI provider entry, chosen by name from the
configuration (never a URL from the caller), and the calls made to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote, urlencode

import orjson

from switchboard.config.schema import Timeouts
from switchboard.errors import (
    GatewayError,
    UpstreamAuthFailed,
    UpstreamBadGateway,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from switchboard.routing.live import LiveRouting
from switchboard.upstream.client import UpstreamClient, UpstreamReply, UpstreamStream
from switchboard.upstream.request import UpstreamRequest

FILE_TYPES = frozenset({"openai", "azure"})
# A call whose body came from a request at least this large is serialised in a worker thread:
# a message batch's 32 MiB take tens of milliseconds to write as JSON, which would stall every
# other request on the event loop (orjson lets go of the GIL meanwhile). The size is the one the
# caller already knows, so a small call pays one comparison and no thread hop.
SERIALISE_IN_THREAD_BYTES = 1 << 20
DEFAULT_AZURE_VERSION = "2024-10-21"


@dataclass(frozen=True, slots=True)
class Upstream:
    provider: str
    type: str  # openai | azure
    api_base: str
    api_version: str | None
    client: UpstreamClient
    timeouts: Timeouts
    # Sent with every call: an Anthropic batch's ``anthropic-version`` (message_upstream.py).
    headers: Mapping[str, str] = field(default_factory=dict)
    # providers[].allow_account_objects: every caller may name what the provider account holds
    # (providers/account.py), in a batch's lines as in a single request.
    account_objects: bool = False

    def url(self, path: str, query: Mapping[str, str] | None = None) -> str:
        """``path`` (``/files/<id>``...) on this provider; ids are quoted."""
        params = dict(query or {})
        if self.type == "azure":
            params["api-version"] = self.api_version or DEFAULT_AZURE_VERSION
            base = f"{self.api_base}/openai{path}"
        else:
            base = f"{self.api_base}{path}"
        return f"{base}?{urlencode(params)}" if params else base

    async def call(self, method: str, path: str, body: Any = None, *,
                   query: Mapping[str, str] | None = None, size: int = 0) -> dict[str, Any]:
        """A JSON exchange; an upstream error is raised as the gateway's error. ``size``: about
        how large ``body`` is as JSON (the request it came from), when it may be large."""
        if body is None:
            data = None
        elif size < SERIALISE_IN_THREAD_BYTES:
            data = orjson.dumps(body)
        else:
            data = await asyncio.to_thread(orjson.dumps, body)
        request = UpstreamRequest(method, self.url(path, query), data, dict(self.headers))
        reply = await self.client.send(request, self.timeouts)
        return self.parse(reply)

    async def upload(self, content_type: str, body: AsyncIterator[bytes]) -> dict[str, Any]:
        # aiohttp sends an async iterable as a chunked body, piece by piece as it is produced.
        request = UpstreamRequest("POST", self.url("/files"), cast(bytes, body),
                                  {"Content-Type": content_type})
        return self.parse(await self.client.send(request, self.timeouts))

    async def open(self, path: str) -> UpstreamStream:
        request = UpstreamRequest("GET", self.url(path), None, dict(self.headers), stream=True)
        stream = await self.client.open_stream(request, self.timeouts)
        if stream.status >= 400:
            raise self.error(stream.status, await stream.read_all())
        return stream

    def parse(self, reply: UpstreamReply) -> dict[str, Any]:
        if reply.status >= 400:
            raise self.error(reply.status, reply.body)
        try:
            obj = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            raise UpstreamBadGateway(f"provider '{self.provider}' sent a response that is not a JSON object")
        return obj

    def error(self, status: int, body: bytes) -> GatewayError:
        """The upstream's error in the gateway's terms: a caller's mistake keeps its status and
        message; the provider's own trouble is a 5xx (or 429) of the gateway's."""
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            obj = None
        err = obj.get("error") if isinstance(obj, dict) else None
        err = err if isinstance(err, dict) else {}
        message = err.get("message") if isinstance(err.get("message"), str) else None
        code = err.get("code") if isinstance(err.get("code"), str) else None
        param = err.get("param") if isinstance(err.get("param"), str) else None
        where = f"provider '{self.provider}'"
        failure: GatewayError
        if status in (401, 403):
            failure = UpstreamAuthFailed(f"{where} refused the gateway's credentials")
        elif status == 429:
            failure = UpstreamRateLimited(message or f"{where} is rate limiting")
        elif status in (408, 504):  # as for model calls (api.md): the upstream timed out
            failure = UpstreamTimeout(f"{where} timed out ({status})")
        elif status in (503, 529):
            failure = UpstreamUnavailable(f"{where} is overloaded ({status})")
        elif status >= 500:
            failure = UpstreamBadGateway(f"{where} failed ({status})")
        else:
            failure = GatewayError(message or f"{where} refused the request ({status})", status=status,
                                   code=code, param=param,
                                   type="not_found_error" if status == 404 else "invalid_request_error")
        failure.from_upstream = True
        return failure


def resolve(routing: LiveRouting, provider: str) -> Upstream | None:
    """The provider entry ``provider`` if it is an OpenAI or Azure one that is usable now."""
    resolved = routing.resolved(provider)
    if resolved is None or resolved.config.type not in FILE_TYPES:
        return None
    client = routing.static_client(provider) or routing.stored_client(provider)
    if client is None:
        return None
    version = getattr(resolved.options, "api_version", None)
    return Upstream(provider, resolved.config.type, resolved.api_base,
                    version if isinstance(version, str) else None, client, resolved.config.timeouts,
                    account_objects=resolved.config.allow_account_objects)


def object_path(kind: str, object_id: str, tail: str = "") -> str:
    return f"/{kind}/{quote(object_id, safe='')}{tail}"
