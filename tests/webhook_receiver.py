"""A webhook receiver for the tests: a real HTTP server on a free port of 127.0.0.1, served by
aiohttp on a thread of its own (so the gateway under test, in this process or another, POSTs to
it over TCP), recording every request.

    with WebhookReceiver(responses=[500, 500]) as hooks:   # two failures, then 200
        ... configure budgets.webhook.url = hooks.url ...
        first, second, third = hooks.wait_for(3, timeout=10)   # from a plain test
        await hooks.await_requests(3, timeout=10)              # from an async test

``responses`` scripts the answers to the first requests, in order: a status, or ``HANG`` to
answer nothing until the receiver stops (a receiver that times out); after the script, every
request gets ``then`` (200 by default, may be ``HANG`` too). ``response_body`` replaces the small
JSON body of every answer (e.g. megabytes, for a receiver that talks too much); ``retry_after``
is sent as the ``Retry-After`` header of every answer that is not a 2xx. ``respond()``
changes the script while the receiver runs; ``clear()`` forgets the requests recorded so far.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

HANG = None  # in a script: answer nothing until the receiver stops
Response = int | None


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it: header names in lower case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival
    answered: Response  # the status sent back, or HANG

    def json(self) -> Any:
        return orjson.loads(self.body)


class WebhookReceiver:
    def __init__(
        self,
        responses: Sequence[Response] = (),
        then: Response = 200,
        path: str = "/hook",
        response_body: bytes | None = None,
        retry_after: str | None = None,
    ) -> None:
        self.path = path
        self.response_body = response_body
        self.retry_after = retry_after
        self._script = list(responses)
        self._then = then
        self._answered = 0  # requests answered from the script so far
        self._requests: list[Received] = []
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    # -- life ---------------------------------------------------------------------------------

    def start(self) -> WebhookReceiver:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._release = asyncio.Event()
                app = web.Application()
                app.router.add_route("*", "/{tail:.*}", self._handle)
                self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
                loop.run_until_complete(self._runner.setup())
                loop.run_until_complete(web.SockSite(self._runner, self._sock).start())
            except BaseException as exc:  # handed to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="webhook-receiver", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the webhook receiver did not start within 10 s")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        release = self._release
        if release is not None:
            loop.call_soon_threadsafe(release.set)  # hanging handlers return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviour ------------------------------------------------------------------------------

    def respond(self, responses: Sequence[Response] = (), then: Response = 200) -> None:
        """Answer the next requests with ``responses`` in order, then with ``then``."""
        with self._changed:
            self._script = list(responses)
            self._answered = 0
            self._then = then

    def clear(self) -> None:
        with self._changed:
            self._requests.clear()

    def _next_response(self) -> Response:
        with self._changed:
            if self._answered < len(self._script):
                self._answered += 1
                return self._script[self._answered - 1]
            return self._then

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        answer = self._next_response()
        received = Received(
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            at=time.monotonic(),
            answered=answer,
        )
        with self._changed:
            self._requests.append(received)
            self._changed.notify_all()
        if answer is HANG:
            assert self._release is not None
            await self._release.wait()
            return web.Response(status=503)
        headers = {"retry-after": self.retry_after} if self.retry_after and not 200 <= answer < 300 else {}
        if 300 <= answer < 400:  # somewhere else: a client that follows redirects would go there
            return web.Response(status=answer, headers={"location": "/redirected", **headers})
        if self.response_body is not None:
            return web.Response(status=answer, body=self.response_body, content_type="text/plain",
                                headers=headers)
        return web.json_response({"ok": 200 <= answer < 300}, status=answer, headers=headers)

    # -- what was received ------------------------------------------------------------------------

    @property
    def requests(self) -> list[Received]:
        with self._changed:
            return list(self._requests)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """The first ``count`` requests, once they arrived; AssertionError after ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._requests) >= count, timeout):
                raise AssertionError(
                    f"the webhook receiver got {len(self._requests)} request(s) within {timeout} s, "
                    f"expected {count}"
                )
            return list(self._requests[:count])

    async def await_requests(self, count: int, timeout: float = 10.0) -> list[Received]:
        """``wait_for`` without blocking the calling event loop."""
        return await asyncio.to_thread(self.wait_for, count, timeout)
