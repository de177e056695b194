"""``analytics.retention_days``: how long the rollups are kept (absent: for ever)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from switchboard.config.schema import AnalyticsConfig


def test_retention_days_default_and_bounds() -> None:
    assert AnalyticsConfig().retention_days is None
    assert AnalyticsConfig.model_validate({"retention_days": 400}).retention_days == 400
    for bad in (0, -1, 36_601, "a year", 1.5):
        with pytest.raises(ValidationError) as info:
            AnalyticsConfig.model_validate({"retention_days": bad})
        assert info.value.errors()[0]["loc"][0] == "retention_days"
