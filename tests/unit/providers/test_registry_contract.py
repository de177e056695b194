"""The contract every entry of the provider registry keeps, checked against golden wire data.

For each registered provider type (iterating the registry, so a new provider is covered as soon
as it is registered, and fails here until it has a golden file): the adapter builds a chat
request from a canonical request, parses the provider's non-stream answer into OpenAI's shape,
decodes the provider's stream into canonical chunks, and maps error answers to gateway errors.

Goldens are ``golden/<type>.json``: the provider's own bytes for one short exchange ("Hello
there!", 9 prompt and 3 completion tokens) plus two error answers (429 and 500).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from switchboard.config.schema import ProviderConfig, Timeouts
from switchboard.errors import GatewayError
from switchboard.providers import registry
from switchboard.providers.base import ProviderAdapter
from switchboard.providers.target import Target
from switchboard.upstream.eventstream import encode_message

GOLDEN = Path(__file__).parent / "golden"
TYPES = sorted(registry.providers())
API_KEY = "sk-golden-upstream-secret-0123"
PROMPT = "Say hello to the golden test"


@dataclass(frozen=True)
class Case:
    type: str
    adapter: ProviderAdapter
    target: Target
    golden: dict[str, Any]

    def stream_bytes(self) -> bytes:
        if "stream_frames" in self.golden:  # AWS event stream (Bedrock)
            return b"".join(
                encode_message(
                    {":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
                    orjson.dumps(payload),
                )
                for kind, payload in self.golden["stream_frames"]
            )
        return "".join(self.golden["stream"]).encode()


def canonical(stream: bool = False) -> dict[str, Any]:
    """An OpenAI-shaped chat request as the pipeline hands it to an adapter."""
    request: dict[str, Any] = {
        "model": "alias-model",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": PROMPT},
        ],
        "max_tokens": 50,
        "temperature": 0.5,
    }
    if stream:
        request["stream"] = True
    return request


@pytest.fixture(scope="module")
def service_account_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = tmp_path_factory.mktemp("vertex") / "sa.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "golden-project",
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": "golden@golden-project.iam.gserviceaccount.com",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    return str(path)


@pytest.fixture(params=TYPES)
def case(request: pytest.FixtureRequest, service_account_file: str) -> Case:
    kind: str = request.param
    path = GOLDEN / f"{kind}.json"
    if not path.exists():
        pytest.fail(f"provider type {kind!r} is registered but has no golden wire data: add {path}")
    golden = json.loads(path.read_text())
    # Placeholders for values that must exist on disk.
    files = {"{service_account_file}": service_account_file}
    options = {k: files.get(v, v) if isinstance(v, str) else v for k, v in golden["options"].items()}
    spec = registry.get(kind)
    config = ProviderConfig(name="golden", type=kind, api_base=golden["api_base"], api_key=API_KEY, **options)
    validated = spec.options.model_validate(config.options)
    base = spec.api_base(config, validated)
    assert base is not None, f"{kind}: no api_base"
    target = Target(
        name="alias-model",
        model=golden["model"],
        provider="golden",
        provider_type=kind,
        api_base=base,
        options=validated,
        timeouts=Timeouts(),
    )
    return Case(kind, spec.adapter, target, golden)


def test_every_golden_belongs_to_a_registered_provider() -> None:
    assert {p.stem for p in GOLDEN.glob("*.json")} <= set(TYPES)


def texts(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return " ".join(texts(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(texts(v) for v in value)
    return ""


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_builds_a_chat_request(case: Case, stream: bool) -> None:
    request = canonical(stream)
    before = copy.deepcopy(request)
    up = case.adapter.chat_request(request, case.target)
    assert request == before, "the adapter must not modify the caller's request"
    assert up.method == "POST"
    assert re.match(case.golden["stream_url" if stream else "url"], up.url), up.url
    assert up.stream is stream
    body = orjson.loads(up.body or b"")
    assert isinstance(body, dict)
    # The conversation is there; the upstream model id is sent, never the client's alias.
    assert PROMPT in texts(body) and "Be brief." in texts(body)
    assert case.target.model in unquote(up.url) or body.get("model") == case.target.model
    assert "alias-model" not in up.url and "alias-model" not in texts(body)
    # Adapters are pure: credentials are applied later, by the upstream client.
    assert API_KEY not in up.url + (up.body or b"").decode() + json.dumps(up.headers)


def counts(usage: dict[str, Any]) -> dict[str, Any]:
    return {k: usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


def test_parses_a_golden_response_into_openai_shape(case: Case) -> None:
    body = orjson.dumps(case.golden["response"])
    out = case.adapter.chat_response(body, case.target)
    orjson.dumps(out)  # the canonical form is plain JSON
    assert isinstance(out["id"], str) and out["id"]
    assert out["object"] == "chat.completion"
    assert isinstance(out["created"], int)
    assert isinstance(out["model"], str) and out["model"]
    (choice,) = out["choices"]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == case.golden["response_text"]
    assert choice["finish_reason"] == case.golden["finish_reason"]
    assert counts(out["usage"]) == case.golden["usage"]


@pytest.mark.parametrize("step", [None, 1, 7], ids=["whole", "byte-by-byte", "7-byte-reads"])
def test_decodes_a_golden_stream(case: Case, step: int | None) -> None:
    data = case.stream_bytes()
    decoder = case.adapter.chat_stream(canonical(stream=True), case.target)
    step = step or len(data)
    chunks = [c for i in range(0, len(data), step) for c in decoder.feed(data[i : i + step])]
    chunks += decoder.close()
    orjson.dumps(chunks)
    assert chunks
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"]
    choices = [ch for c in chunks for ch in c["choices"]]
    assert {ch["index"] for ch in choices} == {0}
    assert "".join(ch["delta"].get("content") or "" for ch in choices) == case.golden["stream_text"]
    finishes = [ch["finish_reason"] for ch in choices if ch.get("finish_reason")]
    assert finishes == [case.golden["finish_reason"]]
    usages = [c["usage"] for c in chunks if c.get("usage")]
    assert usages, "the stream's usage must reach the gateway (accounting depends on it)"
    assert counts(usages[-1]) == case.golden["usage"]


def test_a_stream_cut_short_is_an_error(case: Case) -> None:
    data = case.stream_bytes()
    decoder = case.adapter.chat_stream(canonical(stream=True), case.target)
    with pytest.raises(GatewayError) as exc:
        decoder.feed(data[: len(data) // 2])
        decoder.close()
    assert (exc.value.status, exc.value.type, exc.value.code) == (502, "api_error", "upstream_error")


def provider_message(body: Any) -> str:
    """The first ``message`` string in a provider's error body."""
    if isinstance(body, dict):
        if isinstance(body.get("message"), str):
            return str(body["message"])
        for value in body.values():
            if found := provider_message(value):
                return found
    return ""


