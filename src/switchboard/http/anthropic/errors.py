"""Gateway errors in the Anthropic error shape.

Reference: https://docs.anthropic.com/en/api/errors — the body is
``{"type": "error", "error": {"type": ..., "message": ...}}``; the type is the error table's
(``switchboard.errors.spec``): it follows the status, e.g. 413 request_too_large, 503
overloaded_error (the gateway never sends 529).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from switchboard.errors import GatewayError, anthropic_type

# The Messages API's paths: anything under them is an Anthropic client's request.
MESSAGES_PATH = "/v1/messages"
# The header an Anthropic client presents its key in (``Authorization: Bearer`` is taken too).
_MISSING_KEY = "missing API key: send it as 'x-api-key: <key>' (or 'Authorization: Bearer <key>')"


def error_type(status: int) -> str:
    return anthropic_type(status)


def error_body(err: GatewayError) -> dict[str, Any]:
    # The gateway's own hint names Bearer (the OpenAI APIs' header); the Anthropic SDKs send x-api-key.
    return status_body(err.status, _MISSING_KEY if err.code == "missing_api_key" else err.message)


def status_body(status: int, message: str) -> dict[str, Any]:
    """The error body of ``status`` saying ``message``."""
    return {"type": "error", "error": {"type": anthropic_type(status), "message": message}}


def from_anthropic_client(path: str, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether a request no endpoint took is an Anthropic client's, to be answered in its error
    shape: one under the Messages API's path, or one with ``anthropic-version`` (the Anthropic
    SDKs always send it; the OpenAI ones never do)."""
    if path == MESSAGES_PATH or path.startswith(MESSAGES_PATH + "/"):
        return True
    return any(name == b"anthropic-version" for name, _ in headers)
