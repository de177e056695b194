"""Bedrock errors -> gateway errors, for HTTP error answers and for exception frames mid-stream.

Reference: the "Errors" sections of API_runtime_Converse / API_runtime_ConverseStream
(https://docs.aws.amazon.com/bedrock/latest/APIReference/). restJson1 errors carry the type in the
``x-amzn-ErrorType`` header (``Name:namespace``) or the body's ``__type`` / ``code``, and the text
in ``message`` (sometimes ``Message``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from switchboard.errors import GatewayError, UpstreamBadGateway
from switchboard.providers.errors import loads_object, text_message, upstream_error
from switchboard.providers.target import Target

# Exception name -> HTTP status, for exception frames (which carry no status) and bodies without one.
STATUS_BY_TYPE = {
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "UnrecognizedClientException": 403,
    "InvalidSignatureException": 403,
    "ExpiredTokenException": 403,
    "MissingAuthenticationTokenException": 403,
    "IncompleteSignatureException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ThrottlingException": 429,
    "ServiceQuotaExceededException": 429,
    "ModelNotReadyException": 503,
    "ServiceUnavailableException": 503,
    "InternalServerException": 500,
    "ModelErrorException": 502,
    "ModelStreamErrorException": 502,
}
_AUTH_TYPES = frozenset(t for t, s in STATUS_BY_TYPE.items() if s == 403)
# Wordings Bedrock (and the models behind it) use when the prompt does not fit the context window.
_CONTEXT_LENGTH = re.compile(
    r"input is too long|too many (input|total) tokens|prompt is too long|context (length|window)"
    r"|exceeds? (the )?(model'?s? )?(maximum|max) (context|input|token)|input length .* exceed"
    r"|too many tokens",
    re.IGNORECASE,
)


def error_type(headers: Mapping[str, str], body: dict[str, object] | None) -> str | None:
    raw = headers.get("x-amzn-ErrorType") or headers.get("x-amzn-errortype")
    if not raw and body:
        value = body.get("__type") or body.get("code")
        raw = value if isinstance(value, str) else None
    if not raw:
        return None
    # "ValidationException:http://internal..." or "com.amazon.coral.validate#ValidationException"
    return raw.split(":", 1)[0].rsplit("#", 1)[-1] or None


def error_message(body: dict[str, object] | None) -> str | None:
    for key in ("message", "Message"):
        value = body.get(key) if body else None
        if isinstance(value, str) and value:
            return value
    return None


def bedrock_error(
    status: int, headers: Mapping[str, str], kind: str | None, message: str | None, target: Target
) -> GatewayError:
    """One mapping for HTTP answers and stream exception frames (``status`` 0 when unknown)."""
    if kind in _AUTH_TYPES or kind in ("ModelNotReadyException", "ServiceQuotaExceededException"):
        status = STATUS_BY_TYPE[kind]
    elif not status:
        status = STATUS_BY_TYPE.get(kind or "", 502)
    if kind in ("ModelErrorException", "ModelStreamErrorException") or status == 424:
        return UpstreamBadGateway(f"provider '{target.provider}' model error: {message or kind}")
    if status == 400 and message and _CONTEXT_LENGTH.search(message):
        return upstream_error(400, headers, target, message, code="context_length_exceeded", param="messages")
    return upstream_error(status, headers, target, message)


def http_error(status: int, headers: Mapping[str, str], body: bytes, target: Target) -> GatewayError:
    obj = loads_object(body)
    # A body that is not JSON (a proxy's page, a load balancer's text) is the message itself.
    message = error_message(obj) if obj is not None else text_message(body)
    return bedrock_error(status, headers, error_type(headers, obj), message, target)


def frame_error(
    exception_type: str | None, payload: bytes | None, target: Target, message: str | None = None
) -> GatewayError:
    """An ``:message-type: exception`` (or ``error``) frame received after the 200 headers."""
    kind = exception_type[:1].upper() + exception_type[1:] if exception_type else None  # throttlingException
    if payload is not None:
        obj = loads_object(payload)
        message = error_message(obj) or (text_message(payload) if obj is None else None)
    return bedrock_error(0, {}, kind, message, target)
