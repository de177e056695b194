"""In-process fakes for driving the pipeline and the edge without sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import orjson

from switchboard.context import Chunk, RequestContext, Result, StreamReply
from switchboard.http import openai_api
from switchboard.http.endpoint import Endpoint
from switchboard.http.state import ServerState
from switchboard.pipeline.chain import Handler


def context(headers: dict[str, str] | None = None, body: bytes = b"", **fields: Any) -> RequestContext:
    return RequestContext("rid-1", "chat", openai_api.CHAT, headers or {}, body, 0.0, **fields)


class Client:
    """The ASGI side of one request: what the server may receive, and what it sent."""

    def __init__(self, body: bytes = b"{}", headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.body = body
        self.headers = headers if headers is not None else [(b"authorization", b"Bearer k")]
        self.sent: list[dict[str, Any]] = []
        self.gone = asyncio.Event()
        self._body_read = False
        self.fail_sends = False

    def scope(self, method: str = "POST", path: str = "/v1/chat/completions") -> dict[str, Any]:
        return {"type": "http", "method": method, "path": path, "headers": self.headers, "query_string": b""}

    async def receive(self) -> dict[str, Any]:
        if not self._body_read:
            self._body_read = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if self.fail_sends:
            raise OSError("connection lost")
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def response_headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    @property
    def data(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])

    def json(self) -> Any:
        return orjson.loads(self.data)


class FakeStream:
    """A StreamReply source that records how it ended; optionally waits forever after ``n``."""

    def __init__(self, batches: list[list[Chunk]], fail: Exception | None = None, hang: bool = False) -> None:
        self.batches = batches
        self.fail = fail
        self.hang = hang
        self.closed = 0
        self.waiting = asyncio.Event()

    async def _chunks(self) -> AsyncGenerator[list[Chunk], None]:
        for batch in self.batches:
            yield batch
        if self.fail is not None:
            raise self.fail
        if self.hang:
            self.waiting.set()
            await asyncio.Event().wait()

    async def close(self) -> None:
        self.closed += 1

    def reply(self) -> StreamReply:
        return StreamReply(self._chunks(), close=self.close)


def chunk(text: str) -> Chunk:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def endpoint(chain: Handler, state: ServerState | None = None, limit: int | None = 1024) -> Endpoint:
    return Endpoint(openai_api.CHAT, chain, state or ServerState(), max_body_bytes=limit, deadline_seconds=60)


def terminal_returning(result: Result) -> Handler:
    async def terminal(ctx: RequestContext) -> Result:
        return result

    return terminal


async def run(chain: Handler, client: Client, state: ServerState | None = None) -> None:
    """One request through an endpoint with ``chain``, as the ASGI server would call it."""
    await endpoint(chain, state)(client.scope(), client.receive, client.send)
