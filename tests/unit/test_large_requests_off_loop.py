"""A large request's heavy steps run in a worker thread, so the event loop keeps serving the other
requests meanwhile: its parse and validation (decode), the walk over its parts for named files,
the token count that checks it against context windows, its translation for the provider, the
parse of a large answer (a media one too) and its encoding for the client, the serialisation of
a large files or batches call, and the freeing of a large message batch once sent. A small
request does each inline: no thread hop on the common path.

Each step is run beside a task standing for the other requests on the loop: when the step runs
in a thread the loop runs that task meanwhile (``ticks > 0``); inline it never gets the chance
before the step ends (``ticks == 0``). No timing is involved."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, TypeVar, cast

import orjson
import pytest

from switchboard.config.schema import RouterConfig, Timeouts
from switchboard.context import LARGE_BODY_BYTES, InboundAPI, Reply, RequestContext, Result
from switchboard.errors import InvalidRequest
from switchboard.http import openai_api
from switchboard.http.endpoint import Endpoint
from switchboard.http.files.message_requests import RELEASE_IN_THREAD, release
from switchboard.http.files.references import FileReferenceStage
from switchboard.http.files.service import FileService
from switchboard.http.files.upstream import SERIALISE_IN_THREAD_BYTES, Upstream
from switchboard.http.state import ServerState
from switchboard.pipeline.decode import DecodeStage
from switchboard.pipeline.invoke import invoke
from switchboard.pipeline.media import MediaTerminal
from switchboard.pipeline.route import RouteStage
from switchboard.pipeline.rules import RulesStage
from switchboard.providers.media import MediaReply
from switchboard.tokens import estimate
from switchboard.upstream.client import UpstreamReply
from switchboard.upstream.request import UpstreamRequest
from tests.unit.pipeline.fakes import Client, context, terminal_returning
from tests.unit.routing.health_world import router

T = TypeVar("T")


async def _ticks_while(step: Callable[[], Awaitable[T]]) -> tuple[T, int]:
    """What ``step`` gave, and how often another task ran on the loop while it ran."""
    ticks = 0
    done = False

    async def other_request() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(other_request())
    try:
        result = await step()
    finally:
        done = True
        await ticker
    return result, ticks


async def _next(ctx: RequestContext) -> Result:
    return Reply({})


def _chat(messages: int) -> dict[str, Any]:
    return {"model": "windowed", "messages": [{"role": "user", "content": f"message number {i}"}
                                              for i in range(messages)]}


LARGE = _chat(LARGE_BODY_BYTES // 30)  # a few thousand messages, past LARGE_BODY_BYTES as JSON
SMALL = _chat(3)


@pytest.mark.parametrize(("request_body", "threaded"), [(LARGE, True), (SMALL, False)])
async def test_a_large_body_is_decoded_off_the_loop(request_body: dict[str, Any], threaded: bool) -> None:
    body = orjson.dumps(request_body)
    assert (len(body) > LARGE_BODY_BYTES) is threaded
    ctx = context(body=body)
    _, ticks = await _ticks_while(lambda: DecodeStage()(ctx, _next))
    assert ctx.request["messages"] == request_body["messages"]
    assert (ticks > 0) is threaded


async def test_a_large_body_that_is_not_json_is_refused_as_ever() -> None:
    body = orjson.dumps(LARGE)[:-1]
    with pytest.raises(InvalidRequest) as caught:
        await _ticks_while(lambda: DecodeStage()(context(body=body), _next))
    assert caught.value.code == "invalid_json" and caught.value.status == 400


async def test_a_large_body_refused_by_validation_still_names_its_model() -> None:
    body = orjson.dumps({**LARGE, "temperature": "hot"})
    ctx = context(body=body)
    with pytest.raises(InvalidRequest) as caught:
        await DecodeStage()(ctx, _next)
    assert caught.value.param == "temperature" and ctx.request == {"model": "windowed"}


@pytest.mark.parametrize(("request_body", "threaded"), [(LARGE, True), (SMALL, False)])
async def test_a_large_prompt_is_counted_for_context_windows_off_the_loop(
        request_body: dict[str, Any], threaded: bool) -> None:
    # A window smaller than either body: the request's tokens are counted to check it.
    r = router([{"name": "windowed", "deployment": "d", "model": "gpt-4o-mini",
                 "info": {"context_window": 100}}])
    ctx = context(body=orjson.dumps(request_body), request=request_body)
    _, ticks = await _ticks_while(lambda: RouteStage(r)(ctx, _next))
    assert ctx.needs.prompt_tokens == estimate(request_body, "chat", model="gpt-4o-mini")
    assert ctx.group is not None and ctx.group.name == "windowed"
    assert (ticks > 0) is threaded


@pytest.mark.parametrize(("request_body", "threaded"), [(LARGE, True), (SMALL, False)])
async def test_a_large_prompt_is_counted_for_a_routing_rule_off_the_loop(
        request_body: dict[str, Any], threaded: bool) -> None:
    # A rule on the prompt's size reads its tokens: a large prompt's are counted in a thread.
    config = RouterConfig.model_validate({"rules": [
        {"model": "windowed", "when": {"prompt_tokens": {"min": 1_000_000}}, "to": "elsewhere"}]})
    stage = RulesStage(config, cast(Any, None), SimpleNamespace(current=SimpleNamespace(splits={})))
    ctx = context(body=orjson.dumps(request_body), request=dict(request_body))
    _, ticks = await _ticks_while(lambda: stage(ctx, _next))
    assert ctx.prompt_tokens == estimate(request_body, "chat")
    assert ctx.request["model"] == "windowed"  # fewer tokens than the rule asks: not rerouted
    assert (ticks > 0) is threaded


@pytest.mark.parametrize(("request_body", "threaded"), [(LARGE, True), (SMALL, False)])
async def test_a_large_requests_parts_are_walked_for_files_off_the_loop(
        request_body: dict[str, Any], threaded: bool) -> None:
    # Nothing named: the file service is never asked.
    stage = FileReferenceStage(cast(FileService, None))
    ctx = context(body=orjson.dumps(request_body), request=request_body)
    result, ticks = await _ticks_while(lambda: stage(ctx, _next))
    assert isinstance(result, Reply)
    assert (ticks > 0) is threaded


class _Client:
    """The upstream client's side of a JSON exchange: what was sent, answered with an object."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, request: Any, timeouts: Timeouts) -> Any:
        self.sent.append(request.body)
        return _Answer()


