"""``thinking: {"type": "adaptive"}`` (Anthropic's: the model sets its own budget; the /v1/messages
decoder carries it as sent) goes to an ``anthropic`` upstream unchanged, and to Claude on
``bedrock`` as Claude's own field there, and is a clear 400 naming ``thinking`` everywhere else,
none of which has an equivalent."""

from __future__ import annotations

import pytest

from switchboard.errors import InvalidRequest
from tests.unit.test_capability_matrix import KEYS, upstream_body

ADAPTIVE = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "thinking": {"type": "adaptive"}}


def test_anthropic_takes_it_as_sent() -> None:
    assert upstream_body("anthropic", ADAPTIVE)["thinking"] == {"type": "adaptive"}


def test_bedrock_claude_takes_it_among_its_model_fields() -> None:
    body = upstream_body("bedrock", ADAPTIVE)  # the matrix's Bedrock model is a Claude
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "adaptive"}}


@pytest.mark.parametrize("key", [k for k in KEYS if k not in ("anthropic", "bedrock")])
def test_every_other_provider_refuses_it_naming_thinking(key: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        upstream_body(key, ADAPTIVE)
    assert err.value.status == 400
    assert (err.value.param or "").split(".")[0] == "thinking"
    assert "thinking" in err.value.message
