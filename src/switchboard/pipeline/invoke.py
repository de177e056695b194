"""The terminal handler: translate, call the provider, translate back.

Operations are a table of adapter methods, so the terminal holds no per-operation branches.
An attempt whose upstream speaks the inbound API's own wire format uses the pass-through
exchange of pipeline/native.py instead: the same call, its body and reply untranslated.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from switchboard.context import LARGE_BODY_BYTES, Reply, RequestContext, Result, StreamReply
from switchboard.errors import GatewayError, UnsupportedParameter, UpstreamBadGateway
from switchboard.pipeline import caller_credentials
from switchboard.pipeline.native import exchange_for
from switchboard.providers.base import JSON, PARTIAL, WIRE, ProviderAdapter, StreamDecoder
from switchboard.providers.embedding_encoding import apply_encoding_format
from switchboard.providers.stop_sequences import name_in_reply, naming_decoder
from switchboard.providers.target import Target
from switchboard.providers.tool_calls import first_tool_call, serial_decoder
from switchboard.spend.cost import tier_of
from switchboard.upstream.client import UpstreamStream
from switchboard.upstream.request import UpstreamRequest

if TYPE_CHECKING:
    from switchboard.routing.table import Route


class Exchange(Protocol):
    """How one attempt talks to its upstream: the request, the reply's body and usage, and the
    stream decoder (None: the operation does not stream). ``native``: the reply is in the
    inbound API's wire format, not canonical."""

    native: bool

    def request(self, ctx: RequestContext, route: Route) -> UpstreamRequest: ...

    def reply(
        self, ctx: RequestContext, route: Route, body: bytes, headers: Mapping[str, str]
    ) -> tuple[JSON, JSON | None]: ...

    def decoder(self, ctx: RequestContext, route: Route) -> StreamDecoder | None: ...


@dataclass(frozen=True, slots=True)
class Operation:
    """Names of the adapter methods that implement one operation."""

    build: str
    parse: str
    stream: str | None = None
    # Applied to every parsed response: canonical details no single adapter can settle.
    finish: Callable[[JSON, JSON], JSON] | None = None
    # The same for streams: given the request and the adapter's decoder, the decoder to use.
    wrap: Callable[[JSON, StreamDecoder], StreamDecoder] | None = None
    # ``parse`` also takes the reply's headers: (body, headers, target).
    with_headers: bool = False
    native = False  # the translated exchange: canonical in, canonical out

    def request(self, ctx: RequestContext, route: Route) -> UpstreamRequest:
        build: Callable[[JSON, Any], UpstreamRequest] = getattr(route.adapter, self.build)
        target = route.target
        if ctx.account_object is not None:
            # An Anthropic Files API source (the /v1/messages pass-through's alone to judge): no
            # translation can carry it, and no other provider type can read the file.
            raise UnsupportedParameter(
                f"'{ctx.account_object}' names a file of the Anthropic Files API, which provider type "
                f"'{target.provider_type}' cannot read; send the data inline instead",
                param=ctx.account_object)
        if ctx.caller_credential is not None:
            # Sent on the caller's own account: objects of it may be named (providers/account.py).
            target = replace(target, own_account=True)
        return build(ctx.request, target)

    def reply(
        self, ctx: RequestContext, route: Route, body: bytes, headers: Mapping[str, str]
    ) -> tuple[JSON, JSON | None]:
        parse = getattr(route.adapter, self.parse)
        parsed: JSON = parse(body, headers, route.target) if self.with_headers else parse(body, route.target)
        if self.finish is not None:
            parsed = self.finish(ctx.request, parsed)
        ctx.service_tier = tier_of(parsed)
        return parsed, parsed.get("usage")

    def decoder(self, ctx: RequestContext, route: Route) -> StreamDecoder | None:
        if self.stream is None:
            return None
        decoder: StreamDecoder = getattr(route.adapter, self.stream)(ctx.request, route.target)
        return decoder if self.wrap is None else self.wrap(ctx.request, decoder)


# (Most requests send no stop sequence: the naming step is not even called for them.)
def _chat_reply(request: JSON, reply: JSON) -> JSON:
    reply = first_tool_call(request, reply)
    return reply if request.get("stop") is None else name_in_reply(request, reply)


