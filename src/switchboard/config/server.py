"""The process and its edges: listening, bounds on requests, the data directory and log, the
database and Redis, remote images, tenants' egress, stored responses and files.

Part of the configuration schema (config/schema.py re-exports every name).
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator

from switchboard.config.base import MAX_CONNECTIONS, MAX_SECONDS, MIB, Strict
from switchboard.config.urls import (
    checked_bind_host,
    database_url_problem,
    proxy_url_problem,
    redis_url_problem,
)

# The levels `server.log_level` accepts, most verbose first (case-insensitive).
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


# An origin as browsers send it (RFC 6454 serialisation): scheme "://" host [":" port], no path.
# In the configuration the host may start with "*." (any subdomain of the rest).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
ORIGIN = re.compile(rf"([a-z][a-z0-9+.-]{{0,31}})://(\*\.)?({_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]{{2,45}}\])"
                    r"(?::([0-9]{1,5}))?")
_DEFAULT_PORTS = {"http": "80", "https": "443"}
# A header name (RFC 9110 token); in allow_headers it may end in "*" (a family: x-stainless-*).
_TOKEN = re.compile(r"[!#$%&'+.^_`|~0-9a-z-]+")
MAX_ORIGINS = 1000

# What the official SDKs (openai, anthropic, google-genai, the MCP clients) send and the request
# headers the API documents; the SDKs' x-stainless-* family changes between releases, hence the
# wildcard.
DEFAULT_ALLOW_HEADERS = [
    "authorization", "content-type", "x-api-key", "x-goog-api-key", "x-goog-api-client",
    "anthropic-version", "anthropic-beta", "anthropic-dangerous-direct-browser-access",
    "openai-organization", "openai-project", "x-stainless-*", "x-request-id", "x-provider-authorization",
    "x-switchboard-deployment", "x-switchboard-strategy", "x-switchboard-model", "x-switchboard-session",
    "mcp-session-id", "mcp-protocol-version", "last-event-id",
]
# The response headers the API documents: a browser script reads only these (and the
# CORS-safelisted ones, content-type and the like).
DEFAULT_EXPOSE_HEADERS = [
    "x-request-id", "retry-after", "retry-after-ms", "x-should-retry",
    "x-ratelimit-limit-requests", "x-ratelimit-limit-tokens", "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens", "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens",
    "x-ratelimit-scope", "anthropic-ratelimit-requests-limit", "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset", "anthropic-ratelimit-tokens-limit",
    "anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-reset",
    "x-switchboard-cost-usd", "x-switchboard-cost-unpriced", "x-switchboard-model",
    "x-switchboard-deployment", "x-switchboard-attempts", "x-switchboard-route", "x-switchboard-split",
    "x-switchboard-budget-downgrade", "x-switchboard-budget-scope", "x-switchboard-overhead-ms",
    "x-switchboard-upstream-ms", "x-switchboard-session", "x-switchboard-session-turns",
    "x-switchboard-mcp-steps", "x-switchboard-api-version", "mcp-session-id",
]


HeaderName = Annotated[str, Field(min_length=1, max_length=128)]


def normal_origin(entry: str) -> str:
    """An ``allow_origins`` entry as browsers write the origin: lower case, without the scheme's
    default port. Raises ValueError naming what is wrong (a path, a trailing slash, no scheme)."""
    value = entry.strip().lower()
    if value == "*":
        return value
    found = ORIGIN.fullmatch(value)
    if found is None:
        raise ValueError(f"{entry!r} is not an origin: scheme://host[:port] with no path or trailing slash "
                         "(e.g. https://chat.corp.example), https://*.corp.example, or *")
    scheme, wildcard, host, port = found.groups()
    if wildcard and host.startswith("["):
        raise ValueError(f"{entry!r}: a wildcard only before a host name, not an address")
    if port is not None and not 0 < int(port) <= 65535:
        raise ValueError(f"{entry!r}: port out of range")
    if port is not None and _DEFAULT_PORTS.get(scheme) == port.lstrip("0"):
        port = None  # browsers leave the default port out of the origin they send
    return f"{scheme}://{wildcard or ''}{host}" + (f":{int(port)}" if port is not None else "")


def _header_names(names: list[str], *, family: bool) -> list[str]:
    out: list[str] = []
    for name in names:
        value = name.strip().lower()
        bare = value[:-1] if family and value.endswith("*") else value
        if value != "*" and (not bare or _TOKEN.fullmatch(bare) is None):
            shape = " (or a prefix ending in *)" if family else ""
            raise ValueError(f"{name!r} is not a header name{shape}")
        if value not in out:
            out.append(value)
    return out


class CorsConfig(Strict):
    """Cross-origin calls from browser applications (docs/api.md, "CORS"). Off unless
    ``allow_origins`` names some."""

    allow_origins: Annotated[list[Annotated[str, Field(min_length=1, max_length=300)]],
                             Field(max_length=MAX_ORIGINS)] = Field(default_factory=list)
    allow_headers: Annotated[list[HeaderName], Field(max_length=1000)] = Field(
        default_factory=lambda: list(DEFAULT_ALLOW_HEADERS))
    expose_headers: Annotated[list[HeaderName], Field(max_length=1000)] = Field(
        default_factory=lambda: list(DEFAULT_EXPOSE_HEADERS))
    # How long a browser may keep a preflight's answer (Chrome caps it at 2 hours, Firefox at 1 day).
    max_age: Annotated[int, Field(ge=0, le=86_400)] = 600
    allow_credentials: bool = False
    # The admin API too: off by default, as an admin key in a browser page is one script
    # injection away from anyone (and the admin UI, /docs, is served from the gateway itself).
    admin: bool = False

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, entries: list[str]) -> list[str]:
        out: list[str] = []
        for entry in entries:
            if (value := normal_origin(entry)) not in out:
                out.append(value)
        return out

    @field_validator("allow_headers")
    @classmethod
    def _allow(cls, names: list[str]) -> list[str]:
        return _header_names(names, family=True)

    @field_validator("expose_headers")
    @classmethod
    def _expose(cls, names: list[str]) -> list[str]:
        return _header_names(names, family=False)

    @model_validator(mode="after")
    def _credentials(self) -> CorsConfig:
        # The Fetch standard ignores "*" on a request with credentials: the browser would refuse
        # every answer, so say it here rather than let every call fail.
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError("allow_credentials: true cannot be combined with allow_origins '*'; "
                             "list the origins")
        if self.allow_credentials and "*" in self.expose_headers:
            raise ValueError("allow_credentials: true cannot be combined with expose_headers '*'; "
                             "list the headers")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.allow_origins)


class ServerConfig(Strict):
    host: Annotated[str, AfterValidator(checked_bind_host)] = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 4000
    workers: Annotated[int, Field(ge=1, le=256)] = 1
    max_body_bytes: Annotated[int, Field(ge=1024)] = 32 * MIB
    # The admin API's bodies (also held to max_body_bytes). Its largest legitimate one, a prompt
    # at the default prompts.max_template_chars (200,000 characters, up to 6 bytes each as JSON
    # escapes) with its schemas (64 KiB each), is about 2 MiB; parsing and validating a
    # pathological 32 MiB one held the event loop for about a second.
    max_admin_body_bytes: Annotated[int, Field(ge=1024)] = 4 * MIB
    # The request line and headers: size, and time from the first byte (or the connection).
    max_header_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024
    header_timeout_seconds: Annotated[float, Field(gt=0, le=MAX_SECONDS)] = 30.0
    # The longest gap between two reads of a request body.
    body_timeout_seconds: Annotated[float, Field(gt=0, le=MAX_SECONDS)] = 30.0
    # A client that takes none of its answer for this long (its connection's buffers stay full)
    # is cut off: it cannot hold a connection, an upstream call and their buffers forever.
    send_timeout_seconds: Annotated[float, Field(gt=0, le=MAX_SECONDS)] = 60.0
    # An idle keep-alive connection is closed after this; above common load balancers' 60 s.
    keep_alive_seconds: Annotated[float, Field(gt=0, le=MAX_SECONDS)] = 75.0
    # Open client connections per worker; one more is answered 503 and closed.
    max_connections: Annotated[int, Field(ge=1, le=MAX_CONNECTIONS)] = 10_000
    graceful_shutdown_seconds: Annotated[float, Field(ge=0, le=MAX_SECONDS)] = 30.0
    # On SIGTERM/SIGINT: keep serving with /health/ready at 503 this long before closing the port.
    drain_seconds: Annotated[float, Field(ge=0, le=MAX_SECONDS)] = 0.0
    # /health/ready answers 503 while the database or Redis does not answer (by default it
    # only reports them: model calls are still served, fail-open or closed per feature).
    ready_requires_stores: bool = False
    # /docs (Swagger UI) and /admin/v1/openapi.json served without a key; off: no page, and
    # the document needs a key like the rest of the admin API.
    public_docs: bool = True
    # The whole request's deadline (retries and fallbacks stop once it has passed); its body,
    # however steadily it trickles in, must be whole within it too (408).
    request_timeout_seconds: Annotated[float, Field(gt=0, le=MAX_SECONDS)] = 600.0
    data_dir: Path | None = None
    log_level: str = "info"
    # The process's own log lines: text, or one JSON object per line (docs/observability.md).
    log_format: Literal["text", "json"] = "text"
    access_log: bool = False
    # How often freed memory is handed back to the operating system (glibc's malloc_trim), so
    # resident memory follows the load down after a burst; 0: never.
    memory_trim_seconds: Annotated[float, Field(ge=0, le=86_400)] = 30.0
    # Cross-origin calls from browser applications; off (no header added) by default.
    cors: CorsConfig = Field(default_factory=CorsConfig)

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir_given(cls, value: object) -> object:
        # An empty value (an empty ${VAR}) would be read as "." (the working directory, whichever
        # it is at start): refused rather than guessed.
        if isinstance(value, str) and not value.strip():
            raise ValueError("an empty path; leave the key out for the default data directory")
        return value

    @field_validator("data_dir")
    @classmethod
    def _data_dir(cls, value: Path | None) -> Path | None:
        # As the documented default (~/.switchboard) is written: `~/sb` is the home's sb, not a
        # directory named "~" under the working directory.
        if value is None:
            return None
        try:
            return value.expanduser()
        except RuntimeError:  # ~user of no such user, or no home directory at all
            raise ValueError(f"cannot tell the home directory in {str(value)!r}") from None

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown log level {value!r} (one of: {', '.join(LOG_LEVELS)})")
        return level


class ImagesConfig(Strict):
    """Remote image URLs in messages, fetched by the gateway for providers that only take inline bytes."""

    fetch_remote: bool = True
    max_bytes: Annotated[int, Field(ge=1)] = 20 * MIB
    # Bounded as every other timeout: .inf passed, and aiohttp's deadline (math.ceil) then
    # failed every fetch, a 500 for each request with a remote image.
    timeout: Annotated[float, Field(gt=0, le=MAX_SECONDS)] = 10.0
    # Off by default so a caller cannot make the gateway reach internal addresses (SSRF).
    allow_private_networks: bool = False


class EgressConfig(Strict):
    """Where upstreams that tenants register (services, MCP servers) may connect (docs/access.md,
    "Egress"): those of any tenant but the default one reach public addresses only, so a tenant
    admin cannot point the gateway at the cloud metadata address or an internal system."""

    allow_tenant_private_networks: bool = False
    # Reachable anyway: host names ("billing.internal", "*.corp.example") and networks
    # ("10.20.0.0/16", "192.168.1.7").
    allowed_hosts: Annotated[list[Annotated[str, Field(min_length=1, max_length=253,
                                                       pattern=r"^[A-Za-z0-9.*:/\[\]_-]+$")]],
                             Field(max_length=1000)] = Field(default_factory=list)

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            if "/" in entry:
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(f"{entry!r} is not a network (address/prefix)") from None
            elif "*" in entry.removeprefix("*."):
                raise ValueError(f"{entry!r}: a wildcard only as the first label ('*.example.internal')")
        return entries

    # The outbound HTTP proxy of every provider declared in the configuration file that names no
    # ``proxy`` of its own (docs/configuration.md, ``egress``); a secret when it holds a password.
    proxy: SecretStr | None = None

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, value: SecretStr | None) -> SecretStr | None:
        return checked_proxy(value)


def checked_proxy(value: SecretStr | None) -> SecretStr | None:
    """A proxy URL as configured: None for none ("" included, a provider's way to opt out of
    ``egress.proxy``), else the URL, refused unless it is one (the password never shown)."""
    if value is None or not value.get_secret_value():
        return None
    if (problem := proxy_url_problem(value.get_secret_value())) is not None:
        raise ValueError(problem)
    return value


class DatabaseConfig(Strict):
    """Absent or no ``url``: the SQLite file ``switchboard.db`` in the data dir."""

    url: SecretStr | None = None
    # While the database cannot be read, the request path keeps using what it read before (keys,
    # subscriptions, limits and budgets set through the admin API) this long past the end of its
    # cache entries, rather than refusing every caller whose records expired; 0: not at all.
    stale_while_unreachable_seconds: Annotated[float, Field(ge=0, le=MAX_SECONDS)] = 300.0
    # How long the request path keeps what it read (keys, JWT callers' tenants and teams,
    # subscriptions, limits and budgets set through the admin API) before reading it again.
    # Changes reach every instance at once on the change feed; this bounds staleness when a
    # message is lost, and sets how often each entry costs a database read.
    cache_seconds: Annotated[float, Field(gt=0, le=3600)] = 10.0

    @field_validator("url")
    @classmethod
    def _check(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None and (problem := database_url_problem(url.get_secret_value())):
            raise ValueError(problem)
        return url


class RedisConfig(Strict):
    """Present: counters, cache and change feed shared by every instance through Redis."""

    url: SecretStr
    # The longest an admin change waits to tell the other instances (change feed publish): the
    # change is stored first, and they catch up by their caches' TTL if the message is lost.
    publish_timeout_seconds: Annotated[float, Field(gt=0, le=10)] = 1.0

    @field_validator("url")
    @classmethod
    def _check(cls, url: SecretStr) -> SecretStr:
        if problem := redis_url_problem(url.get_secret_value()):
            raise ValueError(problem)
        return url


class ResponsesConfig(Strict):
    """The Responses API's stored responses (docs/api-responses.md, "State")."""

    # How long a stored response (store: true, the default) can be read and continued.
    retention_days: Annotated[float, Field(gt=0, le=36_500)] = 30
    # A response whose stored form (response, input items, conversation) is larger is not stored.
    max_stored_bytes: Annotated[int, Field(ge=1024, le=1024 * MIB)] = 16 * MIB
    # How often expired responses are deleted, on every instance.
    purge_interval_seconds: Annotated[float, Field(gt=0, le=86_400)] = 3600.0


