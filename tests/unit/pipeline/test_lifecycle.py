"""The request lifecycle at the edge, with fake terminals and no sockets: the outcome, work after
the response on every way out, and streams closed on every exit path."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterator

import aiohttp
import pytest
import redis.exceptions

from switchboard.context import Reply, RequestContext, Result
from switchboard.errors import RateLimited, UpstreamUnreachable
from switchboard.http import disconnect
from switchboard.http.errors import UNEXPECTED
from switchboard.http.state import ServerState
from switchboard.pipeline.chain import Handler, build_chain, map_result
from switchboard.upstream.http1 import Disconnected
from tests.unit.pipeline.fakes import Client, FakeStream, chunk, endpoint, run, terminal_returning


@pytest.fixture(autouse=True)
def watch_at_once(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The disconnect watcher normally starts after 0.25 s; start it at once so tests need no wait.
    monkeypatch.setattr(disconnect, "WATCH_AFTER", 0.0)
    yield


class After:
    """A post-response callback that records the context and what had been sent by then."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.calls: list[tuple[RequestContext, int]] = []

    async def __call__(self, ctx: RequestContext) -> None:
        self.calls.append((ctx, len(self.client.sent)))

    def stage(self) -> object:
        after = self

        class Register:
            name = "register"

            async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
                ctx.after(after)
                return await call_next(ctx)

        return Register()

    @property
    def ctx(self) -> RequestContext:
        assert len(self.calls) == 1, self.calls
        return self.calls[0][0]


def chain_with(after: After, terminal: Handler) -> Handler:
    return build_chain([after.stage()], terminal)  # type: ignore[list-item]


async def test_reply_then_post_response_work() -> None:
    client = Client()
    after = After(client)
    await run(chain_with(after, terminal_returning(Reply({"ok": 1}))), client)
    assert client.status == 200 and client.json() == {"ok": 1}
    assert client.response_headers[b"x-request-id"]
    ctx, sent_before = after.calls[0]
    assert sent_before == len(client.sent) == 2  # ran after the last byte was written
    outcome = ctx.outcome
    assert (outcome.status, outcome.stream, outcome.bytes_sent) == (200, False, len(b'{"ok":1}'))
    assert outcome.first_byte_at is not None and outcome.finished_at is not None
    assert ctx.deadline == pytest.approx(ctx.started + 60)


async def test_gateway_error_is_written_and_recorded() -> None:
    client = Client()
    after = After(client)

    async def terminal(ctx: RequestContext) -> Result:
        raise RateLimited("slow down", headers={"retry-after": "3"})

    await endpoint(chain_with(after, terminal))(client.scope(), client.receive, client.send)
    assert client.status == 429 and client.response_headers[b"retry-after"] == b"3"
    assert client.json()["error"]["code"] == "rate_limit_exceeded"
    assert (after.ctx.outcome.status, after.ctx.outcome.error_code) == (429, "rate_limit_exceeded")


async def test_unexpected_error_is_a_500_and_post_work_still_runs() -> None:
    client = Client()
    after = After(client)

    async def terminal(ctx: RequestContext) -> Result:
        raise KeyError("bug")

    await endpoint(chain_with(after, terminal))(client.scope(), client.receive, client.send)
    assert client.status == 500 and client.json()["error"]["code"] == "internal_error"
    assert after.ctx.outcome.error_code == "internal_error"


async def test_a_failing_callback_does_not_stop_the_others() -> None:
    client = Client()
    ran: list[str] = []

    class Two:
        name = "two"

        async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
            async def bad(c: RequestContext) -> None:
                raise RuntimeError("callback bug")

            async def good(c: RequestContext) -> None:
                ran.append("good")

            ctx.after(bad)
            ctx.after(good)
            return await call_next(ctx)

    await run(build_chain([Two()], terminal_returning(Reply({}))), client)
    assert ran == ["good"] and client.status == 200


async def test_body_errors_are_answered_and_post_work_runs() -> None:
    client = Client(body=b"x" * 2000)
    after = After(client)
    # The error happens before the chain, so no stage registered anything; the outcome is still kept.
    ep = endpoint(chain_with(after, terminal_returning(Reply({}))), limit=1024)
    await ep(client.scope(), client.receive, client.send)
    assert client.status == 413 and client.json()["error"]["code"] == "request_too_large"
    assert after.calls == []


async def test_repeated_authorization_header_is_refused() -> None:
    client = Client(headers=[(b"authorization", b"Bearer a"), (b"authorization", b"Bearer b")])
    await endpoint(terminal_returning(Reply({})))(client.scope(), client.receive, client.send)
    assert client.status == 400 and client.json()["error"]["code"] == "duplicate_header"