def _chat_decoder(request: JSON, decoder: StreamDecoder) -> StreamDecoder:
    if request.get("stop") is not None:
        decoder = naming_decoder(request, decoder)
    return serial_decoder(request, decoder)


OPERATIONS: dict[str, Operation] = {
    # parallel_tool_calls false: only the first tool call of a reply is kept, for providers with
    # no control of their own (providers/tool_calls.py); a matched stop sequence the provider does
    # not name is the caller's only one (providers/stop_sequences.py).
    "chat": Operation("chat_request", "chat_response", "chat_stream", finish=_chat_reply, wrap=_chat_decoder),
    "embeddings": Operation("embeddings_request", "embeddings_reply", finish=apply_encoding_format,
                            with_headers=True),
    "completions": Operation("completions_request", "completions_response", "completions_stream"),
}


async def invoke(ctx: RequestContext) -> Result:
    route = ctx.route
    assert route is not None, "the route stage runs first"
    exchange: Exchange = exchange_for(ctx, route) or OPERATIONS[ctx.operation]
    adapter, target = route.adapter, route.target
    ctx.service_tier = None  # this attempt's answer says its own
    if not ctx.large():
        upstream = exchange.request(ctx, route)
    else:
        # A large request's translation (thousands of messages, megabytes of base64) and its
        # serialisation run in a worker thread, not on the loop serving the other requests.
        upstream = await asyncio.to_thread(exchange.request, ctx, route)
    if ctx.caller_credential is not None:
        caller_credentials.attach(ctx, route, upstream)
    if ctx.upstream_headers is not None:  # e.g. the attempt's traceparent (pipeline/trace.py)
        upstream.headers = {**upstream.headers, **ctx.upstream_headers}
    # Time inside the upstream exchange (ctx.upstream_seconds, every attempt summed): the
    # gateway's own overhead is the rest (x-switchboard-overhead-ms).
    began = time.perf_counter()
    decoder = exchange.decoder(ctx, route) if ctx.stream else None
    if decoder is not None:
        try:
            stream = await route.client.open_stream(upstream, route.timeout)
            if stream.status >= 400:
                failed: bytes | None = await stream.read_all()
            else:  # JSON where events were asked for is an error body, never relayed
                failed = await stream.json_body() if stream.is_json else None
        except BaseException:
            ctx.upstream_seconds += time.perf_counter() - began
            raise
        if failed is not None:
            ctx.upstream_seconds += time.perf_counter() - began
            # Raised without a local naming it: its traceback holds this frame (a cycle).
            raise caller_credentials.blamed(
                ctx, adapter.error(stream.status, stream.headers, failed, target) if stream.status >= 400
                else _json_instead_of_events(adapter, stream, failed, target))
        ctx.mark("upstream_headers", time.perf_counter())
        return StreamReply(_relay(ctx, stream, decoder, began), close=stream.close, native=exchange.native)
    try:
        reply = await route.client.send(upstream, route.timeout)
    finally:
        done = time.perf_counter()
        ctx.upstream_seconds += done - began
    ctx.mark("upstream_done", done)
    if reply.status >= 400:
        raise caller_credentials.blamed(ctx, adapter.error(reply.status, reply.headers, reply.body, target))
    if len(reply.body) <= LARGE_BODY_BYTES:
        body, ctx.usage = exchange.reply(ctx, route, reply.body, reply.headers)
        return Reply(body, native=exchange.native)
    # A large answer (an embeddings batch: up to 150 MB) parsed and translated off the loop, and
    # marked so that the edge encodes it there too.
    body, ctx.usage = await asyncio.to_thread(exchange.reply, ctx, route, reply.body, reply.headers)
    return Reply(body, native=exchange.native, large=True)


