"""The terminal of the media operations: rerank, moderations, images, audio (docs/api-media.md).

Like ``pipeline/invoke.py`` (same credentials, upstream headers and timing), but the adapter's
answer is a :class:`~switchboard.providers.media.MediaReply`: a JSON body for the client, or raw
bytes (audio, subtitles, text), with the usage the ledger prices (tokens and media units).

A model whose catalog record has another mode (a chat model asked to rerank) is refused with 400
before anything is sent; a model unknown to the catalog, or whose configured ``info`` does not
set a mode, is tried.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from functools import partial
from typing import IO, TYPE_CHECKING, Any

from switchboard.catalog import ModelInfo
from switchboard.context import LARGE_BODY_BYTES, RawReply, Reply, RequestContext, Result, StreamReply
from switchboard.errors import InvalidRequest
from switchboard.pipeline import caller_credentials
from switchboard.providers.media import OPERATION_NAMES, SPEECH_TYPES, MediaReply, MediaStreamUsage
from switchboard.spend.cost import Prices
from switchboard.upstream.client import UpstreamStream
from switchboard.upstream.request import UpstreamRequest

if TYPE_CHECKING:
    from switchboard.routing.table import Route

# The catalog mode each media operation serves.
MODES: dict[str, str] = {
    "rerank": "rerank",
    "moderations": "moderation",
    "image_generations": "image_generation",
    "image_edits": "image_generation",
    "image_variations": "image_generation",
    "transcriptions": "audio_transcription",
    "translations": "audio_transcription",
    "speech": "audio_speech",
}


class WrongModelMode(InvalidRequest):
    code = "model_mode_mismatch"


def check_mode(operation: str, info: ModelInfo | None, name: str) -> None:
    require_mode(info, name, MODES[operation], OPERATION_NAMES[operation])


def require_mode(info: ModelInfo | None, name: str, wanted: str, what: str) -> None:
    """400 when the catalog knows the model (``info`` sets its mode) as one of another mode."""
    if info is None or info.mode == wanted or "mode" not in info.model_fields_set:
        return
    raise WrongModelMode(f"the model '{name}' is a {info.mode} model; {what} needs a model of mode "
                         f"'{wanted}'", param="model")


def serves(operation: str, info: ModelInfo | None) -> bool:
    """Whether a model with the catalog record ``info`` may be sent a request of ``operation``
    (the budget downgrade's cheaper model): of the mode the operation needs (embeddings, media),
    or a text one for the others; a model whose record sets no mode is tried, as above."""
    if info is None or "mode" not in info.model_fields_set:
        return True
    wanted = "embedding" if operation == "embeddings" else MODES.get(operation)
    return info.mode == wanted if wanted is not None else info.mode in ("chat", "completion")


# Operations whose answer is always relayed to the client as it arrives (audio bytes); the others
# are relayed so when the request says ``stream: true`` (an event stream).
STREAMED = frozenset({"speech"})


class MediaTerminal:
    """Calls the routed deployment for one media operation."""

    def __init__(self, prices: Prices) -> None:
        self._prices = prices

    async def __call__(self, ctx: RequestContext) -> Result:
        route = ctx.route
        assert route is not None, "the route stage runs first"
        adapter, target = route.adapter, route.target
        check_mode(ctx.operation, self._prices.of_route(route), target.name)
        upstream = adapter.media_request(ctx.operation, ctx.request, target)
        if ctx.caller_credential is not None:
            caller_credentials.attach(ctx, route, upstream)
        if ctx.upstream_headers is not None:
            upstream.headers = {**upstream.headers, **ctx.upstream_headers}
        began = time.perf_counter()
        if ctx.operation in STREAMED:  # speech: audio bytes
            return await self._stream(ctx, upstream, began, None)
        if ctx.request.get("stream") is True:  # transcriptions, images: the upstream's SSE as it is
            watcher = adapter.media_stream(ctx.operation, ctx.request, target)
            return await self._stream(ctx, upstream, began, watcher)
        try:
            reply = await route.client.send(upstream, route.timeout)
        finally:
            done = time.perf_counter()
            ctx.upstream_seconds += done - began
            if upstream.upload is not None:  # this attempt's multipart copy (a retry builds its own)
                upstream.upload.close()
        ctx.mark("upstream_done", done)
        if reply.status >= 400:
            failed = adapter.error(reply.status, reply.headers, reply.body, target)
            raise caller_credentials.blamed(ctx, failed)
        return await _read(ctx, route, reply.body, reply.headers)

    async def _stream(
        self, ctx: RequestContext, upstream: UpstreamRequest, began: float, watcher: MediaStreamUsage | None
    ) -> Result:
        """A streamed answer relayed as it arrives (``{"raw": bytes}`` chunks, written by the edge
        as they come, http/media): speech audio, billed per character of the input; or a media
        SSE stream, billed by what ``watcher`` saw in it (a JSON answer instead of the stream is
        the reply, as without ``stream``)."""
        route = ctx.route
        assert route is not None
        whole = None
        relayed = False
        try:
            stream = await route.client.open_stream(upstream, route.timeout)
            failed = await stream.read_all() if stream.status >= 400 else None
            if failed is None and watcher is not None and stream.is_json:
                # JSON where events were asked for: an upstream that ignored "stream": true
                # (whisper-1 does) gave its whole answer, whose usage (the seconds) is the bill.
                whole = await stream.json_answer()
            relayed = failed is None and whole is None
        finally:
            ctx.upstream_seconds += time.perf_counter() - began
            # An upstream may answer before it has read the whole upload (a transcription that
            # starts streaming early), which is still being sent from this file: a relayed
            # answer closes it when the exchange ends, any other now (the answer was read whole).
            if upstream.upload is not None and not relayed:
                upstream.upload.close()
        if failed is not None:
            error = route.adapter.error(stream.status, stream.headers, failed, route.target)
            raise caller_credentials.blamed(ctx, error)
        if whole is not None:
            ctx.mark("upstream_done", time.perf_counter())
            adapter, target = route.adapter, route.target
            if (reported := adapter.answer_error(stream.headers, stream.scrub(whole), target)) is not None:
                raise caller_credentials.blamed(ctx, reported)
            return await _read(ctx, route, whole, stream.headers)
        ctx.mark("upstream_headers", time.perf_counter())
        if watcher is None:
            text = ctx.request.get("input")
            ctx.usage = {"units": {"characters": len(text) if isinstance(text, str) else 0}}
            fmt = ctx.request.get("response_format") or "mp3"
            content_type = (stream.headers.get("content-type")
                            or SPEECH_TYPES.get(fmt, "application/octet-stream"))
        else:
            content_type = stream.headers.get("content-type") or "text/event-stream"
        ctx.response_headers["content-type"] = content_type
        upload = upstream.upload
        close = stream.close if upload is None else partial(_close_with_upload, stream, upload)
        return StreamReply(_relay(ctx, stream, watcher), close=close)


async def _close_with_upload(stream: UpstreamStream, upload: IO[bytes]) -> None:
    """End a relayed exchange whose upload may still be being sent: the response first (which
    stops the sending), then the upload's file."""
    try:
        await stream.close()
    finally:
        upload.close()


async def _read(ctx: RequestContext, route: Route, body: bytes, headers: Mapping[str, str]) -> Result:
    """The reply of a whole media answer. A large one (images' base64: tens of MB) is read in a
    worker thread and marked for the edge to encode there too, as invoke does for chat and
    embeddings, so the event loop keeps serving the other requests meanwhile."""
    read, target = route.adapter.media_response, route.target
    if len(body) <= LARGE_BODY_BYTES:
        return _answer(ctx, read(ctx.operation, body, headers, ctx.request, target))
    media = await asyncio.to_thread(read, ctx.operation, body, headers, ctx.request, target)
    return _answer(ctx, media, large=True)


def _answer(ctx: RequestContext, media: MediaReply, large: bool = False) -> Result:
    """A whole media answer as the reply: JSON, or raw bytes under their content type."""
    ctx.usage = media.usage
    if media.raw is not None:
        ctx.response_headers.update(media.headers)
        content_type = (media.content_type or "application/octet-stream").encode("latin-1")
        return RawReply(200, [(b"content-type", content_type),
                              (b"content-length", str(len(media.raw)).encode())], media.raw)
    assert media.body is not None
    return Reply(media.body, large=large)


async def _relay(
    ctx: RequestContext, stream: UpstreamStream, watcher: MediaStreamUsage | None
) -> AsyncGenerator[list[dict[str, Any]], None]:
    try:
        async with aclosing(stream.chunks()) as data:
            async for piece in data:
                if piece:
                    if watcher is not None:
                        watcher.feed(piece)
                    yield [{"raw": piece}]
    finally:  # what the stream was billed, whole or cut short
        if watcher is not None:
            ctx.usage = watcher.usage(ctx.operation)
