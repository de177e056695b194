"""Plain REST services proxied under ``/services/{name}/`` (``services:``); docs/services.md.

Minimal contract: each entry takes at least ``name`` and ``url``; everything else has a default.
The same fields (less ``name`` and ``tenant``) make the body of ``POST /admin/v1/services``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator

from switchboard.config.base import Strict
from switchboard.config.urls import check_http_url

MIB = 1024 * 1024
SERVICE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# Hop-by-hop headers (RFC 9110 §7.6.1) and what the gateway sets itself: never configured,
# never taken from the caller.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade",
})
RESERVED_HEADERS = HOP_BY_HOP | {"host", "content-length", "x-request-id"}
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]
Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
METHODS: tuple[Method, ...] = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class ServiceTimeouts(Strict):
    """Seconds: to open the connection, and for the whole exchange (bodies included)."""

    connect: Annotated[float, Field(gt=0, le=300)] = 10.0
    total: Annotated[float, Field(gt=0, le=3600)] = 60.0


def check_headers(headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
    """Header names that are HTTP tokens and not reserved; values without control characters."""
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise ValueError(f"{name[:64]!r} is not a valid header name")
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"{name!r} is set by the gateway and cannot be configured")
        if _BAD_VALUE.search(value.get_secret_value()) or len(value.get_secret_value()) > 8192:
            raise ValueError(f"the value of {name!r} has control characters or is over 8192 "
                             "characters")
    return headers


def check_url(value: str) -> str:
    # The length first: check_http_url quotes the URL it refuses, a megabyte of it too.
    if len(value) > 2048:
        raise ValueError("the service URL is over 2048 characters")
    check_http_url(value)
    if "?" in value or "#" in value or "@" in value.split("://", 1)[1].split("/", 1)[0]:
        raise ValueError("the service URL takes no query, fragment or user info")
    return value


class ServiceSettings(Strict):
    """What a service is, apart from its name and tenant."""

    # The upstream's base URL: fixed here, never taken from a caller.
    url: str
    description: Annotated[str, Field(max_length=2000)] | None = None
    # The owning team (shown in the catalog).
    team: Ident | None = None
    # Teams need an approved subscription (POST /admin/v1/subscriptions {"service": name}).
    require_approval: bool = False
    timeout_seconds: ServiceTimeouts = ServiceTimeouts()
    # A larger request body is refused with 413, a larger response with 502.
    max_request_bytes: Annotated[int, Field(ge=0, le=1024 * MIB)] = 10 * MIB
    max_response_bytes: Annotated[int, Field(ge=0, le=1024 * MIB)] = 50 * MIB
    # Added to every upstream request (e.g. the service's own credential); never shown.
    headers: Annotated[dict[str, SecretStr], Field(max_length=32)] = Field(default_factory=dict)
    # Requests per minute per key, on top of the caller's own limits; None: none.
    rpm: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    # The methods callers may use; another is 405.
    methods: Annotated[list[Method], Field(min_length=1, max_length=7)] = Field(
        default_factory=lambda: list(METHODS))
    # Where the service documents itself (shown in the catalog; the gateway never fetches it).
    openapi_url: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("openapi_url")
    @classmethod
    def _openapi_url(cls, value: str | None) -> str | None:
        if value is not None:
            if len(value) > 2048:  # before the check that quotes it, as for url
                raise ValueError("openapi_url is over 2048 characters")
            check_http_url(value)
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        return check_headers(value)


class ServiceConfig(ServiceSettings):
    name: Annotated[str, Field(pattern=SERVICE_NAME)]
    # The tenant whose callers see the service; None: every tenant.
    tenant: Ident | None = None
