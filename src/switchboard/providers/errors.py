"""One mapping from a provider's error status to the gateway's errors, shared by all adapters.

Adapters extract (message, type, code, param) from their provider's error body and call
:func:`upstream_error`; the table lives here once:

    upstream status        -> client status / type
    401, 403               -> 502 api_error, code upstream_authentication_failed (a gateway
                              configuration problem; the credential is never echoed)
    429                    -> 429 rate_limit_error, Retry-After carried over
    413                    -> 413 invalid_request_error, the provider's code or
                              request_too_large (the caller's request is too large, whatever
                              type the provider gave it)
    other 4xx              -> same status, the provider's message, type and code
    408, 504               -> 504 timeout_error
    503, 529               -> 503 api_error, code upstream_overloaded
    499 (provider-side cancel) -> 502 api_error, code upstream_error
    other 5xx, bad bodies  -> 502 api_error, code upstream_error
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from switchboard.errors import (
    OPENAI_TYPE_BY_STATUS,
    GatewayError,
    UpstreamAuthFailed,
    UpstreamBadGateway,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)

# Re-exported: the adapters read upstream bodies through these (jsonio.py, shared with upstream/).
from switchboard.jsonio import loads as loads
from switchboard.jsonio import loads_object as loads_object
from switchboard.providers.target import Target

_CARRIED_HEADERS = ("retry-after", "retry-after-ms")


def upstream_error(
    status: int,
    headers: Mapping[str, str],
    target: Target,
    message: str | None,
    *,
    type: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> GatewayError:
    where = f"provider '{target.provider}'"
    text = message or f"{where} returned HTTP {status}"
    carried = {h: headers[h] for h in _CARRIED_HEADERS if h in headers}
    if status in (401, 403):
        return UpstreamAuthFailed(
            f"{where} rejected the gateway's credentials (HTTP {status}); check the provider configuration"
        )
    if status == 429:
        return UpstreamRateLimited(text, code=code or "rate_limit_exceeded", headers=carried)
    if status in (408, 504):
        return UpstreamTimeout(f"{where} timed out: {text}")
    if status == 499:  # the provider's "client closed request": meaningless to our client
        return UpstreamBadGateway(f"{where} cancelled the request: {text}")
    if status in (503, 529):
        return UpstreamUnavailable(f"{where} is overloaded: {text}", headers=carried)
    if status == 413:  # the caller's request: never a server_error, whatever the body said
        type, code = "invalid_request_error", code or "request_too_large"
    if 400 <= status < 500:
        error = GatewayError(
            text,
            status=status,
            type=type or OPENAI_TYPE_BY_STATUS.get(status, "invalid_request_error"),
            code=code,
            param=param,
            headers=carried,
        )
        error.from_upstream = True
        return error
    return UpstreamBadGateway(f"{where} failed with HTTP {status}: {text}")


# The HTTP status an error's type or code stands for (OpenAI's and Anthropic's names), for an
# error that came in an answer whose own status was 200 (a stream request answered with JSON).
_STATUS_BY_NAME = {
    "invalid_request_error": 400, "context_length_exceeded": 400, "authentication_error": 401,
    "invalid_api_key": 401, "billing_error": 402, "permission_error": 403, "not_found_error": 404,
    "model_not_found": 404, "request_too_large": 413, "rate_limit_error": 429,
    "rate_limit_exceeded": 429, "insufficient_quota": 429, "requests": 429, "tokens": 429,
    "server_error": 500, "api_error": 500, "timeout_error": 504, "overloaded_error": 529,
}


def error_object(body: bytes) -> dict[str, Any] | None:
    """The error a JSON body reports: its ``error`` member (an object or a string, as a one-key
    object), or the body itself when it says ``"object": "error"`` (vLLM, Mistral); None when
    the body is no error."""
    obj = loads_object(body)
    if obj is None:
        return None
    err = obj.get("error")
    if isinstance(err, dict) and err:
        return err
    if isinstance(err, str) and err:
        return {"message": err}
    return obj if obj.get("object") == "error" else None


def error_status(err: dict[str, Any]) -> int:
    """The HTTP status an error object stands for: its numeric ``code`` (some hosts put the
    status there), else what its ``type`` or ``code`` names, else 502."""
    code = err.get("code")
    if isinstance(code, str) and code.isascii() and code.isdigit():  # not '²', which int() refuses
        code = int(code)
    if isinstance(code, int) and 400 <= code <= 599:
        return code
    for name in (err.get("type"), code):
        if isinstance(name, str) and (status := _STATUS_BY_NAME.get(name)) is not None:
            return status
    return 502


def invalid_body(target: Target, what: str = "response") -> UpstreamBadGateway:
    return UpstreamBadGateway(f"provider '{target.provider}' sent an invalid {what}")
