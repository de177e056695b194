"""What the mock received, and how each exchange ended, so tests can check the upstream's view.

A request that carries ``mock:capture=<marker>`` in its text (or the header ``x-mock-capture``)
is recorded under that marker: method, path, query, headers (credentials redacted) and the
parsed JSON body. Each record also says how the exchange ended:

    pending              still being answered
    completed            the whole response was sent
    incomplete           the handler ended without finishing its response (a mock bug)
    client_disconnected  the caller closed the connection before the response was complete
    dropped              the mock dropped the connection on purpose (``disconnect_after``)
    shutdown             the mock was stopped while answering

An object created under a marker can be followed (:meth:`Captures.follow`): every later request
on its path (or a path right below it) is recorded under that marker too, for the calls that
carry no text of their own (a message batch's GET, cancel, delete, results).

``GET /_mock/captured/<marker>`` returns the records, oldest first; ``?outcome=X`` (or
``?count=N``) waits, at most ``timeout`` seconds (default 5), until the latest record has
that outcome (or N records exist), so a test can wait for an event without sleeping.

Every request, captured or not, goes through :class:`MockMiddleware`: it reads the body, then
watches for the caller leaving and stops the handler when it does, as a real server's
cancellation would (a ``hang`` or ``latency_ms`` wait ends when the gateway gives up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from typing import Any
from urllib.parse import unquote

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from switchboard.jsonio import BOM
from switchboard.mock import faults
from switchboard.mock.controls import Controls, controls_for

log = logging.getLogger("uvicorn.error")

MAX_MARKERS = 1024
MAX_PER_MARKER = 32
MAX_WAIT_S = 30.0
_CREDENTIAL_HEADERS = frozenset(
    {"authorization", "x-api-key", "api-key", "x-goog-api-key", "x-amz-security-token", "cookie"}
)


class MockDisconnect(Exception):
    """Raised inside a streamed body to drop the connection mid-stream."""


class Captures:
    """Recent requests by marker; bounded in markers and in records per marker."""

    def __init__(self) -> None:
        self._records: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        self._waiters: set[asyncio.Event] = set()
        self._followed: OrderedDict[str, str] = OrderedDict()  # object path -> marker

    def follow(self, path: str, marker: str) -> None:
        """Record every later request on ``path`` (or right below it) under ``marker``."""
        self._followed[path] = marker
        while len(self._followed) > MAX_MARKERS:
            self._followed.popitem(last=False)

    def followed(self, path: str) -> str:
        """The marker ``path`` (or its parent) is followed under, "" when none."""
        if not self._followed:
            return ""
        return self._followed.get(path) or self._followed.get(path.rsplit("/", 1)[0], "")

    def add(self, marker: str, record: dict[str, Any]) -> None:
        records = self._records.pop(marker, None) or deque(maxlen=MAX_PER_MARKER)
        records.append(record)
        self._records[marker] = records
        while len(self._records) > MAX_MARKERS:
            self._records.popitem(last=False)
        self.changed()

    def changed(self) -> None:
        for waiter in self._waiters:
            waiter.set()

    def get(self, marker: str) -> list[dict[str, Any]]:
        return list(self._records.get(marker, ()))

    async def until(self, marker: str, outcome: str | None, count: int) -> None:
        """Return once ``marker`` has ``count`` records and the latest has ``outcome``."""
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        try:
            while True:
                records = self.get(marker)
                if len(records) >= count and (outcome is None or records[-1]["outcome"] == outcome):
                    return
                await waiter.wait()
                waiter.clear()
        finally:
            self._waiters.discard(waiter)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _parse(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None


def _record(scope: Scope, headers: dict[str, str], body: Any) -> dict[str, Any]:
    return {
        "method": scope["method"],
        "path": scope["path"],
        "query": scope.get("query_string", b"").decode("latin-1"),
        "headers": {k: ("<redacted>" if k in _CREDENTIAL_HEADERS else v) for k, v in headers.items()},
        "body": body,
        "outcome": "pending",
        "status": None,
    }


def _with_bom(send: Send) -> Send:
    """``send`` with a UTF-8 byte order mark before the response body (``bom=1``): the
    Content-Length, when given, counts it."""
    started = False

    async def bom_first(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            headers = [(k, str(int(v) + len(BOM)).encode() if k.lower() == b"content-length" else v)
                       for k, v in message.get("headers", [])]
            message = {**message, "headers": headers}
        elif message["type"] == "http.response.body" and not started:
            started = True
            message = {**message, "body": BOM + message.get("body", b"")}
        await send(message)

    return bom_first


class MockMiddleware:
    """Reads the body, records captured requests, and stops the handler when the caller leaves."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        parts = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(parts)
        headers = _headers(scope)
        captures: Captures = scope["app"].state.captures
        body = _parse(raw)
        # Directives are read from the JSON text, or from the raw text of other bodies (forms),
        # and from the query string: a URL the gateway is configured with (a key file's
        # token_uri) carries them to requests whose headers and body the caller cannot write.
        scanned = body if body is not None else raw.decode("utf-8", "replace")
        query = unquote(scope.get("query_string", b"").decode("latin-1"))
        controls = controls_for(Controls(), headers, [scanned, query])
        marker = controls.capture or captures.followed(scope["path"])
        record = _record(scope, headers, body) if marker else {}
        if marker:
            captures.add(marker, record)
        app = self.app
        if (faulty := headers.get(faults.HEADER)) is not None:  # fault injection (faults.py)
            plan: faults.FaultPlan = scope["app"].state.faults
            if (kind := plan.decide(faulty)) is not None:
                retry_after = plan.retry_after(faulty)

                async def app(scope: Scope, receive: Receive, send: Send) -> None:
                    if await faults.inject(kind, retry_after, send):
                        raise MockDisconnect("mock: injected connection reset")

        if controls.bom:
            send = _with_bom(send)
        try:
            await self._run(app, scope, receive, send, raw, record)
        finally:
            if marker:
                captures.changed()

    async def _run(
        self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, raw: bytes, record: dict[str, Any]
    ) -> None:
        gone = asyncio.Event()
        state = {"body_sent": False, "complete": False}

        async def replay() -> Message:
            if not state["body_sent"]:
                state["body_sent"] = True
                return {"type": "http.request", "body": raw, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                record["status"] = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                state["complete"] = True
            await send(message)

        # The handler runs in a task of its own, so that stopping it when the caller leaves never
        # cancels the task uvicorn is running (which only uvicorn cancels, at shutdown).
        handler = asyncio.ensure_future(app(scope, replay, tracked))

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()
            if not state["complete"]:
                handler.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.wait({handler})
        except asyncio.CancelledError:
            # Stopped at shutdown (uvicorn cancels what outlives its grace period, then exits
            # without waiting): answer at once, before anything suspends, so uvicorn has nothing
            # to report; then stop the handler.
            record["outcome"] = "shutdown"
            with contextlib.suppress(Exception):
                if record.get("status") is None:
                    await Response("mock: shutting down", 503)(scope, replay, send)
                elif not state["complete"]:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
            handler.cancel()
            return
        finally:
            watcher.cancel()
        if handler.cancelled():  # the caller went away
            record["outcome"] = "client_disconnected"
            return
        if isinstance(error := handler.exception(), MockDisconnect):
            record["outcome"] = "dropped"
        if error is not None:
            raise error
        if state["complete"]:
            record["outcome"] = "completed"
        else:
            record["outcome"] = "client_disconnected" if gone.is_set() else "incomplete"


class QuietExpectedEvents(logging.Filter):
    """Expected mock events are not errors: no traceback for a deliberate drop, and the
    shutdown of a still-hanging request is one info line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, MockDisconnect):
            return False  # the mock already said so in one line
        if record.msg == "Cancel %s running task(s), timeout graceful shutdown exceeded":
            record.msg = "mock: ending %s unfinished request(s) at shutdown"
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, QuietExpectedEvents) for f in logger.filters):
        logger.addFilter(QuietExpectedEvents())


async def captured(request: Request) -> Response:
    captures: Captures = request.app.state.captures
    marker = request.path_params["marker"]
    query = request.query_params
    outcome = query.get("outcome") or None
    try:
        count = int(query.get("count", "1" if outcome else "0"))
        wait_s = min(max(float(query.get("timeout", "5")), 0.0), MAX_WAIT_S)
    except ValueError:
        body = orjson.dumps({"error": "count and timeout must be numbers"})
        return Response(body, 400, media_type="application/json")
    if outcome or count:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await captures.until(marker, outcome, count)
    records = captures.get(marker)
    return Response(orjson.dumps({"marker": marker, "requests": records}), media_type="application/json")
