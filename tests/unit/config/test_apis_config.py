"""``apis.cache_seconds``: how long an instance keeps an API's record for calls."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from switchboard.config.prompts import ApisConfig


def test_cache_seconds_default_and_bounds() -> None:
    assert ApisConfig().cache_seconds == 10.0
    assert ApisConfig.model_validate({"cache_seconds": 0.5}).cache_seconds == 0.5
    for bad in (0, -1, 3601, "soon"):
        with pytest.raises(ValidationError) as info:
            ApisConfig.model_validate({"cache_seconds": bad})
        assert info.value.errors()[0]["loc"] == ("cache_seconds",)
