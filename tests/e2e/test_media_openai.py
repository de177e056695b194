"""Moderations, images and audio end to end with the openai SDK, through OpenAI and Azure
upstreams (the mock) and an OpenAI-compatible host: the chain (key, model access, ledger with
each call's cost per image, second or character), the upstream's view, and bad input."""

from __future__ import annotations

import base64
import io
import struct
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.audio import TranscriptionDiarized

from tests import ledger
from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, start_gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
PIXEL_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c63646060f80f0000"
    "02870180eb47ba920000000049454e44ae426082"
)
WAV_FIELD = {"file": ("a.wav", b"x", "audio/wav")}
IMAGE_FIELD = {"image": ("p.png", PIXEL_PNG, "image/png")}


def wav(seconds: float, rate: int = 8000, byte_rate: int | None = None) -> bytes:
    """A silent mono 16-bit PCM WAV file of ``seconds`` (``byte_rate``: the header's field, as
    written by whoever made the file; a decoder does not read it)."""
    data = b"\0\0" * int(rate * seconds)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2 if byte_rate is None else byte_rate, 2, 16)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", len(data)) + data)


def media_config(mock: Mock) -> dict[str, Any]:
    return {
        "providers": [
            {"name": "oa", "type": "openai", "api_base": f"{mock.url}/v1", "api_key": "${UPSTREAM_KEY}"},
            {"name": "az", "type": "azure", "api_base": mock.url, "api_key": "${UPSTREAM_KEY}"},
            {"name": "oa-broken", "type": "openai", "api_base": f"{mock.url}/v1",
             "api_key": "${UPSTREAM_KEY}",
             "headers": {"x-mock-faults": f"rate=1;kinds=503;run={uuid.uuid4().hex[:8]}"}},
            {"name": "gm", "type": "gemini", "api_base": mock.url, "api_key": "${UPSTREAM_KEY}"},
            {"name": "groq", "type": "openai-compatible", "api_base": f"{mock.url}/v1",
             "api_key": "${UPSTREAM_KEY}"},
        ],
        "models": [
            {"name": "omni-moderation-latest", "provider": "oa", "model": "omni-moderation-latest",
             "info": {"mode": "moderation"}},
            {"name": "az-moderation", "provider": "az", "model": "moderation-deployment"},
            {"name": "dall-e-3", "provider": "oa", "model": "dall-e-3",
             "info": {"mode": "image_generation", "output_cost_per_image": 0.04}},
            {"name": "az-dall-e-3", "provider": "az", "model": "dalle3-deployment",
             "info": {"output_cost_per_image": 0.08}},
            {"name": "dall-e-2", "provider": "oa", "model": "dall-e-2",
             "info": {"mode": "image_generation", "output_cost_per_image": 0.02}},
            {"name": "az-dall-e-2", "provider": "az", "model": "dalle2-deployment"},
            {"name": "imagen", "provider": "gm", "model": "imagen-4.0-generate-001",
             "info": {"output_cost_per_image": 0.04}},
            {"name": "gpt-image-1", "provider": "oa", "model": "gpt-image-1",
             "info": {"mode": "image_generation", "input_cost_per_mtok": 5, "output_cost_per_mtok": 40}},
            {"name": "whisper-1", "provider": "oa", "model": "whisper-1",
             "info": {"mode": "audio_transcription", "input_cost_per_audio_second": 0.0001}},
            {"name": "az-whisper", "provider": "az", "model": "whisper-deployment",
             "info": {"input_cost_per_audio_second": 0.0001}},
            {"name": "groq-whisper", "provider": "groq", "model": "whisper-large-v3",
             "info": {"input_cost_per_audio_second": 0.00003}},
            {"name": "gpt-4o-transcribe", "provider": "oa", "model": "gpt-4o-transcribe",
             "info": {"mode": "audio_transcription", "input_cost_per_mtok": 2.5,
                      "input_audio_cost_per_mtok": 6, "output_cost_per_mtok": 10}},
            {"name": "tts-1", "provider": "oa", "model": "tts-1",
             "info": {"mode": "audio_speech", "input_cost_per_mchar": 15}},
            {"name": "gpt-4o-mini", "provider": "oa", "model": "gpt-4o-mini"},
            {"name": "broken-whisper", "provider": "oa-broken", "model": "whisper-1"},
            {"name": "broken-dall-e", "provider": "oa-broken", "model": "dall-e-3"},
        ],
        "router": {"num_retries": 0, "fallback_on": ["server_error"],
                   "fallbacks": {"broken-whisper": ["whisper-1"], "broken-dall-e": ["dall-e-3"]}},
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "spend": {"flush_seconds": 0.1},
        "server": {"max_body_bytes": 1024 * 1024},
    }


@pytest.fixture(scope="module")
def setup(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str]]:
    config = media_config(mock_upstream)
    tmp: Path = tmp_path_factory.mktemp("media")
    gw = start_gateway(config, tmp)
    yield gw, ledger.database_of(config, tmp)
    gw.process.stop()


