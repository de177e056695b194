"""``thinking: {"type": "adaptive"}`` (Anthropic's: the model sets its own budget; the /v1/messages
decoder carries it as sent) goes to an ``anthropic`` upstream unchanged, to Claude on ``bedrock``
as Claude's own field there, to Gemini as its dynamic thinking and to the OpenAI-shaped APIs as
``reasoning_effort: high`` (Anthropic's default effort); an effort sent with it (Claude Code sends
``output_config.effort``) decides on those. Anywhere else it is a clear 400 naming ``thinking``."""

from __future__ import annotations

import pytest

from switchboard.errors import InvalidRequest
from tests.unit.test_capability_matrix import KEYS, upstream_body

ADAPTIVE = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "thinking": {"type": "adaptive"}}
WITH_EFFORT = {**ADAPTIVE, "reasoning_effort": "high"}
OPENAI_SHAPED = [k for k in KEYS if k.partition(":")[0] in ("openai", "azure", "openai-compatible")]


def test_anthropic_takes_it_as_sent() -> None:
    assert upstream_body("anthropic", ADAPTIVE)["thinking"] == {"type": "adaptive"}


def test_bedrock_claude_takes_it_among_its_model_fields() -> None:
    body = upstream_body("bedrock", ADAPTIVE)  # the matrix's Bedrock model is a Claude
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "adaptive"}}


@pytest.mark.parametrize("key", ["gemini", "vertex"])
def test_gemini_thinks_dynamically_or_as_much_as_the_effort_says(key: str) -> None:
    config = upstream_body(key, ADAPTIVE)["generationConfig"]  # the matrix's model: gemini-2.5-flash
    assert config["thinkingConfig"] == {"thinkingBudget": -1, "includeThoughts": True}
    config = upstream_body(key, WITH_EFFORT)["generationConfig"]
    assert config["thinkingConfig"] == {"thinkingBudget": 24576, "includeThoughts": True}


@pytest.mark.parametrize("key", OPENAI_SHAPED)
def test_the_openai_shaped_apis_take_it_as_anthropics_default_effort_or_the_one_sent(key: str) -> None:
    body = upstream_body(key, ADAPTIVE)
    assert body["reasoning_effort"] == "high" and "thinking" not in body
    body = upstream_body(key, {**ADAPTIVE, "reasoning_effort": "low"})
    assert body["reasoning_effort"] == "low" and "thinking" not in body


@pytest.mark.parametrize("key", [k for k in KEYS if k not in ("anthropic", "bedrock", "gemini", "vertex",
                                                               *OPENAI_SHAPED)])
def test_alone_every_other_provider_refuses_it_naming_thinking(key: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        upstream_body(key, ADAPTIVE)
    assert err.value.status == 400
    assert (err.value.param or "").split(".")[0] == "thinking"
    assert "thinking" in err.value.message
