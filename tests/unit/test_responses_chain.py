"""The Responses endpoints run the stage chain: a stage added to it sees each of them."""

from __future__ import annotations

import httpx
import pytest

from switchboard.app import SwitchboardApp
from switchboard.settings.loader import validate
from tests.unit.pipeline.test_every_endpoint import MASTER, Stamp, StampedGateway


@pytest.fixture
def app_and_stamp() -> tuple[SwitchboardApp, Stamp]:
    settings = validate(
        {
            "providers": [{"name": "p", "type": "openai", "api_base": "http://127.0.0.1:9/v1"}],
            "models": [{"name": "m", "provider": "p", "model": "m"}],
            "auth": {"master_key": MASTER},
        },
        "test",
        env={},
    )
    stamp = Stamp()
    return SwitchboardApp(settings, StampedGateway(settings, stamp)), stamp


@pytest.mark.parametrize(
    ("method", "path", "body", "operation", "status"),
    [
        (
            "POST",
            "/v1/responses",
            {"model": "m", "input": "hi", "tools": [{"type": "web_search"}]},
            "chat",
            400,
        ),
        ("POST", "/v1/responses", {"model": "nope", "input": "hi"}, "chat", 404),
        ("GET", "/v1/responses/resp_1", None, "responses", 404),
        ("DELETE", "/v1/responses/resp_1", None, "responses", 404),
        ("GET", "/v1/responses/resp_1/input_items", None, "responses", 404),
    ],
)
async def test_the_stage_sees_the_responses_endpoints(
    app_and_stamp: tuple[SwitchboardApp, Stamp],
    method: str,
    path: str,
    body: object,
    operation: str,
    status: int,
) -> None:
    app, stamp = app_and_stamp
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        resp = await http.request(method, path, json=body, headers={"authorization": f"Bearer {MASTER}"})
        assert resp.status_code == status, resp.text
        assert resp.headers["x-stamp"] == operation
        assert stamp.seen == [(operation, "master")]
        assert resp.json()["error"]["message"]
        anonymous = await http.request(method, path, json=body)
        assert anonymous.status_code == 401
