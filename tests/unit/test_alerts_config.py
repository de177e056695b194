"""The ``alerts`` section: rules and webhooks validated with one clear line per problem."""

from __future__ import annotations

from typing import Any

import pytest

from switchboard.settings.loader import ConfigError, validate

HOOK = {"url": "http://127.0.0.1:9/hook", "secret": "whsec-0123456789abcdef"}


def _config(alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "providers": [{"name": "p", "type": "openai", "api_base": "http://127.0.0.1:9/v1"}],
        "models": [{"name": "m", "provider": "p", "model": "gpt-4o"}],
        "auth": {"master_key": "12345678"},
        "alerts": alerts,
    }


def test_a_full_alerts_section_is_accepted_with_defaults() -> None:
    settings = validate(_config({
        "webhooks": {"oncall": HOOK, "chat-ops": {**HOOK, "max_attempts": 2, "timeout_seconds": 1}},
        "rules": [
            {"name": "errors", "kind": "error_rate", "group": "gpt-*", "threshold": 0.25},
            {"name": "slow", "kind": "latency", "deployment": "azure-*", "threshold": 2000,
             "percentile": "p99", "window_seconds": 120, "min_requests": 50, "webhooks": ["oncall"]},
            {"name": "breakers", "kind": "breaker"},
            {"name": "budgets", "kind": "budget", "thresholds": [80, 100], "scopes": ["tenant", "team"]},
        ],
        "evaluate_seconds": 5,
    }), "cfg.yaml", env={})
    alerts = settings.alerts
    assert list(alerts.webhooks) == ["oncall", "chat-ops"] and alerts.evaluate_seconds == 5
    errors, slow, breakers, budgets = alerts.rules
    assert (errors.deployment, errors.window_seconds, errors.min_requests) == ("*", 300, 20)
    assert errors.webhooks is None
    assert (slow.percentile, slow.webhooks) == ("p99", ["oncall"])
    assert breakers.threshold is None and budgets.thresholds == [80, 100]
    assert validate(_config({}), "cfg.yaml", env={}).alerts.rules == []