async def test_stream_runs_to_the_end_and_is_closed() -> None:
    client = Client()
    after = After(client)
    source = FakeStream([[chunk("a"), chunk("b")], [chunk("c")]])
    await run(chain_with(after, terminal_returning(source.reply())), client)
    assert client.status == 200 and client.data.endswith(b"data: [DONE]\n\n")
    assert source.closed == 1
    outcome = after.ctx.outcome
    assert (outcome.stream, outcome.chunks_sent, outcome.status) == (True, 3, 200)
    assert outcome.bytes_sent == len(client.data)


async def test_stream_error_midway_is_an_error_event_and_closes() -> None:
    client = Client()
    after = After(client)
    source = FakeStream([[chunk("a")]], fail=UpstreamUnreachable("gone"))
    await run(chain_with(after, terminal_returning(source.reply())), client)
    assert b'"code":"upstream_unreachable"' in client.data and b"[DONE]" not in client.data
    assert source.closed == 1
    assert (after.ctx.outcome.status, after.ctx.outcome.error_code) == (502, "upstream_unreachable")


async def test_an_unexpected_error_midway_is_an_internal_error_event_and_closes() -> None:
    client = Client()
    after = After(client)
    source = FakeStream([[chunk("a")]], fail=KeyError("a bug"))
    await run(chain_with(after, terminal_returning(source.reply())), client)
    assert b'"content":"a"' in client.data and b"[DONE]" not in client.data
    assert b'"code":"internal_error"' in client.data and b"a bug" not in client.data
    assert source.closed == 1
    outcome = after.ctx.outcome
    assert (outcome.status, outcome.error_code, outcome.chunks_sent) == (500, "internal_error", 1)


async def test_an_unexpected_error_midway_is_logged_with_its_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    source = FakeStream([[chunk("a")]], fail=KeyError("a bug"))
    with caplog.at_level(logging.WARNING, "switchboard"):
        await run(chain_with(After(client := Client()), terminal_returning(source.reply())), client)
    (record,) = [r for r in caplog.records if r.name == "switchboard.http"]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "unexpected error mid-stream" in record.getMessage()


@pytest.mark.parametrize("fail", [
    ConnectionResetError(104, "Connection reset by peer"),
    aiohttp.ClientPayloadError("Response payload is not completed"),
    Disconnected("upstream closed the connection before the answer was complete"),
])
async def test_a_provider_connection_lost_midway_is_one_warning_without_traceback(
        caplog: pytest.LogCaptureFixture, fail: Exception) -> None:
    client = Client()
    after = After(client)
    source = FakeStream([[chunk("a")]], fail=fail)
    with caplog.at_level(logging.DEBUG, "switchboard"):
        await run(chain_with(after, terminal_returning(source.reply())), client)
    assert b'"content":"a"' in client.data and b'"code":"upstream_error"' in client.data
    assert b"[DONE]" not in client.data and source.closed == 1
    assert (after.ctx.outcome.status, after.ctx.outcome.error_code) == (502, "upstream_error")
    (record,) = [r for r in caplog.records if r.name == "switchboard.http"]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert f"connection to the provider was lost ({type(fail).__name__})" in record.getMessage()


