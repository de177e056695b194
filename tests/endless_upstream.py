"""An upstream that writes without end, as fast as it is read: chat events, speech audio, image
events (partial images), a file's content and a service's body. For the edge tests of clients
that stall or leave.

It counts what it wrote (``written``), the answers it started and finished (a finished one: its
connection was dropped by the gateway), and sets ``ended`` each time one finishes. Each answer
is also kept in ``answers`` (in the order they started) with its own count, and
:meth:`EndlessUpstream.blocked` says whether answers are held by the gateway, read from their
connections' flow control rather than from a pause in the counts.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.base_protocol import BaseProtocol

from tests.servers import free_port

MIB = 1024 * 1024
CHUNK = ("data: " + json.dumps({
    "id": "chatcmpl-endless", "object": "chat.completion.chunk", "created": 1, "model": "endless",
    "choices": [{"index": 0, "delta": {"content": "words of text " * 30}, "finish_reason": None}],
}) + "\n\n").encode()
SSE_BLOCK = CHUNK * 32
# OpenAI's streamed image generation: partial image events, each with its base64 image.
IMAGE_EVENT = ("event: image_generation.partial_image\ndata: " + json.dumps({
    "type": "image_generation.partial_image", "b64_json": "A" * 8192, "partial_image_index": 0,
    "created_at": 1, "size": "1024x1024", "quality": "low", "background": "opaque", "output_format": "png",
}) + "\n\n").encode()
IMAGE_BLOCK = IMAGE_EVENT * 8
RAW_BLOCK = b"\0" * 65536
ENDLESS = 16 * 1024 * MIB  # what one answer writes at most: far more than any test's bound


@dataclass
class Answer:
    """One answer being written: what it wrote, whether it ended, and its connection (whose
    ``writing_paused`` is asyncio's flow control: the kernel's send buffer is full and more than
    the high-water mark waits in the transport, so the answer's next write waits for the gateway
    to read)."""

    protocol: BaseProtocol | None
    written: int = 0
    finished: bool = False

    @property
    def held(self) -> bool:
        """Ended, or waiting for the gateway to read: it writes nothing until the gateway does."""
        return self.finished or (self.protocol is not None and self.protocol.writing_paused)


class EndlessUpstream:
    """The upstream, on a free port in its own thread. ``send_buffer``: the socket send buffer
    of each answer (small: what it writes is what the gateway reads, not buffers filling)."""

    def __init__(self, send_buffer: int | None = None) -> None:
        self.port = free_port()
        self.written = 0
        self.started = 0
        self.finished = 0
        self.ended = threading.Event()
        self.answers: list[Answer] = []  # appended in the server's thread, in the order started
        self._send_buffer = send_buffer
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        threading.Thread(target=self._run, daemon=True).start()
        if not self._ready.wait(10):
            raise TimeoutError("the endless upstream did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self, **extra: Any) -> dict[str, Any]:
        """A gateway config with models, files and a service on this upstream; ``extra``: more
        top-level sections."""
        return {
            "providers": [{"name": "fast", "type": "openai", "api_base": f"{self.url}/v1",
                           "api_key": "sk-endless"}],
            "models": [
                {"name": "fast-chat", "provider": "fast", "model": "endless"},
                {"name": "fast-tts", "provider": "fast", "model": "tts-1",
                 "info": {"mode": "audio_speech", "input_cost_per_mchar": 15}},
                {"name": "fast-image", "provider": "fast", "model": "gpt-image-1",
                 "info": {"mode": "image_generation"}},
            ],
            "files": {"provider": "fast"},
            "services": [{"name": "bulk", "url": f"{self.url}/svc", "max_response_bytes": 1024 * MIB,
                          "timeout_seconds": {"connect": 5, "total": 3600}}],
            "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
            **extra,
        }

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/audio/speech", self._speech)
        app.router.add_post("/v1/images/generations", self._images)
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files/{id}/content", self._content)
        app.router.add_get("/svc/{tail:.*}", self._service)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def blocked(self, since: int = 0) -> bool:
        """Whether every answer from the ``since``-th started on is held (see :attr:`Answer.held`),
        at one instant: looked at in the server's own thread, between its writes."""

        async def look() -> bool:
            return all(answer.held for answer in self.answers[since:])

        return asyncio.run_coroutine_threadsafe(look(), self._loop).result(30)

    def stop(self) -> None:
        async def cleanup() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _endless(self, request: web.Request, content_type: str, block: bytes) -> web.StreamResponse:
        if request.can_read_body:
            await request.read()
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        await resp.prepare(request)
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None and self._send_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer)
        answer = Answer(request.protocol)
        self.answers.append(answer)
        self.started += 1
        try:
            for _ in range(ENDLESS // len(block)):
                await resp.write(block)
                self.written += len(block)
                answer.written += len(block)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the gateway dropped the connection
        finally:
            answer.finished = True
            self.finished += 1
            self.ended.set()
        return resp

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._endless(request, "text/event-stream", SSE_BLOCK)

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        return await self._endless(request, "audio/mpeg", RAW_BLOCK)

    async def _images(self, request: web.Request) -> web.StreamResponse:
        return await self._endless(request, "text/event-stream", IMAGE_BLOCK)

    async def _content(self, request: web.Request) -> web.StreamResponse:
        return await self._endless(request, "application/octet-stream", RAW_BLOCK)

    async def _service(self, request: web.Request) -> web.StreamResponse:
        return await self._endless(request, "application/octet-stream", RAW_BLOCK)

    async def _upload(self, request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"id": "file-endless1", "object": "file", "bytes": 3, "created_at": 1,
                                  "filename": "a.jsonl", "purpose": "batch", "status": "processed"})
