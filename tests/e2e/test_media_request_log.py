"""The request log's bodies of the media endpoints (docs/observability.md, "The request log"), as
an operator reads them from the logs API: a multipart upload's fields with each file shown by
name, type and size; answers relayed as bytes (a transcription's text or its event stream,
speech audio) as their text or, for audio, their type and size; never a chat completion."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.test_media_openai import PIXEL_PNG, media_config, wav
from tests.servers import MASTER_KEY, Gateway, Mock, start_gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture(scope="module")
def logging_gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The media tests' gateway, keeping every request's bodies."""
    config = {**media_config(mock_upstream), "request_log": {"bodies": [{"request": True, "response": True}]}}
    gateway = start_gateway(config, tmp_path_factory.mktemp("media-log"))
    try:
        yield gateway
    finally:
        gateway.process.stop()


@pytest.fixture
def gw(logging_gateway: Gateway) -> Gateway:
    return logging_gateway


@pytest.fixture
def sdk(logging_gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=logging_gateway.base_url, api_key=MASTER_KEY, max_retries=0)


def logged(gw: Gateway, rid: str, timeout: float = 20.0) -> dict[str, Any]:
    """The log record of ``rid`` once its bodies are stored (polled with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        resp = httpx.get(f"{gw.url}/admin/v1/logs", params={"request_id": rid}, headers=ADMIN, timeout=10)
        assert resp.status_code == 200, resp.text
        for record in resp.json()["data"]:
            if record.get("response") is not None:
                found: dict[str, Any] = record
                return found
        assert time.monotonic() < deadline, f"no stored bodies for {rid}: {resp.text[:300]}"
        time.sleep(0.1)


def test_a_transcription_upload_is_logged_as_its_fields_and_the_file_described(
        sdk: openai.OpenAI, gw: Gateway) -> None:
    raw = sdk.audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("meeting.wav", wav(1), "audio/wav"), language="fr", response_format="srt")
    assert raw.http_response.text.startswith("1\n")
    record = logged(gw, raw.headers["x-request-id"])
    assert json.loads(record["request"]) == {
        "model": "whisper-1", "language": "fr", "response_format": "srt",
        "file": f"[file 'meeting.wav', audio/wav, {len(wav(1))} bytes]"}
    assert record["response"] == raw.http_response.text  # the subtitles, as the client got them


def test_an_edit_of_several_images_is_logged_with_each_file(sdk: openai.OpenAI, gw: Gateway) -> None:
    raw = sdk.images.with_raw_response.edit(
        model="gpt-image-1", prompt="merge them",
        image=[("a.png", PIXEL_PNG, "image/png"), ("b.png", io.BytesIO(PIXEL_PNG), "image/png")])
    record = logged(gw, raw.headers["x-request-id"])
    request = json.loads(record["request"])
    assert request["prompt"] == "merge them" and request["model"] == "gpt-image-1"
    assert request["image"] == [f"[file 'a.png', image/png, {len(PIXEL_PNG)} bytes]",
                                f"[file 'b.png', image/png, {len(PIXEL_PNG)} bytes]"]
    assert json.loads(record["response"])["data"]


def test_a_streamed_transcription_is_logged_as_its_events(sdk: openai.OpenAI, gw: Gateway) -> None:
    with sdk.audio.transcriptions.with_streaming_response.create(
            model="gpt-4o-transcribe", file=("a.wav", wav(1), "audio/wav"), stream=True) as resp:
        relayed = resp.read().decode()
        rid = resp.headers["x-request-id"]
    assert "transcript.text.done" in relayed
    record = logged(gw, rid)
    assert record["response"] == relayed


def test_speech_audio_is_logged_as_its_type_and_size(gw: Gateway) -> None:
    resp = httpx.post(f"{gw.base_url}/audio/speech", headers=ADMIN, timeout=30,
                      json={"model": "tts-1", "input": "hello there", "voice": "alloy"})
    assert resp.status_code == 200 and resp.content
    record = logged(gw, resp.headers["x-request-id"])
    assert json.loads(record["request"])["input"] == "hello there"
    assert record["response"] == f"[{resp.headers['content-type']}, {len(resp.content)} bytes]"
