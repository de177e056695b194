"""Gateway errors in Google's error shape.

Reference: https://ai.google.dev/gemini-api/docs/troubleshooting and
https://cloud.google.com/apis/design/errors — the body is
``{"error": {"code": <HTTP status>, "message": ..., "status": <canonical code name>}}``. A
``Retry-After`` the gateway sends with a 429 or 503 is repeated as a ``google.rpc.RetryInfo``
detail, which the Gemini CLI reads for its back-off.
"""

from __future__ import annotations

from typing import Any

import orjson

from switchboard.errors import GatewayError

# HTTP status -> google.rpc.Code name, as Google's HTTP <-> RPC mapping (other 4xx:
# FAILED_PRECONDITION, as 417's unmet Expect is, the kin of 412's). Statuses Google never sends
# (408, 413, 415, 431, 502) take the name closest in meaning: a request or its headers too large
# is an invalid argument whatever the server's state, a request that stopped arriving a deadline
# that passed (which Google's clients retry, as a 408 may be); the HTTP status itself is kept.
STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    417: "FAILED_PRECONDITION",
    422: "INVALID_ARGUMENT",
    431: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


def status_name(status: int) -> str:
    found = STATUS_NAMES.get(status)
    if found is not None:
        return found
    return "FAILED_PRECONDITION" if 400 <= status < 500 else "INTERNAL"


def status_body(status: int, message: str) -> dict[str, Any]:
    """The error body of ``status`` saying ``message``."""
    return {"error": {"code": status, "message": message, "status": status_name(status)}}


def error_body(err: GatewayError) -> dict[str, Any]:
    body = status_body(err.status, err.message)
    error = body["error"]
    retry_after = {k.lower(): v for k, v in err.headers.items()}.get("retry-after")
    # An upstream's value, read as latin-1: isdigit alone takes '\xb2' ('²'), which int() refuses.
    if retry_after is not None and retry_after.isascii() and retry_after.isdigit():
        error["details"] = [{"@type": _RETRY_INFO, "retryDelay": f"{int(retry_after)}s"}]
    return body


def encode_error(err: GatewayError) -> bytes:
    return orjson.dumps(error_body(err))


def stream_error(err: GatewayError) -> bytes:
    """The event that ends a stream under way: Gemini sends the error object as an SSE data line."""
    return b"data: " + encode_error(err) + b"\r\n\r\n"
