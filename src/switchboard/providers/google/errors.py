"""Google API errors -> gateway errors.

Google answers ``{"error": {"code": 429, "message": "...", "status": "RESOURCE_EXHAUSTED",
"details": [...]}}``, sometimes wrapped in a one-element list, or, from the proxies in front of
Google's APIs, the bare ``google.rpc.Status`` (``{"code": 8, "message": ..., "details": ...}``).
Three quirks are handled here before the shared mapping in ``providers/errors.py``:

* an invalid Gemini API key is reported as 400 INVALID_ARGUMENT with reason ``API_KEY_INVALID``:
  it is an upstream authentication failure, not the client's bad request;
* the retry hint of a 429 comes as ``google.rpc.RetryInfo.retryDelay`` ("37s"), not a header:
  it becomes ``Retry-After`` (unless a valid ``Retry-After`` header came too);
* prompts over the model's input limit are a plain INVALID_ARGUMENT: recognised by message and
  given code ``context_length_exceeded``.

References: https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes,
https://cloud.google.com/apis/design/errors#error_model (status names, RetryInfo, ErrorInfo).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import orjson

from switchboard.errors import GatewayError
from switchboard.providers.errors import (
    loads,
    retry_after_headers,
    text_message,
    upstream_error,
)
from switchboard.providers.target import Target

JSON = dict[str, Any]

STATUS_BY_NAME = {
    "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400, "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499, "UNKNOWN": 500, "INTERNAL": 500, "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
}
_AUTH_REASONS = {"API_KEY_INVALID", "API_KEY_EXPIRED", "ACCESS_TOKEN_EXPIRED", "CREDENTIALS_MISSING"}
_CONTEXT_LENGTH = re.compile(
    r"input token count|exceeds the maximum number of tokens|too many (input )?tokens"
    r"|context (length|window)",
    re.IGNORECASE,
)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def _body_object(body: bytes) -> JSON | None:
    """The JSON object of an error body: the first element when Google wrapped it in an array
    (the JSON-array stream of ``streamGenerateContent`` without ``alt=sse``)."""
    try:
        value = loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(value, list) and value:
        value = value[0]
    return value if isinstance(value, dict) else None


def _error_member(value: JSON | None) -> JSON | None:
    err = value.get("error") if value is not None else None
    return err if isinstance(err, dict) else None


def error_object(body: bytes) -> JSON | None:
    """The ``error`` member of a Google error body, or None when the body is not one."""
    return _error_member(_body_object(body))


def google_error(status: int, headers: Mapping[str, str], body: bytes, target: Target) -> GatewayError:
    value = _body_object(body)
    err = _error_member(value)
    if err is None and value is not None and isinstance(value.get("message"), str):
        # A bare google.rpc.Status, as Google's API proxies (ESP, API Gateway) answer: its
        # ``code`` is a gRPC code number, never read here since the HTTP status is known.
        err = value
    if err is None:
        # Google's front end answers some failures with an HTML page of its own (a 404 for an
        # unknown path, a 502), as a proxy in front of the API may: its words are the message.
        text = text_message(body) if value is None else None
        return upstream_error(status, headers, target, text)
    return from_error_object(err, status, headers, target)


def from_error_object(err: JSON, status: int, headers: Mapping[str, str], target: Target) -> GatewayError:
    """Map one Google ``error`` object; ``status`` is the HTTP status (or 0 mid-stream)."""
    name = err.get("status") if isinstance(err.get("status"), str) else None
    if not status:
        status = _int(err.get("code")) or STATUS_BY_NAME.get(name or "", 502)
    message = err.get("message") if isinstance(err.get("message"), str) and err["message"] else None
    details = [d for d in err.get("details") or [] if isinstance(d, dict)]
    if _is_auth_failure(status, name, message, details):
        status = 401
    carried = {k.lower(): v for k, v in headers.items()}
    retry = _retry_after(details)
    # The RetryInfo unless a valid Retry-After came: a garbage one is dropped (upstream_error),
    # which must not take the RetryInfo's hint away with it. Error path only.
    if status == 429 and retry and "retry-after" not in retry_after_headers(carried):
        carried["retry-after"] = retry
    code = name.lower() if name else None
    if status == 400 and message and _CONTEXT_LENGTH.search(message):
        code = "context_length_exceeded"
    return upstream_error(status, carried, target, message, code=code)


def _is_auth_failure(status: int, name: str | None, message: str | None, details: list[JSON]) -> bool:
    if status in (401, 403) or name in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return True
    if any(d.get("reason") in _AUTH_REASONS for d in details):
        return True
    return bool(message and "API key not valid" in message)


def _retry_after(details: list[JSON]) -> str | None:
    for d in details:
        if str(d.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _DURATION.match(str(d.get("retryDelay", "")))
            if match:
                return str(max(1, math.ceil(float(match.group(1)))))
    return None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
