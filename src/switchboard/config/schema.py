"""The configuration schema. Validated once at start-up; nothing reads files or env after that.

Provider entries accept extra keys: each provider type validates its own options (see
``providers.registry``), so adding a provider never touches this file. This module imports
nothing from the rest of the package outside ``config/``: it is the bottom layer.

String fields take a YAML scalar as written (``api_version: 2024-10-21``, ``version: 2.10``):
see ``config.yamlfile`` and ``coerce_numbers_to_str`` below.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from switchboard.config.catalog import CatalogConfig, ModelEntryInfo
from switchboard.config.mcp import McpConfig, McpServerConfig, check_stdio
from switchboard.config.prompts import ApisConfig, PromptsConfig
from switchboard.config.services import ServiceConfig
from switchboard.config.urls import check_http_url, database_url_problem, redis_url_problem

MIB = 1024 * 1024
# The levels `server.log_level` accepts, most verbose first (case-insensitive).
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class Timeouts(_Strict):
    """Seconds. ``first_byte`` bounds the wait for the response headers and every gap between
    reads afterwards (a stalled stream); ``total`` bounds the whole exchange, stream included."""

    connect: Annotated[float, Field(gt=0)] = 10.0
    first_byte: Annotated[float, Field(gt=0)] = 120.0
    total: Annotated[float, Field(gt=0)] = 600.0


class TimeoutsOverride(_Strict):
    connect: Annotated[float, Field(gt=0)] | None = None
    first_byte: Annotated[float, Field(gt=0)] | None = None
    total: Annotated[float, Field(gt=0)] | None = None

    def over(self, base: Timeouts) -> Timeouts:
        return base.model_copy(update={k: v for k, v in self.model_dump().items() if v is not None})


class ProviderConfig(BaseModel):
    # Extra keys are provider-type options, checked by the provider's own options model.
    model_config = ConfigDict(extra="allow", frozen=True, coerce_numbers_to_str=True)

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")]
    type: Annotated[str, Field(min_length=1)]
    api_base: str | None = None
    # A key, or a reference to one: ``env:NAME`` or ``file:/path`` (resolved when the client is
    # built, see crypto/refs.py). ``api_keys``: several, used in turn (one per request).
    api_key: SecretStr | None = None
    api_keys: Annotated[list[SecretStr], Field(max_length=100)] = Field(default_factory=list)
    timeouts: Timeouts = Timeouts()
    max_connections: Annotated[int, Field(ge=1)] = 512
    headers: dict[str, str] = Field(default_factory=dict)
    # Bound on a non-stream response body; the largest embeddings batch (2048 inputs x 3072
    # floats, pretty-printed JSON) is about 150 MB.
    max_response_bytes: Annotated[int, Field(ge=1024)] = 256 * MIB
    # Let callers send their own credential for this provider (auth.caller_credentials must be
    # enabled too); see docs/access.md, "Caller credentials".
    allow_caller_credentials: bool = False
    # The provider's own limits for this deployment (requests and tokens per minute): the
    # gateway waits up to limits.max_wait_seconds for room rather than send what it would
    # refuse (docs/limits.md).
    rpm: Annotated[int, Field(ge=1, le=1_000_000_000_000)] | None = None
    tpm: Annotated[int, Field(ge=1, le=1_000_000_000_000)] | None = None

    @field_validator("api_base")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


_DEPLOYMENT = r"^[A-Za-z0-9_.:/#@-]+$"


class ModelConfig(_Strict):
    name: Annotated[str, Field(min_length=1)]
    provider: Annotated[str, Field(min_length=1)]
    model: Annotated[str, Field(min_length=1)]
    timeouts: TimeoutsOverride | None = None
    drop_params: bool = False
    # Teams must subscribe, and a tenant admin approve, before their keys may call this model.
    require_approval: bool = False
    # Catalog overrides for this entry (limits, prices, capabilities); see docs/catalog.md.
    info: ModelEntryInfo | None = None
    # Several entries with the same ``name`` form a group of deployments (docs/routing.md).
    # ``deployment`` names this one within its group (default: ``<provider>/<model>``, with
    # ``#2``, ``#3``... when that repeats); it is what x-switchboard-deployment shows.
    deployment: Annotated[str, Field(min_length=1, max_length=256, pattern=_DEPLOYMENT)] | None = None
    # Where the deployment serves from, for data residency (e.g. "eu", "us-east").
    region: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")] | None = None
    # Share of the group's traffic under the weighted strategy (0: only as a fallback).
    weight: Annotated[int, Field(ge=0, le=1_000_000)] = 1
    tags: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=32)] = Field(
        default_factory=list)
    # This deployment's own requests and tokens per minute (the headroom strategy reads them).
    rpm: Annotated[int, Field(ge=1, le=1_000_000_000_000)] | None = None
    tpm: Annotated[int, Field(ge=1, le=1_000_000_000_000)] | None = None
    # POST /v1/responses to this deployment: translated to the chat form (any provider), or sent
    # as is ("native": providers of type openai or azure only; docs/api-responses.md).
    responses: Literal["translate", "native"] = "translate"


# Headers that carry the caller's Switchboard key or a provider's, or that the gateway itself reads.
_RESERVED_HEADERS = frozenset({
    "authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie", "host", "content-type",
    "content-length", "x-request-id",
})


class CallerCredentialsConfig(_Strict):
    """Callers sending their own provider credential (off unless enabled here and allowed by the
    provider entry with ``allow_caller_credentials``)."""

    enabled: bool = False
    # The request header that carries the caller's provider credential.
    header: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")] = (
        "x-provider-authorization"
    )

    @field_validator("header")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.lower() in _RESERVED_HEADERS:
            raise ValueError(f"{value!r} is reserved (it carries a Switchboard or a provider key)")
        return value.lower()


# -- JWT / OIDC callers (access/oidc.py verifies; docs/access.md "JWT / OIDC callers") --------

# The roles of access/roles.py, by name (this module imports nothing outside config/; a test
# checks the two lists agree).
RoleName = Literal["platform_admin", "tenant_admin", "team_admin", "developer", "viewer"]
JwtAlgorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
    "HS256", "HS384", "HS512",
]
ASYMMETRIC_JWT_ALGORITHMS: tuple[JwtAlgorithm, ...] = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)
HMAC_JWT_ALGORITHMS: tuple[JwtAlgorithm, ...] = ("HS256", "HS384", "HS512")
# A claim name, or a dotted path into nested objects (``realm_access.roles``).
ClaimPath = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\s]+$")]
ClaimValue = Annotated[str, Field(min_length=1, max_length=256)]
TenantName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]


class OidcClaimsConfig(_Strict):
    """Which claim carries what; None: not taken from the token."""

    tenant: ClaimPath | None = None
    team: ClaimPath | None = None
    user: ClaimPath | None = "sub"
    role: ClaimPath | None = None


class OidcIssuerConfig(_Strict):
    """One trusted identity provider whose JWTs authenticate callers."""

    issuer: Annotated[str, Field(max_length=2048)]
    audience: Annotated[str, Field(min_length=1, max_length=512)] | Annotated[
        list[Annotated[str, Field(min_length=1, max_length=512)]], Field(min_length=1, max_length=20)
    ]
    # <issuer>/.well-known/openid-configuration names the JWKS; or give jwks_url (then used as is).
    discovery: bool = True
    jwks_url: Annotated[str, Field(max_length=2048)] | None = None
    algorithms: Annotated[list[JwtAlgorithm], Field(min_length=1, max_length=13)] = Field(
        default_factory=lambda: list(ASYMMETRIC_JWT_ALGORITHMS)
    )
    # Required when an HS* algorithm is listed: the HMAC secret shared with the issuer.
    shared_secret: SecretStr | None = None
    leeway_seconds: Annotated[float, Field(ge=0, le=300)] = 30.0
    jwks_cache_seconds: Annotated[float, Field(gt=0, le=86_400)] = 600.0
    # An unknown kid refetches the JWKS at most once per this many seconds.
    jwks_refetch_cooldown_seconds: Annotated[float, Field(ge=0, le=3600)] = 30.0
    http_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    # A verified token is remembered (by hash) this long, at most until it expires; 0: never.
    token_cache_seconds: Annotated[float, Field(ge=0, le=3600)] = 60.0
    claims: OidcClaimsConfig = OidcClaimsConfig()
    roles: Annotated[dict[ClaimValue, RoleName], Field(max_length=1000)] = Field(default_factory=dict)
    # The role of a caller whose token carries no role that ``roles`` maps; None refuses it.
    default_role: Literal["tenant_admin", "team_admin", "developer", "viewer"] | None = "developer"
    # The tenant of every caller of this issuer, when no tenant claim is configured.
    tenant: TenantName | None = None
    models: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(min_length=1)] = Field(
        default_factory=lambda: ["*"]
    )

    @field_validator("issuer", "jwks_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)

    @model_validator(mode="after")
    def _consistent(self) -> OidcIssuerConfig:
        if not self.discovery and self.jwks_url is None:
            raise ValueError("jwks_url is required when discovery is false")
        hmac_listed = [a for a in self.algorithms if a in HMAC_JWT_ALGORITHMS]
        if hmac_listed and self.shared_secret is None:
            raise ValueError(f"{', '.join(hmac_listed)} listed: a shared_secret is required")
        if self.shared_secret is not None:
            if not hmac_listed:
                raise ValueError("shared_secret is set but no HS* algorithm is listed")
            # RFC 7518 3.2: at least as many bytes as the hash's output (32 for HS256, 64 for HS512).
            needed = max(int(a[2:]) // 8 for a in hmac_listed)
            if len(self.shared_secret.get_secret_value().encode()) < needed:
                raise ValueError(f"shared_secret must be at least {needed} bytes for {max(hmac_listed)}")
        if self.tenant is not None and self.claims.tenant is not None:
            raise ValueError("give either tenant (fixed) or claims.tenant, not both")
        return self


class AuthConfig(_Strict):
    master_key: SecretStr
    # Keys the hashes of the gateway's API keys (and, later, the encryption of stored provider
    # credentials). Absent: $SWITCHBOARD_SECRET_KEY, else a file generated in the data dir.
    secret_key: SecretStr | None = None
    # Secrets used before the current one: stored values sealed under them still open, and
    # `switchboard secrets rotate` re-seals them under the current one. Also
    # $SWITCHBOARD_PREVIOUS_SECRET_KEYS (comma-separated).
    previous_secret_keys: Annotated[list[SecretStr], Field(max_length=20)] = Field(default_factory=list)
    # How often the keys' last-used times are written (one batched statement each time).
    last_used_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 5.0
    caller_credentials: CallerCredentialsConfig = CallerCredentialsConfig()
    # Identity providers whose JWTs are accepted as bearer tokens.
    oidc: Annotated[list[OidcIssuerConfig], Field(max_length=20)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self) -> AuthConfig:
        issuers = [i.issuer for i in self.oidc]
        if len(set(issuers)) != len(issuers):
            raise ValueError("auth.oidc: each issuer may be listed once")
        if len(self.master_key.get_secret_value()) < 8:
            raise ValueError("master_key must be at least 8 characters")
        if self.secret_key is not None and len(self.secret_key.get_secret_value()) < 32:
            raise ValueError("secret_key must be at least 32 characters")
        return self


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 4000
    workers: Annotated[int, Field(ge=1, le=256)] = 1
    max_body_bytes: Annotated[int, Field(ge=1024)] = 32 * MIB
    # The request line and headers: size, and time from the first byte (or the connection).
    max_header_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024
    header_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    # The longest gap between two reads of a request body.
    body_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    # An idle keep-alive connection is closed after this; above common load balancers' 60 s.
    keep_alive_seconds: Annotated[float, Field(gt=0)] = 75.0
    # Open client connections per worker; one more is answered 503 and closed.
    max_connections: Annotated[int, Field(ge=1)] = 10_000
    graceful_shutdown_seconds: Annotated[float, Field(ge=0)] = 30.0
    # On SIGTERM/SIGINT: keep serving with /health/ready at 503 this long before closing the port.
    drain_seconds: Annotated[float, Field(ge=0)] = 0.0
    # The whole request's deadline (retries and fallbacks stop once it has passed).
    request_timeout_seconds: Annotated[float, Field(gt=0)] = 600.0
    data_dir: Path | None = None
    log_level: str = "info"
    # The process's own log lines: text, or one JSON object per line (docs/observability.md).
    log_format: Literal["text", "json"] = "text"
    access_log: bool = False
    # How often freed memory is handed back to the operating system (glibc's malloc_trim), so
    # resident memory follows the load down after a burst; 0: never.
    memory_trim_seconds: Annotated[float, Field(ge=0, le=86_400)] = 30.0

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown log level {value!r} (one of: {', '.join(LOG_LEVELS)})")
        return level


class ImagesConfig(_Strict):
    """Remote image URLs in messages, fetched by the gateway for providers that only take inline bytes."""

    fetch_remote: bool = True
    max_bytes: Annotated[int, Field(ge=1)] = 20 * MIB
    timeout: Annotated[float, Field(gt=0)] = 10.0
    # Off by default so a caller cannot make the gateway reach internal addresses (SSRF).
    allow_private_networks: bool = False


class EgressConfig(_Strict):
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


class DatabaseConfig(_Strict):
    """Absent or no ``url``: the SQLite file ``switchboard.db`` in the data dir."""

    url: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def _check(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None and (problem := database_url_problem(url.get_secret_value())):
            raise ValueError(problem)
        return url


class RedisConfig(_Strict):
    """Present: counters, cache and change feed shared by every instance through Redis."""

    url: SecretStr

    @field_validator("url")
    @classmethod
    def _check(cls, url: SecretStr) -> SecretStr:
        if problem := redis_url_problem(url.get_secret_value()):
            raise ValueError(problem)
        return url


class SpendConfig(_Strict):
    """Cost and the usage ledger (docs/spend.md)."""

    # Refuse calls to a model with no known price (400 model_unpriced) instead of recording them
    # flagged ``unpriced``.
    refuse_unpriced: bool = False
    # The local spool of usage records not yet in the database (in <data_dir>/spool); when
    # full, new records are dropped and logged.
    spool_max_bytes: Annotated[int, Field(ge=1024 * 1024)] = 256 * MIB
    # How often the spooled records are fsync'd and written to the database, in batches.
    flush_seconds: Annotated[float, Field(gt=0, le=60)] = 0.5
    flush_batch: Annotated[int, Field(ge=1, le=10_000)] = 500


LimitValue = Annotated[int, Field(ge=1, le=1_000_000_000_000)]


class LimitValues(_Strict):
    """Requests per minute, tokens per minute and tokens per day; unset: no such limit."""

    rpm: LimitValue | None = None
    tpm: LimitValue | None = None
    tpd: LimitValue | None = None


class LimitsConfig(_Strict):
    """Rate limits (docs/limits.md). Limits set here add to those on keys and in the admin API;
    every limit in scope applies and the most restrictive decides."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # Every caller together.
    global_: LimitValues | None = Field(default=None, alias="global")
    # Each model (by the name callers use), every caller together.
    models: Annotated[dict[Annotated[str, Field(min_length=1, max_length=256)], LimitValues],
                      Field(max_length=10_000)] = Field(default_factory=dict)
    # Defaults that apply to each tenant, team, user and key separately.
    per_tenant: LimitValues | None = None
    per_team: LimitValues | None = None
    per_user: LimitValues | None = None
    per_key: LimitValues | None = None
    # Each key on each model (key-by-model); "*" applies to every model not named.
    per_key_model: Annotated[dict[Annotated[str, Field(min_length=1, max_length=256)], LimitValues],
                             Field(max_length=10_000)] = Field(default_factory=dict)
    # Extra room above each limit within one window, as a fraction of the limit (0.1: 10 %).
    # 0 (the default): never more than the limit in any one window.
    burst: Annotated[float, Field(ge=0, le=1)] = 0.0
    # The length of the "minute" of rpm and tpm, in seconds (tpd is always 86400 s).
    window_seconds: Annotated[float, Field(ge=0.06, le=3600)] = 60.0
    # When the shared limiter (Redis) cannot be reached: admit the request (open) or refuse it
    # with 503 rate_limiter_unavailable (closed).
    on_store_error: Literal["open", "closed"] = "open"
    # How long a request may wait for room under a provider's own rpm/tpm before it is refused
    # with 429 upstream_rate_limited.
    max_wait_seconds: Annotated[float, Field(ge=0, le=60)] = 2.0