@pytest.fixture(scope="module")
def gw(setup: tuple[Gateway, str]) -> Gateway:
    return setup[0]


@pytest.fixture(scope="module")
def database(setup: tuple[Gateway, str]) -> str:
    return setup[1]


@pytest.fixture
def sdk(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def recorded(database: str, rid: str) -> Any:
    return ledger.wait_for(database, {rid})[rid]


# -- moderations ----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["omni-moderation-latest", "az-moderation"])
def test_moderations_pass_through_openai_and_azure(sdk: openai.OpenAI, database: str, model: str) -> None:
    raw = sdk.moderations.with_raw_response.create(model=model, input=["a calm lake", "graphic violence"])
    result = raw.parse()
    assert [r.flagged for r in result.results] == [False, True]
    assert result.results[1].categories.violence is True
    record = recorded(database, raw.headers["x-request-id"])
    assert record.status == 200 and record.model == model and record.cost_usd == 0
    assert record.metadata["operation"] == "moderations"


# -- images ---------------------------------------------------------------------------------------


def test_images_generate_is_priced_per_image(sdk: openai.OpenAI, database: str, mock_upstream: Mock) -> None:
    marker = new_marker()
    raw = sdk.images.with_raw_response.generate(
        model="dall-e-3", prompt=f"a lighthouse mock:capture={marker}", n=2, size="1024x1024")
    images = raw.parse()
    assert len(images.data) == 2 and images.data[0].url and images.data[0].url.endswith("/images/pixel.png")
    assert Decimal(raw.headers["x-switchboard-cost-usd"]) == Decimal("0.08")
    sent = captured(mock_upstream, marker)[0]
    assert sent["path"] == "/v1/images/generations" and sent["body"]["n"] == 2
    record = recorded(database, raw.headers["x-request-id"])
    assert record.cost_usd == Decimal("0.08") and record.metadata["units"] == {"images": 2}


def test_images_take_a_safety_identifier(sdk: openai.OpenAI, mock_upstream: Mock) -> None:
    # The openai SDK's generate and edit take it (user's successor): OpenAI gets it as sent,
    # Imagen (no end-user field) answers without it, as with user.
    marker = new_marker()
    sdk.images.generate(model="dall-e-3", prompt=f"a lighthouse mock:capture={marker}",
                        safety_identifier="u-1")
    assert captured(mock_upstream, marker)[0]["body"]["safety_identifier"] == "u-1"
    edited = sdk.images.edit(model="dall-e-3", image=("pixel.png", PIXEL_PNG, "image/png"), prompt="a hat",
                             safety_identifier="u-1")
    assert edited.data and edited.data[0].revised_prompt
    marker = new_marker()
    sdk.images.generate(model="imagen", prompt=f"a valley mock:capture={marker}", safety_identifier="u-1")
    assert "safety_identifier" not in str(captured(mock_upstream, marker)[0]["body"])
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.images.generate(model="dall-e-3", prompt="x", extra_body={"safety_identifier": 5})
    assert refused.value.body["param"] == "safety_identifier"  # type: ignore[index]


def test_images_generate_through_azure_uses_the_deployment_path(
    sdk: openai.OpenAI, mock_upstream: Mock
) -> None:
    marker = new_marker()
    raw = sdk.images.with_raw_response.generate(model="az-dall-e-3", prompt=f"a fox mock:capture={marker}",
                                                response_format="b64_json")
    assert raw.parse().data[0].b64_json
    assert Decimal(raw.headers["x-switchboard-cost-usd"]) == Decimal("0.08")
    sent = captured(mock_upstream, marker)[0]
    assert sent["path"] == "/openai/deployments/dalle3-deployment/images/generations"
    assert sent["query"].startswith("api-version=")


def test_images_generate_through_gemini_imagen(sdk: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    raw = sdk.images.with_raw_response.generate(model="imagen", prompt=f"a wide valley mock:capture={marker}",
                                                n=2, size="1792x1024")
    images = raw.parse()
    assert len(images.data) == 2 and images.data[0].b64_json
    assert Decimal(raw.headers["x-switchboard-cost-usd"]) == Decimal("0.08")
    sent = captured(mock_upstream, marker)[0]
    assert sent["path"] == "/v1beta/models/imagen-4.0-generate-001:predict"
    assert sent["body"]["parameters"] == {"sampleCount": 2, "aspectRatio": "16:9"}
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.images.generate(model="imagen", prompt="x", response_format="url")
    assert refused.value.body["param"] == "response_format"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as no_edits:
        sdk.images.edit(model="imagen", prompt="x", image=("p.png", PIXEL_PNG, "image/png"))
    assert no_edits.value.body["code"] == "unsupported_operation"  # type: ignore[index]


@pytest.mark.parametrize("silently", [False, True], ids=["rai-reason-entries", "left-out"])
def test_imagen_images_its_filters_removed_are_neither_answered_nor_billed(
    sdk: openai.OpenAI, database: str, silently: bool
) -> None:
    # Imagen answers a filtered image as a {"raiFilteredReason"} entry, or leaves it out ({} when
    # none is left): they were a 502 "invalid response", the images that were made lost with them.
    flag = " mock:filtered_silently=1" if silently else ""
    raw = sdk.images.with_raw_response.generate(model="imagen", prompt=f"a crowd mock:filtered=1{flag}", n=3)
    images = raw.parse()
    assert len(images.data) == 2 and all(d.b64_json for d in images.data)
    assert Decimal(raw.headers["x-switchboard-cost-usd"]) == Decimal("0.08")
    assert recorded(database, raw.headers["x-request-id"]).metadata["units"] == {"images": 2}
    # None left: the prompt was refused, as OpenAI refuses one (not retried as a bad answer).
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.images.generate(model="imagen", prompt=f"a crowd mock:filtered=2{flag}", n=2)
    error = refused.value
    assert error.code == "content_policy_violation" and error.param == "prompt"
    assert "safety filters removed every image" in error.message
    assert ("Support codes: 58061214" in error.message) is not silently  # Imagen's reason, when given
    record = recorded(database, error.response.headers["x-request-id"])
    assert record.status == 400 and record.cost_usd == 0


def test_gpt_image_is_priced_by_its_tokens(sdk: openai.OpenAI, database: str) -> None:
    raw = sdk.images.with_raw_response.generate(model="gpt-image-1", prompt="a red bicycle")
    images = raw.parse()
    assert images.usage is not None and images.usage.output_tokens == 272
    expected = (Decimal(images.usage.input_tokens) * 5 + Decimal(272) * 40) / 1_000_000
    assert Decimal(raw.headers["x-switchboard-cost-usd"]) == expected
    record = recorded(database, raw.headers["x-request-id"])
    assert record.prompt_tokens == images.usage.input_tokens and record.completion_tokens == 272


def test_images_stream_partial_images_as_they_come(sdk: openai.OpenAI, database: str) -> None:
    with sdk.images.with_streaming_response.generate(model="gpt-image-1", prompt="a red kite", stream=True,
                                                     partial_images=2) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        rid = resp.headers["x-request-id"]
        events = list(resp.parse())
    assert [e.type for e in events] == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    done = events[-1]
    assert done.usage.output_tokens == 272  # type: ignore[union-attr]
    record = recorded(database, rid)
    assert record.completion_tokens == 272 and record.metadata["units"] == {"images": 1}
    assert record.cost_usd == (Decimal(record.prompt_tokens) * 5 + Decimal(272) * 40) / 1_000_000


def test_image_edits_stream_too(sdk: openai.OpenAI) -> None:
    stream = sdk.images.edit(model="gpt-image-1", prompt="add a hat", image=("p.png", PIXEL_PNG, "image/png"),
                             stream=True, partial_images=1)
    assert [e.type for e in stream] == ["image_edit.partial_image", "image_edit.completed"]


def test_images_edit_uploads_the_images_as_multipart(sdk: openai.OpenAI, database: str) -> None:
    raw = sdk.images.with_raw_response.edit(
        model="dall-e-3", image=("pixel.png", PIXEL_PNG, "image/png"), prompt="add a hat",
        mask=("mask.png", PIXEL_PNG, "image/png"),
    )
    edited = raw.parse()
    assert edited.data[0].revised_prompt == "add a hat (1 input image(s))"
    record = recorded(database, raw.headers["x-request-id"])
    assert record.metadata["operation"] == "image_edits" and record.cost_usd == Decimal("0.04")


def test_images_edit_with_several_images(sdk: openai.OpenAI) -> None:
    edited = sdk.images.edit(model="gpt-image-1", prompt="combine them",
                             image=[("a.png", PIXEL_PNG, "image/png"), ("b.png", PIXEL_PNG, "image/png")])
    assert edited.data[0].revised_prompt == "combine them (2 input image(s))"
    assert edited.usage is not None and edited.usage.input_tokens_details.image_tokens == 130


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks variations deprecated
def test_image_variations_pass_through_and_are_priced_per_image(
    sdk: openai.OpenAI, database: str, mock_upstream: Mock
) -> None:
    marker = new_marker()
    raw = sdk.images.with_raw_response.create_variation(
        model="dall-e-2", image=("pixel.png", PIXEL_PNG, "image/png"), n=2, size="256x256",
        response_format="b64_json", user=f"mock:capture={marker}")  # the mock reads the form's text
    varied = raw.parse()  # the mock answers n images, inline for b64_json
    assert len(varied.data) == 2
    assert all(base64.b64decode(d.b64_json or "").startswith(b"\x89PNG") for d in varied.data)
    record = recorded(database, raw.headers["x-request-id"])
    assert record.metadata["operation"] == "image_variations" and record.cost_usd == Decimal("0.04")
    sent = captured(mock_upstream, marker)[0]
    assert sent["path"] == "/v1/images/variations"
    assert sent["headers"]["content-type"].startswith("multipart/form-data")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks variations deprecated
def test_image_variations_default_to_dall_e_2(sdk: openai.OpenAI) -> None:
    # The SDK sends no model unless given one; the gateway names OpenAI's only variations model.
    varied = sdk.images.create_variation(image=("pixel.png", PIXEL_PNG, "image/png"))
    assert len(varied.data) == 1 and varied.data[0].url


@pytest.mark.parametrize(("path", "body", "default"), [
    ("/moderations", {"input": "a calm lake"}, "omni-moderation-latest"),
    ("/images/generations", {"prompt": "a lighthouse"}, "dall-e-2"),
])
def test_a_null_model_takes_the_default_model(gw: Gateway, database: str, path: str, body: dict[str, Any],
                                              default: str) -> None:
    # Clients that write every optional field send "model": null; it means no model, as any
    # other null field does, so the endpoint's default serves (not a 404 naming no model).
    resp = _post(gw, path, json={**body, "model": None})
    assert resp.status_code == 200, resp.text
    assert recorded(database, resp.headers["x-request-id"]).model == default


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks variations deprecated
def test_image_variations_are_refused_on_azure_and_imagen(sdk: openai.OpenAI) -> None:
    for model in ("az-dall-e-2", "imagen"):
        with pytest.raises(openai.BadRequestError) as refused:
            sdk.images.create_variation(model=model, image=("p.png", PIXEL_PNG, "image/png"))
        assert refused.value.body["code"] == "unsupported_operation", model  # type: ignore[index]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks variations deprecated
def test_image_variations_of_a_chat_model_are_refused(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.images.create_variation(model="gpt-4o-mini", image=("p.png", PIXEL_PNG, "image/png"))
    assert refused.value.body["param"] == "model"  # type: ignore[index]


# -- audio ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["whisper-1", "az-whisper", "groq-whisper"])
def test_transcription_of_an_upload_is_priced_per_second(
    sdk: openai.OpenAI, database: str, model: str
) -> None:
    raw = sdk.audio.transcriptions.with_raw_response.create(
        model=model, file=("speech.wav", wav(2.5), "audio/wav"), response_format="verbose_json"
    )
    result = raw.parse()
    assert result.text == "mock transcribe of speech.wav" and result.duration == 2.5
    rate = Decimal("0.00003") if model == "groq-whisper" else Decimal("0.0001")
    assert Decimal(raw.headers["x-switchboard-cost-usd"]) == rate * Decimal("2.5")
    record = recorded(database, raw.headers["x-request-id"])
    assert record.metadata["units"] == {"audio_seconds": 2.5}


def test_transcription_streams_its_text_and_is_priced_by_tokens(sdk: openai.OpenAI, database: str) -> None:
    stream = sdk.audio.transcriptions.create(model="gpt-4o-transcribe", file=("s.wav", wav(1.5), "audio/wav"),
                                             stream=True, chunking_strategy={"type": "server_vad"})
    events = list(stream)
    deltas = "".join(e.delta for e in events if e.type == "transcript.text.delta")  # type: ignore[union-attr]
    assert deltas == "mock transcribe of s.wav" and events[-1].type == "transcript.text.done"
    rid = stream.response.headers["x-request-id"]
    record = recorded(database, rid)
    assert record.prompt_tokens == 15 and record.completion_tokens == 4 and record.stream
    # Its input is audio (usage.input_token_details.audio_tokens): priced at the audio rate.
    assert record.audio_input_tokens == 15
    assert record.cost_usd == (Decimal(15) * 6 + Decimal(4) * 10) / 1_000_000


def test_a_stream_the_upstream_did_not_stream_is_billed_by_its_answer(gw: Gateway, database: str) -> None:
    # whisper-1 ignores "stream": true and answers its JSON, whose usage holds the seconds an mp3's
    # header does not tell: the stream's watcher saw no event and billed nothing.
    resp = httpx.post(f"{gw.base_url}/audio/transcriptions", headers=ADMIN, timeout=30,
                      data={"model": "whisper-1", "stream": "true"},
                      files={"file": ("a.mp3", b"ID3 not a wav", "audio/mpeg")})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json() == {"text": "mock transcribe of a.mp3", "usage": {"type": "duration", "seconds": 1}}
    assert Decimal(resp.headers["x-switchboard-cost-usd"]) == Decimal("0.0001")
    record = recorded(database, resp.headers["x-request-id"])
    assert record.metadata["units"] == {"audio_seconds": 1}
    assert record.cost_usd == Decimal("0.0001") and record.unpriced is False


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks translations deprecated
def test_diarized_transcription_names_the_known_speakers(sdk: openai.OpenAI, database: str) -> None:
    # gpt-4o-transcribe-diarize: diarized_json with known speakers (names and data-URL samples)
    # reaches the upstream as the SDK sends them, and is billed by the seconds it reports.
    sample = "data:audio/wav;base64," + base64.b64encode(wav(2.0)).decode()
    raw = sdk.audio.transcriptions.with_raw_response.create(
        model="gpt-4o-transcribe", file=("call.wav", wav(3.0), "audio/wav"), response_format="diarized_json",
        known_speaker_names=["agent"], known_speaker_references=[sample], chunking_strategy="auto")
    result = raw.parse()
    assert isinstance(result, TranscriptionDiarized), result
    assert result.text == "mock transcribe of call.wav" and result.segments[0].speaker == "agent"
    record = recorded(database, raw.headers["x-request-id"])
    assert record.metadata["units"] == {"audio_seconds": 3.0}
    with pytest.raises(openai.BadRequestError) as refused:  # translations have no diarization
        sdk.audio.translations.with_raw_response.create(
            model="whisper-1", file=("a.wav", wav(1.0), "audio/wav"),
            extra_body={"response_format": "diarized_json"})
    assert refused.value.body["param"] == "response_format"  # type: ignore[index]


def test_transcription_json_uses_the_reported_seconds(sdk: openai.OpenAI) -> None:
    raw = sdk.audio.transcriptions.with_raw_response.create(model="whisper-1",
                                                            file=("a.wav", wav(1.2), "audio/wav"))
    assert raw.parse().text == "mock transcribe of a.wav"
    assert Decimal(raw.headers["x-switchboard-cost-usd"]) == Decimal("0.0002")  # usage.seconds: 2


@pytest.mark.parametrize(("fmt", "start"), [
    ("text", "mock transcribe"), ("srt", "1\n00:00:00,000 --> 00:00:01,000"), ("vtt", "WEBVTT"),
])
def test_transcription_text_formats_pass_back(
    sdk: openai.OpenAI, database: str, fmt: str, start: str
) -> None:
    raw = sdk.audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("a.wav", wav(1.0), "audio/wav"), response_format=fmt  # type: ignore[arg-type]
    )
    assert raw.http_response.text.startswith(start)
    assert Decimal(raw.headers["x-switchboard-cost-usd"]) == Decimal("0.0001")
    # The upstream said nothing of the seconds: the WAV header's duration is billed.
    record = recorded(database, raw.headers["x-request-id"])
    assert record.metadata["units"] == {"audio_seconds": 1.0} and record.cost_usd == Decimal("0.0001")


def test_a_wav_header_claiming_another_byte_rate_is_billed_its_real_length(
    sdk: openai.OpenAI, database: str
) -> None:
    # 3 s of 8 kHz 16-bit audio whose header says 100 times the bytes per second it holds.
    raw = sdk.audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("a.wav", wav(3.0, byte_rate=1_600_000), "audio/wav"), response_format="text")
    assert raw.http_response.text.startswith("mock transcribe of a.wav")
    assert Decimal(raw.headers["x-switchboard-cost-usd"]) == Decimal("0.0003")
    record = recorded(database, raw.headers["x-request-id"])
    assert record.metadata["units"] == {"audio_seconds": 3.0} and record.unpriced is False


def test_a_form_field_name_cannot_smuggle_a_second_model_upstream(gw: Gateway) -> None:
    # A quote in a member's name would close it in the upstream's form and name 'model' again.
    boundary = "b0undary"
    parts = [('name="model"', b"whisper-1"),
             ('name="chunking_strategy[x]\\"; name=\\"model"', b"gpt-4o-transcribe"),
             ('name="file"; filename="a.wav"\r\nContent-Type: audio/wav', wav(0.1))]
    body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n\r\n".encode()
                    + value + b"\r\n" for disposition, value in parts) + f"--{boundary}--\r\n".encode()
    resp = httpx.post(f"{gw.base_url}/audio/transcriptions", content=body, timeout=30,
                      headers={"Authorization": f"Bearer {MASTER_KEY}",
                               "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == "unknown_parameter" and error["param"].startswith("chunking_strategy[x]")
    # The members the SDKs send pass, and the server keeps serving.
    ok = httpx.post(f"{gw.base_url}/audio/transcriptions", timeout=30,
                    headers={"Authorization": f"Bearer {MASTER_KEY}"},
                    data={"model": "whisper-1", "chunking_strategy[type]": "server_vad"},
                    files={"file": ("a.wav", wav(0.1), "audio/wav")})
    assert ok.status_code == 200, ok.text


def test_seconds_nobody_measured_are_flagged_unpriced(sdk: openai.OpenAI, database: str) -> None:
    raw = sdk.audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("a.mp3", b"ID3 not a wav", "audio/mpeg"), response_format="text")
    assert raw.http_response.text.startswith("mock transcribe of a.mp3")
    record = recorded(database, raw.headers["x-request-id"])
    assert record.unpriced is True and record.cost_usd == 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks translations deprecated
def test_translation(sdk: openai.OpenAI) -> None:
    result = sdk.audio.translations.create(model="whisper-1", file=("b.wav", wav(0.5), "audio/wav"))
    assert result.text == "mock translate of b.wav"


def test_speech_streams_the_audio_back(gw: Gateway, database: str) -> None:
    sdk = openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    text = "Hello from the gateway."
    with sdk.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy", input=text,
                                                         response_format="wav") as resp:
        assert resp.headers["content-type"] == "audio/wav"
        assert "content-length" not in resp.headers  # relayed as it arrives, not buffered
        audio = b"".join(resp.iter_bytes())
        rid = resp.headers["x-request-id"]
    assert len(audio) == len(text) * 64 and audio.startswith(b"wav")
    record = recorded(database, rid)
    assert record.metadata["units"] == {"characters": len(text)}
    assert record.cost_usd == Decimal(len(text)) * 15 / 1_000_000
    assert record.stream  # always relayed as it arrives: a streamed call, as analytics count it