async def _relay(
    ctx: RequestContext, stream: UpstreamStream, decoder: StreamDecoder, began: float
) -> AsyncGenerator[list[dict[str, Any]], None]:
    """Canonical chunks in batches, one batch per upstream read, so the edge writes each batch
    to the client at once instead of one socket write per chunk. The upstream's time counts
    until its first chunk was read (keep-alive comments do not count), or until the stream
    ended or failed before any.

    The chunks that only open the stream (:func:`_says_nothing`) are held and given with the
    first batch that says something: the attempts stage retries a stream that fails before its
    first batch, and an upstream that opens and then fails (Anthropic's overloaded_error after
    message_start, an error event after the role chunk) has given the client nothing yet. A
    pass-through stream's events are judged by its decoder (``says_nothing``, providers/base.py),
    which knows its provider's events; canonical chunks by :func:`_says_nothing`."""
    says_nothing: Callable[[dict[str, Any]], bool] = getattr(decoder, "says_nothing", _says_nothing)
    waiting = True
    opening: list[dict[str, Any]] | None = []  # None once a batch said something
    try:
        try:
            while piece := await stream.read():
                batch = decoder.feed(piece)
                if batch:
                    if waiting:
                        waiting = False
                        ctx.upstream_seconds += time.perf_counter() - began
                    _note_usage(ctx, batch)
                    if opening is not None:
                        if all(map(says_nothing, batch)):
                            opening += batch
                            continue
                        batch, opening = opening + batch, None
                    yield batch
        finally:
            await stream.close()  # its connection back to the pool if read to the end, else dropped
        batch = decoder.close()
    except GatewayError as err:  # an error event may quote what the upstream was sent
        if opening is not None:
            # Failed before saying anything, as with an error status: no usage of this attempt
            # (nor tier) is left behind to be billed or to stand in for a retry's or fallback's.
            ctx.partial_usage = ctx.service_tier = None
        raise _scrubbed(err, stream) from None
    finally:
        if waiting:
            ctx.upstream_seconds += time.perf_counter() - began
    if batch:
        _note_usage(ctx, batch)
    if opening:
        batch = opening + batch
    if batch:
        yield batch


def _says_nothing(chunk: dict[str, Any]) -> bool:
    """Whether canonical ``chunk`` only opens the stream: a role chunk without content. Read only
    until a chunk says something, so a stream pays it once or twice."""
    if chunk.get("usage"):
        return False
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict) or choice.get("finish_reason") is not None or choice.get("logprobs"):
            return False
        delta = choice.get("delta")
        if isinstance(delta, dict):
            for key, value in delta.items():  # a loop, not any() over a generator: no frame
                if key != "role" and value:
                    return False
    return True


def _json_instead_of_events(
    adapter: ProviderAdapter, stream: UpstreamStream, body: bytes, target: Target
) -> GatewayError:
    """The error for a stream request answered 2xx with a JSON body (its credentials already
    scrubbed): the error it reports, as the adapter maps that body on an error status, else a
    502 saying what came instead of the stream."""
    error = adapter.answer_error(stream.headers, body, target)
    if error is not None:
        return error
    return UpstreamBadGateway(
        f"provider '{target.provider}' answered a stream request with a JSON body instead of an "
        "event stream (an upstream that does not stream, or ignored \"stream\": true)"
    )


def _scrubbed(err: GatewayError, stream: UpstreamStream) -> GatewayError:
    """``err`` with the provider's credentials (and the caller's) taken out of its message."""
    clean = stream.scrub_text(err.message)
    if clean != err.message:
        err.message = clean
        err.args = (clean,)
    return err


def _note_usage(ctx: RequestContext, batch: list[dict[str, Any]]) -> None:
    if ctx.service_tier is None and batch:
        # OpenAI says the tier serving a stream on every chunk: read from the first, a stream cut
        # before its final usage is priced at it too (spend/cost.py), as OpenAI bills it.
        ctx.service_tier = tier_of(batch[0])
    for chunk in batch:
        if usage := chunk.get("usage"):
            if PARTIAL in chunk:  # the usage so far: a stream cut now is estimated from it
                ctx.partial_usage = usage
                if WIRE not in chunk:  # a translated chunk: the usage so far is never the client's
                    del chunk["usage"], chunk[PARTIAL]
            else:
                ctx.usage = usage
                # The tier OpenAI served the stream in, said again with the usage.
                ctx.service_tier = tier_of(chunk) or ctx.service_tier