def check_timezone(name: str) -> str:
    """``name`` if it is an IANA time zone this machine knows (e.g. ``Europe/Paris``, ``UTC``)."""
    import zoneinfo  # here: the schema is imported by every command, zones are needed by few

    if not 1 <= len(name) <= 64:
        raise ValueError(f"unknown time zone {name[:64]!r}: a name has 1 to 64 characters")
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name: 'UTC', 'Europe/Paris')") from None
    return name


Percent = Annotated[int, Field(ge=1, le=100)]


class BudgetWebhookConfig(_Strict):
    """Where budget threshold events are POSTed (docs/budgets.md), signed with ``secret``."""

    url: str
    secret: SecretStr = Field(min_length=16)
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    # Attempts per event (the first included), with exponential backoff between them.
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 5
    # Events waiting for delivery; beyond it new events are dropped and logged.
    queue_size: Annotated[int, Field(ge=1, le=100_000)] = 1000

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value)


class BudgetsConfig(_Strict):
    """Budgets (docs/budgets.md): set on keys and through /admin/v1/budgets; these are defaults."""

    # The time zone in which daily, weekly and monthly budgets reset (at local midnight; weeks
    # start on Monday, months on the 1st). A budget may name its own.
    timezone: str = "UTC"
    # Percents of a budget whose first crossing in a period fires the webhook.
    thresholds: Annotated[list[Percent], Field(max_length=10)] = Field(default_factory=lambda: [50, 80, 100])
    # When the budget counters (Redis) or the ledger cannot be read: admit the request without
    # a budget check (open) or refuse it with 503 budget_unavailable (closed, the default: a
    # hard budget is a promise about money).
    on_store_error: Literal["open", "closed"] = "closed"
    webhook: BudgetWebhookConfig | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_timezone(value)