def test_speech_cut_mid_audio_is_not_passed_off_as_whole(gw: Gateway, database: str) -> None:
    text = "x" * 200 + " mock:disconnect_after=1"  # 14 KiB of audio; the upstream drops after 4 KiB
    body = {"model": "tts-1", "voice": "alloy", "input": text}
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    got = b""
    with pytest.raises(httpx.HTTPError), httpx.stream("POST", gw.base_url + "/audio/speech", json=body,
                                                      headers=headers, timeout=30) as resp:
        rid = resp.headers["x-request-id"]
        assert resp.status_code == 200
        for piece in resp.iter_bytes():
            got += piece
    assert 0 < len(got) < len(text) * 64
    record = recorded(database, rid)
    assert record.status >= 500 and record.metadata["units"] == {"characters": len(text)}
    # Handled, not crashed: no traceback. The client saw the drop only once the gateway was done
    # with the request; a failure logged after it marks where to look up to.
    later = httpx.post(gw.base_url + "/audio/speech", headers=headers, timeout=30,
                       json={"model": "tts-1", "voice": "alloy", "input": "mock:status=500"})
    gw.process.wait_for_all(later.headers["x-request-id"], "request failed")
    logged = gw.process.output
    assert f"request_id={rid}" in logged
    assert "Exception in ASGI application" not in logged and "Traceback" not in logged


