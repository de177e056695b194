"""Runs the admin ASGI application as the terminal handler of the admin operation's chain."""

from __future__ import annotations

import logging
from typing import Any

from switchboard.context import RawReply, RequestContext, Result
from switchboard.errors import PermissionDenied
from switchboard.http.asgi import Message, Receive, Scope
from switchboard.http.errors import StoreUnavailable
from switchboard.stores.unavailable import unavailable

log = logging.getLogger("switchboard.http")

ASGIApp = Any  # an ASGI callable (typed loosely: FastAPI's own signature differs in detail)


class AdminBridge:
    """The chain's terminal for ``/admin/*`` and ``/docs``: the request (with the principal the
    chain authenticated) is replayed into the admin application, whose routes each enforce the
    permission table, and its complete answer captured as a :class:`RawReply`."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, ctx: RequestContext) -> Result:
        principal = ctx.principal
        if principal is None:
            raise PermissionDenied("the admin API needs an authenticated caller", code="permission_denied")
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in ctx.headers.items()]
        if ctx.body and "content-type" not in ctx.headers:
            # A body sent without a content type is JSON, as on the model API (the edge refused any
            # other type with a 415): FastAPI would not parse it, and refused a JSON object as
            # "not a JSON object" (or, depending on its version, read it).
            headers.append((b"content-type", b"application/json"))
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": ctx.method,
            "scheme": "http",
            "path": ctx.path,
            "raw_path": ctx.path.encode("latin-1", "replace"),
            "query_string": ctx.query.encode("latin-1", "replace"),
            "root_path": "",
            "headers": headers,
            "client": (ctx.client, 0) if ctx.client else None,
            "server": None,
            # What the admin routes read through request.state.
            "state": {"principal": principal, "request_id": ctx.request_id},
        }
        captured = _Captured()
        try:
            await self._app(scope, _replay(ctx.body), captured.send)
        except Exception as exc:
            if not unavailable(exc):
                raise  # a fault of the code: the edge answers 500 and logs the traceback
            # A store down (the database restarting, Redis failing over): a 503 the caller can
            # retry, and one warning line instead of a traceback.
            log.warning("request %s: %s %s: a store is unreachable (%s)", ctx.request_id, ctx.method,
                        ctx.path, type(exc).__name__)
            raise StoreUnavailable() from None
        state = scope["state"]
        if "error_code" in state:  # an error answer (http/admin/errors.py): named as the edge's are
            ctx.outcome.error_code = state["error_code"]
            ctx.outcome.error_type = state.get("error_type")
        return RawReply(captured.status, captured.headers, b"".join(captured.body))


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


class _Captured:
    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
        elif message["type"] == "http.response.body":
            self.body.append(message.get("body", b""))


