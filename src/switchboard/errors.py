"""The gateway's one error tree.

Every failure that reaches a client is a :class:`GatewayError`. Each subclass fixes the HTTP
status and the OpenAI error ``type``; the inbound API (OpenAI or Anthropic) decides how the
error is written on the wire. Foreign exceptions (aiohttp, orjson, pydantic) are translated at
the boundary where they occur, never in the handlers.

    GatewayError
    ├── InvalidRequest            400 invalid_request_error
    │   └── UnsupportedParameter  400 invalid_request_error  code=unsupported_parameter
    ├── AuthenticationFailed      401 authentication_error
    ├── PermissionDenied          403 permission_error
    ├── NotFound                  404 not_found_error
    │   └── ModelNotFound         404 not_found_error        code=model_not_found
    ├── Gone                      410 not_found_error        code=gone (a retired prompt API)
    ├── PayloadTooLarge           413 invalid_request_error  code=request_too_large
    ├── UnsupportedMediaType      415 invalid_request_error  code=unsupported_media_type
    ├── RateLimited               429 rate_limit_error       (the gateway's own limits)
    ├── UpstreamError             (status from the upstream) errors reported by a provider
    │   ├── UpstreamRateLimited   429 rate_limit_error       a provider's 429
    │   ├── UpstreamQuotaExhausted 402 insufficient_quota    code=insufficient_quota (the
    │   │                                                    provider account's credit or quota)
    │   ├── UpstreamBadGateway    502 api_error              code=upstream_error
    │   ├── UpstreamUnavailable   503 api_error              code=upstream_overloaded
    │   ├── UpstreamAuthFailed    502 api_error              code=upstream_authentication_failed
    │   ├── UpstreamTimeout       504 timeout_error          code=upstream_timeout
    │   ├── UpstreamUnreachable   502 api_error              code=upstream_unreachable
    │   └── UpstreamResponseTooLarge 502 api_error           code=upstream_response_too_large
    ├── InvalidModelOutput        502 api_error              code=invalid_model_output
    └── InternalError             500 api_error

The error table (``ERROR_TABLE``, ``spec``) is the one place that says, per class, what a client
receives (status, OpenAI type, Anthropic type, code), whether the router retries it by default
and whether it came from an upstream or from the gateway itself; docs/api.md prints it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple

# The official OpenAI and Anthropic SDKs retry a 429 (and a 5xx) on their own, twice by default,
# after its Retry-After, and the Anthropic SDK waits however long that is. An error that cannot
# succeed sooner than this says ``x-should-retry: false``, which both SDKs obey (they raise at
# once), rather than leave its caller asleep for the day or the month a limit or budget has left.
RETRY_SOON_SECONDS = 120
SHOULD_RETRY = "x-should-retry"
# The scope of the limit that refused a request (docs/limits.md): a caller's, or ``upstream``.
RATE_LIMIT_SCOPE = "x-ratelimit-scope"


def retry_hint(headers: dict[str, str]) -> dict[str, str]:
    """An error's ``headers``, with ``x-should-retry: false`` added when the wait they ask for
    (``retry-after-ms``, else ``Retry-After`` in seconds or as a date, as the SDKs read them) is
    longer than ``RETRY_SOON_SECONDS``. Error path only."""
    if SHOULD_RETRY in headers:
        return headers
    seconds = math.nan
    if (ms := headers.get("retry-after-ms")) is not None:
        seconds = _number(ms) / 1000
    if math.isnan(seconds) and (value := headers.get("retry-after")) is not None:
        seconds = _number(value)
        if math.isnan(seconds):
            try:
                seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
            except (TypeError, ValueError):
                return headers
    if seconds > RETRY_SOON_SECONDS:
        return {**headers, SHOULD_RETRY: "false"}
    return headers


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


class GatewayError(Exception):
    status: int = 500
    type: str = "api_error"
    code: str | None = None
    # Reported by (or about) a provider rather than decided by the gateway; see error_class().
    from_upstream: bool = False
    # A refusal by a stage after the rate limits and before anything went upstream (a budget):
    # the rate-limit stage gives back what the request took, so a refused request does not use
    # up its caller's window (pipeline/limits.py).
    spares_limits: bool = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        self.headers = headers or {}

    def to_openai(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


_CHAIN = 8  # the causes of a client library's error looked at, at most


def untraced(exc: BaseException, library: tuple[type[BaseException], ...]) -> None:
    """Drop the tracebacks of a client library's error and of its causes that are the library's
    too (``library``: its error classes), once it is translated into the gateway's own error
    (raised ``from None``, so they are never shown). aiohttp and aiohappyeyeballs keep the errors
    they raise in locals of the frames on those tracebacks (``last_exc``, ``first_exception``, a
    request body writer's error): reference cycles, which hold the request's frames too, left for
    the cyclic garbage collector otherwise. A gateway error among the causes (the caller's body
    refused while it was sent on) loses its traceback too: it is answered and logged by its
    message. The chain stops at the first cause of any other kind, a fault in the gateway's own
    code, which keeps the frames where it went wrong for the log that shows them."""
    cause: BaseException | None = exc
    for _ in range(_CHAIN):
        if cause is None or not isinstance(cause, (*library, GatewayError)):
            break
        cause.__traceback__ = None
        cause = cause.__cause__ or cause.__context__


def unraised(error: GatewayError) -> GatewayError:
    """A copy of ``error`` never raised: without its traceback, cause and context. A refusal kept
    for later (on the request, in a map) is kept and raised as such a copy: a raised error's
    traceback holds the frames it went through, and a frame holding what keeps the error (the
    request, the map) would make a reference cycle per request, left for the cyclic garbage
    collector, whose passes stall the event loop. Made without calling the class's ``__init__``
    (some take other arguments than their message), so every subclass copies."""
    copied = type(error).__new__(type(error))
    copied.args = error.args
    copied.__dict__.update(error.__dict__)
    return copied


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class Conflict(GatewayError):
    """The request clashes with the current state (a name taken, a record still in use)."""

    status = 409
    type = "invalid_request_error"
    code = "conflict"


class UnsupportedParameter(InvalidRequest):
    code = "unsupported_parameter"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"


class NotFound(GatewayError):
    status = 404
    type = "not_found_error"


class ModelNotFound(NotFound):
    code = "model_not_found"


class Gone(GatewayError):
    """What was asked for existed and was withdrawn (a retired API)."""

    status = 410
    type = "not_found_error"
    code = "gone"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UnsupportedMediaType(GatewayError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamError(GatewayError):
    """An error reported by, or about, a provider; ``status`` is what the client receives."""

    status = 502
    type = "api_error"
    code = "upstream_error"
    from_upstream = True


class UpstreamBadGateway(UpstreamError):
    pass


class UpstreamRateLimited(UpstreamError):
    """A provider's own 429: retried on another deployment, unlike the gateway's RateLimited."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        # Which limit refused, named as the gateway's own refusals name theirs (docs/limits.md):
        # the provider's, so a caller (and the metrics) can tell it from a limit of its own.
        self.headers = {**self.headers, RATE_LIMIT_SCOPE: "upstream"}


class UpstreamQuotaExhausted(UpstreamError):
    """The provider account cannot pay for any request (Anthropic's 402 ``billing_error``,
    OpenRouter's 402, OpenAI's 429 ``insufficient_quota``): not the caller's bad request and not
    a rate limit that passes in seconds. Its own error class, ``billing``: another deployment
    may serve (fallbacks), this one is cooled down, a retry on it is pointless. The status is the
    upstream's (402, or 429 as OpenAI sends it)."""

    status = 402
    type = "insufficient_quota"
    code = "insufficient_quota"


class UpstreamUnavailable(UpstreamError):
    status = 503
    code = "upstream_overloaded"


class UpstreamAuthFailed(UpstreamError):
    code = "upstream_authentication_failed"


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"


class UpstreamUnreachable(UpstreamError):
    code = "upstream_unreachable"


class UpstreamResponseTooLarge(UpstreamError):
    code = "upstream_response_too_large"


class InvalidModelOutput(GatewayError):
    """A prompt API's model answered with output its output schema refuses, repairs included."""

    status = 502
    type = "api_error"
    code = "invalid_model_output"


class InternalError(GatewayError):
    status = 500
    type = "api_error"
    code = "internal_error"


# OpenAI's own error types by status, used when an upstream 4xx body does not say.
OPENAI_TYPE_BY_STATUS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


# Anthropic's error types by status (https://docs.anthropic.com/en/api/errors); other 4xx are
# invalid_request_error, other 5xx api_error. The gateway answers an overloaded upstream with 503,
# written as overloaded_error; it never sends 529.
ANTHROPIC_TYPE_BY_STATUS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


# A parameter name that is no ordinary word (a path, or a name with an underscore): name_as_sent
# replaces it where a message writes it bare too.
_COMPOUND = re.compile(r"[._\[]")


def name_as_sent(error: GatewayError, names: Mapping[str, str] | Callable[[str], str | None],
                 spellings: Callable[[str], Sequence[str]] | None = None) -> None:
    """Name ``error``'s parameter the way the caller's API spells it (``names``: canonical name ->
    the inbound API's, or a function giving it, None to keep the name). Requests are checked, and
    OpenAI-shaped upstreams answer, in the canonical (OpenAI) form, so a refusal names ``'stop'``
    where an Anthropic caller sent ``stop_sequences``. The name in the message is replaced too:
    quoted, and bare when it is a path or has an underscore (adapters write "messages[2].x must
    be ..."; a bare word such as ``stop`` is ordinary English), where it stands as a whole name or
    starts a longer path of the same field (``messages[2]`` in ``messages[2].content``, not in
    ``messages[20]`` or ``xmessages[2]``); so is each of the path's other ``spellings`` (an
    upstream's message may write it otherwise than its param). Runs on the error path only."""
    if not error.param:
        return
    given = names(error.param) if callable(names) else names.get(error.param)
    if given is None:
        return
    if _COMPOUND.search(error.param):
        # Double quotes hold what the caller wrote ('Unknown name "max_tokens"'): left alone.
        written = (error.param, *spellings(error.param)) if spellings is not None else (error.param,)
        for name in written:
            bare = rf'(?<![\w.\["]){re.escape(name)}(?![\w"])'
            error.message = re.sub(bare, lambda _: given, error.message)
    else:
        error.message = error.message.replace(f"'{error.param}'", f"'{given}'")
    error.param = given


def anthropic_type(status: int) -> str:
    """The Anthropic error ``type`` of a client status."""
    found = ANTHROPIC_TYPE_BY_STATUS.get(status)
    if found is not None:
        return found
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


# The error classes (below) the router retries unless ``router.retry.on`` says otherwise.
RETRYABLE_CLASSES = frozenset({"rate_limit", "server_error", "timeout", "connection"})


class ErrorSpec(NamedTuple):
    """What one error is, as every part of the gateway reads it."""

    status: int  # the HTTP status the client receives
    openai_type: str
    anthropic_type: str
    code: str | None
    retryable: bool  # retried by default (its class is in RETRYABLE_CLASSES)
    source: str  # "upstream" (reported by or about a provider) or "gateway" (its own decision)


def _row(cls: type[GatewayError], anthropic: str, retryable: bool) -> tuple[type[GatewayError], ErrorSpec]:
    return cls, ErrorSpec(cls.status, cls.type, anthropic, cls.code, retryable,
                          "upstream" if cls.from_upstream else "gateway")


# Every error class and what it means on the wire: the tree above as data (tests check that the
# classes, error_class() and the Anthropic writer agree with it).
ERROR_TABLE: dict[type[GatewayError], ErrorSpec] = dict([
    _row(InvalidRequest, "invalid_request_error", False),
    _row(UnsupportedParameter, "invalid_request_error", False),
    _row(Conflict, "invalid_request_error", False),
    _row(AuthenticationFailed, "authentication_error", False),
    _row(PermissionDenied, "permission_error", False),
    _row(NotFound, "not_found_error", False),
    _row(ModelNotFound, "not_found_error", False),
    _row(Gone, "invalid_request_error", False),
    _row(PayloadTooLarge, "request_too_large", False),
    _row(UnsupportedMediaType, "invalid_request_error", False),
    _row(RateLimited, "rate_limit_error", False),  # the gateway's own limit: no other deployment helps
    _row(UpstreamError, "api_error", True),
    _row(UpstreamBadGateway, "api_error", True),
    _row(UpstreamRateLimited, "rate_limit_error", True),
    _row(UpstreamQuotaExhausted, "billing_error", False),
    _row(UpstreamUnavailable, "overloaded_error", True),
    _row(UpstreamAuthFailed, "api_error", False),
    _row(UpstreamTimeout, "timeout_error", True),
    _row(UpstreamUnreachable, "api_error", True),
    _row(UpstreamResponseTooLarge, "api_error", True),
    _row(InvalidModelOutput, "api_error", False),
    _row(InternalError, "api_error", False),
])


def spec(error: GatewayError) -> ErrorSpec:
    """The table's row for one error as raised (an upstream's error carries its own status,
    type and code: an upstream 400 is the client's 400, never retried)."""
    source = "upstream" if error.from_upstream else "gateway"
    return ErrorSpec(error.status, error.type, anthropic_type(error.status), error.code,
                     error_class(error) in RETRYABLE_CLASSES, source)


# OpenAI's refusals of a prompt under its usage policies that do not say "content_policy": the
# reasoning models' 400 ``invalid_prompt`` ("your prompt was flagged as potentially violating
# our usage policy") and ``cyber_policy`` ("flagged for possible cybersecurity risk").
_POLICY_CODES = frozenset({"cyber_policy"})


def _policy_refusal(code: str, message: str) -> bool:
    return code in _POLICY_CODES or (code == "invalid_prompt" and "policy" in message.lower())


# Error classes, as retries, fallbacks and cooldowns are configured (config ``router``):
# whether a failure is the deployment's (another may succeed) or the caller's (none will).
def error_class(error: GatewayError) -> str:
    """rate_limit, server_error, timeout, connection, content_policy, context_window, auth,
    billing or bad_request for what came from (or about) an upstream; "gateway" for the gateway's own
    refusals (a limit, a budget, a bad request caught before any call)."""
    if not error.from_upstream:
        return "gateway"
    if isinstance(error, UpstreamTimeout):
        return "timeout"
    if isinstance(error, UpstreamUnreachable):
        return "connection"
    if isinstance(error, UpstreamAuthFailed):
        return "auth"
    if isinstance(error, UpstreamQuotaExhausted):
        return "billing"
    code = error.code or ""
    if "content_filter" in code or "content_policy" in code or _policy_refusal(code, error.message):
        return "content_policy"
    if code in ("context_length_exceeded", "context_window_exceeded"):
        return "context_window"
    if error.status == 429:
        return "rate_limit"
    if error.status >= 500:
        return "server_error"
    return "bad_request"
