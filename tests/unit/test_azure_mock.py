"""The Azure mock is strict like Azure OpenAI: deployment path, api-version and api-key."""

from __future__ import annotations

import orjson
import pytest
from starlette.testclient import TestClient

from switchboard.mock.app import create_mock_app

KEY = "azure-mock-key"
PATH = "/openai/deployments/prod-4o/chat/completions"
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_mock_app(api_key=KEY))


def test_answers_with_the_deployment_as_model(client: TestClient) -> None:
    resp = client.post(f"{PATH}?api-version=2024-10-21", json=CHAT, headers={"api-key": KEY})
    assert resp.status_code == 200
    body = resp.json()
    assert body["model"] == "prod-4o"
    assert body["prompt_filter_results"][0]["prompt_index"] == 0
    assert "content_filter_results" in body["choices"][0]


def test_api_version_is_required(client: TestClient) -> None:
    resp = client.post(PATH, json=CHAT, headers={"api-key": KEY})
    assert resp.status_code == 404
    assert resp.json() == {"error": {"code": "404", "message": "Resource not found"}}


def test_key_is_checked(client: TestClient) -> None:
    resp = client.post(f"{PATH}?api-version=2024-10-21", json=CHAT, headers={"api-key": "wrong"})
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "401"
    bearer = client.post(
        f"{PATH}?api-version=2024-10-21", json=CHAT, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert bearer.status_code == 200


def test_stream_options_need_a_recent_version(client: TestClient) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    old = client.post(f"{PATH}?api-version=2024-06-01", json=body, headers={"api-key": KEY})
    assert old.status_code == 400
    new = client.post(f"{PATH}?api-version=2024-10-21", json=body, headers={"api-key": KEY})
    events = [line[6:] for line in new.text.split("\n") if line.startswith("data: ")]
    assert orjson.loads(events[0])["choices"] == []  # Azure's prompt filter chunk comes first
    assert orjson.loads(events[-2])["usage"]["total_tokens"] > 0


def test_rate_limit_headers(client: TestClient) -> None:
    body = {"messages": [{"role": "user", "content": "mock:status=429 mock:retry_after=2"}]}
    resp = client.post(f"{PATH}?api-version=2024-10-21", json=body, headers={"api-key": KEY})
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "2" and resp.headers["retry-after-ms"] == "2000"
    assert resp.json()["error"]["code"] == "429"


@pytest.mark.parametrize("given", ["soon", "Wed,_21_Oct_2015_07:28:00_GMT", "inf", "nan"])
def test_a_rate_limit_sends_a_retry_after_that_is_no_number_as_given(client: TestClient, given: str) -> None:
    body = {"messages": [{"role": "user", "content": f"mock:status=429 mock:retry_after={given}"}]}
    resp = client.post(f"{PATH}?api-version=2024-10-21", json=body, headers={"api-key": KEY})
    assert resp.status_code == 429 and resp.json()["error"]["code"] == "429"
    assert resp.headers["retry-after"] == given.replace("_", " ")
    assert "retry-after-ms" not in resp.headers  # no number of seconds to give in milliseconds
    both = {"messages": [{"role": "user", "content": f"mock:status=429 mock:retry_after={given} "
                                                      "mock:retry_after_ms=1500"}]}
    resp = client.post(f"{PATH}?api-version=2024-10-21", json=both, headers={"api-key": KEY})
    assert resp.headers["retry-after"] == given.replace("_", " ") and resp.headers["retry-after-ms"] == "1500"


def test_embeddings_and_completions(client: TestClient) -> None:
    emb = client.post(
        "/openai/deployments/emb/embeddings?api-version=2024-10-21",
        json={"input": "x"},
        headers={"api-key": KEY},
    )
    assert emb.json()["model"] == "emb"
    cmp = client.post(
        "/openai/deployments/inst/completions?api-version=2024-10-21",
        json={"prompt": "x"},
        headers={"api-key": KEY},
    )
    assert cmp.json()["choices"][0]["text"].endswith("You said: x")


@pytest.mark.parametrize("path", [f"{PATH}?api-version=2024-10-21", "/v1/chat/completions"])
def test_more_than_four_stop_sequences_are_refused_like_openai(client: TestClient, path: str) -> None:
    headers = {"api-key": KEY, "Authorization": f"Bearer {KEY}"}
    body = {**CHAT, "model": "gpt-4o-mini", "stop": ["a", "b", "c", "d", "e"]}
    resp = client.post(path, json=body, headers=headers)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "stop"
    assert resp.json()["error"]["code"] == "array_above_max_length"
    assert client.post(path, json={**body, "stop": body["stop"][:4]}, headers=headers).status_code == 200
