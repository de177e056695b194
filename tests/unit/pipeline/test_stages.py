"""The stages of the model-call path, each alone, with a fake next handler."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from switchboard.context import Principal, Reply, RequestContext, Result
from switchboard.errors import AuthenticationFailed, InvalidRequest, ModelNotFound
from switchboard.pipeline.auth import Authenticator, AuthStage, presented_key
from switchboard.pipeline.decode import DecodeStage
from switchboard.pipeline.route import RouteStage
from switchboard.routing.live import Snapshot
from switchboard.routing.router import Router
from switchboard.routing.table import build_clients, build_routes
from switchboard.settings.loader import validate
from tests.unit.pipeline.fakes import context

MASTER = "sk-master-key-for-tests"


async def seen(ctx: RequestContext) -> Result:
    return Reply({"principal": ctx.principal, "route": ctx.route})


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"authorization": "Bearer abc"}, "abc"),
        ({"authorization": "bearer  abc "}, "abc"),
        ({"authorization": "Basic abc"}, None),
        ({"authorization": "Bearer "}, None),
        ({"x-api-key": "xyz"}, "xyz"),
        ({"authorization": "Bearer abc", "x-api-key": "xyz"}, "abc"),
        ({}, None),
    ],
)
def test_presented_key(headers: dict[str, str], key: str | None) -> None:
    assert presented_key(headers) == key


async def test_auth_stage_sets_the_principal_for_the_master_key() -> None:
    stage = AuthStage(Authenticator(MASTER))
    result = await stage(context(headers={"authorization": f"Bearer {MASTER}"}), seen)
    assert isinstance(result, Reply)
    principal = result.body["principal"]
    assert isinstance(principal, Principal)
    assert (principal.id, principal.role, principal.tenant_id) == ("master", "platform_admin", None)


@pytest.mark.parametrize(
    ("headers", "code"),
    [({}, "missing_api_key"), ({"authorization": "Bearer wrong"}, "invalid_api_key"),
     ({"x-api-key": MASTER + "x"}, "invalid_api_key")],
)
async def test_auth_stage_refuses_without_calling_next(headers: dict[str, str], code: str) -> None:
    called = []

    async def terminal(ctx: RequestContext) -> Result:
        called.append(ctx)
        return Reply({})

    with pytest.raises(AuthenticationFailed) as err:
        await AuthStage(Authenticator(MASTER))(context(headers=headers), terminal)
    assert err.value.code == code and err.value.status == 401
    assert called == []


async def test_decode_stage_fills_the_canonical_request() -> None:
    ctx = context(body=b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true}')
    await DecodeStage()(ctx, seen)
    assert ctx.request["model"] == "m" and ctx.stream is True


async def test_decode_stage_refuses_bad_json() -> None:
    with pytest.raises(InvalidRequest) as err:
        await DecodeStage()(context(body=b"{nope"), seen)
    assert err.value.code == "invalid_json"


@dataclass
class _Table:
    current: Snapshot


def _routes() -> _Table:
    settings = validate(
        {
            "providers": [{"name": "p", "type": "openai", "api_base": "http://127.0.0.1:9/v1"}],
            "models": [{"name": "known", "provider": "p", "model": "upstream-id"}],
            "auth": {"master_key": MASTER},
        },
        "test",
        env={},
    )
    return _Table(Snapshot.of(build_routes(settings, build_clients(settings)), {}, []))


async def test_route_stage_resolves_a_known_model() -> None:
    ctx = context(request={"model": "known"})
    await RouteStage(Router(_routes()))(ctx, seen)
    assert ctx.route is not None and ctx.route.target.model == "upstream-id"


@pytest.mark.parametrize("model", ["unknown", 42, None, "x" * 500])
async def test_route_stage_refuses_an_unknown_model(model: object) -> None:
    with pytest.raises(ModelNotFound) as err:
        await RouteStage(Router(_routes()))(context(request={"model": model}), seen)
    assert err.value.status == 404 and err.value.param == "model"
    assert len(err.value.message) < 300