# -- observability (docs/observability.md) --

MetricLabel = Literal["tenant", "team", "key", "user"]


class MetricsConfig(_Strict):
    """Prometheus metrics at ``GET /metrics``. Minimal contract: the master key (Bearer) reads
    them and ``switchboard_requests_total`` carries ``model`` and ``status``."""

    enabled: bool = True
    # Another bearer key that may read /metrics (for a scraper that must not hold the master key).
    key: SecretStr | None = Field(default=None, min_length=16)
    # Also serve /metrics, without a key, on this port (bind it to a private interface).
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    host: str = "127.0.0.1"
    # Labels with unbounded values, off unless listed (each multiplies the series count).
    labels: Annotated[list[MetricLabel], Field(max_length=4)] = Field(default_factory=list)

    @field_validator("labels")
    @classmethod
    def _once_each(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("metrics.labels: each label may be listed once")
        return value


class TracingConfig(_Strict):
    """OpenTelemetry traces exported over OTLP; off by default, and free when off
    (docs/observability.md#opentelemetry-traces)."""

    enabled: bool = False
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    protocol: Literal["http/protobuf"] = "http/protobuf"
    # Sent with every export (e.g. a collector's API key): never logged.
    headers: Annotated[
        dict[Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")],
             Annotated[str, Field(max_length=4096)]],
        Field(max_length=32),
    ] = Field(default_factory=dict)
    service_name: Annotated[str, Field(min_length=1, max_length=128)] = "switchboard"
    # Head sampling of new traces; a request continuing a trace follows its parent's decision.
    sample_ratio: Annotated[float, Field(ge=0, le=1)] = 1.0
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 10.0
    # Finished spans wait in a bounded queue (dropped, never blocking, when it is full) and are
    # exported in batches every ``export_interval_seconds`` or when a batch is full.
    export_interval_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    max_queue_size: Annotated[int, Field(ge=1, le=1_000_000)] = 2048
    max_export_batch_size: Annotated[int, Field(ge=1, le=100_000)] = 512

    @field_validator("endpoint")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value)

    @model_validator(mode="after")
    def _batch_fits_queue(self) -> TracingConfig:
        if self.max_export_batch_size > self.max_queue_size:
            raise ValueError("tracing.max_export_batch_size must not exceed tracing.max_queue_size")
        return self


