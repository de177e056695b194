"""Every media endpoint answers through the chain: a stage added to it sees each one, and each is
refused without a key before its body is looked at."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.unit.pipeline.test_every_endpoint import Stamp, http, stamp  # noqa: F401 - fixtures

PNG = b"\x89PNG\r\n\x1a\n"
CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("/v1/rerank", {"json": {"model": "m", "query": "q", "documents": ["a"]}}, "rerank"),
    ("/v1/moderations", {"json": {"model": "m", "input": "x"}}, "moderations"),
    ("/v1/images/generations", {"json": {"model": "m", "prompt": "x"}}, "image_generations"),
    ("/v1/audio/speech", {"json": {"model": "m", "input": "x", "voice": "alloy"}}, "speech"),
    ("/v1/images/edits", {"data": {"model": "m", "prompt": "x"}, "files": {"image": ("a.png", PNG)}},
     "image_edits"),
    ("/v1/audio/transcriptions", {"data": {"model": "m"}, "files": {"file": ("a.wav", b"RIFF")}},
     "transcriptions"),
    ("/audio/translations", {"data": {"model": "m"}, "files": {"file": ("a.wav", b"RIFF")}}, "translations"),
]


@pytest.mark.parametrize(("path", "body", "operation"), CALLS)
async def test_the_stage_runs_for_every_media_endpoint(
    http: httpx.AsyncClient, stamp: Stamp, path: str, body: dict[str, Any], operation: str  # noqa: F811
) -> None:
    resp = await http.post(path, **body)
    # No upstream is started here (rerank: openai has none, 400): the chain ran to the terminal.
    assert resp.status_code in (400, 500), resp.text
    assert resp.headers["x-stamp"] == operation
    assert stamp.seen == [(operation, "master")]


@pytest.mark.parametrize(("path", "body", "operation"), CALLS)
async def test_a_key_is_required(
    http: httpx.AsyncClient, stamp: Stamp, path: str, body: dict[str, Any], operation: str  # noqa: F811
) -> None:
    resp = await http.post(path, headers={"authorization": "Bearer wrong"}, **body)
    assert resp.status_code == 401 and resp.json()["error"]["type"]
    assert stamp.seen == []


def test_media_operations_are_model_calls_everywhere() -> None:
    from switchboard import gateway
    from switchboard.http import media
    from switchboard.observability import metrics

    assert media.OPERATIONS <= gateway.MODEL_CALLS
    assert gateway.MODEL_CALLS == metrics.MODEL_CALLS  # overhead and upstream histograms too


@pytest.mark.parametrize(("content_type", "error_event"),
                         [("audio/mpeg", False), ("text/event-stream", True)])
async def test_a_relay_cut_at_shutdown_drops_audio_and_ends_events_with_an_error(
    content_type: str, error_event: bool
) -> None:
    from switchboard.context import RequestContext
    from switchboard.http.asgi import ABORT
    from switchboard.http.endpoint import Responder
    from switchboard.http.media import SPEECH_API, RelayEndpoint
    from switchboard.http.state import ServerState

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def chain(ctx: RequestContext) -> Any:
        raise AssertionError("not called")

    ctx = RequestContext("rid", "speech", SPEECH_API, {}, b"", 0.0)
    out = Responder(send, ctx, [])
    out.started, ctx.outcome.stream = True, True
    ctx.response_headers["content-type"] = content_type
    endpoint = RelayEndpoint(SPEECH_API, chain, ServerState(), max_body_bytes=1024, deadline_seconds=1)
    await endpoint._cut_at_shutdown(ctx, out)
    assert ctx.outcome.status == 503
    if error_event:
        bodies = [m["body"] for m in sent]
        assert bodies[-1] == b"" and b"server_shutting_down" in b"".join(bodies)
    else:  # no error bytes inside a file, and no clean end either: the connection is dropped
        assert sent == [{"type": ABORT}]
