"""Process-wide serving state the edge reads: whether the server is draining.

Draining starts with the first SIGTERM or SIGINT: ``/health/ready`` answers 503 so load balancers
stop sending new traffic, requests keep being served for ``server.drain_seconds``, then the ASGI
server stops accepting and gives in-flight requests ``server.graceful_shutdown_seconds``. A
request still running after that is ended with the inbound API's error (``server_shutting_down``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType
from typing import Any

log = logging.getLogger("switchboard.http")

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ServerState:
    def __init__(self) -> None:
        self.draining = False
        self._previous: dict[int, Any] = {}

    def install_signal_handlers(self, drain_seconds: float) -> None:
        """Wrap the ASGI server's handlers: mark draining at once, hand the signal on after
        ``drain_seconds`` (a second signal is handed on at once). Call from the event loop's
        thread, after the server installed its own handlers (lifespan start-up)."""
        loop = asyncio.get_running_loop()

        def handler(signum: int, frame: FrameType | None) -> None:
            previous = self._previous.get(signum)
            if not callable(previous):
                return
            if self.draining or drain_seconds <= 0:
                self.draining = True
                previous(signum, frame)
                return
            self.draining = True
            log.info("draining for %.1f s before shutting down", drain_seconds)
            loop.call_soon_threadsafe(loop.call_later, drain_seconds, previous, signum, None)

        for sig in _SIGNALS:
            try:
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, handler)
            except ValueError:  # not the main thread (an embedded server): leave signals alone
                return

    def restore_signal_handlers(self) -> None:
        for sig, previous in self._previous.items():
            if previous is not None:
                signal.signal(sig, previous)
        self._previous.clear()
