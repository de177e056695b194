"""The Mistral mock is as strict as La Plateforme, so e2e tests prove the adapter's translation."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from switchboard.mock.app import create_mock_app

KEY = "sk-mistral-mock"
URL = "/mistral/v1/chat/completions"
USER = {"role": "user", "content": "hi"}


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_mock_app(api_key=KEY), headers={"Authorization": f"Bearer {KEY}"})


def post(client: TestClient, body: dict[str, Any], url: str = URL) -> Any:
    return client.post(url, content=orjson.dumps(body), headers={"Content-Type": "application/json"})


def chat(**params: Any) -> dict[str, Any]:
    return {"model": "mistral-small-latest", "messages": [USER], **params}


def test_valid_request(client: TestClient) -> None:
    resp = post(client, chat(random_seed=1, max_tokens=50, safe_prompt=True))
    assert resp.status_code == 200
    body = resp.json()
    assert body["choices"][0]["message"]["content"].endswith("You said: hi")
    assert set(body["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}


def test_wrong_key(client: TestClient) -> None:
    resp = client.post(URL, json=chat(), headers={"Authorization": "Bearer nope"})
    assert resp.status_code == 401
    assert resp.json()["message"] == "Unauthorized"


@pytest.mark.parametrize("field", ["seed", "max_completion_tokens", "stream_options", "logprobs", "user"])
def test_openai_only_fields_are_extra_forbidden(client: TestClient, field: str) -> None:
    resp = post(client, chat(**{field: 1}))
    assert resp.status_code == 422
    detail = resp.json()["message"]["detail"][0]
    assert detail["type"] == "extra_forbidden" and detail["loc"] == ["body", field]


def test_message_fields_are_checked(client: TestClient) -> None:
    resp = post(client, {"model": "m", "messages": [{"role": "user", "content": "hi", "name": "ann"}]})
    assert resp.status_code == 422
    assert resp.json()["message"]["detail"][0]["loc"] == ["body", "messages", 0, "user", "name"]
    resp = post(client, {"model": "m", "messages": [{"role": "developer", "content": "x"}]})
    assert resp.status_code == 422


@pytest.mark.parametrize("bad_id", ["call_abc123", "abc", "abcd-fghi"])
def test_tool_call_ids_must_be_nine_alphanumerics(client: TestClient, bad_id: str) -> None:
    messages = [
        USER,
        {
            "role": "assistant",
            "tool_calls": [{"id": bad_id, "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
    ]
    resp = post(client, {"model": "m", "messages": messages})
    assert resp.status_code == 400
    assert resp.json() == {
        "object": "error",
        "type": "invalid_function_call",
        "param": None,
        "code": "3280",
        "message": f"Tool call id was {bad_id} but must be a-z, A-Z, 0-9, with a length of 9.",
    }


def test_functions_need_parameters(client: TestClient) -> None:
    resp = post(client, chat(tools=[{"type": "function", "function": {"name": "f"}}]))
    assert resp.status_code == 422


def test_images(client: TestClient) -> None:
    good = [
        {"type": "text", "text": "see"},
        {"type": "image_url", "image_url": "data:image/png;base64,iVBORw0KGgo="},
    ]
    resp = post(client, {"model": "m", "messages": [{"role": "user", "content": good}]})
    assert resp.json()["choices"][0]["message"]["content"].endswith("see [1 image]")
    bad = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]
    assert post(client, {"model": "m", "messages": [{"role": "user", "content": bad}]}).status_code == 400


def test_stream_usage_rides_on_the_last_chunk(client: TestClient) -> None:
    resp = post(client, chat(stream=True))
    events = [line[6:] for line in resp.text.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    last = orjson.loads(events[-2])
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["usage"]["total_tokens"] > 0


def test_injected_errors_use_mistral_bodies(client: TestClient) -> None:
    resp = post(client, chat(messages=[{"role": "user", "content": "mock:status=429"}]))
    assert resp.status_code == 429 and resp.headers["retry-after"] == "1"
    assert resp.json()["object"] == "error"


@pytest.mark.parametrize("dims", [0, 3073, 10**8, 2**64 - 1, True])
def test_embedding_dimensions_no_model_has_are_refused(client: TestClient, dims: Any) -> None:
    """Such a vector was built: 10**8 held gigabytes, 2**64 - 1 was a 500."""
    body = {"model": "mistral-embed", "input": ["a"], "output_dimension": dims}
    refused = post(client, body, "/mistral/v1/embeddings")
    assert refused.status_code == 422, refused.text
    assert refused.json()["message"]["detail"][0]["loc"] == ["body", "output_dimension"]


def test_embeddings(client: TestClient) -> None:
    resp = post(
        client, {"model": "mistral-embed", "input": ["a"], "output_dimension": 4}, "/mistral/v1/embeddings"
    )
    assert len(resp.json()["data"][0]["embedding"]) == 4
    assert (
        post(
            client, {"model": "mistral-embed", "input": ["a"], "dimensions": 4}, "/mistral/v1/embeddings"
        ).status_code
        == 422
    )


def test_a_tool_result_without_its_call_is_refused(client: TestClient) -> None:
    call = {"id": "abcDEF123", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    answered = [USER, {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "abcDEF123", "content": "ok"}]
    assert post(client, {"model": "m", "messages": answered}).status_code == 200
    orphan = [USER, {"role": "tool", "tool_call_id": "abcDEF123", "content": "ok"}]
    resp = post(client, {"model": "m", "messages": orphan})
    assert resp.status_code == 400
    assert resp.json()["type"] == "invalid_request_message_order" and resp.json()["code"] == "3230"