_LogName = Annotated[str, Field(min_length=1, max_length=256)]
# Bounds on redaction patterns: each is run over every string of every stored body.
MAX_REDACT_PATTERNS = 32
MAX_PATTERN_LENGTH = 512
# Headers never stored as sent, whatever the configuration (request_log.redact.headers adds to them).
ALWAYS_REDACTED_HEADERS = ("authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie",
                           "proxy-authorization")


class BodyPolicy(_Strict):
    """Which requests have their bodies kept: every condition given must match (none given: every
    request), and what is kept of them."""

    tenant: _LogName | None = None
    team: _LogName | None = None
    key: _LogName | None = None  # the key's id (key_...)
    model: _LogName | None = None  # the requested model name, or a ``*`` pattern
    request: bool = True
    response: bool = True
    headers: bool = False  # the request's headers (credentials always redacted)


_FieldName = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^.\s]+(\.[^.\s]+)*$")]


class RedactConfig(_Strict):
    """Applied to a body before it leaves the request: nothing unredacted is queued or stored."""

    # Header names (case-insensitive), on top of ALWAYS_REDACTED_HEADERS.
    headers: Annotated[list[Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]],
                       Field(max_length=64)] = Field(default_factory=list)
    # JSON keys at any depth (``ssn``), or dotted paths from the top (``messages.content``; lists
    # are walked through): the value is replaced by "[REDACTED]".
    fields: Annotated[list[_FieldName], Field(max_length=128)] = Field(default_factory=list)
    # Regular expressions (Python syntax) searched in every string value; each match is replaced.
    patterns: Annotated[list[Annotated[str, Field(min_length=1, max_length=MAX_PATTERN_LENGTH)]],
                        Field(max_length=MAX_REDACT_PATTERNS)] = Field(default_factory=list)

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression ({exc}): {pattern!r}") from None
            if compiled.match(""):
                raise ValueError(f"matches the empty string, so it would redact nothing useful: {pattern!r}")
        return value


