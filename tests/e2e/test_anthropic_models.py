"""Anthropic's Models API on ``/v1/models``: the official anthropic SDK lists, pages and retrieves
the gateway's models as ``ModelInfo`` objects, while the openai SDK keeps OpenAI's shape."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from tests.servers import MASTER_KEY, Gateway

CONFIGURED = ["gpt-4o-mini", "text-embedding-3-small", "gpt-3.5-turbo-instruct", "misconfigured",
              "unreachable", "slow-model", "impatient-model"]
HEADERS = {"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01"}


@pytest.fixture
def claude(gateway: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def test_the_sdk_lists_every_model_page_by_page(claude: anthropic.Anthropic) -> None:
    first = claude.models.list(limit=3)
    assert [m.id for m in first.data] == CONFIGURED[:3] and first.has_more
    assert (first.first_id, first.last_id) == ("gpt-4o-mini", "gpt-3.5-turbo-instruct")
    # Auto-pagination follows after_id to the end, each model once, in the directory's order.
    assert [m.id for m in claude.models.list(limit=3)] == CONFIGURED
    before = claude.models.list(before_id="misconfigured", limit=2)
    assert [m.id for m in before.data] == CONFIGURED[1:3] and before.has_more
    assert [m.id for m in claude.models.list(before_id="text-embedding-3-small").data] == ["gpt-4o-mini"]


def test_a_model_is_a_model_info(claude: anthropic.Anthropic) -> None:
    model = claude.models.retrieve("gpt-4o-mini")
    assert (model.type, model.id, model.display_name) == ("model", "gpt-4o-mini", "gpt-4o-mini")
    assert model.created_at.year >= 2026 and model.created_at.tzinfo is not None
    # The catalog's limits and what its capabilities say in Anthropic's terms.
    assert (model.max_input_tokens, model.max_tokens) == (128000, 16384)
    assert model.capabilities is not None and model.capabilities.image_input is not None
    assert model.capabilities.image_input.supported is True
    assert [m for m in claude.models.list().data if m.id == "gpt-4o-mini"] == [model]


def test_an_unknown_model_and_bad_paging_are_anthropic_errors(
    claude: anthropic.Anthropic, gateway: Gateway
) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.models.retrieve("claude-nope")
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    # More than 4300 digits, int() refuses (it was a 500).
    for params in ({"limit": "0"}, {"limit": "1001"}, {"limit": "ten"}, {"limit": "-1"},
                   {"limit": "9" * 4400},
                   {"after_id": "nope"}, {"after_id": "gpt-4o-mini", "before_id": "slow-model"}):
        resp = httpx.get(f"{gateway.url}/v1/models", params=params, headers=HEADERS, timeout=10)
        assert resp.status_code == 400, (params, resp.text)
        assert resp.json()["type"] == "error" and resp.json()["error"]["type"] == "invalid_request_error"
    twice = httpx.get(f"{gateway.url}/v1/models?limit=2&limit=3", headers=HEADERS, timeout=10)
    assert twice.status_code == 400 and "twice" in twice.json()["error"]["message"]
    many = httpx.get(f"{gateway.url}/v1/models?" + "&".join(f"p{i}=1" for i in range(30)), headers=HEADERS,
                     timeout=10)
    assert many.status_code == 400
    # Claude Code's ?beta=true and other unknown parameters are ignored, as Anthropic does.
    beta = httpx.get(f"{gateway.url}/v1/models?beta=true&limit=1", headers=HEADERS, timeout=10)
    assert beta.status_code == 200 and [m["id"] for m in beta.json()["data"]] == ["gpt-4o-mini"]
    # The server keeps serving.
    assert claude.models.retrieve("slow-model").id == "slow-model"


def test_a_wrong_key_is_an_anthropic_authentication_error(gateway: Gateway) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key="sk-wrong", max_retries=0, timeout=30)
    with pytest.raises(anthropic.AuthenticationError) as refused:
        client.models.list()
    assert refused.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


def test_a_key_sees_only_its_models(claude: anthropic.Anthropic, gateway: Gateway) -> None:
    created = httpx.post(f"{gateway.url}/admin/v1/keys", json={"models": ["slow-model", "gpt-4o-mini"]},
                         headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10)
    mine = anthropic.Anthropic(base_url=gateway.url, api_key=created.json()["key"], max_retries=0, timeout=30)
    assert [m.id for m in mine.models.list()] == ["gpt-4o-mini", "slow-model"]
    with pytest.raises(anthropic.NotFoundError):
        mine.models.retrieve("unreachable")


def test_the_openai_sdk_keeps_openai_s_shape(client: openai.OpenAI) -> None:
    listed = client.models.list()
    assert [m.id for m in listed.data] == CONFIGURED and listed.data[0].object == "model"
    assert client.models.retrieve("gpt-4o-mini").owned_by == "local-openai"