def test_a_speech_upstream_error_is_an_openai_error(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as failed:
        sdk.audio.speech.create(model="tts-1", voice="alloy", input="mock:status=500")
    assert failed.value.status_code == 502


def test_a_failing_deployment_falls_back_and_the_upload_is_sent_again(
    sdk: openai.OpenAI, database: str
) -> None:
    raw = sdk.audio.transcriptions.with_raw_response.create(
        model="broken-whisper", file=("again.wav", wav(1.5), "audio/wav"), response_format="verbose_json")
    assert raw.parse().duration == 1.5  # the second deployment got the whole file
    record = recorded(database, raw.headers["x-request-id"])
    assert [a["status"] for a in record.attempts] == [503, 200]
    assert record.model == "whisper-1" and record.metadata["units"] == {"audio_seconds": 1.5}
    images = sdk.images.generate(model="broken-dall-e", prompt="a boat")
    assert len(images.data) == 1


# -- the chain and bad input ----------------------------------------------------------------------

JSON_CALLS = [
    ("/moderations", {"model": "omni-moderation-latest", "input": "hi"}),
    ("/images/generations", {"model": "dall-e-3", "prompt": "a cat"}),
    ("/audio/speech", {"model": "tts-1", "voice": "alloy", "input": "hi"}),
]


@pytest.mark.parametrize(("path", "body"), JSON_CALLS)
def test_json_endpoints_need_a_key(gw: Gateway, path: str, body: dict[str, Any]) -> None:
    resp = httpx.post(gw.base_url + path, json=body, timeout=10)
    assert resp.status_code == 401 and resp.json()["error"]["type"]


@pytest.mark.parametrize("path", ["/images/edits", "/images/variations", "/audio/transcriptions",
                                  "/audio/translations"])
def test_form_endpoints_need_a_key(gw: Gateway, path: str) -> None:
    files = {"file": ("a.wav", wav(0.1), "audio/wav"), "image": ("p.png", PIXEL_PNG, "image/png")}
    resp = httpx.post(gw.base_url + path, data={"model": "whisper-1", "prompt": "x"}, files=files, timeout=10)
    assert resp.status_code == 401


def test_model_access_applies(gw: Gateway) -> None:
    key = httpx.post(f"{gw.url}/admin/v1/keys", headers=ADMIN, json={"models": ["gpt-4o-mini"]},
                     timeout=10).json()["key"]
    sdk = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30)
    with pytest.raises(openai.PermissionDeniedError):
        sdk.images.generate(model="dall-e-3", prompt="a cat")
    with pytest.raises(openai.PermissionDeniedError):
        sdk.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav(0.1), "audio/wav"))