class RetentionConfig(_Strict):
    """How long the request log keeps what it stores (docs/observability.md)."""

    days: Annotated[int, Field(ge=1, le=36_500)] = 30  # bodies
    # Cap on the bodies' total size; the oldest days are dropped first (None: no cap).
    max_bytes: Annotated[int, Field(ge=MIB)] | None = None
    # The usage records themselves; None keeps them: they are the spend record (budgets, reports).
    records_days: Annotated[int, Field(ge=1, le=36_500)] | None = None
    # How often partitions are made ahead and retention runs, on every instance (serialized).
    interval_seconds: Annotated[float, Field(gt=0, le=86_400)] = 3600.0


class RequestLogConfig(_Strict):
    """The request log (docs/observability.md): every usage record, and the bodies of the
    requests a policy selects, redacted before they are stored."""

    # None listed: no bodies are kept (the usage record is the log).
    bodies: Annotated[list[BodyPolicy], Field(max_length=256)] = Field(default_factory=list)
    # Each body (request, response) is cut at this many bytes (at a UTF-8 boundary).
    max_body_bytes: Annotated[int, Field(ge=1024, le=16 * MIB)] = 64 * 1024
    redact: RedactConfig = RedactConfig()
    retention: RetentionConfig = RetentionConfig()
    # Bodies waiting to be written; beyond this many, new ones are dropped (and counted).
    queue_max: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    flush_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    flush_batch: Annotated[int, Field(ge=1, le=10_000)] = 500


class AnalyticsConfig(_Strict):
    """Rollups of the usage ledger behind ``GET /admin/v1/analytics``."""

    # The longest range one query may cover (from..to), in days.
    max_range_days: Annotated[int, Field(ge=1, le=3660)] = 400
    # At most this many (interval, group) points in one answer, else 400 too_many_points.
    max_points: Annotated[int, Field(ge=100, le=1_000_000)] = 20_000
    # Rollups of hours older than this are deleted (checked at start and every hour); None:
    # kept for ever (they are small: one row per hour and key, model and deployment used).
    retention_days: Annotated[int, Field(ge=1, le=36_600)] | None = None


class AlertWebhookConfig(BudgetWebhookConfig):
    """A named receiver of alert events (``alerts.webhooks.<name>``): the same settings, signing
    and delivery as ``budgets.webhook``."""


AlertKind = Literal["error_rate", "latency", "breaker", "budget"]
_ALERT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_Pattern = Annotated[str, Field(min_length=1, max_length=256)]
_BudgetScope = Literal["tenant", "team", "user", "key"]
_WebhookName = Annotated[str, Field(min_length=1, max_length=64)]


class AlertRule(_Strict):
    """One rule (docs/observability.md, "Alerts"). ``error_rate`` and ``latency`` watch the
    attempts each deployment served in the last ``window_seconds``; ``breaker`` fires while a
    deployment is cooled down; ``budget`` when a budget crosses one of its thresholds."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    kind: AlertKind
    # Which deployments (error_rate, latency, breaker): shell patterns on the model group and
    # on the deployment's name; both default to every one.
    group: _Pattern = "*"
    deployment: _Pattern = "*"
    # error_rate: the share of failed attempts (0 < x <= 1); latency: milliseconds.
    threshold: Annotated[float, Field(gt=0)] | None = None
    percentile: Literal["p50", "p95", "p99"] = "p95"
    window_seconds: Annotated[float, Field(ge=1, le=86_400)] = 300.0
    min_requests: Annotated[int, Field(ge=1, le=1_000_000)] = 20
    # budget: which thresholds (percents) and scopes; default all of them.
    thresholds: Annotated[list[Percent], Field(min_length=1, max_length=10)] | None = None
    scopes: Annotated[list[_BudgetScope], Field(min_length=1, max_length=4)] | None = None
    # The receivers (names in alerts.webhooks); default: every one.
    webhooks: Annotated[list[_WebhookName], Field(max_length=32)] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _ALERT_NAME.fullmatch(value):
            raise ValueError(f"must be letters, digits, '_', '.' or '-' (starting with a letter or digit), "
                             f"got {value!r}")
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> AlertRule:
        given = self.model_fields_set
        kind = self.kind
        if kind in ("error_rate", "latency"):
            if self.threshold is None:
                raise ValueError(f"a {kind} rule needs a threshold")
            if kind == "error_rate" and self.threshold > 1:
                raise ValueError(f"threshold: an error rate is a share of requests, 0 < threshold <= 1, "
                                 f"got {self.threshold:g}")
            if kind == "latency" and self.threshold > 3_600_000:
                raise ValueError(f"threshold: latency in milliseconds, at most 3600000, "
                                 f"got {self.threshold:g}")
        elif self.threshold is not None:
            raise ValueError(f"a {kind} rule takes no threshold")
        allowed = {
            "error_rate": {"group", "deployment", "window_seconds", "min_requests"},
            "latency": {"group", "deployment", "window_seconds", "min_requests", "percentile"},
            "breaker": {"group", "deployment"},
            "budget": {"thresholds", "scopes"},
        }[kind]
        specific = {"group", "deployment", "window_seconds", "min_requests", "percentile", "thresholds",
                    "scopes"}
        extra = sorted((given & specific) - allowed)
        if extra:
            raise ValueError(f"a {kind} rule takes no {', '.join(extra)}")
        return self


class ResponsesConfig(_Strict):
    """The Responses API's stored responses (docs/api-responses.md, "State")."""

    # How long a stored response (store: true, the default) can be read and continued.
    retention_days: Annotated[float, Field(gt=0, le=36_500)] = 30
    # A response whose stored form (response, input items, conversation) is larger is not stored.
    max_stored_bytes: Annotated[int, Field(ge=1024, le=1024 * MIB)] = 16 * MIB
    # How often expired responses are deleted, on every instance.
    purge_interval_seconds: Annotated[float, Field(gt=0, le=86_400)] = 3600.0


