"""The mock records captured requests and how each exchange ended; expected events log quietly."""

from __future__ import annotations

import logging

import pytest
from starlette.testclient import TestClient

from switchboard.mock.app import create_mock_app
from switchboard.mock.capture import MAX_PER_MARKER, MockDisconnect, QuietExpectedEvents

KEY = "sk-mock-capture-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_mock_app(api_key=KEY), raise_server_exceptions=False)


def chat(text: str, **extra: object) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": text}], **extra}


def test_directive_records_method_path_query_body_and_redacts_credentials(client: TestClient) -> None:
    body = chat("hi mock:capture=abc123", seed=3, vendor_x={"a": 1})
    resp = client.post("/v1/chat/completions?x=1", json=body, headers=AUTH)
    assert resp.status_code == 200
    (seen,) = client.get("/_mock/captured/abc123").json()["requests"]
    assert (seen["method"], seen["path"], seen["query"]) == ("POST", "/v1/chat/completions", "x=1")
    assert seen["body"] == body
    assert seen["headers"]["authorization"] == "<redacted>"
    assert KEY not in str(seen)
    assert (seen["outcome"], seen["status"]) == ("completed", 200)


def test_header_marker_and_error_status(client: TestClient) -> None:
    client.post(
        "/v1/messages",
        json={"model": "m", "messages": [{"role": "user", "content": "no max_tokens"}]},
        headers={"x-api-key": KEY, "anthropic-version": "2023-06-01", "x-mock-capture": "hdr-1"},
    )
    (seen,) = client.get("/_mock/captured/hdr-1").json()["requests"]
    assert seen["path"] == "/v1/messages" and seen["status"] == 400
    assert seen["headers"]["x-api-key"] == "<redacted>"


def test_requests_without_the_marker_are_not_recorded(client: TestClient) -> None:
    client.post("/v1/chat/completions", json=chat("plain"), headers=AUTH)
    client.post("/v1/chat/completions", json=chat("mock:capture=other"), headers=AUTH)
    assert client.get("/_mock/captured/plain").json() == {"marker": "plain", "requests": []}
    assert len(client.get("/_mock/captured/other").json()["requests"]) == 1


def test_records_per_marker_are_bounded_and_ordered(client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    for i in range(MAX_PER_MARKER + 3):
        client.post("/v1/chat/completions", json=chat(f"n{i} mock:capture=many"), headers=auth)
    records = client.get("/_mock/captured/many").json()["requests"]
    assert len(records) == MAX_PER_MARKER
    assert records[0]["body"]["messages"][0]["content"] == "n3 mock:capture=many"
    assert records[-1]["body"]["messages"][0]["content"] == f"n{MAX_PER_MARKER + 2} mock:capture=many"


def test_wait_is_bounded_and_answers_with_what_it_has(client: TestClient) -> None:
    client.post("/v1/chat/completions", json=chat("mock:capture=one"), headers=AUTH)
    got = client.get("/_mock/captured/one", params={"count": 2, "timeout": 0.2}).json()["requests"]
    assert len(got) == 1
    got = client.get("/_mock/captured/one", params={"outcome": "dropped", "timeout": 0.2}).json()
    assert got["requests"][0]["outcome"] == "completed"
    assert client.get("/_mock/captured/one", params={"timeout": "x", "count": 1}).status_code == 400


def test_deliberate_drop_is_recorded(client: TestClient) -> None:
    body = chat("mock:disconnect_after=2 mock:capture=drop", stream=True)
    client.post("/v1/chat/completions", json=body, headers=AUTH)
    (seen,) = client.get("/_mock/captured/drop").json()["requests"]
    assert seen["outcome"] == "dropped"


def record(msg: str, exc: BaseException | None = None) -> logging.LogRecord:
    info = (type(exc), exc, None) if exc else None
    return logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, msg, (1,), info)


def test_log_filter_drops_deliberate_drop_tracebacks_and_softens_shutdown_cancel() -> None:
    quiet = QuietExpectedEvents()
    assert not quiet.filter(record("Exception in ASGI application\n", MockDisconnect("x")))
    cancel = record("Cancel %s running task(s), timeout graceful shutdown exceeded")
    assert quiet.filter(cancel)
    assert cancel.levelname == "INFO"
    assert cancel.getMessage() == "mock: ending 1 unfinished request(s) at shutdown"
    # Anything else is left alone.
    other = record("Exception in ASGI application\n", ValueError("real bug"))
    assert quiet.filter(other) and other.levelname == "ERROR" and other.exc_info is not None
