"""Gateway errors in the Anthropic error shape.

Reference: https://docs.anthropic.com/en/api/errors — the body is
``{"type": "error", "error": {"type": ..., "message": ...}}``; the type is the error table's
(``switchboard.errors.spec``): it follows the status, e.g. 413 request_too_large, 503
overloaded_error (the gateway never sends 529).
"""

from __future__ import annotations

from typing import Any

from switchboard.errors import GatewayError, anthropic_type


def error_type(status: int) -> str:
    return anthropic_type(status)


def error_body(err: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": anthropic_type(err.status), "message": err.message}}