class AlertsConfig(_Strict):
    """Alert rules and the webhooks they are delivered to (docs/observability.md, "Alerts")."""

    # Named receivers; a rule sends to the ones it names, or to every one.
    webhooks: Annotated[dict[_WebhookName, AlertWebhookConfig], Field(max_length=32)] = Field(
        default_factory=dict)
    rules: Annotated[list[AlertRule], Field(max_length=200)] = Field(default_factory=list)
    # How often the error_rate and latency rules are evaluated (and incidents past their end,
    # e.g. a budget's period, resolved).
    evaluate_seconds: Annotated[float, Field(ge=0.1, le=3600)] = 10.0

    @field_validator("webhooks")
    @classmethod
    def _webhook_names(cls, value: dict[str, AlertWebhookConfig]) -> dict[str, AlertWebhookConfig]:
        for name in value:
            if not _ALERT_NAME.fullmatch(name):
                raise ValueError(f"webhook name {name!r}: letters, digits, '_', '.' or '-' only")
        return value

    @model_validator(mode="after")
    def _references(self) -> AlertsConfig:
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.name in seen:
                raise ValueError(f"rules[{i}].name: duplicate rule name {rule.name!r}")
            seen.add(rule.name)
            for name in rule.webhooks or ():
                if name not in self.webhooks:
                    known = ", ".join(sorted(self.webhooks)) or "none"
                    raise ValueError(f"rules[{i}].webhooks: unknown webhook {name!r} (known: {known})")
        return self


STRATEGIES = ("weighted", "round-robin", "least-busy", "latency", "cost", "headroom")
Strategy = Literal["weighted", "round-robin", "least-busy", "latency", "cost", "headroom"]
# Error classes retries and fallbacks are configured by (docs/routing.md).
ERROR_CLASSES = ("rate_limit", "server_error", "timeout", "connection", "content_policy",
                 "context_window", "auth", "bad_request")
ErrorClass = Literal["rate_limit", "server_error", "timeout", "connection", "content_policy",
                     "context_window", "auth", "bad_request"]
_Name = Annotated[str, Field(min_length=1, max_length=256)]
_Classes = Annotated[tuple[ErrorClass, ...], Field(max_length=8)]
_Chains = Annotated[dict[_Name, Annotated[list[_Name], Field(max_length=10)]], Field(max_length=10_000)]


class RetryConfig(_Strict):
    """Retries within a group: exponential backoff with full jitter, Retry-After honoured up to
    ``max_retry_after_seconds`` (a longer wait moves on to the next deployment at once)."""

    on: _Classes = ("rate_limit", "server_error", "timeout", "connection")
    backoff_seconds: Annotated[float, Field(ge=0, le=60)] = 0.05
    max_backoff_seconds: Annotated[float, Field(ge=0, le=60)] = 2.0
    max_retry_after_seconds: Annotated[float, Field(ge=0, le=60)] = 5.0


class CooldownConfig(_Strict):
    """A deployment failing ``failures`` times in a row, or ``failure_rate`` of at least
    ``min_requests`` requests within ``window_seconds``, is taken out for ``seconds``, then
    probed (half-open) before it takes full traffic again."""

    failures: Annotated[int, Field(ge=1, le=1000)] = 3
    failure_rate: Annotated[float, Field(gt=0, le=1)] | None = None
    min_requests: Annotated[int, Field(ge=1, le=100_000)] = 10
    window_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    seconds: Annotated[float, Field(gt=0, le=86_400)] = 30.0
    # Error classes that count as a deployment's failure (a caller's bad request never does).
    on: _Classes = ("rate_limit", "server_error", "timeout", "connection", "auth")


class HealthCheckConfig(_Strict):
    """Optional active checks: a tiny request to each deployment every ``interval_seconds``."""

    enabled: bool = False
    interval_seconds: Annotated[float, Field(ge=1, le=86_400)] = 30.0
    timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 10.0


class GroupPolicy(_Strict):
    """Per-group overrides of the router's defaults."""

    strategy: Strategy | None = None
    num_retries: Annotated[int, Field(ge=0, le=10)] | None = None
    # Callers may pin a deployment (x-switchboard-deployment) or a strategy
    # (x-switchboard-strategy) on this group.
    allow_pinning: bool | None = None


class TokenRange(_Strict):
    min: Annotated[int, Field(ge=0)] | None = None
    max: Annotated[int, Field(ge=0)] | None = None


