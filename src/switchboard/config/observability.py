"""Metrics, traces, the request log, analytics rollups and alerts (docs/observability.md).

Part of the configuration schema (config/schema.py re-exports every name).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import regex
from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator

from switchboard.config.base import MIB, Strict, checked_headers
from switchboard.config.regexes import compile_as_re
from switchboard.config.spend import BudgetWebhookConfig, Percent
from switchboard.config.urls import check_http_url, checked_bind_host

MetricLabel = Literal["tenant", "team", "key", "user"]


class MetricsConfig(Strict):
    """Prometheus metrics at ``GET /metrics``. Minimal contract: the master key (Bearer) reads
    them and ``switchboard_requests_total`` carries ``model`` and ``status``."""

    enabled: bool = True
    # Another bearer key that may read /metrics (for a scraper that must not hold the master key).
    key: SecretStr | None = Field(default=None, min_length=16)
    # Also serve /metrics, without a key, on this port (bind it to a private interface).
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    host: Annotated[str, AfterValidator(checked_bind_host)] = "127.0.0.1"
    # Labels with unbounded values, off unless listed (each multiplies the series count).
    labels: Annotated[list[MetricLabel], Field(max_length=4)] = Field(default_factory=list)
    # Distinct values each of those labels takes per process; later values are reported as
    # ``other`` (an OIDC provider, not the configuration, decides how many users there are).
    max_label_values: Annotated[int, Field(ge=1, le=100_000)] = 1000

    @field_validator("key")
    @classmethod
    def _sendable(cls, value: SecretStr | None) -> SecretStr | None:
        # As auth.master_key: a key no Authorization header can carry would refuse every scrape.
        key = None if value is None else value.get_secret_value()
        if key is not None and (key != key.strip() or any(c in key for c in "\r\n\x00")):
            raise ValueError("the key has surrounding whitespace or a line break, which no request can "
                             "send (a trailing newline in the variable?)")
        return value

    @field_validator("labels")
    @classmethod
    def _once_each(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each label may be listed once")
        return value


class TracingConfig(Strict):
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

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        # A line break in a value made every export fail (the exporter's HTTP client refuses it).
        return checked_headers(value)

    @model_validator(mode="after")
    def _batch_fits_queue(self) -> TracingConfig:
        if self.max_export_batch_size > self.max_queue_size:
            raise ValueError(f"max_export_batch_size: must not exceed max_queue_size ({self.max_queue_size})")
        return self


_LogName = Annotated[str, Field(min_length=1, max_length=256)]
# Bounds on redaction patterns: each is run over every string of every stored body.
MAX_REDACT_PATTERNS = 32
MAX_PATTERN_LENGTH = 512
# Headers never stored as sent, whatever the configuration (request_log.redact.headers adds to them).
ALWAYS_REDACTED_HEADERS = ("authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie",
                           "proxy-authorization")


class BodyPolicy(Strict):
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


def compile_pattern(pattern: str) -> regex.Pattern[str]:
    """A redaction pattern compiled exactly as the request log runs it: on its own (a pattern's
    inline flags, group numbers and group names are its own), so the configuration check
    accepts what the gateway can start with. ValueError saying why a pattern is refused."""
    try:
        compiled = compile_as_re(pattern)  # as the request log runs it (switchboard/patterns.py)
    except (re.error, regex.error) as exc:
        raise ValueError(f"not a valid regular expression ({exc}): {pattern!r}") from None
    if compiled.match(""):
        raise ValueError(f"matches the empty string, so it would redact nothing useful: {pattern!r}")
    return compiled


def _compiles(pattern: str) -> str:
    compile_pattern(pattern)
    return pattern


# Checked one by one, so a refused pattern is named by its index (request_log.redact.patterns[2]).
_RedactPattern = Annotated[str, Field(min_length=1, max_length=MAX_PATTERN_LENGTH), AfterValidator(_compiles)]


class RedactConfig(Strict):
    """Applied to a body before it leaves the request: nothing unredacted is queued or stored."""

    # Header names (case-insensitive), on top of ALWAYS_REDACTED_HEADERS.
    headers: Annotated[list[Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]],
                       Field(max_length=64)] = Field(default_factory=list)
    # JSON keys at any depth (``ssn``), or dotted paths from the top (``messages.content``; lists
    # are walked through): the value is replaced by "[REDACTED]".
    fields: Annotated[list[_FieldName], Field(max_length=128)] = Field(default_factory=list)
    # Regular expressions (Python syntax) searched in every string value; each match is replaced.
    # Each runs on its own (compile_pattern), as written.
    patterns: Annotated[list[_RedactPattern], Field(max_length=MAX_REDACT_PATTERNS)] = Field(
        default_factory=list)


class RetentionConfig(Strict):
    """How long the request log keeps what it stores (docs/observability.md)."""

    days: Annotated[int, Field(ge=1, le=36_500)] = 30  # bodies
    # Cap on the bodies' total size; the oldest days are dropped first (None: no cap).
    max_bytes: Annotated[int, Field(ge=MIB)] | None = None
    # The usage records themselves; None keeps them: they are the spend record (budgets, reports).
    records_days: Annotated[int, Field(ge=1, le=36_500)] | None = None
    # How often partitions are made ahead and retention runs, on every instance (serialized).
    interval_seconds: Annotated[float, Field(gt=0, le=86_400)] = 3600.0


class RequestLogConfig(Strict):
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


class AnalyticsConfig(Strict):
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


class AlertRule(Strict):
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

    @field_validator("thresholds", "scopes")
    @classmethod
    def _once_each(cls, value: list[Any] | None) -> list[Any] | None:
        # As the admin API refuses a budget's duplicate thresholds: [80, 80] is a typo, not a wish.
        if value is not None and len(set(value)) != len(value):
            twice = next(item for i, item in enumerate(value) if item in value[:i])
            raise ValueError(f"{twice!r} is listed more than once")
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> AlertRule:
        given = self.model_fields_set
        kind = self.kind
        if kind in ("error_rate", "latency"):
            if self.threshold is None:
                raise ValueError(f"threshold: a {kind} rule needs one")
            if kind == "error_rate" and self.threshold > 1:
                raise ValueError(f"threshold: an error rate is a share of requests, 0 < threshold <= 1, "
                                 f"got {self.threshold:g}")
            if kind == "latency" and self.threshold > 3_600_000:
                raise ValueError(f"threshold: latency in milliseconds, at most 3600000, "
                                 f"got {self.threshold:g}")
        elif self.threshold is not None:
            raise ValueError(f"threshold: a {kind} rule takes none")
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
            raise ValueError(f"{extra[0]}: a {kind} rule takes no {', '.join(extra)}")
        return self


class AlertsConfig(Strict):
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
            named: set[str] = set()
            for name in rule.webhooks or ():
                # Each name is one receiver: listed twice, every event would be POSTed to it twice.
                if name in named:
                    raise ValueError(f"rules[{i}].webhooks: webhook {name!r} is listed more than once")
                named.add(name)
                if name not in self.webhooks:
                    known = ", ".join(sorted(self.webhooks)) or "none"
                    raise ValueError(f"rules[{i}].webhooks: unknown webhook {name!r} (known: {known})")
        return self
