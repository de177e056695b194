"""An asyncio server on 127.0.0.1 running its own event loop in a thread: the base of the test
servers that write exact bytes (tests/raw_upstream.py, tests/egress_servers.py) and of anything
else a test needs in front of or instead of a real server."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from tests.servers import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]


class ThreadedServer:
    """Serves ``handler`` on 127.0.0.1:``port`` (a free one) until :meth:`stop`. ``quiet``: the
    loop's unhandled errors are not printed (a refused TLS handshake is an outcome, not noise).
    ``receive_buffer``: each connection's socket receive buffer, set before the handshake (so
    its window is small from the start)."""

    def __init__(self, handler: Handler, context: ssl.SSLContext | None = None, quiet: bool = False,
                 name: str = "test server", receive_buffer: int | None = None) -> None:
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        if quiet:
            self._loop.set_exception_handler(lambda loop, context: None)
        self._server: asyncio.Server | None = None
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            if receive_buffer is None:
                serving = asyncio.start_server(handler, "127.0.0.1", self.port, ssl=context)
            else:
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
                sock.bind(("127.0.0.1", self.port))
                serving = asyncio.start_server(handler, sock=sock, ssl=context)
            self._server = self._loop.run_until_complete(serving)
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise TimeoutError(f"the {name} did not start")

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