_Short = Annotated[str, Field(min_length=1, max_length=256)]
_Tag = Annotated[str, Field(min_length=1, max_length=64)]


class RuleCondition(_Strict):
    """Every condition given must hold (an empty ``when`` always holds)."""

    # Request headers (names case-insensitive) with these exact values.
    headers: Annotated[dict[_Short, Annotated[str, Field(max_length=1024)]], Field(max_length=32)] = Field(
        default_factory=dict)
    # Keys of the request's ``metadata`` object with these exact values.
    metadata: Annotated[dict[_Short, Annotated[str, Field(max_length=1024)]], Field(max_length=32)] = Field(
        default_factory=dict)
    # The caller's key carries every one of these tags.
    key_tags: Annotated[list[_Tag], Field(max_length=32)] = Field(default_factory=list)
    # Top-level request parameters with these exact values (e.g. {stream: true, temperature: 0}).
    params: Annotated[dict[_Short, Any], Field(max_length=32)] = Field(default_factory=dict)
    # The prompt's estimated tokens within [min, max].
    prompt_tokens: TokenRange | None = None
    # A regular expression searched in the last user message's text.
    last_user_matches: Annotated[str, Field(min_length=1, max_length=1024)] | None = None

    @field_validator("last_user_matches")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class RoutingRule(_Strict):
    """Conditional routing: a request for ``model`` ("*": any) that meets ``when`` goes to the
    group ``to``. Rules are tried in order; the first that matches decides."""

    name: _Short | None = None
    model: _Name = "*"
    when: RuleCondition = RuleCondition()
    to: _Name


class SemanticRoute(_Strict):
    to: _Name
    examples: Annotated[list[Annotated[str, Field(min_length=1, max_length=4000)]],
                        Field(min_length=1, max_length=200)]


class SemanticRouter(_Strict):
    """Semantic routing: a request for ``model`` goes to the route whose example utterances are
    most similar to its last user message (cosine of embeddings from ``embedding_model``, a group
    this gateway serves), if that similarity reaches ``threshold``; otherwise to ``default`` (or
    the requested name, when it is a group)."""

    model: _Name
    embedding_model: _Name
    routes: Annotated[list[SemanticRoute], Field(min_length=1, max_length=50)]
    threshold: Annotated[float, Field(ge=-1, le=1)] = 0.5
    default: _Name | None = None
    # Sent as the embeddings request's ``dimensions`` when set (models that can shorten them).
    dimensions: Annotated[int, Field(ge=1, le=100_000)] | None = None
    # The text embedded per request is cut to this many characters.
    max_chars: Annotated[int, Field(ge=1, le=100_000)] = 2000
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0


class SplitArm(_Strict):
    """One arm of a split: another group (``to``) or one deployment of the split's own group."""

    to: _Name | None = None
    deployment: _Name | None = None
    percent: Annotated[float, Field(gt=0, le=100)]

    @model_validator(mode="after")
    def _one_target(self) -> SplitArm:
        if (self.to is None) == (self.deployment is None):
            raise ValueError("an arm names either a group (to) or a deployment, not both")
        return self


