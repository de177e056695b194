"""A native Responses deployment's failed response (providers/openai_responses.py): the error
raised for it never quotes a credential the scrub takes out, whatever shape its error has."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchboard.config.schema import Timeouts
from switchboard.errors import GatewayError
from switchboard.providers.openai import OpenAIOptions
from switchboard.providers.openai_responses import native_reply
from switchboard.providers.target import Target

SECRET = "sk-upstream-secret-123"
TARGET = Target(name="gpt-native", model="gpt-4o", provider="oai", provider_type="openai",
                api_base="https://api.example.com", options=OpenAIOptions(), timeouts=Timeouts())


def scrub(text: str) -> str:
    return text.replace(SECRET, "***")


@pytest.mark.parametrize("error", [
    {"code": "server_error", "message": f"bad key {SECRET}"},
    f"bad key {SECRET}",  # not OpenAI's shape, but an upstream's all the same
])
def test_a_failed_responses_error_is_scrubbed_whatever_its_shape(error: Any) -> None:
    body = {"id": "resp_1", "object": "response", "status": "failed", "output": [], "error": error}
    with pytest.raises(GatewayError) as raised:
        native_reply(orjson.dumps(body), TARGET, scrub)
    assert raised.value.status == 502
    assert SECRET not in raised.value.message and "bad key ***" in raised.value.message
