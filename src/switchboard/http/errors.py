"""The edge's own errors: raised before any inbound API is chosen (unknown path, wrong method),
at shutdown, or for a store that cannot be reached."""

from __future__ import annotations

import logging
import math
import time

from switchboard.errors import GatewayError, InternalError, NotFound
from switchboard.stores.unavailable import unavailable

log = logging.getLogger("switchboard.http")

STORE_RETRY_AFTER = "5"  # seconds: a database restart or a Redis failover takes a few
_STORE_WARN_EVERY = 10.0  # seconds between two warnings about a store the request path lacks


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


def unknown_url(method: str, path: str) -> NotFound:
    shown = path if len(path) <= 200 else path[:200] + "..."
    return NotFound(f"unknown request URL: {method} {shown}", code="unknown_url")


class ServerShuttingDown(GatewayError):
    """The drain window ended while the request was still running."""

    status = 503
    type = "api_error"
    code = "server_shutting_down"


class StoreUnavailable(GatewayError):
    """The database or Redis could not be reached (refused, connection lost, no pooled
    connection free in time): the caller may try again shortly."""

    status = 503
    type = "api_error"
    code = "store_unavailable"

    def __init__(self) -> None:
        super().__init__("the database or Redis cannot be reached right now; try again shortly",
                         headers={"retry-after": STORE_RETRY_AFTER})


class Unexpected:
    """What the client is told of an exception no stage turned into an answer.

    A store that cannot be reached (the database restarting: a key not in the key cache must be
    read from it) is not a fault of the code: a 503 the caller may retry, logged as one warning
    every 10 s while it lasts rather than a traceback per request. Anything else is: a 500
    naming the request id, and its traceback in the log."""

    def __init__(self) -> None:
        self._warned = -math.inf

    def error(self, request_id: str, exc: Exception) -> GatewayError:
        if unavailable(exc):
            now = time.monotonic()
            if now - self._warned >= _STORE_WARN_EVERY:
                self._warned = now
                log.warning("request %s: a store is unreachable (%s); requests that need it are "
                            "answered 503 store_unavailable", request_id, type(exc).__name__)
            return StoreUnavailable()
        log.error("request %s: unexpected error", request_id, exc_info=exc)
        return InternalError(f"internal error (request id {request_id})")


UNEXPECTED = Unexpected()