def test_budgets_reserve_the_media_units(gw: Gateway) -> None:
    key = httpx.post(f"{gw.url}/admin/v1/keys", headers=ADMIN, json={"models": ["*"], "max_budget_usd": 0.05},
                     timeout=10).json()["key"]
    sdk = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30)
    with pytest.raises(openai.BadRequestError) as refused:  # 2 images at $0.04 cannot fit in $0.05
        sdk.images.generate(model="dall-e-3", prompt="two boats", n=2)
    assert refused.value.body["code"] == "request_exceeds_budget"  # type: ignore[index]
    # 3 variations at $0.02 cannot either (the SDK marks variations deprecated)
    with pytest.raises(openai.BadRequestError) as varied, pytest.warns(DeprecationWarning):
        sdk.images.create_variation(model="dall-e-2", image=("p.png", PIXEL_PNG, "image/png"), n=3)
    assert varied.value.body["code"] == "request_exceeds_budget"  # type: ignore[index]
    assert len(sdk.images.generate(model="dall-e-3", prompt="one boat").data) == 1


def _post(gw: Gateway, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(gw.base_url + path, headers={"Authorization": f"Bearer {MASTER_KEY}",
                                                   **kwargs.pop("headers", {})}, timeout=30, **kwargs)


@pytest.mark.parametrize(("path", "body", "status", "param"), [
    ("/moderations", b"{", 400, None),
    ("/moderations", {"input": 5}, 400, "input"),
    ("/moderations", {"model": "omni-moderation-latest"}, 400, "input"),
    ("/moderations", {"input": "x", "extra": 1}, 400, "extra"),
    ("/moderations", {"input": [{"type": "image_url"}]}, 400, "input"),
    ("/moderations", {"input": [{"type": "image_url", "image_url": {"url": 5}}]}, 400, "input"),
    ("/moderations", {"input": [{"type": "image_url", "image_url": "https://x/y.png"}]}, 400, "input"),
    ("/moderations", {"input": [{"type": "text"}]}, 400, "input"),
    ("/moderations", {"input": [{"type": "text", "text": ["x"]}]}, 400, "input"),
    ("/images/generations", {"model": "dall-e-3"}, 400, "prompt"),
    ("/images/generations", {"model": "dall-e-3", "prompt": "x", "n": "2"}, 400, "n"),
    ("/images/generations", {"model": "dall-e-3", "prompt": "x", "n": 11}, 400, "n"),
    ("/images/generations", {"model": "dall-e-3", "prompt": "x", "response_format": "gif"}, 400,
     "response_format"),
    ("/images/generations", {"model": "dall-e-3", "prompt": "x", "stream": "yes"}, 400, "stream"),
    ("/images/generations", {"model": "whisper-1", "prompt": "x"}, 400, "model"),
    ("/images/generations", {"model": "gpt-4o-mini", "prompt": "x"}, 400, "model"),
    ("/audio/speech", {"model": "tts-1", "input": "x"}, 400, "voice"),
    ("/audio/speech", {"model": "tts-1", "voice": "alloy", "input": "x" * 4097}, 400, "input"),
    ("/audio/speech", {"model": "tts-1", "voice": "alloy", "input": "x", "speed": 9}, 400, "speed"),
    ("/audio/speech", {"model": "dall-e-3", "voice": "alloy", "input": "x"}, 400, "model"),
])
def test_json_bad_input(gw: Gateway, path: str, body: Any, status: int, param: str | None) -> None:
    resp = _post(gw, path, content=body) if isinstance(body, bytes) else _post(gw, path, json=body)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["message"]
    if param is not None:
        assert resp.json()["error"]["param"] == param


@pytest.mark.parametrize(("path", "data", "files", "status", "param"), [
    ("/audio/transcriptions", {"model": "whisper-1"}, {}, 400, "file"),
    ("/audio/transcriptions", {}, {"file": ("a.wav", b"RIFF", "audio/wav")}, 400, "model"),
    ("/audio/transcriptions", {"model": "whisper-1", "temperature": "hot"},
     {"file": ("a.wav", b"x", "audio/wav")}, 400, "temperature"),
    ("/audio/transcriptions", {"model": "whisper-1", "response_format": "mp3"},
     {"file": ("a.wav", b"x", "audio/wav")}, 400, "response_format"),
    ("/audio/transcriptions", {"model": "whisper-1", "file": "not a file"}, {}, 400, "file"),
    ("/audio/transcriptions", {"model": "whisper-1", "colour": "red"},
     {"file": ("a.wav", b"x", "audio/wav")}, 400, "colour"),
    ("/audio/transcriptions", {"model": "tts-1"}, {"file": ("a.wav", b"x", "audio/wav")}, 400, "model"),
    ("/audio/translations", {"model": "whisper-1", "language": "fr"},
     {"file": ("a.wav", b"x", "audio/wav")}, 400, "language"),
    ("/images/edits", {"model": "dall-e-3"}, {"image": ("p.png", PIXEL_PNG, "image/png")}, 400, "prompt"),
    ("/images/edits", {"model": "dall-e-3", "prompt": "x"}, {}, 400, "image"),
    ("/images/edits", {"model": "dall-e-3", "prompt": "x", "n": "two"},
     {"image": ("p.png", PIXEL_PNG, "image/png")}, 400, "n"),
    ("/images/variations", {"model": "dall-e-2"}, {}, 400, "image"),
    ("/images/variations", {"model": "dall-e-2", "prompt": "x"}, IMAGE_FIELD, 400, "prompt"),
    ("/images/variations", {"model": "dall-e-2", "size": "300x300"}, IMAGE_FIELD, 400, "size"),
    ("/images/variations", {"model": "dall-e-2", "n": "11"}, IMAGE_FIELD, 400, "n"),
    ("/images/variations", {"model": "dall-e-2", "n": "0"}, IMAGE_FIELD, 400, "n"),
    ("/images/variations", {"model": "dall-e-2", "response_format": "gif"}, IMAGE_FIELD, 400,
     "response_format"),
    ("/images/variations", {"model": "dall-e-2"},
     [("image", ("a.png", PIXEL_PNG, "image/png")), ("image", ("b.png", PIXEL_PNG, "image/png"))], 400,
     "image"),
    ("/images/variations", {"model": "dall-e-2", "image": "not a file"}, {}, 400, "image"),
    ("/images/variations", {"model": "dall-e-2"},
     {"image": ("big.png", b"\0" * (1024 * 1024 + 10), "image/png")}, 413, None),
    ("/audio/transcriptions", {"model": "whisper-1"},
     {"file": ("big.wav", b"\0" * (1024 * 1024 + 10), "audio/wav")}, 413, None),
])
def test_form_bad_input(gw: Gateway, path: str, data: dict[str, str], files: dict[str, Any], status: int,
                        param: str | None) -> None:
    if not files:  # text fields only, still as multipart/form-data
        files, data = {k: (None, v) for k, v in data.items()}, {}
    resp = _post(gw, path, data=data, files=files)
    assert resp.status_code == status, resp.text
    if param is not None:
        assert resp.json()["error"]["param"] == param




@pytest.mark.parametrize("value", [" 5", "5 ", "+5", "\u0665", "1_0", "5.0", "0x5", "", "9" * 30])
@pytest.mark.parametrize(("path", "data", "files", "param"), [
    ("/images/edits", {"model": "dall-e-3", "prompt": "x"}, IMAGE_FIELD, "n"),
    ("/images/edits", {"model": "gpt-image-1", "prompt": "x"}, IMAGE_FIELD, "output_compression"),
])
def test_a_form_integer_is_ascii_digits_only(gw: Gateway, path: str, data: dict[str, str],
                                            files: dict[str, Any], param: str, value: str) -> None:
    resp = _post(gw, path, data={**data, param: value}, files=files)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_type", param)
    assert error["message"] == f"'{param}' must be an integer"


@pytest.mark.parametrize("value", [" 0.5", "0.5 ", "+0.5", "\u0660.5", "0_5", "inf", "-inf", "nan", "NaN",
                                   "1e999", "0x1", "1.", "e5", ""])
@pytest.mark.parametrize("path", ["/audio/transcriptions", "/audio/translations"])
def test_a_form_number_is_a_finite_ascii_decimal(gw: Gateway, path: str, value: str) -> None:
    resp = _post(gw, path, data={"model": "whisper-1", "temperature": value}, files=WAV_FIELD)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_type",
                                                              "temperature")
    assert error["message"] == "'temperature' must be a number"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks translations deprecated
