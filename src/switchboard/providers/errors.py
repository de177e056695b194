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

import orjson

from switchboard.errors import (
    OPENAI_TYPE_BY_STATUS,
    GatewayError,
    UpstreamAuthFailed,
    UpstreamBadGateway,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from switchboard.providers.target import Target

_CARRIED_HEADERS = ("retry-after", "retry-after-ms")


def loads_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


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


def invalid_body(target: Target, what: str = "response") -> UpstreamBadGateway:
    return UpstreamBadGateway(f"provider '{target.provider}' sent an invalid {what}")
