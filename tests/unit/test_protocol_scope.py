"""What the application is handed by the edge's HTTP protocol (http/protocol.py), which builds a
request's scope and cycle itself rather than through uvicorn's ``on_headers_complete``: the same
scope (keys, their order, values) and a cycle with the same state as uvicorn's own protocol gives,
for the request shapes that take different paths there (HTTP/1.0, ``connection: close``,
``Expect: 100-continue``, a percent-encoded path with a query, a root path, a second request on a
kept-alive connection)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from switchboard.http.cycle import GatewayCycle, new_cycle
from switchboard.http.protocol import GatewayHttpProtocol

SOON = 5.0  # bounds a wait for an event that happens at once
# The cycle's attributes that are plain values (the rest are the connection's objects).
PLAIN = ("access_log", "disconnected", "keep_alive", "waiting_for_100_continue", "body",
         "more_body", "response_started", "response_complete", "chunked_encoding",
         "expected_content_length")


class Recorder:
    """Records each request's scope as (key, value) pairs, its cycle's attributes, and answers."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        cycle = receive.__self__
        items = [(k, v) for k, v in scope.items() if k not in ("client", "server", "state")]
        self.seen.append({
            "scope": items,
            "client": scope["client"][0],
            "server": scope["server"][0],
            "state": scope["state"],
            "cycle": [(name, getattr(cycle, name)) for name in PLAIN],
            "default_headers": [name for name, _ in cycle.default_headers],  # the date changes
            "attributes": list(vars(cycle)),
        })
        message = await receive()
        body = message.get("body", b"")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def serving(protocol: type[HttpToolsProtocol]) -> AsyncIterator[tuple[Recorder, int]]:
    recorder = Recorder()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    config = uvicorn.Config(recorder.app, http=protocol, loop="none", lifespan="off", interface="asgi3",
                            log_level="warning", access_log=False, root_path="/gw")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield recorder, sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, SOON)


HEADS = {
    "keep-alive twice": [
        b"POST /v1/a%20b?x=1&y=%41 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nX-Name: v \r\n\r\nhi",
        b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n",
    ],
    "connection-close": [b"POST /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi"],
    "http-1.0": [b"POST /old HTTP/1.0\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi"],
    "expect-100": [b"POST /e HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"],
}


async def served_by(protocol: type[HttpToolsProtocol], requests: list[bytes]) -> list[dict[str, Any]]:
    async with serving(protocol) as (recorder, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for head in requests:
            writer.write(head)
            if b"100-continue" in head:
                interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), SOON)
                assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
                writer.write(b"hi")
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), SOON)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            length = int(answer.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await asyncio.wait_for(reader.readexactly(length), SOON)
        writer.close()
        await writer.wait_closed()
        return recorder.seen


@pytest.mark.parametrize("requests", list(HEADS.values()), ids=list(HEADS))
async def test_the_application_sees_the_scope_and_cycle_uvicorn_gives(requests: list[bytes]) -> None:
    ours = await served_by(GatewayHttpProtocol, requests)
    theirs = await served_by(HttpToolsProtocol, requests)

    assert len(ours) == len(theirs) == len(requests)
    for mine, uvicorns in zip(ours, theirs, strict=True):
        assert mine["scope"] == uvicorns["scope"]
        assert mine["client"] == mine["server"] == uvicorns["client"] == uvicorns["server"] == "127.0.0.1"
        assert mine["state"] == uvicorns["state"] == {}
        assert mine["cycle"] == uvicorns["cycle"]
        assert mine["default_headers"] == uvicorns["default_headers"] == [b"date", b"server"]
        assert mine["attributes"][: len(uvicorns["attributes"])] == uvicorns["attributes"]
    assert dict(ours[0]["scope"])["path"].startswith("/gw/")  # the root path is in play
    if len(ours) == 2:  # each request its own state
        assert ours[0]["state"] is not ours[1]["state"]


def test_a_new_cycle_has_the_attributes_uvicorn_sets_in_its_order() -> None:
    # new_cycle copies RequestResponseCycle.__init__: a uvicorn upgrade adding an attribute
    # fails here rather than in a request.
    args: dict[str, Any] = {
        "scope": {}, "transport": object(), "flow": object(), "logger": object(), "access_logger": object(),
        "access_log": False, "default_headers": [], "message_event": object(), "expect_100_continue": True,
        "keep_alive": True, "on_response": object(),
    }
    uvicorns = RequestResponseCycle(**args)
    ours = new_cycle(*args.values())

    assert type(ours) is GatewayCycle
    assert list(vars(ours)) == list(vars(uvicorns))
    assert vars(ours) == vars(uvicorns)
