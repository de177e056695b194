"""The Responses API's configuration: native deployments and the stored responses' bounds."""

from __future__ import annotations

from typing import Any

import pytest

from switchboard.settings.loader import validate


def _settings(**model: Any) -> dict[str, Any]:
    return {
        "providers": [
            {"name": "o", "type": "openai", "api_base": "http://127.0.0.1:9/v1"},
            {"name": "a", "type": "anthropic", "api_key": "x"},
        ],
        "models": [{"name": "m", "provider": "o", "model": "gpt", **model}],
        "auth": {"master_key": "sk-master-key-for-tests"},
    }


def test_native_on_openai_and_defaults() -> None:
    settings = validate({**_settings(responses="native"), "responses": {"retention_days": 7}}, "test", env={})
    assert settings.models[0].responses == "native"
    assert settings.responses.retention_days == 7
    assert settings.responses.max_stored_bytes == 16 * 1024 * 1024
    assert validate(_settings(), "test", env={}).models[0].responses == "translate"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"models": [{"name": "m", "provider": "a", "model": "claude", "responses": "native"}]},
            "'native' needs a provider of type openai or azure",
        ),
        (
            {"models": [{"name": "m", "provider": "o", "model": "gpt", "responses": "passthrough"}]},
            "responses",
        ),
        ({"responses": {"retention_days": 0}}, "retention_days"),
        ({"responses": {"max_stored_bytes": 10}}, "max_stored_bytes"),
        ({"responses": {"keep": True}}, "keep"),
    ],
)
def test_refused(config: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception) as info:
        validate({**_settings(), **config}, "test", env={})
    assert message in str(info.value)