async def test_a_store_out_of_reach_midway_is_one_warning_without_traceback(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(UNEXPECTED, "_warned", -math.inf)  # an earlier test's warning does not hide it
    client = Client()
    after = After(client)
    source = FakeStream([[chunk("a")]], fail=redis.exceptions.ConnectionError("Connection refused"))
    with caplog.at_level(logging.DEBUG, "switchboard"):
        await run(chain_with(after, terminal_returning(source.reply())), client)
    assert b'"code":"store_unavailable"' in client.data and source.closed == 1
    assert (after.ctx.outcome.status, after.ctx.outcome.error_code) == (503, "store_unavailable")
    (record,) = [r for r in caplog.records if r.name == "switchboard.http"]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "a store is unreachable (ConnectionError)" in record.getMessage()


async def test_a_gateway_error_in_a_task_group_midway_is_its_error_event_without_log(
        caplog: pytest.LogCaptureFixture) -> None:
    client = Client()
    after = After(client)
    group = ExceptionGroup("tasks", [UpstreamUnreachable("gone"), ConnectionResetError()])
    source = FakeStream([[chunk("a")]], fail=group)
    with caplog.at_level(logging.DEBUG, "switchboard"):
        await run(chain_with(after, terminal_returning(source.reply())), client)
    assert b'"code":"upstream_unreachable"' in client.data and source.closed == 1
    assert (after.ctx.outcome.status, after.ctx.outcome.error_code) == (502, "upstream_unreachable")
    assert not [r for r in caplog.records if r.name == "switchboard.http"]


async def test_client_gone_midstream_closes_the_stream_and_runs_post_work() -> None:
    client = Client()
    after = After(client)
    source = FakeStream([[chunk("a")]], hang=True)
    task = asyncio.create_task(
        run(chain_with(after, terminal_returning(source.reply())), client)
    )
    await source.waiting.wait()
    client.gone.set()
    await task
    assert source.closed == 1
    assert after.ctx.outcome.client_disconnected is True
    assert after.ctx.outcome.chunks_sent == 1


async def test_client_gone_before_the_stream_starts_still_closes_it() -> None:
    client = Client()
    client.fail_sends = True  # the connection is lost: nothing can be written
    after = After(client)
    source = FakeStream([[chunk("a")]])
    with pytest.raises(OSError):
        await endpoint(chain_with(after, terminal_returning(source.reply())))(
            client.scope(), client.receive, client.send
        )
    assert source.closed == 1
    assert len(after.calls) == 1


async def test_a_stage_wrapping_the_stream_keeps_it_closable() -> None:
    client = Client()
    ends: list[object] = []
    source = FakeStream([[chunk("a")]], hang=True)

    class Wrap:
        name = "wrap"

        async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
            return map_result(await call_next(ctx), done=ends.append)

    task = asyncio.create_task(
        run(build_chain([Wrap()], terminal_returning(source.reply())), client)
    )
    await source.waiting.wait()
    client.gone.set()
    await task
    assert source.closed == 1
    assert len(ends) == 1 and ends[0] is not None  # told the stream did not end normally


async def test_stream_cut_at_shutdown_gets_the_error_event() -> None:
    client = Client()
    after = After(client)
    state = ServerState()
    source = FakeStream([[chunk("a")]], hang=True)
    task = asyncio.create_task(
        endpoint(chain_with(after, terminal_returning(source.reply())), state)(
            client.scope(), client.receive, client.send
        )
    )
    await source.waiting.wait()
    state.draining = True
    task.cancel()  # what the ASGI server does when the drain window is over
    await task
    assert b'"code":"server_shutting_down"' in client.data
    assert client.sent[-1] == {"type": "http.response.body", "body": b""}
    assert source.closed == 1
    assert after.ctx.outcome.error_code == "server_shutting_down"


async def test_request_cut_at_shutdown_before_answering_gets_a_503() -> None:
    client = Client()
    state = ServerState()
    started = asyncio.Event()

    async def terminal(ctx: RequestContext) -> Result:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("not reached")

    task = asyncio.create_task(endpoint(terminal, state)(client.scope(), client.receive, client.send))
    await started.wait()
    state.draining = True
    task.cancel()
    await task
    assert client.status == 503 and client.json()["error"]["code"] == "server_shutting_down"


async def test_cancellation_outside_shutdown_propagates() -> None:
    client = Client()
    started = asyncio.Event()

    async def terminal(ctx: RequestContext) -> Result:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("not reached")

    task = asyncio.create_task(endpoint(terminal)(client.scope(), client.receive, client.send))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.sent == []


async def test_post_response_callbacks_that_wait_for_nothing_make_no_coroutine() -> None:
    """Plain callbacks run at once, in order, and the edge is handed nothing to await; one that
    waits holds the rest back until it is done, and one that fails leaves the others to run."""
    ctx = RequestContext("rid", "chat", None, {}, b"", 0.0)  # type: ignore[arg-type]
    ran: list[str] = []

    def plain(name: str) -> None:
        ran.append(name)

    def failing(_: RequestContext) -> None:
        raise RuntimeError("boom")

    async def waiting(_: RequestContext) -> None:
        await asyncio.sleep(0)
        ran.append("waited")

    ctx.after(lambda c: plain("first"))
    ctx.after(failing)
    ctx.after(lambda c: plain("second"))
    assert ctx.run_after_response() is None
    assert ran == ["first", "second"] and ctx.post_response is None

    ran.clear()
    ctx.after(lambda c: plain("first"))
    ctx.after(waiting)
    ctx.after(failing)
    ctx.after(lambda c: plain("last"))
    waits = ctx.run_after_response()
    assert ran == ["first"] and waits is not None
    await waits
    assert ran == ["first", "waited", "last"]