@pytest.mark.parametrize(("alerts", "problem"), [
    ({"rules": [{"name": "r", "kind": "error_rate", "threshold": 0.5, "webhooks": ["pager"]}]},
     "alerts.rules[0].webhooks: unknown webhook 'pager' (known: none)"),
    ({"webhooks": {"oncall": HOOK},
      "rules": [{"name": "r", "kind": "breaker", "webhooks": ["oncall", "pager"]}]},
     "unknown webhook 'pager' (known: oncall)"),
    # Every event would be POSTed to it twice.
    ({"webhooks": {"oncall": HOOK},
      "rules": [{"name": "r", "kind": "breaker", "webhooks": ["oncall", "oncall"]}]},
     "alerts.rules[0].webhooks: webhook 'oncall' is listed more than once"),
    ({"rules": [{"name": "r", "kind": "error_rate", "threshold": 1.5}]},
     "an error rate is a share of requests, 0 < threshold <= 1, got 1.5"),
    ({"rules": [{"name": "r", "kind": "error_rate", "threshold": 0}]},
     "threshold: Input should be greater than 0"),
    ({"rules": [{"name": "r", "kind": "error_rate", "threshold": -0.1}]}, "greater than 0"),
    ({"rules": [{"name": "r", "kind": "error_rate"}]},
     "alerts.rules[0].threshold: a error_rate rule needs one"),
    ({"rules": [{"name": "r", "kind": "latency"}]}, "alerts.rules[0].threshold: a latency rule needs one"),
    ({"rules": [{"name": "r", "kind": "latency", "threshold": 5_000_000}]}, "at most 3600000"),
    ({"rules": [{"name": "r", "kind": "latency", "threshold": "fast"}]}, "valid number"),
    ({"rules": [{"name": "r", "kind": "latency", "threshold": 100, "percentile": "p90"}]}, "percentile"),
    ({"rules": [{"name": "r", "kind": "breaker", "threshold": 3}]},
     "alerts.rules[0].threshold: a breaker rule takes none"),
    ({"rules": [{"name": "r", "kind": "budget", "group": "gpt-*"}]},
     "alerts.rules[0].group: a budget rule takes no group"),
    ({"rules": [{"name": "r", "kind": "breaker", "window_seconds": 60}]},
     "alerts.rules[0].window_seconds: a breaker rule takes no window_seconds"),
    ({"rules": [{"name": "r", "kind": "error_rate", "threshold": 0.5, "thresholds": [50]}]},
     "alerts.rules[0].thresholds: a error_rate rule takes no thresholds"),
    ({"rules": [{"name": "r", "kind": "budget", "thresholds": [0]}]}, "greater than or equal to 1"),
    ({"rules": [{"name": "r", "kind": "budget", "thresholds": [101]}]}, "less than or equal to 100"),
    ({"rules": [{"name": "r", "kind": "budget", "thresholds": []}]}, "at least 1 item"),
    ({"rules": [{"name": "r", "kind": "budget", "scopes": ["galaxy"]}]}, "scopes[0]"),
    # As the admin API refuses a budget's [80, 80]: a typo, refused with the key's path.
    ({"rules": [{"name": "r", "kind": "budget", "thresholds": [80, 100, 80]}]},
     "alerts.rules[0].thresholds: 80 is listed more than once"),
    ({"rules": [{"name": "r", "kind": "budget", "scopes": ["team", "team"]}]},
     "alerts.rules[0].scopes: 'team' is listed more than once"),
    ({"rules": [{"name": "r", "kind": "weather"}]}, "alerts.rules[0].kind"),
    ({"rules": [{"kind": "breaker"}]}, "alerts.rules[0].name: Field required"),
    ({"rules": [{"name": "has space", "kind": "breaker"}]}, "must be letters, digits"),
    ({"rules": [{"name": "x" * 65, "kind": "breaker"}]}, "at most 64 characters"),
    ({"rules": [{"name": "r", "kind": "breaker", "severity": "high"}]},
     "alerts.rules[0].severity: unknown key"),
    ({"rules": [{"name": "r", "kind": "breaker"}, {"name": "r", "kind": "budget"}]},
     "rules[1].name: duplicate rule name 'r'"),
    ({"rules": [{"name": "r", "kind": "error_rate", "threshold": 0.5, "window_seconds": 0}]},
     "window_seconds"),
    ({"rules": [{"name": "r", "kind": "error_rate", "threshold": 0.5, "min_requests": 0}]}, "min_requests"),
    ({"rules": [{"name": "r", "kind": "breaker", "group": "g" * 300}]}, "at most 256 characters"),
    ({"webhooks": {"oncall": {**HOOK, "secret": "short"}}}, "alerts.webhooks.oncall.secret"),
    ({"webhooks": {"oncall": {**HOOK, "url": "127.0.0.1:9/hook"}}}, "must be an http:// or https:// URL"),
    ({"webhooks": {"oncall": {**HOOK, "max_attempts": 0}}}, "alerts.webhooks.oncall.max_attempts"),
    ({"webhooks": {"oncall": {**HOOK, "queue_size": 10**7}}}, "alerts.webhooks.oncall.queue_size"),
    ({"webhooks": {"on call": HOOK}}, "webhook name 'on call'"),
    ({"webhooks": {"oncall": {**HOOK, "verify": False}}}, "alerts.webhooks.oncall.verify: unknown key"),
    ({"evaluate_seconds": 0}, "alerts.evaluate_seconds"),
    ({"rulez": []}, "alerts.rulez: unknown key"),
    ({"rules": {"name": "r"}}, "alerts.rules: Input should be a valid list"),
])
def test_bad_alerts_config_is_one_clear_problem(alerts: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as exc:
        validate(_config(alerts), "cfg.yaml", env={})
    text = "\n".join(exc.value.problems)
    assert problem in text, text
    assert "whsec-0123456789abcdef" not in str(exc.value)  # a secret is never echoed


def test_budget_thresholds_listed_twice_are_refused_as_the_admin_api_does() -> None:
    config = {**_config({}), "budgets": {"thresholds": [50, 80, 50]}}
    with pytest.raises(ConfigError) as exc:
        validate(config, "cfg.yaml", env={})
    assert "budgets.thresholds: 50 is listed more than once" in exc.value.problems
    assert validate({**config, "budgets": {"thresholds": [100, 50]}}, "cfg.yaml", env={}).budgets.thresholds \
        == [100, 50]
