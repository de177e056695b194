"""Image and audio units priced apart, end to end: the openai SDK -> the gateway -> the mock's
OpenAI and Gemini APIs reporting image and audio units (``mock:audio_tokens=N`` and the like).
The cost header and the ledger record carry them, a stream is recorded exactly like the same call
without streaming, the usage report sums them, and the admin API checks their prices. Every test
runs on the embedded default (SQLite) and on a cluster (PostgreSQL + Redis)."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from switchboard.stores.protocols import UsageRecord
from switchboard.stores.sql.urls import async_url
from tests import ledger
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway
from tests.services import Postgres, RedisServer

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
M = Decimal(1_000_000)
# An audio model's own prices (USD per million tokens): text, cache reads, and each unit apart.
AUDIO_PRICES = {
    "input_cost_per_mtok": 2.5,
    "output_cost_per_mtok": 10.0,
    "cached_input_cost_per_mtok": 1.25,
    "input_audio_cost_per_mtok": 40.0,
    "output_audio_cost_per_mtok": 80.0,
    "input_image_cost_per_mtok": 3.0,
    "output_image_cost_per_mtok": 7.0,
}
IMAGE_PRICES = {
    "input_cost_per_mtok": 0.3,
    "output_cost_per_mtok": 2.5,
    "input_audio_cost_per_mtok": 1.0,
    "output_image_cost_per_mtok": 30.0,
}


def units_config(mock: Mock) -> dict[str, Any]:
    config = openai_config(mock)
    config["providers"].append(
        {"name": "studio", "type": "gemini", "api_base": mock.url, "api_key": "${UPSTREAM_KEY}"}
    )
    config["models"] += [
        {
            "name": "gpt-audio",
            "provider": "local-openai",
            "model": "gpt-4o-audio-preview",
            "info": AUDIO_PRICES,
        },
        {
            "name": "gemini-image",
            "provider": "studio",
            "model": "gemini-2.5-flash-image",
            "info": IMAGE_PRICES,
        },
        # The shipped catalog's prices: gemini-2.5-flash bills audio input at $1.00, text at $0.30.
        {"name": "gemini-flash", "provider": "studio", "model": "gemini-2.5-flash"},
    ]
    config["spend"] = {"flush_seconds": 0.1}
    return config


@dataclass
class Deployment:
    kind: str
    config: dict[str, Any]
    gateway: Gateway
    tmp: Path

    @property
    def database(self) -> str:
        return async_url((self.config.get("database") or {}).get("url"), self.tmp / "data")

    def sdk(self, key: str = MASTER_KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=key, max_retries=0, timeout=30)

    def wait_for(self, ids: set[str], timeout: float = 20.0) -> dict[str, UsageRecord]:
        return ledger.wait_for(self.database, ids, timeout)


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def deployment(
    request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    config = units_config(mock_upstream)
    if request.param == "cluster":
        postgres: Postgres = request.getfixturevalue("postgres")
        redis: RedisServer = request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"units_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
    tmp = tmp_path_factory.mktemp(f"units-{request.param}")
    gw = start_gateway(config, tmp)
    yield Deployment(request.param, config, gw, tmp)
    gw.process.stop()


def new_key(d: Deployment) -> dict[str, Any]:
    resp = httpx.post(f"{d.gateway.url}/admin/v1/keys", headers=ADMIN, timeout=10, json={"models": ["*"]})
    assert resp.status_code in (200, 201), resp.text
    return resp.json()


def ask(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def stream_request_id(client: openai.OpenAI, model: str, text: str) -> str:
    with client.chat.completions.with_streaming_response.create(
        model=model, messages=ask(text), stream=True
    ) as streamed:
        assert "x-switchboard-cost-usd" not in streamed.headers  # known at the end: in the ledger
        chunks = list(streamed.parse())
    assert chunks and not any(c.usage for c in chunks)  # not asked for: recorded all the same
    return streamed.headers["x-request-id"]


def units(record: UsageRecord) -> tuple[int, ...]:
    return (
        record.prompt_tokens,
        record.completion_tokens,
        record.cache_read_tokens,
        record.image_input_tokens,
        record.audio_input_tokens,
        record.image_output_tokens,
        record.audio_output_tokens,
    )


# -- OpenAI: audio and image units in, audio out ------------------------------------------------------

OPENAI_PROMPT = "say it aloud mock:audio_tokens=400 mock:image_tokens=120 mock:audio_output_tokens=300"


def test_openai_units_are_priced_apart_and_recorded(deployment: Deployment) -> None:
    raw = deployment.sdk().chat.completions.with_raw_response.create(
        model="gpt-audio", messages=ask(OPENAI_PROMPT)
    )
    reply = raw.parse()
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens_details and usage.completion_tokens_details
    assert usage.prompt_tokens_details.audio_tokens == 400  # the client sees the provider's usage
    assert usage.completion_tokens_details.audio_tokens == 300
    text_in = usage.prompt_tokens - 400 - 120
    text_out = usage.completion_tokens - 300
    assert text_in > 0 and text_out > 0
    expected = (
        text_in * Decimal("2.5")
        + 120 * Decimal(3)
        + 400 * Decimal(40)
        + text_out * Decimal(10)
        + 300 * Decimal(80)
    ) / M
    assert Decimal(raw.headers["x-switchboard-cost-usd"]) == expected
    # At the text prices it would cost far less: the units were not billed as text.
    assert expected > (usage.prompt_tokens * Decimal("2.5") + usage.completion_tokens * Decimal(10)) / M
    rid = raw.headers["x-request-id"]
    record = deployment.wait_for({rid})[rid]
    assert units(record) == (usage.prompt_tokens, usage.completion_tokens, 0, 120, 400, 0, 300)
    assert record.cost_usd == expected and not record.unpriced


def test_an_openai_stream_records_the_units_like_the_same_call_without_streaming(
    deployment: Deployment,
) -> None:
    client = deployment.sdk()
    plain = client.chat.completions.with_raw_response.create(model="gpt-audio", messages=ask(OPENAI_PROMPT))
    streamed = stream_request_id(client, "gpt-audio", OPENAI_PROMPT)
    records = deployment.wait_for({plain.headers["x-request-id"], streamed})
    one, other = records[plain.headers["x-request-id"]], records[streamed]
    assert other.stream and not one.stream
    assert units(other) == units(one) and other.audio_input_tokens == 400 and other.audio_output_tokens == 300
    assert other.cost_usd == one.cost_usd == Decimal(plain.headers["x-switchboard-cost-usd"])


# -- Gemini: units by modality ------------------------------------------------------------------------

GEMINI_PROMPT = "draw it mock:image_tokens=258 mock:audio_tokens=90 mock:image_output_tokens=1290"


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_gemini_units_by_modality_are_priced_apart_and_recorded(deployment: Deployment, stream: bool) -> None:
    client = deployment.sdk()
    plain = client.chat.completions.with_raw_response.create(
        model="gemini-image", messages=ask(GEMINI_PROMPT)
    )
    usage = plain.parse().usage
    assert usage is not None
    text_in, text_out = usage.prompt_tokens - 258 - 90, usage.completion_tokens - 1290
    assert text_in > 0 and text_out > 0
    expected = (
        text_in * Decimal("0.3")
        + 258 * Decimal("0.3")
        + 90 * Decimal(1)
        + text_out * Decimal("2.5")
        + 1290 * Decimal(30)
    ) / M
    assert Decimal(plain.headers["x-switchboard-cost-usd"]) == expected
    rid = (
        stream_request_id(client, "gemini-image", GEMINI_PROMPT) if stream else plain.headers["x-request-id"]
    )
    record = deployment.wait_for({rid})[rid]
    assert record.stream is stream
    assert units(record) == (usage.prompt_tokens, usage.completion_tokens, 0, 258, 90, 1290, 0)
    assert record.cost_usd == expected


def test_cached_audio_stays_a_cache_read(deployment: Deployment) -> None:
    # 30 cached tokens: the few text tokens of the prompt, the rest audio (cacheTokensDetails).
    prompt = "listen mock:audio_tokens=50 mock:cached_tokens=30"
    raw = deployment.sdk().chat.completions.with_raw_response.create(
        model="gemini-flash", messages=ask(prompt)
    )
    usage = raw.parse().usage
    assert usage is not None
    text = usage.prompt_tokens - 50
    assert 0 < text < 30
    rid = raw.headers["x-request-id"]
    record = deployment.wait_for({rid})[rid]
    # Every prompt token once: 30 cache reads (text and audio), the audio not cached, no text left.
    assert (record.cache_read_tokens, record.audio_input_tokens) == (30, 50 - (30 - text))
    assert record.prompt_tokens == record.cache_read_tokens + record.audio_input_tokens
    # The shipped catalog: cache reads $0.03, audio $1.00, output $2.50.
    expected = (
        30 * Decimal("0.03")
        + record.audio_input_tokens * Decimal(1)
        + usage.completion_tokens * Decimal("2.5")
    ) / M
    assert record.cost_usd == expected == Decimal(raw.headers["x-switchboard-cost-usd"])


# -- reports and prices -------------------------------------------------------------------------------


def test_the_usage_report_sums_the_units(deployment: Deployment) -> None:
    key = new_key(deployment)
    client = deployment.sdk(key["key"])
    ids = {
        client.chat.completions.with_raw_response.create(
            model="gpt-audio", messages=ask(OPENAI_PROMPT)
        ).headers["x-request-id"]
        for _ in range(2)
    }
    ids.add(
        client.chat.completions.with_raw_response.create(
            model="gemini-image", messages=ask(GEMINI_PROMPT)
        ).headers["x-request-id"]
    )
    records = deployment.wait_for(ids)
    url = f"{deployment.gateway.url}/admin/v1/usage"
    resp = httpx.get(url, headers=ADMIN, timeout=10, params={"key": key["id"], "group_by": "model"})
    assert resp.status_code == 200, resp.text
    rows = {row["model"]: row for row in resp.json()["data"]}
    assert set(rows) == {"gpt-audio", "gemini-image"}
    audio, image = rows["gpt-audio"], rows["gemini-image"]
    assert (
        audio["audio_input_tokens"],
        audio["image_input_tokens"],
        audio["audio_output_tokens"],
        audio["image_output_tokens"],
    ) == (800, 240, 600, 0)
    assert (image["image_input_tokens"], image["audio_input_tokens"], image["image_output_tokens"]) == (
        258,
        90,
        1290,
    )
    total = sum((records[i].cost_usd for i in ids), Decimal(0))
    assert Decimal(audio["cost_usd"]) + Decimal(image["cost_usd"]) == total
    exported = httpx.get(url, headers=ADMIN, timeout=10, params={"key": key["id"], "format": "csv"})
    assert exported.status_code == 200
    (row,) = list(csv.DictReader(io.StringIO(exported.text)))
    assert (
        row["image_input_tokens"],
        row["audio_input_tokens"],
        row["image_output_tokens"],
        row["audio_output_tokens"],
    ) == ("498", "890", "1290", "600")


def test_unit_prices_set_through_the_admin_api_price_the_calls(deployment: Deployment) -> None:
    name = f"audio-{uuid.uuid4().hex[:8]}"
    body = {
        "name": name,
        "provider": "local-openai",
        "model": "gpt-4o-audio-preview",
        "info": {"input_cost_per_mtok": 1, "output_cost_per_mtok": 2, "input_audio_cost_per_mtok": 100},
    }
    created = httpx.post(f"{deployment.gateway.url}/admin/v1/models", headers=ADMIN, json=body, timeout=10)
    assert created.status_code == 201, created.text
    assert created.json()["info"]["input_audio_cost_per_mtok"] == 100
    raw = deployment.sdk().chat.completions.with_raw_response.create(
        model=name, messages=ask("hear me mock:audio_tokens=1000")
    )
    usage = raw.parse().usage
    assert usage is not None
    expected = (
        (usage.prompt_tokens - 1000) * Decimal(1) + 1000 * Decimal(100) + usage.completion_tokens * 2
    ) / M
    assert Decimal(raw.headers["x-switchboard-cost-usd"]) == expected
    listed = deployment.sdk().models.retrieve(name).model_extra or {}
    assert listed["pricing"]["input_audio"] == 100


@pytest.mark.parametrize(
    ("info", "param"),
    [
        ({"input_audio_cost_per_mtok": -1}, "info.input_audio_cost_per_mtok"),
        ({"output_image_cost_per_mtok": "cheap"}, "info.output_image_cost_per_mtok"),
        ({"input_image_cost_per_mtok": True}, "info.input_image_cost_per_mtok"),
        ({"input_video_cost_per_mtok": 1.0}, "info.input_video_cost_per_mtok"),
        ({"output_audio_cost_per_mtok": "9" * 5000}, "info.output_audio_cost_per_mtok"),
    ],
)
def test_bad_unit_prices_are_refused(deployment: Deployment, info: dict[str, Any], param: str) -> None:
    body = {
        "name": f"bad-{uuid.uuid4().hex[:8]}",
        "provider": "local-openai",
        "model": "gpt-4o-audio-preview",
        "info": info,
    }
    resp = httpx.post(f"{deployment.gateway.url}/admin/v1/models", headers=ADMIN, json=body, timeout=10)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] and error["param"] == param and error["type"] == "invalid_request_error"
    # The gateway keeps serving.
    assert deployment.sdk().chat.completions.create(model="gpt-audio", messages=ask("still here")).choices
