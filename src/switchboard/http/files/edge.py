"""The edge of /v1/files, /v1/batches and Anthropic's /v1/messages/batches: one ASGI handler
that matches the path, builds the request context, runs the operation's stage chain
(authentication and whatever else the chain holds) and writes the result.

Unlike the JSON endpoints, an upload's body is not read here: the terminal reads it as it
arrives (``FilesContext.receive``) and sends it on as it reads, so a large file is never held
in memory. A file's content is written back as the upstream sends it, with its own type.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from contextlib import aclosing

from switchboard.context import StreamReply
from switchboard.errors import GatewayError, NotFound
from switchboard.http.anthropic.batches import ANTHROPIC_FILES, MESSAGE_BATCHES
from switchboard.http.asgi import (
    Receive,
    Scope,
    Send,
    inflate_request_body,
    read_body,
    refuse_content_encoding,
)
from switchboard.http.disconnect import ClientGone, until_disconnect
from switchboard.http.endpoint import (
    Responder,
    check_content_type,
    finish,
    key_before_continue,
    log_gone,
    request_headers,
    request_id_headers,
    scope_request_id,
)
from switchboard.http.errors import MethodNotAllowed, unknown_url
from switchboard.http.files.service import FilesContext, query_params
from switchboard.http.openai_api import OpenAIJson
from switchboard.http.state import ServerState
from switchboard.observability.logs import CURRENT
from switchboard.pipeline.chain import Handler

log = logging.getLogger("switchboard.http")

FILES = OpenAIJson("files")
BATCHES = OpenAIJson("batches")
MAX_JSON_BYTES = 1024 * 1024  # a batch's creation body
_JSON_BODIES = frozenset({"create_batch", "create_message_batch"})  # read here, whole and bounded
_ID = r"([^/]{1,512})"
# (method, path pattern) -> action; the same actions with or without the /v1 prefix.
_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(r"^(?:/v1)?" + pattern + "$"), action)
    for method, pattern, action in (
        ("POST", "/files", "upload"),
        ("GET", "/files", "list_files"),
        ("GET", f"/files/{_ID}", "get_file"),
        ("DELETE", f"/files/{_ID}", "delete_file"),
        ("GET", f"/files/{_ID}/content", "file_content"),
        ("POST", "/batches", "create_batch"),
        ("GET", "/batches", "list_batches"),
        ("GET", f"/batches/{_ID}", "get_batch"),
        ("POST", f"/batches/{_ID}/cancel", "cancel_batch"),
    )
)
# Anthropic's Message Batches (message_batches.py): only with /v1, as Anthropic serves them.
MESSAGE_BATCHES_PREFIX = "/v1/messages/batches"
_ROUTES += tuple(
    (method, re.compile("^" + MESSAGE_BATCHES_PREFIX + pattern + "$"), action)
    for method, pattern, action in (
        ("POST", "", "create_message_batch"),
        ("GET", "", "list_message_batches"),
        ("GET", f"/{_ID}", "get_message_batch"),
        ("DELETE", f"/{_ID}", "delete_message_batch"),
        ("POST", f"/{_ID}/cancel", "cancel_message_batch"),
        ("GET", f"/{_ID}/results", "message_batch_results"),
    )
)
PREFIXES = ("/v1/files", "/v1/batches", "/files", "/batches", MESSAGE_BATCHES_PREFIX)
# The anthropic SDK's Files API (beta) uses /v1/files too; it always sends this header, which
# the openai SDK never does, so it tells the two apart (http/anthropic/batches.py).
ANTHROPIC_VERSION = "anthropic-version"


def match(method: str, path: str) -> tuple[str, str] | bool | None:
    """(action, object id) for a routed request; False when the path exists for another method;
    None when no route has the path. HEAD is answered as GET (the server sends no body)."""
    if method == "HEAD":
        method = "GET"
    known = False
    for m, pattern, action in _ROUTES:
        found = pattern.match(path)
        if found is not None:
            if m == method:
                return action, found.group(1) if found.groups() else ""
            known = True
    return False if known else None


def allowed(path: str) -> str:
    """The methods ``path`` answers, for a 405's Allow header."""
    methods = {m for m, pattern, _ in _ROUTES if pattern.match(path)}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def is_files_path(path: str) -> bool:
    """Whether ``path`` is /v1/files, /v1/batches or below them (with or without /v1)."""
    for prefix in PREFIXES:
        if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
            return True
    return False


def files_api_not_offered() -> GatewayError:
    return NotFound("Anthropic's Files API (/v1/files with anthropic-version) is not offered by this "
                    "gateway: send documents and images inline (base64 or url sources) in /v1/messages",
                    code="files_api_not_offered")


