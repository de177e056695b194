"""One mapping from a provider's error status to the gateway's errors, shared by all adapters.

Adapters extract (message, type, code, param) from their provider's error body and call
:func:`upstream_error`; the table lives here once:

    upstream status        -> client status / type
    401, 403               -> 502 api_error, code upstream_authentication_failed (a gateway
                              configuration problem; the credential is never echoed)
    402, or a billing code  -> same status (402, or 429 as OpenAI sends insufficient_quota),
    (BILLING_CODES)           type insufficient_quota, the provider's code or
                              insufficient_quota, x-should-retry: false (error class billing)
    429                    -> 429 rate_limit_error, Retry-After carried over (normalised:
                              see retry_after_headers)
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

import html
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from switchboard.errors import (
    OPENAI_TYPE_BY_STATUS,
    SHOULD_RETRY,
    GatewayError,
    UpstreamAuthFailed,
    UpstreamBadGateway,
    UpstreamQuotaExhausted,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)

# Re-exported: the adapters read upstream bodies through these (jsonio.py, shared with upstream/).
from switchboard.jsonio import loads as loads
from switchboard.jsonio import loads_object as loads_object
from switchboard.providers.target import Target

# The longest wait an upstream's Retry-After is relayed as: a day, the longest the gateway's own
# rate limits ask for (a tokens-per-day limit). A longer hint is no more use to a caller.
MAX_RETRY_AFTER_SECONDS = 86_400
# A delay as upstreams write it: ASCII digits, perhaps a fraction ("1.5"). Not " 5", "-5", "1_0",
# "inf", "1e3" or other scripts' digits, which float() would also read.
_DELAY = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,20})?")
# Codes that say the provider account has no credit or quota left, whatever status carried them:
# OpenAI's 429 insufficient_quota (and billing_not_active, billing_hard_limit_reached, the latter
# a 400 from the images API), Anthropic's billing_error (402). A 402 is one whatever its code
# (OpenRouter: "Insufficient credits").
BILLING_CODES = frozenset({"insufficient_quota", "billing_error", "billing_not_active",
                           "billing_hard_limit_reached"})
# How much of an error body in plain text is shown to the caller: its first line or two (a server
# may answer with a whole page, or quote the request back).
MAX_TEXT_MESSAGE_CHARS = 500
_TAG = re.compile(r"<[^<>]*>")
# What a page holds that is not its words: comments, and scripts and style sheets (Google's front
# end error page starts with a kilobyte of CSS), to the end of the text when cut short.
_NOT_WORDS = re.compile(r"<!--.*?(?:-->|$)|<(script|style)\b.*?(?:</\1\s*>|$)", re.IGNORECASE | re.DOTALL)


def retry_after_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The ``retry-after`` and ``retry-after-ms`` of an upstream's error answer, as the gateway
    relays them: a whole, non-negative number of seconds (milliseconds), fractions rounded up,
    at most ``MAX_RETRY_AFTER_SECONDS``; an HTTP date becomes the seconds from now to it (0 once
    past). A value that is neither is dropped: the SDKs would read "abc" or "-5" as no hint at
    all, or "0.001" as a zero wait, and the router reads these same headers. Error path only."""
    carried = {}
    if (value := headers.get("retry-after")) is not None:
        seconds = _delay(value, MAX_RETRY_AFTER_SECONDS)
        if seconds is None:
            seconds = _seconds_until(value)
        if seconds is not None:
            carried["retry-after"] = str(seconds)
    if (value := headers.get("retry-after-ms")) is not None:
        ms = _delay(value, MAX_RETRY_AFTER_SECONDS * 1000)
        if ms is not None:
            carried["retry-after-ms"] = str(ms)
    return carried


def _delay(value: str, most: int) -> int | None:
    text = value.strip()
    if not _DELAY.fullmatch(text):
        return None
    return min(most, math.ceil(float(text)))


def _seconds_until(value: str) -> int | None:
    """An HTTP date's seconds from now (0 once past, at most the maximum), or None."""
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, as RFC 5322 reads it
        when = when.replace(tzinfo=UTC)
    seconds = math.ceil((when - datetime.now(UTC)).total_seconds())
    return min(MAX_RETRY_AFTER_SECONDS, max(0, seconds))


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
    carried = retry_after_headers(headers)
    if status in (401, 403):
        return UpstreamAuthFailed(
            f"{where} rejected the gateway's credentials (HTTP {status}); check the provider configuration"
        )
    if status == 402 or (code in BILLING_CODES and 400 <= status < 500):
        # Nothing succeeds before someone pays: the SDKs must not retry it (they would a 429).
        return UpstreamQuotaExhausted(text, status=status, code=code or "insufficient_quota",
                                      headers={**carried, SHOULD_RETRY: "false"})
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


def text_message(body: bytes) -> str | None:
    """An error body that is not JSON (TGI's and Ollama's plain text, a proxy's or load balancer's
    HTML page) as one line of its words, cut at MAX_TEXT_MESSAGE_CHARS; None when it holds none.
    The body reached the adapter with its credentials scrubbed already (upstream/client.py)."""
    text = body[: MAX_TEXT_MESSAGE_CHARS * 8].decode("utf-8", "replace").removeprefix("\ufeff")
    if text.lstrip().startswith("<"):
        text = html.unescape(_TAG.sub(" ", _NOT_WORDS.sub(" ", text)))
    words = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if len(words) > MAX_TEXT_MESSAGE_CHARS:
        words = words[:MAX_TEXT_MESSAGE_CHARS].rstrip() + "…"
    return words or None


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


# The path an older OpenAI or Azure validation error ends its message with, as jsonschema writes
# one, when it carries no param: "'content' is a required property - 'messages.2'".
_TRAILING_PATH = re.compile(r" - '(messages(?:\.\w+)*)'\.?$")


def openai_param(param: str | None, message: str | None) -> str | None:
    """An OpenAI-type error's param: its own (without the quotes some hosts wrap it in,
    ``"'messages.[0].content'"``), else the message path its message ends with (named then as
    any upstream's param is, in the caller's spelling). Error path only."""
    if param is not None:
        quoted = len(param) > 2 and param[0] == param[-1] and param[0] in "'\""
        return param[1:-1] if quoted else param
    if message is None:
        return None
    found = _TRAILING_PATH.search(message)
    return None if found is None else found[1]


def invalid_body(target: Target, what: str = "response") -> UpstreamBadGateway:
    return UpstreamBadGateway(f"provider '{target.provider}' sent an invalid {what}")