class Split(_Strict):
    """A canary or A/B split of the requests for ``model`` by percentage, sticky per key, user
    or session header (``header:<name>``), or drawn per request (``none``)."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    model: _Name
    sticky: Annotated[str, Field(pattern=r"^(key|user|none|header:[A-Za-z0-9-]{1,64})$")] = "key"
    arms: Annotated[list[SplitArm], Field(min_length=2, max_length=20)]

    @model_validator(mode="after")
    def _hundred(self) -> Split:
        total = sum(arm.percent for arm in self.arms)
        if abs(total - 100) > 1e-6:
            raise ValueError(f"the arms' percents add up to {total:g}, not 100")
        return self


class RouterConfig(_Strict):
    """Model groups, strategies, retries, fallbacks and cooldowns (docs/routing.md).
    Minimal contract: ``strategy``, ``num_retries`` and ``fallbacks`` as named here."""

    strategy: Strategy = "weighted"
    # Retries after the first attempt, within the group, before its fallbacks.
    num_retries: Annotated[int, Field(ge=0, le=10)] = 2
    # Ordered chains to other groups when the group's attempts fail with a ``fallback_on`` class.
    fallbacks: _Chains = Field(default_factory=dict)
    fallback_on: _Classes = ("rate_limit", "server_error", "timeout", "connection", "content_policy")
    # Larger groups for a request that fits none of the group's deployments' context windows.
    context_window_fallbacks: _Chains = Field(default_factory=dict)
    # Other names a group answers to: {alias: group}.
    aliases: Annotated[dict[_Name, _Name], Field(max_length=10_000)] = Field(default_factory=dict)
    groups: Annotated[dict[_Name, GroupPolicy], Field(max_length=10_000)] = Field(default_factory=dict)
    allow_pinning: bool = False
    retry: RetryConfig = RetryConfig()
    cooldown: CooldownConfig = CooldownConfig()
    health_checks: HealthCheckConfig = HealthCheckConfig()
    # Conditional and semantic routing (docs/routing.md): they choose the group before the
    # strategies choose its deployment.
    rules: Annotated[list[RoutingRule], Field(max_length=1000)] = Field(default_factory=list)
    semantic: Annotated[list[SemanticRouter], Field(max_length=100)] = Field(default_factory=list)
    # Canary and A/B splits (docs/routing.md); at most one per requested name.
    splits: Annotated[list[Split], Field(max_length=100)] = Field(default_factory=list)


class FilesConfig(_Strict):
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


class Settings(_Strict):
    providers: list[ProviderConfig] = Field(default_factory=list)
    models: list[ModelConfig] = Field(default_factory=list)
    auth: AuthConfig
    server: ServerConfig = ServerConfig()
    images: ImagesConfig = ImagesConfig()
    egress: EgressConfig = EgressConfig()
    catalog: CatalogConfig = CatalogConfig()
    database: DatabaseConfig = DatabaseConfig()
    redis: RedisConfig | None = None
    spend: SpendConfig = SpendConfig()
    limits: LimitsConfig = LimitsConfig()
    budgets: BudgetsConfig = BudgetsConfig()
    router: RouterConfig = RouterConfig()
    metrics: MetricsConfig = MetricsConfig()
    tracing: TracingConfig = TracingConfig()
    request_log: RequestLogConfig = RequestLogConfig()
    analytics: AnalyticsConfig = AnalyticsConfig()
    alerts: AlertsConfig = AlertsConfig()
    files: FilesConfig = FilesConfig()
    responses: ResponsesConfig = ResponsesConfig()
    # The prompt registry and prompts published as APIs (docs/prompts.md).
    prompts: PromptsConfig = PromptsConfig()
    apis: ApisConfig = ApisConfig()
    # Plain REST services proxied under /services/{name}/ (docs/services.md).
    services: Annotated[list[ServiceConfig], Field(max_length=1000)] = Field(default_factory=list)
    # The MCP gateway (docs/mcp.md): upstream servers and the /mcp endpoint's bounds.
    mcp_servers: Annotated[list[McpServerConfig], Field(max_length=1000)] = Field(default_factory=list)
    mcp: McpConfig = McpConfig()
    # Set for the embedded default: serve the built-in mock upstream under /mock.
    builtin_mock: bool = False

    @model_validator(mode="after")
    def _references(self) -> Settings:
        seen: set[str] = set()
        for p in self.providers:
            if p.name in seen:
                raise ValueError(f"duplicate provider name {p.name!r}")
            seen.add(p.name)
        deployments: set[tuple[str, str]] = set()
        types = {p.name: p.type for p in self.providers}
        for i, m in enumerate(self.models):
            if m.provider not in seen:
                known = ", ".join(sorted(seen)) or "none"
                raise ValueError(f"models[{i}].provider: unknown provider {m.provider!r} (known: {known})")
            if m.responses == "native" and types[m.provider] not in ("openai", "azure"):
                raise ValueError(f"models[{i}].responses: 'native' needs a provider of type openai or azure, "
                                 f"not {types[m.provider]!r}")
            if m.deployment is not None:
                if (m.name, m.deployment) in deployments:
                    raise ValueError(f"models[{i}].deployment: duplicate deployment {m.deployment!r} "
                                     f"in group {m.name!r}")
                deployments.add((m.name, m.deployment))
        self._check_router({m.name for m in self.models})
        services = [s.name for s in self.services]
        if len(services) != len(set(services)):  # REST services (docs/services.md)
            twice = sorted({n for n in services if services.count(n) > 1})
            raise ValueError(f"services: duplicate service name {twice[0]!r}")
        check_stdio(self.mcp_servers, self.mcp)  # stdio MCP servers only where allowed (config/mcp.py)
        return self

    def _check_router(self, names: set[str]) -> None:
        r = self.router
        for alias, group in r.aliases.items():
            if alias in names:
                raise ValueError(f"router.aliases.{alias}: the name is a model group already")
            if group not in names:
                raise ValueError(f"router.aliases.{alias}: unknown model group {group!r}")
        known = names | set(r.aliases)
        sections = (("fallbacks", r.fallbacks), ("context_window_fallbacks", r.context_window_fallbacks))
        for section, chains in sections:
            for name, chain in chains.items():
                for target in [name, *chain]:
                    if target not in known:
                        raise ValueError(f"router.{section}.{name}: unknown model group {target!r}")
        for name in r.groups:
            if name not in names:
                raise ValueError(f"router.groups.{name}: unknown model group")
        for i, rule in enumerate(r.rules):
            if rule.to not in known:
                raise ValueError(f"router.rules[{i}].to: unknown model group {rule.to!r}")
        for i, sem in enumerate(r.semantic):
            targets = [sem.embedding_model, *(route.to for route in sem.routes)]
            for target in targets + ([sem.default] if sem.default else []):
                if target not in known:
                    raise ValueError(f"router.semantic[{i}]: unknown model group {target!r}")
        self._check_splits(known)

    def _check_splits(self, known: set[str]) -> None:
        split_models: set[str] = set()
        for i, split in enumerate(self.router.splits):
            if split.model in split_models:
                raise ValueError(f"router.splits[{i}].model: {split.model!r} has a split already")
            split_models.add(split.model)
            group = self.router.aliases.get(split.model, split.model)
            # Deployment names as the table names them (explicit, else <provider>/<model>).
            names = {m.deployment or f"{m.provider}/{m.model}" for m in self.models if m.name == group}
            for arm in split.arms:
                if arm.to is not None and arm.to not in known:
                    raise ValueError(f"router.splits[{i}]: unknown model group {arm.to!r}")
                if arm.deployment is not None and arm.deployment not in names:
                    listed = ", ".join(sorted(names)) or "none"
                    raise ValueError(f"router.splits[{i}]: the model {split.model!r} has no deployment "
                                     f"{arm.deployment!r} (deployments: {listed})")
