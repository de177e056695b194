"""With ``spend.refuse_unpriced``, a batch may not run a model that has no price: its lines run
upstream later, priced only then, so a batch naming such a model is refused when it is created
(400 ``model_unpriced``, naming the line or the request) as a single call to it is refused, for
/v1/batches (served models and upstream ids no model entry names alike) and for Anthropic's
/v1/messages/batches. Nothing of a refused batch reaches the provider."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
PRICES = {"input_cost_per_mtok": 0.15, "output_cost_per_mtok": 0.6}


@dataclass
class World:
    gateway: Gateway
    tenant: str

    def key(self, models: list[str]) -> str:
        resp = httpx.post(f"{self.gateway.url}/admin/v1/keys", json={"models": models, "tenant": self.tenant},
                          headers=ADMIN, timeout=30)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["key"])

    def openai(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=key, max_retries=0, timeout=30)

    def anthropic(self, key: str) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.gateway.url, api_key=key, max_retries=0, timeout=30)

    def batches_of(self, key: str) -> int:
        resp = httpx.get(f"{self.gateway.url}/v1/batches", headers={"Authorization": f"Bearer {key}"},
                         timeout=30)
        assert resp.status_code == 200, resp.text
        return len(resp.json()["data"])


@pytest.fixture(scope="module")
def world(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    config = openai_config(mock_upstream)
    config["providers"].append({"name": "anth", "type": "anthropic", "api_base": mock_upstream.url,
                                "api_key": "${UPSTREAM_KEY}"})
    config["models"] += [
        {"name": "priced", "provider": "local-openai", "model": "house-model", "info": dict(PRICES)},
        # No catalog record and no info: prices: calls to it are refused.
        {"name": "mystery", "provider": "local-openai", "model": "mystery-model"},
        {"name": "claude", "provider": "anth", "model": "claude-house", "info": dict(PRICES)},
        {"name": "claude-mystery", "provider": "anth", "model": "claude-mystery-9"},
    ]
    config["spend"] = {"refuse_unpriced": True}
    config["files"] = {"provider": "local-openai"}
    gw = start_gateway(config, tmp_path_factory.mktemp("batches-unpriced"))
    tenant = f"unpriced-{uuid.uuid4().hex[:6]}"
    made = httpx.post(f"{gw.url}/admin/v1/tenants", json={"id": tenant, "name": tenant}, headers=ADMIN,
                      timeout=30)
    assert made.status_code == 201, made.text
    yield World(gw, tenant)
    gw.process.stop()


def jsonl(*models: str) -> bytes:
    lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": m, "messages": [{"role": "user", "content": "hi"}]}}
             for i, m in enumerate(models)]
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def test_a_single_call_to_an_unpriced_model_is_refused(world: World) -> None:
    # What the batches below are held to.
    client = world.openai(world.key(["*"]))
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="mystery", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.code == "model_unpriced"


@pytest.mark.parametrize(("models", "lines"), [
    (["*"], ("house-model", "mystery-model")),  # a served model without a price
    (["priced", "mystery"], ("house-model", "house-model", "mystery-model")),  # the same, scoped key
    (["*"], ("house-model", "made-up-model")),  # an upstream id no entry names, unknown to the catalog
], ids=["any-model", "scoped", "not-served"])
def test_a_batch_naming_an_unpriced_model_is_refused_naming_the_line(
    world: World, models: list[str], lines: tuple[str, ...]
) -> None:
    key = world.key(models)
    client = world.openai(key)
    source = client.files.create(file=("in.jsonl", jsonl(*lines)), purpose="batch")
    with pytest.raises(openai.BadRequestError) as refused:
        client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions",
                              completion_window="24h")
    body = refused.value.body
    assert isinstance(body, dict)
    assert (body["code"], body["param"]) == ("model_unpriced", "input_file_id")
    assert f"line {len(lines)} of the input file" in body["message"] and lines[-1] in body["message"]
    assert world.batches_of(key) == 0  # nothing created upstream
    # Priced lines only: the batch runs.
    priced = client.files.create(file=("ok.jsonl", jsonl(*lines[:-1])), purpose="batch")
    batch = client.batches.create(input_file_id=priced.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    assert batch.status == "validating" and world.batches_of(key) == 1


def _request(custom_id: str, model: str) -> dict[str, Any]:
    return {"custom_id": custom_id, "params": {"model": model, "max_tokens": 16,
                                               "messages": [{"role": "user", "content": "hi"}]}}


def test_a_message_batch_naming_an_unpriced_model_is_refused_naming_the_request(world: World) -> None:
    client = world.anthropic(world.key(["claude", "claude-mystery"]))
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.batches.create(requests=[_request("a", "claude"),  # type: ignore[list-item]
                                                 _request("b", "claude-mystery")])
    body = refused.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith("requests.1.params.model: ")
    assert "claude-mystery" in body["error"]["message"]
    assert client.messages.batches.list().data == []
    made = client.messages.batches.create(requests=[_request("a", "claude")])  # type: ignore[list-item]
    assert made.processing_status == "in_progress"
