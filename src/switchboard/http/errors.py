"""Errors raised before any inbound API is chosen (unknown path, wrong method)."""

from __future__ import annotations

from switchboard.errors import GatewayError, NotFound


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
