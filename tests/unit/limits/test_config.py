"""The `limits:` section and the providers' own limits: bad values are configuration errors."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from switchboard.config.schema import LimitsConfig, ProviderConfig


@pytest.mark.parametrize("section", [
    {"global": {"rpm": -1}},
    {"global": {"rpm": 0}},
    {"per_key": {"tpm": 10**13}},
    {"per_key": {"rpm": 5, "rph": 1}},
    {"models": {"m": {"tpd": "lots"}}},
    {"burst": 2},
    {"burst": -0.1},
    {"window_seconds": 0},
    {"on_store_error": "maybe"},
    {"max_wait_seconds": 600},
    {"per_galaxy": {"rpm": 1}},
])
def test_bad_limits_are_refused(section: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        LimitsConfig.model_validate(section)


def test_the_defaults_and_a_full_section() -> None:
    default = LimitsConfig()
    assert (default.burst, default.window_seconds, default.on_store_error, default.max_wait_seconds) == (
        0.0, 60.0, "open", 2.0)
    full = LimitsConfig.model_validate({"global": {"rpm": 1}, "per_key_model": {"*": {"tpm": 9}}})
    assert full.global_ is not None and full.global_.rpm == 1 and full.per_key_model["*"].tpm == 9


def test_a_providers_own_limits_must_be_positive() -> None:
    assert ProviderConfig.model_validate({"name": "p", "type": "openai", "rpm": 5}).rpm == 5
    with pytest.raises(ValidationError):
        ProviderConfig.model_validate({"name": "p", "type": "openai", "tpm": 0})