# (status the provider answered, status, type and code the client gets), per docs/api.md.
GOLDEN_ERRORS = {
    429: (429, "rate_limit_error", None),  # code: the provider's or rate_limit_exceeded
    500: (502, "api_error", "upstream_error"),
}


@pytest.mark.parametrize("status", sorted(GOLDEN_ERRORS))
def test_maps_golden_errors(case: Case, status: int) -> None:
    (answer,) = [e for e in case.golden["errors"] if e["status"] == status]
    err = case.adapter.error(status, answer["headers"], orjson.dumps(answer["body"]), case.target)
    want_status, want_type, want_code = GOLDEN_ERRORS[status]
    assert isinstance(err, GatewayError)
    assert (err.status, err.type) == (want_status, want_type)
    if want_code is not None:
        assert err.code == want_code
    else:
        assert isinstance(err.code, str) and err.code
    assert err.message and API_KEY not in err.message
    if status == 429:  # a client error: the provider's explanation is carried over
        assert provider_message(answer["body"]) in err.message
    if "retry-after" in answer["headers"]:
        assert err.headers.get("retry-after") == answer["headers"]["retry-after"]


@pytest.mark.parametrize(
    ("status", "body", "want"),
    [
        (401, b"", (502, "api_error", "upstream_authentication_failed")),
        (403, b"<html>Forbidden</html>", (502, "api_error", "upstream_authentication_failed")),
        (500, b"<html><body>Internal Server Error</body></html>", (502, "api_error", "upstream_error")),
        (502, b"", (502, "api_error", "upstream_error")),
        (503, b"upstream connect error", (503, "api_error", "upstream_overloaded")),
        (504, b"", (504, "timeout_error", "upstream_timeout")),
    ],
)
def test_maps_errors_without_a_provider_body(
    case: Case, status: int, body: bytes, want: tuple[str, ...]
) -> None:
    # What a proxy or load balancer in front of any provider answers: no provider error body.
    err = case.adapter.error(status, {}, body, case.target)
    assert isinstance(err, GatewayError)
    assert (err.status, err.type, err.code) == want
    assert err.message