class _Answer:
    status = 200
    body = b'{"id": "msgbatch_1"}'


@pytest.mark.parametrize(("size", "threaded"), [(SERIALISE_IN_THREAD_BYTES, True), (1000, False)])
async def test_a_large_call_body_is_serialised_off_the_loop(size: int, threaded: bool) -> None:
    client = _Client()
    upstream = Upstream("anth", "anthropic", "http://up", None, cast(Any, client), Timeouts())
    body = {"requests": [{"custom_id": f"r{i}", "params": SMALL} for i in range(100)]}
    answer, ticks = await _ticks_while(lambda: upstream.call("POST", "/v1/messages/batches", body, size=size))
    assert answer == {"id": "msgbatch_1"}
    assert client.sent == [orjson.dumps(body)]
    assert (ticks > 0) is threaded


@pytest.mark.parametrize(("count", "threaded"), [(RELEASE_IN_THREAD, True), (10, False)])
async def test_a_large_batch_is_freed_off_the_loop_once_sent(count: int, threaded: bool) -> None:
    requests: list[Any] = [{"custom_id": f"r{i}", "params": dict(SMALL)} for i in range(count)]
    _, ticks = await _ticks_while(lambda: release(requests))
    assert (ticks > 0) is threaded
    assert len(requests) == (0 if threaded else 10)  # a small one is left to go as ever


class _Adapter:
    """A provider's translation, as the terminal calls it: the canonical request as JSON, and
    an answer's JSON as the canonical reply."""

    def chat_request(self, request: dict[str, Any], target: Any) -> UpstreamRequest:
        return UpstreamRequest("POST", "http://up/v1/chat/completions", orjson.dumps(request))

    def chat_response(self, body: bytes, target: Any) -> dict[str, Any]:
        return dict(orjson.loads(body))


