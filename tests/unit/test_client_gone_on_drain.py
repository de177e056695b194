"""A relay whose send is waiting for a slow client to take what is buffered, when that client
leaves, stops at that very send (http/cycle.py, and the HTTP/1.0 send in http/protocol.py): the
send raises ClientGone, marked as raised by a send, and no further upstream piece is read.
uvicorn's own send ends its wait on the connection's loss and then drops the part quietly, so a
relay read one more piece before its next send noticed.

uvicorn with the gateway's protocol runs in the test's loop on a real socket; the application
relays numbered pieces without end, as a stream from a fast upstream. The client has a small
receive buffer and reads nothing, so the server's buffer fills and the send waits; the client
then closes with the answer unread (the kernel resets the connection)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from switchboard.http.disconnect import ClientGone
from tests.unit.test_protocol_cycles import SOON, Server, serving

PIECE = b"x" * 65536


class Relay(Server):
    """Sends a piece after piece; ``read`` counts the pieces taken from the "upstream",
    ``waiting`` is set as a send is made with the connection's buffer full (it will wait),
    ``ended`` once the relay stopped, with what stopped it in ``stop``."""

    def __init__(self) -> None:
        super().__init__()
        self.read = 0
        self.read_when_waiting = 0
        self.waiting = asyncio.Event()
        self.ended = asyncio.Event()
        self.stop: BaseException | None = None

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        flow = receive.__self__.flow
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        try:
            while True:
                self.read += 1  # the next upstream piece
                if flow.write_paused and not self.waiting.is_set():
                    self.read_when_waiting = self.read
                    self.waiting.set()
                await send({"type": "http.response.body", "body": PIECE, "more_body": True})
        except ClientGone as exc:
            self.stop = exc
        finally:
            self.ended.set()


@pytest.mark.parametrize("version", ["1.1", "1.0"])
async def test_a_send_waiting_on_a_client_that_leaves_raises_client_gone(version: str) -> None:
    async with serving(Relay()) as (relay, port):
        assert isinstance(relay, Relay)
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(client, ("127.0.0.1", port))
            client.send(f"GET /stream HTTP/{version}\r\nHost: test\r\n\r\n".encode())
            # The send now waiting for the client to take what is buffered: the client leaves.
            await asyncio.wait_for(relay.waiting.wait(), SOON)
            assert not relay.ended.is_set()
        finally:
            client.close()
        await asyncio.wait_for(relay.ended.wait(), SOON)

    # The waiting send raised, as a send: no further piece was read.
    assert isinstance(relay.stop, ClientGone) and relay.stop.on_send
    assert relay.read == relay.read_when_waiting
