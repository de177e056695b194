"""Gateway errors in the Anthropic error shape.

Reference: https://docs.anthropic.com/en/api/errors — the body is
``{"type": "error", "error": {"type": ..., "message": ...}}`` and the type follows the status:
400 invalid_request_error (also other 4xx), 401 authentication_error, 403 permission_error,
404 not_found_error, 413 request_too_large, 429 rate_limit_error, 500 api_error,
504 timeout_error, 529 overloaded_error. The gateway answers an overloaded upstream with 503
(errors.UpstreamUnavailable), which is written as overloaded_error; it never sends 529.
"""

from __future__ import annotations

from typing import Any

from switchboard.errors import GatewayError

_TYPE_BY_STATUS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    if status in _TYPE_BY_STATUS:
        return _TYPE_BY_STATUS[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def error_body(err: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(err.status), "message": err.message}}