class FilesEndpoint:
    def __init__(self, files_chain: Handler, batches_chain: Handler, state: ServerState, *,
                 deadline_seconds: float, message_batches_chain: Handler,
                 max_message_batch_bytes: int) -> None:
        self._chains = {"files": files_chain, "batches": batches_chain,
                        "message_batches": message_batches_chain}
        self._state = state
        self._deadline = deadline_seconds
        self._max_message_batch = max_message_batch_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        routed = match(method, path)
        operation = "batches" if "/batches" in path else "files"
        anthropic = path.startswith(MESSAGE_BATCHES_PREFIX)
        failure: GatewayError | None = None
        inbound: OpenAIJson
        try:
            headers = request_headers(scope)
        except GatewayError as err:
            headers, failure = {}, err
        if operation == "files" and ANTHROPIC_VERSION in headers:
            # Anthropic's Files API is not served: say so in the shape its SDK reads.
            anthropic, inbound = True, ANTHROPIC_FILES
            failure = failure or files_api_not_offered()
        else:
            inbound = MESSAGE_BATCHES if anthropic else BATCHES if operation == "batches" else FILES
        rid = scope_request_id(scope, headers)
        action, object_id = routed if isinstance(routed, tuple) else ("", "")
        query = scope.get("query_string") or b""
        ctx = FilesContext(
            rid, operation, inbound, headers, b"", started, method=method, path=path,
            query=query.decode("latin-1"), client=peer[0] if (peer := scope.get("client")) else "",
            deadline=started + self._deadline, action=action, object_id=object_id,
        )
        ctx.prompt_tokens = 0  # against token limits: nothing at request time (a batch's cost comes later)
        if failure is None and not action:
            failure = (MethodNotAllowed(f"method {method} is not allowed on {path}",
                                        headers={"allow": allowed(path)}) if routed is False
                       else unknown_url(method, path))
        ctx.chain = "message_batches" if anthropic else operation
        out = Responder(send, ctx, request_id_headers(rid, "anthropic" if anthropic else "openai"))
        current = CURRENT.set((rid, None))
        try:
            if failure is None:
                try:
                    ctx.params = query_params(ctx.query)
                except GatewayError as err:
                    failure = err
            if failure is not None:
                await out.error(failure)
            elif action == "upload":
                try:  # the multipart body is parsed as it streams in: never decompressed
                    refuse_content_encoding(headers.get("content-encoding"))
                except GatewayError as err:
                    await out.error(err)
                    return
                # The terminal reads the body; a client that leaves is seen by that read.
                ctx.receive = receive
                await self._serve(ctx, out)
            else:
                if action in _JSON_BODIES:
                    limit = self._max_message_batch if action == "create_message_batch" else MAX_JSON_BYTES
                    refused = None
                    if "expect" in headers:
                        refused = await key_before_continue(self._state, ctx, scope)
                    if refused is not None:
                        await out.error(refused)
                        return
                    try:
                        check_content_type(headers)
                        body = await read_body(receive, limit, headers.get("content-length"))
                        if (coding := headers.get("content-encoding")) is not None:
                            body = await inflate_request_body(body, coding, limit)
                        ctx.body = body
                    except GatewayError as err:
                        await out.error(err)
                        return
                await until_disconnect(receive, self._serve(ctx, out))
        except (ClientGone, ConnectionAbortedError):
            ctx.outcome.client_disconnected = True  # finish() records the connection's answer instead
            log_gone(scope, rid)
        except asyncio.CancelledError:
            if not self._state.draining:
                raise
        finally:
            await finish(ctx, scope, self._state.unserved)
            CURRENT.reset(current)

    async def _serve(self, ctx: FilesContext, out: Responder) -> None:
        stream = await out.answer(self._chains[ctx.chain])
        if stream is not None:
            await self._download(ctx, stream, out)

    async def _download(self, ctx: FilesContext, result: StreamReply, out: Responder) -> None:
        """A file's bytes as the upstream sends them (chunks ``{"data": bytes}``)."""
        outcome = ctx.outcome
        try:
            # Relayed as it arrives: a stream, as a model call's, so a client leaving it part-way
            # keeps the status sent (Outcome.recorded_status) and ends it in the streams gauge.
            outcome.status, outcome.stream = 200, True
            out.started = True
            await out.send({"type": "http.response.start", "status": 200,
                            "headers": out.headers(ctx.response_headers)})
            async with aclosing(result.chunks) as chunks:
                async for batch in chunks:
                    for chunk in batch:
                        await out.stream_data(chunk["data"])
            await out.stream_end()
        except GatewayError as err:  # cut mid-body: the client sees a short body, the log why
            outcome.failed(err)
            log.warning("request %s: file download cut: %s", ctx.request_id, err.message)
        finally:
            await result.aclose()