class _Provider:
    """The upstream client: answers at once (no wait of its own on the loop) with ``answer``."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.sent: list[bytes | None] = []

    async def send(self, request: UpstreamRequest, timeout: Any) -> UpstreamReply:
        self.sent.append(request.body)
        return UpstreamReply(200, {}, self.answer)


def _answer(text: str) -> bytes:
    return orjson.dumps({"id": "c", "object": "chat.completion", "model": "m", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})


@pytest.mark.parametrize(("request_body", "answer", "threaded"), [
    (LARGE, _answer("short"), True),  # the translation and serialisation of the request
    (SMALL, _answer("x" * LARGE_BODY_BYTES), True),  # the parse of the answer
    (SMALL, _answer("short"), False),
])
async def test_a_large_exchange_is_translated_and_parsed_off_the_loop(
        request_body: dict[str, Any], answer: bytes, threaded: bool) -> None:
    provider = _Provider(answer)
    ctx = context(body=orjson.dumps(request_body), request=request_body)
    ctx.route = cast(Any, SimpleNamespace(adapter=_Adapter(), client=provider, timeout=None, entry=None,
                                          target=SimpleNamespace(provider_type="openai")))
    result, ticks = await _ticks_while(lambda: invoke(ctx))
    assert provider.sent == [orjson.dumps(request_body)]
    assert isinstance(result, Reply) and result.body == orjson.loads(answer)
    assert (ticks > 0) is threaded


class _Watched:
    """The chat API's encoder, noting the thread each answer is encoded in."""

    def __init__(self, inbound: InboundAPI) -> None:
        self._inbound = inbound
        self.threads: list[int] = []

    def encode(self, ctx: RequestContext, body: dict[str, Any], native: bool = False) -> bytes:
        self.threads.append(threading.get_ident())
        return self._inbound.encode(ctx, body, native)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inbound, name)


@pytest.mark.parametrize("large", [True, False])
async def test_a_large_answer_is_encoded_for_the_client_off_the_loop(large: bool) -> None:
    watched = _Watched(openai_api.CHAT)
    answer = orjson.loads(_answer("an answer"))
    edge = Endpoint(cast(InboundAPI, watched), terminal_returning(Reply(answer, large=large)), ServerState(),
                    max_body_bytes=1024, deadline_seconds=60)
    client = Client(body=b'{"model": "m"}')
    await edge(client.scope(), client.receive, client.send)
    assert client.status == 200 and client.json()["choices"] == answer["choices"]
    assert len(watched.threads) == 1
    assert (watched.threads[0] != threading.get_ident()) is large


class _ImageAdapter:
    """An images provider's translation: the answer's JSON read as the client's body."""

    def media_request(self, operation: str, request: dict[str, Any], target: Any) -> UpstreamRequest:
        return UpstreamRequest("POST", "http://up/v1/images/generations", orjson.dumps(request))

    def media_response(self, operation: str, body: bytes, headers: Any, request: Any,
                       target: Any) -> MediaReply:
        return MediaReply(body=dict(orjson.loads(body)), usage={"units": {"images": 1}})


@pytest.mark.parametrize("threaded", [True, False])
async def test_a_large_image_answer_is_read_off_the_loop_and_encoded_there(threaded: bool) -> None:
    # An image's base64 runs to tens of MB: read in a thread, and encoded there by the edge.
    image = "A" * (LARGE_BODY_BYTES if threaded else 100)
    answer = orjson.dumps({"created": 1, "data": [{"b64_json": image}]})
    request = {"model": "painter", "prompt": "a cat"}
    ctx = RequestContext("rid-1", "image_generations", openai_api.CHAT, {}, orjson.dumps(request), 0.0,
                         request=request)
    ctx.route = cast(Any, SimpleNamespace(adapter=_ImageAdapter(), client=_Provider(answer), timeout=None,
                                          target=SimpleNamespace(name="painter", provider_type="openai")))
    terminal = MediaTerminal(cast(Any, SimpleNamespace(of_route=lambda route: None)))
    result, ticks = await _ticks_while(lambda: terminal(ctx))
    assert isinstance(result, Reply) and result.body["data"][0]["b64_json"] == image
    assert ctx.usage == {"units": {"images": 1}}
    assert result.large is threaded and (ticks > 0) is threaded
