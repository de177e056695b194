"""Model groups, strategies, retries, fallbacks, cooldowns, conditional and semantic routing,
and canary splits (docs/routing.md).

Part of the configuration schema (config/schema.py re-exports every name).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import regex
from pydantic import Field, field_validator, model_validator

from switchboard.config.base import Strict
from switchboard.config.providers import MODEL_NAME_MAX, MODEL_NAME_PATTERN
from switchboard.config.regexes import compile_as_re

STRATEGIES = ("weighted", "round-robin", "least-busy", "latency", "cost", "headroom")
Strategy = Literal["weighted", "round-robin", "least-busy", "latency", "cost", "headroom"]
# Error classes retries and fallbacks are configured by (docs/routing.md).
ERROR_CLASSES = ("rate_limit", "server_error", "timeout", "connection", "content_policy",
                 "context_window", "auth", "billing", "bad_request")
ErrorClass = Literal["rate_limit", "server_error", "timeout", "connection", "content_policy",
                     "context_window", "auth", "billing", "bad_request"]
_Name = Annotated[str, Field(min_length=1, max_length=256)]
# Clients send an alias as a model name (in URLs too), so it follows the model names' rule.
_Alias = Annotated[str, Field(min_length=1, max_length=MODEL_NAME_MAX, pattern=MODEL_NAME_PATTERN)]
_Classes = Annotated[tuple[ErrorClass, ...], Field(max_length=len(ERROR_CLASSES))]
_Chains = Annotated[dict[_Name, Annotated[list[_Name], Field(max_length=10)]], Field(max_length=10_000)]


class RetryConfig(Strict):
    """Retries within a group: exponential backoff with full jitter, Retry-After honoured up to
    ``max_retry_after_seconds`` (a longer wait moves on to the next deployment at once)."""

    on: _Classes = ("rate_limit", "server_error", "timeout", "connection")
    backoff_seconds: Annotated[float, Field(ge=0, le=60)] = 0.05
    max_backoff_seconds: Annotated[float, Field(ge=0, le=60)] = 2.0
    max_retry_after_seconds: Annotated[float, Field(ge=0, le=60)] = 5.0


class CooldownConfig(Strict):
    """A deployment failing ``failures`` times in a row, or ``failure_rate`` of at least
    ``min_requests`` requests within ``window_seconds``, is taken out for ``seconds``, then
    probed (half-open) before it takes full traffic again."""

    failures: Annotated[int, Field(ge=1, le=1000)] = 3
    failure_rate: Annotated[float, Field(gt=0, le=1)] | None = None
    min_requests: Annotated[int, Field(ge=1, le=100_000)] = 10
    window_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    seconds: Annotated[float, Field(gt=0, le=86_400)] = 30.0
    # Error classes that count as a deployment's failure (a caller's bad request never does);
    # ``billing``: an account out of credit or quota fails every request until someone pays.
    on: _Classes = ("rate_limit", "server_error", "timeout", "connection", "auth", "billing")


class HealthCheckConfig(Strict):
    """Optional active checks: a tiny request to each deployment every ``interval_seconds``."""

    enabled: bool = False
    interval_seconds: Annotated[float, Field(ge=1, le=86_400)] = 30.0
    timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 10.0


class GroupPolicy(Strict):
    """Per-group overrides of the router's defaults."""

    strategy: Strategy | None = None
    num_retries: Annotated[int, Field(ge=0, le=10)] | None = None
    # Callers may pin a deployment (x-switchboard-deployment) or a strategy
    # (x-switchboard-strategy) on this group.
    allow_pinning: bool | None = None


class TokenRange(Strict):
    min: Annotated[int, Field(ge=0)] | None = None
    max: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> TokenRange:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is more than max ({self.max}): no prompt could match")
        return self


_Short = Annotated[str, Field(min_length=1, max_length=256)]
_Tag = Annotated[str, Field(min_length=1, max_length=64)]


class RuleCondition(Strict):
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
                compile_as_re(value)  # as the rule runs it (switchboard/patterns.py)
            except (re.error, regex.error) as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class RoutingRule(Strict):
    """Conditional routing: a request for ``model`` ("*": any) that meets ``when`` goes to the
    group ``to``. Rules are tried in order; the first that matches decides."""

    name: _Short | None = None
    model: _Name = "*"
    when: RuleCondition = RuleCondition()
    to: _Name


class SemanticRoute(Strict):
    to: _Name
    examples: Annotated[list[Annotated[str, Field(min_length=1, max_length=4000)]],
                        Field(min_length=1, max_length=200)]


class SemanticRouter(Strict):
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


class SplitArm(Strict):
    """One arm of a split: another group (``to``) or one deployment of the split's own group."""

    to: _Name | None = None
    deployment: _Name | None = None
    percent: Annotated[float, Field(gt=0, le=100)]

    @model_validator(mode="after")
    def _one_target(self) -> SplitArm:
        if (self.to is None) == (self.deployment is None):
            raise ValueError("an arm names either a group (to) or a deployment, not both")
        return self


class Split(Strict):
    """A canary or A/B split of the requests for ``model`` by percentage, sticky per key, user
    or session header (``header:<name>``), or drawn per request (``none``)."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    model: _Name
    sticky: Annotated[str, Field(pattern=r"^(key|user|none|header:[A-Za-z0-9-]{1,64})$")] = "key"
    arms: Annotated[list[SplitArm], Field(min_length=2, max_length=20)]

    @model_validator(mode="after")
    def _hundred(self) -> Split:
        seen: set[str] = set()
        for i, arm in enumerate(self.arms):
            label = arm.to if arm.to is not None else str(arm.deployment)
            # An arm's share is set by its name (the admin API, the tags): each is named once.
            if label in seen:
                raise ValueError(f"arms[{i}]: {label!r} is an arm of this split already (name each group "
                                 "or deployment once)")
            seen.add(label)
        total = sum(arm.percent for arm in self.arms)
        if abs(total - 100) > 1e-6:
            raise ValueError(f"arms: their percents add up to {total:g}, not 100")
        return self


class RouterConfig(Strict):
    """Model groups, strategies, retries, fallbacks and cooldowns (docs/routing.md).
    Minimal contract: ``strategy``, ``num_retries`` and ``fallbacks`` as named here."""

    strategy: Strategy = "weighted"
    # Retries after the first attempt, within the group, before its fallbacks.
    num_retries: Annotated[int, Field(ge=0, le=10)] = 2
    # Ordered chains to other groups when the group's attempts fail with a ``fallback_on`` class.
    fallbacks: _Chains = Field(default_factory=dict)
    fallback_on: _Classes = ("rate_limit", "server_error", "timeout", "connection", "content_policy",
                             "billing")
    # Larger groups for a request that fits none of the group's deployments' context windows.
    context_window_fallbacks: _Chains = Field(default_factory=dict)
    # Other names a group answers to: {alias: group}.
    aliases: Annotated[dict[_Alias, _Name], Field(max_length=10_000)] = Field(default_factory=dict)
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
