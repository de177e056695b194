"""The edge of ``/services/{name}/{path}``: one ASGI handler that checks the path, builds the
request context, runs the services chain (gateway.py ``services_stages``) and relays the
service's answer.

The body is not read here: the proxy streams it to the service as it arrives
(``ServiceContext.receive``), and the service's body is written back as it comes, with the
service's status and headers (services/proxy.py). Errors of the gateway's own (no key, no
such service, limits, timeouts) are OpenAI-shaped JSON like every other endpoint's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import aclosing

from switchboard.context import StreamReply
from switchboard.errors import GatewayError
from switchboard.http.asgi import Receive, Scope, Send
from switchboard.http.disconnect import ClientGone, until_disconnect
from switchboard.http.endpoint import Responder, finish, log_gone, request_headers, scope_request_id
from switchboard.http.openai_api import OpenAIJson
from switchboard.http.state import ServerState
from switchboard.observability.logs import CURRENT
from switchboard.pipeline.chain import Handler
from switchboard.services.context import ServiceContext
from switchboard.services.target import PREFIX, check_path, check_query, split

log = logging.getLogger("switchboard.http")

SERVICE = OpenAIJson("service")


def is_services_path(path: str) -> bool:
    return path.startswith(PREFIX)


class ServicesEndpoint:
    def __init__(self, chain: Handler, state: ServerState, *, deadline_seconds: float) -> None:
        self._chain = chain
        self._state = state
        self._deadline = deadline_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        failure: GatewayError | None = None
        try:
            headers = request_headers(scope)
        except GatewayError as err:
            headers, failure = {}, err
        rid = scope_request_id(scope, headers)
        raw = scope.get("raw_path")
        # The path as the client sent it, still percent-encoded (what is forwarded, once checked).
        raw_path = raw.decode("latin-1").split("?", 1)[0] if raw else scope["path"]
        name, rest, query = "", "", b""
        if failure is None:
            try:
                name, rest = split(raw_path)
                rest = check_path(rest)
                query = check_query(scope.get("query_string") or b"")
            except GatewayError as err:
                failure = err
        ctx = ServiceContext(
            rid, "service", SERVICE, headers, b"", started, method=scope["method"], path=scope["path"],
            query=query.decode("latin-1"), client=peer[0] if (peer := scope.get("client")) else "",
            deadline=started + self._deadline, service_name=name, rest=rest, raw_query=query, receive=receive,
            raw_headers=scope["headers"],
        )
        ctx.prompt_tokens = 0  # against token limits: nothing
        out = Responder(send, ctx, [(b"x-request-id", rid.encode())])
        current = CURRENT.set((rid, None))
        try:
            if failure is not None:
                await out.error(failure)
            else:
                # A client that leaves while the service works cancels the call (recorded as 499),
                # as on /v1/*: its disconnect is watched once the proxy has read its body or the
                # service has answered (then the relay stops at once, a stream abandoned).
                await until_disconnect(ctx.receive_after_body, self._serve(ctx, out))
        except ConnectionAbortedError:  # seen by the proxy while it read the body (or relayed)
            ctx.outcome.client_disconnected = True  # finish() records the connection's answer instead
            log_gone(scope, rid)
        except ClientGone:  # the watcher cancelled the service call or the relay
            ctx.outcome.client_disconnected = True
            log_gone(scope, rid, "client disconnected; upstream call cancelled")
        except asyncio.CancelledError:
            if not self._state.draining:
                raise
        finally:
            await finish(ctx, scope, self._state.unserved)
            CURRENT.reset(current)

    async def _serve(self, ctx: ServiceContext, out: Responder) -> None:
        stream = await out.answer(self._chain)
        if stream is not None:
            await self._relay(ctx, stream, out)

    async def _relay(self, ctx: ServiceContext, result: StreamReply, out: Responder) -> None:
        """The service's answer: its status and headers, then its body as it arrives. Cut short
        (a timeout, the size limit), the response ends without its last chunk: the client sees
        an incomplete body, the log why."""
        outcome = ctx.outcome
        try:
            outcome.status = ctx.reply_status
            # Relayed as it arrives: a stream, as a model call's, so a client leaving it part-way
            # keeps the status sent (Outcome.recorded_status) and ends it in the streams gauge.
            outcome.stream = True
            out.started = True
            replied, own = ctx.reply_headers or [], ctx.response_headers
            if own:  # a header the gateway answers (its limits) is its own, not also the service's
                # With the gateway's limit headers, none of the service's under that prefix
                # either (its `x-ratelimit-scope` on a success would read as the gateway's).
                limits = any(name.startswith("x-ratelimit-") for name in own)
                if limits and ctx.reply_status == 429 and any(
                        h[0].startswith(b"x-ratelimit-") for h in replied):
                    # Bar the service's own 429 with limit headers of its own: those describe the
                    # limit that refused, and are relayed as sent, none of the gateway's with them.
                    own = {k: v for k, v in own.items() if not k.startswith("x-ratelimit-")}
                    limits = False
                replied = [h for h in replied if h[0].decode("latin-1") not in own
                           and not (limits and h[0].startswith(b"x-ratelimit-"))]
            headers = [*replied, *out.headers(own)]
            await out.send({"type": "http.response.start", "status": ctx.reply_status, "headers": headers})
            await self._body(result, out)
        except GatewayError as err:
            outcome.failed(err)
            log.warning("request %s: service response cut: %s", ctx.request_id, err.message)
        except ClientGone:  # a send found the connection gone
            outcome.client_disconnected = True
            log.info("request %s: client disconnected; service response dropped", ctx.request_id)
        finally:
            await result.aclose()

    @staticmethod
    async def _body(result: StreamReply, out: Responder) -> None:
        async with aclosing(result.chunks) as chunks:
            async for batch in chunks:
                for chunk in batch:
                    await out.stream_data(chunk["data"])
        await out.stream_end()