class FilesConfig(Strict):
    """Files and batches (/v1/files, /v1/batches; docs/api-files.md)."""

    # Where a new file goes when the request names no model: the tenant's provider, else this
    # one (a provider entry of type openai or azure); None: the request must name a model.
    provider: str | None = None
    tenant_providers: Annotated[dict[str, str], Field(max_length=10_000)] = Field(default_factory=dict)
    # The largest file accepted (OpenAI's own limit is 512 MB).
    max_upload_bytes: Annotated[int, Field(ge=1024)] = 512 * MIB
    # A completed batch is priced at the catalog's prices times this (the Batch API's discount).
    batch_price_factor: Annotated[float, Field(ge=0, le=1)] = 0.5
    # The poller of open batches: how often, how many per round, the largest output file read.
    poll_seconds: Annotated[float, Field(ge=1, le=86_400)] = 60.0
    poll_batches: Annotated[int, Field(ge=1, le=1000)] = 20
    max_output_bytes: Annotated[int, Field(ge=1024)] = 256 * MIB
    # The largest body of POST /v1/messages/batches: read whole and checked request by request
    # before it is sent (Anthropic's own bound is 256 MB; 100,000 requests either way).
    max_message_batch_bytes: Annotated[int, Field(ge=1024, le=256 * 1000 * 1000)] = 32 * MIB
