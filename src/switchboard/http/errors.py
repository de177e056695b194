"""The edge's own errors: raised before any inbound API is chosen (unknown path, wrong method),
at shutdown, or for a store that cannot be reached."""

from __future__ import annotations

import asyncio
import logging
import math
import time

import aiohttp

from switchboard.errors import GatewayError, InternalError, InvalidRequest, NotFound, UpstreamBadGateway
from switchboard.stores.unavailable import unavailable
from switchboard.upstream.http1 import Http1Error

log = logging.getLogger("switchboard.http")

STORE_RETRY_AFTER = "5"  # seconds: a database restart or a Redis failover takes a few
_STORE_WARN_EVERY = 10.0  # seconds between two warnings about a store the request path lacks
# A connection to a provider lost while its answer was being read, reaching the edge as the
# client library raised it: once a stream has started, the open connection is the provider's.
_UPSTREAM_LOST = (aiohttp.ClientError, Http1Error, ConnectionResetError, BrokenPipeError,
                  asyncio.IncompleteReadError)


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


def unknown_url(method: str, path: str) -> NotFound:
    shown = path if len(path) <= 200 else path[:200] + "..."
    return NotFound(f"unknown request URL: {method} {shown}", code="unknown_url")


def websocket_refused(path: str) -> InvalidRequest:
    shown = path if len(path) <= 200 else path[:200] + "..."
    return InvalidRequest(f"WebSocket upgrades are not served (requested on {shown}); "
                          "the gateway answers plain HTTP requests only", code="websocket_not_supported")


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

    def __init__(self, message: str = "") -> None:
        super().__init__(message or "the database or Redis cannot be reached right now; try again shortly",
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

    def mid_stream(self, request_id: str, exc: Exception) -> GatewayError:
        """``error`` for a stream that failed after its response started. A cause the gateway
        handles (a gateway error, a provider's connection lost, a store out of reach; alone or
        grouped by a task group) is one warning line: the failed request's own line says the
        rest. Anything else is a fault of the code, logged with its traceback."""
        cause = _handled(exc)
        if cause is None:
            log.error("request %s: unexpected error mid-stream", request_id, exc_info=exc)
            return InternalError(f"internal error (request id {request_id})")
        if isinstance(cause, GatewayError):
            return cause
        if isinstance(cause, _UPSTREAM_LOST):
            log.warning("request %s: the stream failed: the connection to the provider was lost (%s)",
                        request_id, type(cause).__name__)
            return UpstreamBadGateway(f"the connection to the provider was lost ({type(cause).__name__})")
        return self.error(request_id, cause)  # a store out of reach: its warning, every 10 s


UNEXPECTED = Unexpected()


def _handled(exc: Exception) -> Exception | None:
    """The first cause the gateway handles in ``exc`` (itself, or the leaves of an exception
    group when every one of them is such a cause); None when any is not."""
    if isinstance(exc, ExceptionGroup):
        causes = [_handled(inner) for inner in exc.exceptions]
        return None if any(c is None for c in causes) else causes[0]
    if isinstance(exc, (GatewayError, *_UPSTREAM_LOST)) or unavailable(exc):
        return exc
    return None
