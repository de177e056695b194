"""Cost, the usage ledger, rate limits and budgets (docs/spend.md, docs/limits.md, docs/budgets.md).

Part of the configuration schema (config/schema.py re-exports every name).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator

from switchboard.config.base import MIB, Credential, Strict
from switchboard.config.urls import check_http_url


class SpendConfig(Strict):
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


class LimitValues(Strict):
    """Requests per minute, tokens per minute and tokens per day; unset: no such limit."""

    rpm: LimitValue | None = None
    tpm: LimitValue | None = None
    tpd: LimitValue | None = None


class LimitsConfig(Strict):
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
    if name.lower() == "localtime":  # the host's zone, which instances need not share
        raise ValueError("'localtime' is the host's own zone, which may differ between instances: "
                         "name an IANA zone ('UTC', 'Europe/Paris')")
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name: 'UTC', 'Europe/Paris')") from None
    return name


Percent = Annotated[int, Field(ge=1, le=100)]


class BudgetWebhookConfig(Strict):
    """Where budget threshold events are POSTed (docs/budgets.md), signed with ``secret``."""

    url: str
    secret: Credential = Field(min_length=16)
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    # Attempts per event (the first included), with exponential backoff between them.
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 5
    # Events waiting for delivery; beyond it new events are dropped and logged.
    queue_size: Annotated[int, Field(ge=1, le=100_000)] = 1000

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value, secret_path=True)  # a Slack-style hook's path is its secret


class BudgetsConfig(Strict):
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
    # Seconds a reservation outlives the last attempt it may be waiting for (the request's
    # deadline plus the longest total timeout) before it lapses unsettled (its process killed).
    hold_margin_seconds: Annotated[float, Field(ge=0, le=3600)] = 60.0
    # How often each instance looks for key chains whose keys all expired, to end the budgets
    # set on them as a revoke of the chain's last key would (spend/budgets/chains.py).
    expired_keys_seconds: Annotated[float, Field(ge=0.1, le=3600)] = 10.0
    webhook: BudgetWebhookConfig | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("thresholds")
    @classmethod
    def _once_each(cls, value: list[int]) -> list[int]:
        # As the admin API refuses a budget's duplicate thresholds: [80, 80] is a typo, not a wish.
        if len(set(value)) != len(value):
            twice = next(item for i, item in enumerate(value) if item in value[:i])
            raise ValueError(f"{twice!r} is listed more than once")
        return value
