"""A message batch's create body (up to 32 MiB) is parsed and its requests checked in a worker
thread, the event loop free meanwhile; the answer is that of one pass over the requests in order
(the first bad request's error, whatever its kind), as when it all ran on the loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson
import pytest

from switchboard import catalog
from switchboard.context import Principal
from switchboard.errors import GatewayError, PermissionDenied
from switchboard.http.files import message_requests
from switchboard.http.files.message_requests import MessageRequests
from switchboard.routing.live import LiveRouting
from switchboard.routing.router import Router
from switchboard.routing.stats import DeploymentStats
from switchboard.routing.table import Route
from switchboard.settings.loader import validate

CALLER = Principal(id="k", role="member", key_id="k", tenant_id="t")


def _router() -> Router:
    settings = validate({
        "providers": [
            {"name": "anth", "type": "anthropic", "api_base": "http://127.0.0.1:9", "api_key": "x"},
            {"name": "anth2", "type": "anthropic", "api_base": "http://127.0.0.1:9", "api_key": "x"},
            {"name": "oai", "type": "openai", "api_base": "http://127.0.0.1:9/v1", "api_key": "x"},
        ],
        "models": [
            {"name": "claude", "provider": "anth", "model": "claude-sonnet-4-5"},
            {"name": "claude-small", "provider": "anth", "model": "claude-haiku-4-5"},
            {"name": "claude-gated", "provider": "anth", "model": "claude-opus-4-1",
             "require_approval": True},
            {"name": "claude-elsewhere", "provider": "anth2", "model": "claude-sonnet-4-5"},
            {"name": "gpt", "provider": "oai", "model": "gpt-4o-mini"},
        ],
        "auth": {"master_key": "sk-master-key-for-tests"},
    }, "test.yaml", env={})
    return Router(LiveRouting(settings, catalog.build(settings)), DeploymentStats(lambda: 1000.0))


async def _refused(p: Principal, route: Route) -> None:
    raise PermissionDenied("needs an approved subscription", code="subscription_required")


def _checker() -> MessageRequests:
    return MessageRequests(_router(), _refused)


def request(custom_id: str, model: str = "claude", **params: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "params": {"model": model, "max_tokens": 8,
                                               "messages": [{"role": "user", "content": "hi"}], **params}}


def test_the_body_is_parsed_in_a_worker_thread_while_the_loop_runs_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parse = message_requests.parse_object
    threads: list[int] = []
    released = threading.Event()
    waited: list[bool] = []

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        started = asyncio.Event()

        def held_parse(body: bytes) -> dict[str, Any]:
            # Under way until the loop, told so, releases it: only a loop that is not the one
            # parsing can do that.
            threads.append(threading.get_ident())
            loop.call_soon_threadsafe(started.set)
            waited.append(released.wait(10))
            return parse(body)

        monkeypatch.setattr(message_requests, "parse_object", held_parse)
        body = orjson.dumps({"requests": [request(f"r{i}", "claude-small" if i % 2 else "claude")
                                          for i in range(1000)]})
        checking = asyncio.create_task(_checker().check(body, CALLER))
        await asyncio.wait_for(started.wait(), 10)
        released.set()
        return await checking

    checked = asyncio.run(main())
    assert waited == [True], "the loop was blocked while the body was parsed"
    assert threads and threads[0] != threading.get_ident()
    assert checked.provider == "anth" and len(checked.requests) == 1000
    assert [r["params"]["model"] for r in checked.requests[:2]] == ["claude-sonnet-4-5", "claude-haiku-4-5"]
    # Each request noted with the upstream id and the model entry it was sent for (its prices).
    assert sorted(checked.sent["models"]) == ["claude-haiku-4-5", "claude-sonnet-4-5"]
    assert {model: entry for model, (entry, _) in checked.sent["served"].items()} == {
        "claude-sonnet-4-5": "claude", "claude-haiku-4-5": "claude-small"}
    assert len(checked.sent["requests"]) == 500  # the other model's requests, by custom_id


FILE_SOURCE = {"messages": [{"role": "user", "content": [
    {"type": "document", "source": {"type": "file", "file_id": "file_1"}}]}]}


@pytest.mark.parametrize(("requests", "where", "said"), [
    # A shared-account object in request 0 comes before request 1's unknown model.
    ([request("a", **FILE_SOURCE), request("b", "nope")], "requests.0.params.messages.0.content.0.source",
     "Files API file"),
    # An unknown model in request 0 comes before request 1's bad custom_id.
    ([request("a", "nope"), request("b c")], "requests.0.params.model", "does not exist"),
    # A bad custom_id in request 0 comes before request 1's refused model.
    ([request("a b", "claude"), request("b", "claude-gated")], "requests.0.custom_id", "custom_id"),
    # A model seen first at request 1: its refusal is request 1's, after request 0's checks.
    ([request("a"), request("b", "claude-gated"), request("c", "claude-gated")], "requests.1.params.model",
     "subscription"),
    ([request("a"), request("b", "gpt")], "requests.1.params.model", "no Anthropic deployment"),
    ([request("a"), request("b", "claude-elsewhere")], "requests.1.params.model", "one provider"),
    # The model of a request refused for its shape is routed only where a later one uses it.
    ([request("a"), request("a", "nope")], "requests.1.custom_id", "used more than once"),
    ([request("a"), request("b", "claude-small"), request("c", "nope")], "requests.2.params.model",
     "does not exist"),
], ids=["account-before-model", "model-before-custom-id", "custom-id-before-approval", "approval",
        "not-anthropic", "other-provider", "duplicate", "later-model"])
def test_the_first_bad_request_is_the_one_refused(
    requests: list[dict[str, Any]], where: str, said: str,
) -> None:
    with pytest.raises(GatewayError) as refused:
        asyncio.run(_checker().check(orjson.dumps({"requests": requests}), CALLER))
    assert refused.value.param == where and said in refused.value.message, refused.value.message
