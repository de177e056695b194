"""The Responses API's stored responses on a cluster (two gateways sharing PostgreSQL and Redis
behind a load balancer), driven by the official ``openai`` SDK: a response answered by one
instance is found right away by the other, continued with ``previous_response_id`` and read with
``GET /v1/responses/{id}``, streamed or not, translated or native (docs/api-responses.md)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway
from tests.services import Postgres, RedisServer

# Each case is asked this many times: the other instance's read came before the answering
# instance's write about every other time when the write followed the reply.
ROUNDS = 12


@pytest.fixture(scope="module")
def pair(mock_upstream: Mock, postgres: Postgres, redis_server: RedisServer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Gateway]]:
    config: dict[str, Any] = openai_config(mock_upstream)
    config["models"].append({"name": "native-openai", "provider": "local-openai", "model": "gpt-4o-mini",
                             "responses": "native"})
    config["database"] = {"url": postgres.create_database(f"responses_{uuid.uuid4().hex[:8]}")}
    config["redis"] = {"url": redis_server.url}
    first = start_gateway(config, tmp_path_factory.mktemp("responses-a"))
    second = start_gateway(config, tmp_path_factory.mktemp("responses-b"))
    yield first, second
    first.process.stop()
    second.process.stop()


def _sdk(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def _answered(client: openai.OpenAI, model: str, stream: bool, text: str) -> Any:
    if not stream:
        return client.responses.create(model=model, input=text)
    with client.responses.stream(model=model, input=text) as events:
        for _ in events:
            pass
        return events.get_final_response()


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("model", ["gpt-4o-mini", "native-openai"])
def test_a_response_is_continued_and_read_on_the_other_instance_at_once(
    pair: tuple[Gateway, Gateway], model: str, stream: bool
) -> None:
    answering, other = (_sdk(gw) for gw in pair)
    for n in range(ROUNDS):
        first = _answered(answering, model, stream, f"My name is Ada ({n}).")
        follow = other.responses.create(model=model, previous_response_id=first.id, input="What is my name?")
        assert follow.status == "completed" and follow.previous_response_id == first.id
        read = _answered(answering, model, stream, f"Remember {n}.")
        assert other.responses.retrieve(read.id).output_text == read.output_text
