"""Every Gemini method runs through the chain: a stage added to it sees each one, after auth."""

from __future__ import annotations

import httpx
import pytest

from switchboard.app import SwitchboardApp
from switchboard.settings.loader import validate
from tests.unit.pipeline.test_every_endpoint import Stamp, StampedGateway

MASTER = "sk-master-key-for-tests"
CONTENTS = {"contents": [{"parts": [{"text": "hi"}]}]}


@pytest.fixture
def stamp() -> Stamp:
    return Stamp()


@pytest.fixture
async def http(stamp: Stamp) -> httpx.AsyncClient:
    settings = validate(
        {
            "providers": [{"name": "p", "type": "openai", "api_base": "http://127.0.0.1:9/v1"}],
            "models": [{"name": "m", "provider": "p", "model": "m"}],
            "auth": {"master_key": MASTER},
        },
        "test",
        env={},
    )
    app = SwitchboardApp(settings, StampedGateway(settings, stamp))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


@pytest.mark.parametrize(
    ("path", "body", "operation", "status"),
    [
        ("/v1beta/models/m:countTokens", CONTENTS, "count_tokens", 200),
        ("/v1/models/m:countTokens", CONTENTS, "count_tokens", 200),
        # Not started (no stores, no upstream session): the model calls fail past the stage, in
        # Google's error format.
        ("/v1beta/models/m:generateContent", CONTENTS, "chat", None),
        ("/v1beta/models/m:streamGenerateContent?alt=sse", CONTENTS, "chat", None),
        ("/v1beta/models/m:embedContent", {"content": {"parts": [{"text": "x"}]}}, "embeddings", None),
        (
            "/v1beta/models/m:batchEmbedContents",
            {"requests": [{"content": {"parts": [{"text": "x"}]}}]},
            "embeddings",
            None,
        ),
    ],
)
async def test_the_stage_runs_for_every_method(
    http: httpx.AsyncClient, stamp: Stamp, path: str, body: object, operation: str, status: int | None
) -> None:
    resp = await http.post(path, json=body, headers={"x-goog-api-key": MASTER})
    assert resp.status_code == (status or resp.status_code), resp.text
    assert resp.headers["x-stamp"] == operation and resp.headers["x-request-id"]
    assert stamp.seen == [(operation, "master")]
    if status == 200:
        assert resp.json() == {"totalTokens": resp.json()["totalTokens"]} and resp.json()["totalTokens"] > 0
    else:
        assert resp.status_code >= 500 and resp.json()["error"]["code"] == resp.status_code


async def test_authentication_comes_first(http: httpx.AsyncClient, stamp: Stamp) -> None:
    for method in (
        "generateContent",
        "streamGenerateContent",
        "countTokens",
        "embedContent",
        "batchEmbedContents",
    ):
        resp = await http.post(f"/v1beta/models/m:{method}?key=wrong", json={})
        assert resp.status_code == 401, method
        assert resp.json()["error"]["status"] == "UNAUTHENTICATED"
    assert stamp.seen == []


async def test_query_key_and_unknown_methods(http: httpx.AsyncClient, stamp: Stamp) -> None:
    ok = await http.post(f"/v1beta/models/m:countTokens?key={MASTER}", json=CONTENTS)
    assert ok.status_code == 200
    unknown = await http.post("/v1beta/models/m:predict", json={}, headers={"x-goog-api-key": MASTER})
    assert unknown.status_code == 404 and unknown.json()["error"]["status"] == "NOT_FOUND"
    assert "generateContent" in unknown.json()["error"]["message"] and unknown.headers["x-request-id"]
    twice = await http.post(
        "/v1beta/models/m:countTokens",
        json=CONTENTS,
        headers=[("x-goog-api-key", MASTER), ("x-goog-api-key", "other")],
    )
    assert twice.status_code == 400 and twice.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert stamp.seen == [("count_tokens", "master")]