def test_form_numbers_as_the_sdk_writes_them_are_taken(sdk: openai.OpenAI, gw: Gateway) -> None:
    for temperature in (0, 0.25, 1e-05, 1):  # sent as "0", "0.25", "1e-05", "1"
        done = sdk.audio.transcriptions.create(model="whisper-1", file=io.BytesIO(wav(0.1)),
                                               temperature=temperature)
        assert done.text.startswith("mock transcribe")
    assert sdk.audio.translations.create(model="whisper-1", file=io.BytesIO(wav(0.1)), temperature=0.5).text
    edited = sdk.images.edit(model="gpt-image-1", prompt="x", image=("p.png", PIXEL_PNG, "image/png"), n=2)
    assert len(edited.data) == 2
    for value in (".5", "-0", "1E-2"):  # other plain decimals a hand-written form may hold
        resp = _post(gw, "/audio/transcriptions", data={"model": "whisper-1", "temperature": value},
                     files=WAV_FIELD)
        assert resp.status_code == 200, resp.text


def test_malformed_multipart_and_wrong_content_type(gw: Gateway) -> None:
    bad = _post(gw, "/audio/transcriptions", content=b"--xyz\r\nnonsense",
                headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_multipart"
    wrong = _post(gw, "/audio/transcriptions", json={"model": "whisper-1"})
    assert wrong.status_code == 415
    many = {f"f{i}": (f"{i}.txt", b"x", "text/plain") for i in range(40)}
    assert _post(gw, "/audio/transcriptions", files=many).status_code == 413
    ok = openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0).audio.transcriptions.create(
        model="whisper-1", file=io.BytesIO(wav(0.2)))
    assert ok.text.startswith("mock transcribe")
