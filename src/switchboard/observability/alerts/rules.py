"""The configured alert rules, compiled: which deployments and budgets each one watches."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from switchboard.config.schema import AlertRule, AlertsConfig
from switchboard.providers.errors import BILLING_CODES

PERCENTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


def failed(status: int, code: str | None = None, own_account: bool = False) -> bool:
    """Whether an attempt says the deployment failed: a server error (the provider refusing the
    gateway's own credential among them: 502 upstream_authentication_failed), a timeout, no
    answer, or the provider account's rate limit or credit (429; 402, or a billing code on
    another 4xx). A caller's bad request (another 4xx) says nothing about the deployment, nor do
    the limits and credit of a caller's own provider credential (``own_account``): the breakers
    count the same (routing/router.py, ACCOUNT_CLASSES)."""
    if status >= 500 or status <= 0 or status == 408:
        return True
    account = status in (402, 429) or (400 <= status < 500 and code in BILLING_CODES)
    return account and not own_account


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    kind: str
    group: str
    deployment: str
    threshold: float | None
    percentile: str
    window_seconds: float
    min_requests: int
    thresholds: frozenset[int] | None
    scopes: frozenset[str] | None
    webhooks: tuple[str, ...]

    @classmethod
    def of(cls, rule: AlertRule, every_webhook: Sequence[str]) -> Rule:
        return cls(
            name=rule.name, kind=rule.kind, group=rule.group, deployment=rule.deployment,
            threshold=rule.threshold, percentile=rule.percentile, window_seconds=rule.window_seconds,
            min_requests=rule.min_requests,
            thresholds=None if rule.thresholds is None else frozenset(rule.thresholds),
            scopes=None if rule.scopes is None else frozenset(rule.scopes),
            webhooks=tuple(rule.webhooks if rule.webhooks is not None else every_webhook),
        )

    def watches(self, group: str, deployment: str) -> bool:
        """Whether this (deployment) rule applies to ``deployment`` of ``group``."""
        return fnmatchcase(group, self.group) and fnmatchcase(deployment, self.deployment)

    def watches_budget(self, scope: str, percent: int) -> bool:
        return ((self.scopes is None or scope in self.scopes)
                and (self.thresholds is None or percent in self.thresholds))

    def measure(self, count: int, failures: int, ms: Sequence[int]) -> float:
        """The rule's value over a window: the share failed, or the latency percentile (ms)."""
        if self.kind == "error_rate":
            return failures / count if count else 0.0
        return percentile(ms, PERCENTILES[self.percentile])

    def firing(self, count: int, value: float) -> bool:
        assert self.threshold is not None
        return count >= self.min_requests and value >= self.threshold

    def clear(self, count: int, value: float) -> bool:
        """Hysteresis: resolved only on evidence, enough requests below the threshold."""
        assert self.threshold is not None
        return count >= self.min_requests and value < self.threshold

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind in ("error_rate", "latency", "breaker"):
            out.update(group=self.group, deployment=self.deployment)
        if self.kind in ("error_rate", "latency"):
            out.update(window_seconds=self.window_seconds, min_requests=self.min_requests)
        if self.kind == "latency":
            out["percentile"] = self.percentile
        return out


def percentile(values: Sequence[int], q: float) -> float:
    """The nearest-rank percentile of ``values`` (0.0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return float(ordered[rank - 1])


def compile_rules(config: AlertsConfig) -> list[Rule]:
    every = list(config.webhooks)
    return [Rule.of(rule, every) for rule in config.rules]


def by_kind(rules: Sequence[Rule]) -> Mapping[str, list[Rule]]:
    out: dict[str, list[Rule]] = {}
    for rule in rules:
        out.setdefault(rule.kind, []).append(rule)
    return out
