"""Pieces every provider mock uses: JSON bodies, controls from a request, streamed replies."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from switchboard.mock.capture import MockDisconnect
from switchboard.mock.controls import Controls, controls_for

log = logging.getLogger("uvicorn.error")


class StreamStats:
    """Counts of streamed answers, served at GET /_mock/stats so tests can see cancellations.

    Process-wide on purpose: the mock is a development tool with one app per process.
    """

    def __init__(self) -> None:
        self.started = 0
        self.completed = 0
        self.cancelled = 0

    def as_dict(self) -> dict[str, int]:
        return {"started": self.started, "completed": self.completed, "cancelled": self.cancelled}


STATS = StreamStats()


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


async def read_json(request: Request) -> Any:
    """The parsed body, or None when it is not valid JSON."""
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def request_controls(request: Request, body: Any) -> Controls:
    defaults: Controls = request.app.state.controls
    return controls_for(defaults, dict(request.headers), body)


def in_parallel(first: Any, declared: list[Any], c: Controls) -> list[Any]:
    """The tools one turn calls: ``first``, then (``parallel_calls=N``) the other declared ones
    in turn until N calls, repeating when there are fewer tools than calls."""
    order = [first, *(d for d in declared if d != first)]
    return [order[k % len(order)] for k in range(max(1, c.parallel_calls))]


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


async def paced(
    controls: Controls, events: list[bytes], error_event: Callable[[], bytes]
) -> AsyncIterator[bytes]:
    """Yield events with the controls' pacing and faults applied."""
    STATS.started += 1
    finished = False
    try:
        await controls.sleep(controls.ttft_ms)
        for i, event in enumerate(events):
            if i == controls.fail_after:
                yield error_event()
                finished = True
                return
            if i == controls.disconnect_after:
                finished = True
                log.info("mock: dropping the connection after %d chunk(s) (disconnect_after)", i)
                raise MockDisconnect("mock: dropping the connection mid-stream")
            if i and controls.chunk_delay_ms:
                await controls.sleep(controls.chunk_delay_ms)
            yield event
        finished = True
    finally:
        if finished:
            STATS.completed += 1
        else:
            STATS.cancelled += 1


def stream_response(
    controls: Controls,
    events: list[bytes],
    error_event: Callable[[], bytes],
    media_type: str = "text/event-stream",
) -> StreamingResponse:
    return StreamingResponse(paced(controls, events, error_event), media_type=media_type)


def error_as_json(controls: Controls, body: Any, fault: Response) -> Response:
    """``fault`` (an injected error answer), or with ``stream_json=1`` on a stream request the
    same body with status 200, as servers that fail a stream in a JSON body do."""
    if controls.stream_json and isinstance(body, dict) and body.get("stream"):
        fault.status_code = 200
    return fault


async def before_answer(controls: Controls) -> None:
    """Wait as the controls ask. A caller that leaves ends the wait (see capture.MockMiddleware)."""
    if controls.hang:
        await asyncio.sleep(300)
    await controls.sleep(controls.latency_ms)


def served_tier(body: dict[str, Any]) -> dict[str, Any]:
    """The service tier a request asking for one is served in, as OpenAI reports it on a
    completion and every chunk, and on a Response: ``auto`` is served in the project's default
    tier."""
    asked = body.get("service_tier")
    return {} if asked is None else {"service_tier": "default" if asked == "auto" else asked}
