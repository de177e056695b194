"""A stage added to the chain applies to every API endpoint, not only to model calls."""

from __future__ import annotations

import httpx
import pytest

from switchboard.app import SwitchboardApp
from switchboard.config.schema import Settings
from switchboard.context import RequestContext, Result
from switchboard.gateway import Gateway
from switchboard.pipeline.chain import Handler, Stage, map_result
from switchboard.settings.loader import validate

MASTER = "sk-master-key-for-tests"


class Stamp:
    """Marks every response it sees and remembers the operation and caller."""

    name = "stamp"

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        self.seen.append((ctx.operation, ctx.principal.id if ctx.principal else None))
        ctx.response_headers["x-stamp"] = ctx.operation
        return map_result(await call_next(ctx))


class StampedGateway(Gateway):
    def __init__(self, settings: Settings, stamp: Stamp) -> None:
        self.stamp = stamp
        super().__init__(settings)

    def common_stages(self) -> list[Stage]:
        return [*super().common_stages(), self.stamp]


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
    transport = httpx.ASGITransport(app=app)
    headers = {"authorization": f"Bearer {MASTER}"}
    return httpx.AsyncClient(transport=transport, base_url="http://gw", headers=headers)


@pytest.mark.parametrize(
    ("method", "path", "body", "operation", "status"),
    [
        ("GET", "/v1/models", None, "models", 200),
        ("GET", "/v1/models/m", None, "model", 200),
        ("GET", "/v1/models/nope", None, "model", 404),
        ("POST", "/v1/messages/count_tokens", {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
         "count_tokens", 200),
        ("GET", "/admin/models", None, "admin", 200),
        ("GET", "/admin/nothing-here", None, "admin", 404),
        ("POST", "/admin/models", {}, "admin", 405),
    ],
)
async def test_the_stage_runs_for_every_endpoint(
    http: httpx.AsyncClient, stamp: Stamp, method: str, path: str, body: object, operation: str, status: int
) -> None:
    resp = await http.request(method, path, json=body)
    assert resp.status_code == status, resp.text
    assert resp.headers["x-stamp"] == operation
    assert resp.headers["x-request-id"]
    assert stamp.seen == [(operation, "master")]


async def test_authentication_comes_first_on_every_endpoint(http: httpx.AsyncClient, stamp: Stamp) -> None:
    calls = [("GET", "/v1/models"), ("GET", "/v1/models/m"), ("POST", "/v1/messages/count_tokens"),
             ("GET", "/admin/models")]
    for method, path in calls:
        resp = await http.request(method, path, headers={"authorization": "Bearer wrong"}, json=None)
        assert resp.status_code == 401, path
        assert resp.headers["x-request-id"]
    assert stamp.seen == []
