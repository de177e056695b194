"""Provider type 'vertex': options validation, api_base and URLs, predict embeddings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from switchboard.config.schema import ProviderConfig, Timeouts
from switchboard.providers.registry import check_provider, options_for
from switchboard.providers.target import Target
from switchboard.providers.vertex import SPEC, VertexOptions
from switchboard.upstream.google_auth import ServiceAccountAuth

PEM = (
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    .decode()
)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "sa.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "from-file",
                "private_key_id": "k1",
                "private_key": PEM,
                "client_email": "sa@from-file.iam.gserviceaccount.com",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    return path


def provider(key_file: Path | str, **extra: Any) -> ProviderConfig:
    return ProviderConfig(name="vtx", type="vertex", credentials_file=str(key_file), **extra)


def target_for(config: ProviderConfig, model: str = "gemini-2.5-pro") -> Target:
    options = options_for(config)
    base = SPEC.api_base(config, options)
    assert base is not None
    return Target("m", model, config.name, "vertex", base, options, Timeouts())


def test_defaults_project_from_file_and_location(key_file: Path) -> None:
    config = provider(key_file)
    assert check_provider(config) == []
    options = options_for(config)
    assert isinstance(options, VertexOptions)
    assert options.project == "from-file" and options.vertex_location == "us-central1"
    assert SPEC.api_base(config, options) == "https://us-central1-aiplatform.googleapis.com"


@pytest.mark.parametrize(
    ("location", "base"),
    [
        ("europe-west4", "https://europe-west4-aiplatform.googleapis.com"),
        ("global", "https://aiplatform.googleapis.com"),
    ],
)
def test_api_base_follows_location(key_file: Path, location: str, base: str) -> None:
    config = provider(key_file, vertex_location=location)
    assert SPEC.api_base(config, options_for(config)) == base


def test_explicit_api_base_wins(key_file: Path) -> None:
    config = provider(key_file, api_base="http://127.0.0.1:9999/", vertex_location="global")
    assert SPEC.api_base(config, options_for(config)) == "http://127.0.0.1:9999"


def test_chat_and_stream_urls(key_file: Path) -> None:
    t = target_for(provider(key_file, vertex_project="my-proj", vertex_location="europe-west1"))
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    plain = SPEC.adapter.chat_request({"model": "m", "messages": messages}, t)
    assert plain.url == (
        "https://europe-west1-aiplatform.googleapis.com/v1/projects/my-proj/locations/europe-west1"
        "/publishers/google/models/gemini-2.5-pro:generateContent"
    )
    assert orjson.loads(plain.body or b"")["contents"] == [
        {"role": "user", "parts": [{"text": "hi"}]},
        {"role": "model", "parts": [{"text": "yo"}]},
    ]
    streamed = SPEC.adapter.chat_request({"model": "m", "messages": messages, "stream": True}, t)
    assert streamed.url.endswith("/models/gemini-2.5-pro:streamGenerateContent?alt=sse") and streamed.stream


def test_predict_embeddings(key_file: Path) -> None:
    t = target_for(provider(key_file), "text-embedding-005")
    upstream = SPEC.adapter.embeddings_request({"model": "m", "input": "hello", "dimensions": 3}, t)
    assert upstream.url.endswith(
        "/projects/from-file/locations/us-central1/publishers/google/models/text-embedding-005:predict"
    )
    assert orjson.loads(upstream.body or b"") == {
        "instances": [{"content": "hello"}],
        "parameters": {"outputDimensionality": 3},
    }
    # Vertex AI's instances take the retrieval hints under the canonical names.
    hinted = SPEC.adapter.embeddings_request(
        {"model": "m", "input": ["a", "b"], "task_type": "RETRIEVAL_DOCUMENT", "title": "Doc"}, t
    )
    assert orjson.loads(hinted.body or b"") == {
        "instances": [
            {"content": "a", "task_type": "RETRIEVAL_DOCUMENT", "title": "Doc"},
            {"content": "b", "task_type": "RETRIEVAL_DOCUMENT", "title": "Doc"},
        ]
    }
    answer = {
        "predictions": [
            {"embeddings": {"values": [0.1, 0.2, 0.3], "statistics": {"token_count": 2, "truncated": False}}}
        ]
    }
    body = SPEC.adapter.embeddings_response(orjson.dumps(answer), t)
    assert body["data"] == [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}]
    assert body["usage"] == {"prompt_tokens": 2, "total_tokens": 2}


def test_make_auth_reads_the_key_once(key_file: Path) -> None:
    config = provider(key_file)
    auth = SPEC.make_auth(config, options_for(config))
    assert isinstance(auth, ServiceAccountAuth)
    key_file.unlink()  # read at start-up: later requests do not need the file
    assert "sa@from-file" in repr(auth) and "PRIVATE" not in repr(auth)


def test_missing_credentials_file(tmp_path: Path) -> None:
    [problem] = check_provider(provider(tmp_path / "none.json", vertex_project="p"))
    assert problem.startswith("credentials_file: cannot read") and "none.json" in problem


def test_invalid_key_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    bad_pem = "-----BEGIN PRIVATE KEY-----\nsecretish\n-----END PRIVATE KEY-----\n"
    path.write_text(
        json.dumps(
            {"type": "service_account", "client_email": "a@b", "private_key_id": "k", "private_key": bad_pem}
        )
    )
    [problem] = check_provider(provider(path))
    assert (
        problem.startswith("credentials_file:") and "private_key is not a PEM-encoded private key" in problem
    )
    assert "secretish" not in problem


def test_project_required_when_the_file_names_none(key_file: Path) -> None:
    info = json.loads(key_file.read_text())
    del info["project_id"]
    key_file.write_text(json.dumps(info))
    assert check_provider(provider(key_file)) == [
        "vertex_project: required (the credentials file names no project_id)"
    ]
    assert check_provider(provider(key_file, vertex_project="given")) == []


def test_unknown_and_invalid_keys(key_file: Path) -> None:
    assert check_provider(provider(key_file, vertex_region="x")) == ["vertex_region: unknown key"]
    [problem] = check_provider(provider(key_file, vertex_location="Europe West"))
    assert problem.startswith("vertex_location:")
    [missing] = check_provider(ProviderConfig(name="v", type="vertex"))
    assert missing.startswith("credentials_file:")
