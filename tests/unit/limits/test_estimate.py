"""The output a request reserves against its token limits (limits/estimate.py)."""

from __future__ import annotations

from typing import Any

import pytest

from switchboard.context import RequestContext
from switchboard.http.openai_api import CHAT
from switchboard.limits.estimate import max_output_tokens


@pytest.mark.parametrize(("request_fields", "reserved"), [
    ({}, 0),
    ({"max_tokens": 100}, 100),
    ({"max_completion_tokens": 50, "max_tokens": 100}, 50),
    ({"max_tokens": 100, "n": 3}, 300),  # every choice may write max_tokens (as OpenAI counts TPM)
    ({"max_tokens": 100, "n": 1}, 100),
    ({"max_tokens": 100, "n": True}, 100),
    ({"n": 4}, 0),
    ({"max_tokens": True}, 0),
    ({"max_completion_tokens": 0, "max_tokens": 100}, 100),  # not a bound: the next field's
    ({"max_completion_tokens": None}, 0),
])
def test_the_output_reserved(request_fields: dict[str, Any], reserved: int) -> None:
    ctx = RequestContext("rid", "chat", CHAT, {}, b"", 0.0)
    ctx.request = {"model": "m", "messages": [], **request_fields}
    assert max_output_tokens(ctx) == reserved
