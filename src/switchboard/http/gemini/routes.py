"""Dispatch ``POST /v1beta/models/{model}:{method}`` (and ``/v1/...``) to the method's endpoint.

The path holds the model, so these are routed by prefix rather than by the app's exact-path
table. A key given as ``?key=`` (as Google's API allows) is moved into the ``x-goog-api-key``
header before the endpoint runs, and taken out of the query string, so it is never written to
an access log line; it counts only when no other credential header is present. Names are decoded
as a form decodes them (``?%6Bey=`` is ``key``), and a key given twice is refused rather than one
of them picked; so is an ``alt`` given twice (``?alt=sse&alt=json``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import parse_qsl, urlencode

from switchboard.errors import GatewayError, InvalidRequest, NotFound
from switchboard.http.asgi import JSON_CT, Receive, Scope, Send, header_dict, send_bytes
from switchboard.http.endpoint import count_refused, request_id
from switchboard.http.errors import MethodNotAllowed
from switchboard.http.gemini.api import PREFIXES, split_path
from switchboard.http.gemini.errors import encode_error
from switchboard.http.state import ServerState

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
_CREDENTIALS = (b"authorization", b"x-api-key", b"x-goog-api-key")


# Only the Gemini API lives under /v1beta/ and /v1alpha/ (/v1/models/... is shared with OpenAI's
# model reads).
GEMINI_ONLY_PREFIX = ("/v1beta/", "/v1alpha/")


def is_gemini(method: str, path: str) -> bool:
    return method == "POST" and path.startswith(PREFIXES)


def move_query_key(scope: Scope) -> None:
    """Raises InvalidRequest for a key, or an ``alt`` (the answer's format), given more than
    once: which one was meant is unknown."""
    raw: bytes = scope.get("query_string") or b""
    # Cheap for the common query (none, or ?alt=sse): "key" can only be spelt without "key="
    # (and a second "alt" without "alt=") by percent-encoding some of its letters.
    if b"key=" not in raw and b"%" not in raw and raw.count(b"alt=") < 2:
        return
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    if (alts := sum(k == "alt" for k, _ in pairs)) > 1:
        raise InvalidRequest(f"the query parameter 'alt' is given {alts} times; give it once",
                             param="alt", code="duplicate_parameter")
    keys = [v for k, v in pairs if k == "key"]
    if not keys:
        return
    if len(keys) > 1:
        raise InvalidRequest(f"the query parameter 'key' is given {len(keys)} times; give one key, once",
                             param="key", code="duplicate_parameter")  # the admin lists' code for it
    scope["query_string"] = urlencode([(k, v) for k, v in pairs if k != "key"]).encode("latin-1")
    # An empty x-goog-api-key (the Gemini CLI sends one when it has no key of its own) gives way.
    headers = [(n, v) for n, v in scope["headers"] if n != b"x-goog-api-key" or v.strip()]
    if keys[0] and not any(n in _CREDENTIALS and v.strip() for n, v in headers):
        headers.append((b"x-goog-api-key", keys[0].encode("latin-1", "replace")))
    scope["headers"] = headers


class GeminiRoutes:
    def __init__(self, endpoints: Mapping[str, ASGIApp], state: ServerState) -> None:
        self._endpoints = dict(endpoints)
        self._state = state  # who counts the requests refused here (the metrics, when on)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            move_query_key(scope)
        except InvalidRequest as err:
            await self._answer(scope, send, time.perf_counter(), err)
            return
        _, method = split_path(scope["path"])
        endpoint = self._endpoints.get(method)
        if endpoint is not None:
            await endpoint(scope, receive, send)
            return
        started = time.perf_counter()
        shown = method if len(method) <= 60 else method[:60] + "..."
        known = ", ".join(self._endpoints)
        await self._answer(scope, send, started, NotFound(
            f"method '{shown}' is not served for Gemini models; the methods are: {known}",
            code="unknown_url"))

    async def not_served(self, scope: Scope, send: Send) -> None:
        """Anything else under ``/v1beta/`` or ``/v1alpha/`` (a GET of a method, listing models,
        files, caches...): answered in Google's error shape, which is what a Gemini client reads there."""
        started = time.perf_counter()
        _, method = split_path(scope["path"])
        if method in self._endpoints:
            await self._answer(scope, send, started, MethodNotAllowed(f"{method} is called with POST"),
                               [(b"allow", b"POST")])
            return
        known = ", ".join(self._endpoints)
        shown = scope["path"][:200]
        await self._answer(scope, send, started, NotFound(
            f"{scope['method']} {shown} is not served: the Gemini API here is POST "
            f"/v1beta/models/{{model}}:{{method}}, the methods being {known}", code="unknown_url"))

    async def _answer(self, scope: Scope, send: Send, started: float, err: GatewayError,
                      headers: list[tuple[bytes, bytes]] | None = None) -> None:
        rid = request_id(header_dict(scope))
        await send_bytes(send, err.status, encode_error(err),
                         [(b"x-request-id", rid.encode()), *(headers or ())], JSON_CT)
        count_refused(self._state, scope, started, err)
