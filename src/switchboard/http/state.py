"""Process-wide serving state the edge reads: whether the server is draining, and who counts the
requests it refuses before their stage chain runs (the metrics, when on).

Draining starts with the first SIGTERM or SIGINT: ``/health/ready`` answers 503 so load balancers
stop sending new traffic, requests keep being served for ``server.drain_seconds`` (a SIGINT ends
that at once, a repeated SIGTERM does not), then the ASGI
server stops accepting and gives in-flight requests ``server.graceful_shutdown_seconds``. A
request still running after that is ended with the inbound API's error (``server_shutting_down``).
SIGHUP is logged and ignored (see ``_ignore_hup``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

from switchboard.context import Principal, RequestContext

log = logging.getLogger("switchboard.http")

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _ignore_hup(signum: int, frame: FrameType | None) -> None:
    """SIGHUP's default action ends the process at once, dropping in-flight requests and their
    usage records. There is no in-place reload (settings are fixed at start), so a serving process
    ignores it: a logrotate hook or a closed terminal must not stop the gateway. With --workers,
    uvicorn's parent handles SIGHUP by replacing the workers one by one (each old one drains as on
    SIGTERM), with the settings validated at start."""
    log.warning("SIGHUP ignored: there is no configuration reload; restart the gateway to apply "
                "a changed config")


# Counts a request the edge answered without running its stage chain (docs/observability.md).
Unserved = Callable[[RequestContext], None]


class ServerState:
    def __init__(self, unserved: Unserved | None = None) -> None:
        self.draining = False
        # With metrics on, a request refused before its chain (413, 415, a repeated header, its
        # body timed out or its client gone while sending it; an unknown URL or method) is handed
        # here, as the chain's observe stage would have: nothing else would count it.
        self.unserved = unserved
        # The gateway's key check (pipeline/auth.py), for a request with ``Expect: 100-continue``:
        # its key is checked before the client is told to send the body (http/endpoint.py).
        self.authenticate: Callable[[dict[str, str]], Awaitable[Principal]] | None = None
        # Between the first signal and the end of drain_seconds.
        self._in_drain = False
        self._previous: dict[int, Any] = {}

    def install_signal_handlers(self, drain_seconds: float) -> None:
        """Wrap the ASGI server's handlers: mark draining at once, hand the signal on after
        ``drain_seconds``. During the drain a SIGINT is handed on at once and a repeated SIGTERM
        does nothing: with --workers, a SIGTERM sent to the process group (systemd, a terminal,
        ``tini -g``) reaches each worker twice, directly and forwarded by uvicorn's parent, and
        the operator sent one. Call from the event loop's thread, after the server installed its
        own handlers (lifespan start-up)."""
        loop = asyncio.get_running_loop()

        def stop(signum: int) -> None:
            if not self._in_drain:  # a SIGINT ended the drain already
                return
            self._in_drain = False
            self._previous[signum](signum, None)

        def handler(signum: int, frame: FrameType | None) -> None:
            previous = self._previous.get(signum)
            if not callable(previous):
                return
            if self._in_drain and signum == signal.SIGTERM:
                log.info("already draining; SIGINT stops at once")
                return
            if self.draining or drain_seconds <= 0:
                if self._in_drain:
                    # uvicorn forces its exit (no grace) on a SIGINT that finds it already
                    # stopping; during the drain it has not been told yet, so tell it twice.
                    previous(signum, frame)
                self.draining = True
                self._in_drain = False
                previous(signum, frame)
                return
            self.draining = True
            self._in_drain = True
            log.info("draining for %.1f s before shutting down", drain_seconds)
            loop.call_soon_threadsafe(loop.call_later, drain_seconds, stop, signum)

        wanted_handlers: dict[int, Any] = {**dict.fromkeys(_SIGNALS, handler), signal.SIGHUP: _ignore_hup}
        for sig, wanted in wanted_handlers.items():
            try:
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, wanted)
            except ValueError:  # not the main thread (an embedded server): leave signals alone
                return

    def restore_signal_handlers(self) -> None:
        for sig, previous in self._previous.items():
            if previous is not None:
                signal.signal(sig, previous)
        self._previous.clear()
