"""Token counts equal the reference counting (tests/unit/tokens/reference.py: OpenAI's cookbook
rules over tiktoken's own encodings) for every golden chat request, on both encodings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from switchboard import tokens
from tests.unit.tokens.cases import WEATHER, chat_cases, sizes
from tests.unit.tokens.reference import Reference, reference_encoding, seed_cache

CASES = chat_cases()


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    seed_cache(cache)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", str(cache))
        yield {name: reference_encoding(name) for name in ("o200k_base", "cl100k_base")}


def test_there_are_at_least_fifty_varied_cases() -> None:
    assert len(CASES) >= 50
    assert len({case_id for case_id, _, _ in CASES}) == len(CASES)
    requests = [r for _, _, r in CASES]
    assert sum(1 for r in requests if r.get("tools")) >= 10
    assert sum(1 for r in requests if any(m.get("tool_calls") for m in r["messages"])) >= 6
    lists = [m["content"] for r in requests for m in r["messages"] if isinstance(m["content"], list)]
    parts = [p for content in lists for p in content]
    details = {p["image_url"].get("detail") for p in parts if p["type"] == "image_url"}
    assert details == {"low", "high", "auto", None}


@pytest.mark.parametrize(("case_id", "model", "request_body"), CASES, ids=[c[0] for c in CASES])
def test_count_equals_the_reference(
    references: dict[str, Any], case_id: str, model: str, request_body: dict[str, Any]
) -> None:
    encoding = tokens.encoding_for(model)
    assert encoding is not None
    expected = Reference(references[encoding], model).chat(request_body, sizes())
    assert tokens.estimate({"model": model, **request_body}, "chat") == expected
    # The same request through count_tokens' operation name counts the same.
    assert tokens.count(request_body, "count_tokens", encoding, model) == expected


def test_the_cookbook_examples(references: dict[str, Any]) -> None:
    """The cookbook's own examples, with the prompt_tokens OpenAI's API reported for them."""
    messages = [
        {"role": "system", "content": "You are a helpful, pattern-following assistant that translates "
                                      "corporate jargon into plain English."},
        {"role": "system", "name": "example_user",
         "content": "New synergies will help drive top-line growth."},
        {"role": "system", "name": "example_assistant",
         "content": "Things working well together will increase revenue."},
        {"role": "system", "name": "example_user",
         "content": "Let's circle back when we have more bandwidth to touch base on opportunities for "
                    "increased leverage."},
        {"role": "system", "name": "example_assistant",
         "content": "Let's talk later when we're less busy about how to do better."},
        {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the "
                                    "client deliverable."},
    ]
    assert tokens.estimate({"messages": messages}, "chat", model="gpt-4") == 129
    assert tokens.estimate({"messages": messages}, "chat", model="gpt-4o") == 124
    weather = [
        {"role": "system",
         "content": "You are a helpful assistant that can answer to questions about the weather."},
        {"role": "user", "content": "What's the weather like in San Francisco?"},
    ]
    assert tokens.estimate({"messages": weather, "tools": [WEATHER]}, "chat", model="gpt-4o") == 101
    assert tokens.estimate({"messages": weather, "tools": [WEATHER]}, "chat", model="gpt-4") == 105
