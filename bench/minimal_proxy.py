"""The floor: the leanest Python proxy on the gateway's own stack, for comparison only.

uvicorn (uvloop, httptools), one pooled aiohttp session and orjson; it parses the body, swaps the
model, forwards, and relays the answer (streams chunk by chunk). No auth, validation, routing,
error handling or disconnect handling: what any Python gateway on this stack must at least pay.
Run by ``bench/run.py --targets direct,minimal,switchboard``.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp
import orjson

UPSTREAM = os.environ.get("MINIMAL_UPSTREAM", "http://127.0.0.1:8080")
_session: aiohttp.ClientSession | None = None


async def _lifespan(receive: Any, send: Any) -> None:
    global _session
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=512),
                headers={"Authorization": "Bearer bench-key", "Content-Type": "application/json"},
            )
            await send({"type": "lifespan.startup.complete"})
        else:
            if _session is not None:
                await _session.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    assert _session is not None
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    request = orjson.loads(body)
    stream = bool(request.get("stream"))
    request["model"] = "gpt-4o-mini"
    url = UPSTREAM + ("/stream/v1/chat/completions" if stream else "/v1/chat/completions")
    async with _session.post(url, data=orjson.dumps(request)) as resp:
        if stream:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")],
                }
            )
            async for data in resp.content.iter_any():
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        out = orjson.dumps(orjson.loads(await resp.read()))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": out})
