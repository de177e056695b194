"""CORS: browser applications on other origins calling the API (``server.cors``, docs/api.md).

Built only when ``server.cors.allow_origins`` names some; off, the application holds None and a
request pays one attribute test. On, :meth:`Cors.edge` runs before routing, so before any
authentication:

- a preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) on a covered
  path is answered here: 204 with the allow headers when the origin, the method and every
  requested header are allowed, else 403 ``cors_not_allowed`` without them (the browser fails
  the call either way; the 403 tells the person reading the network panel or a curl which of the
  three was refused, where a bare 204 would look like success);
- any other request carrying an ``Origin`` on a covered path gets a ``send`` that adds the
  headers to the response head, whatever writes it (an endpoint's success or error, a stream's
  first headers, the edge's 404 or 405), so no handler knows about CORS. Access-control headers
  an upstream put on a relayed answer (a ``/services`` upstream) are dropped first: two
  ``Access-Control-Allow-Origin`` values make a browser refuse the answer.

What the connection answers itself before the application sees a request (400 malformed, 431,
the 408 of a body that stopped arriving, 503 over ``max_connections``) carries none: those are
written by the protocol (http/protocol.py) from a request it did not finish reading.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson

from switchboard.config.schema import CorsConfig
from switchboard.errors import PermissionDenied
from switchboard.http.anthropic.errors import error_body, from_anthropic_client
from switchboard.http.asgi import JSON_CT, Message, Scope, Send, header_dict, send_bytes
from switchboard.http.endpoint import count_refused, request_id
from switchboard.http.state import ServerState

# Paths of the model-facing API: the OpenAI, Anthropic, Gemini and Cohere (/v2/rerank) APIs,
# prompt APIs, services and the MCP endpoint; with the OpenAI paths' aliases without /v1.
_PREFIXES = ("/v1/", "/v1beta/", "/v1alpha/", "/v2/", "/apis/", "/services/", "/models/", "/responses/",
             "/files/", "/batches/", "/images/", "/audio/")
_EXACT = frozenset({"/mcp", "/chat/completions", "/completions", "/embeddings", "/models", "/responses",
                    "/files", "/batches", "/rerank", "/moderations"})
ADMIN_PREFIX = "/admin/"
# The methods a browser may ask for: those the API answers on some path (each path's own are
# still checked by its route, which answers 405 with the CORS headers, so a script can read it).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
_ALLOW_METHODS = b"GET, HEAD, POST, PUT, PATCH, DELETE"
# An Origin as browsers serialise it (lower case); an IPv6 host in brackets. No nested
# quantifier: linear in the header's length, which the edge bounds (server.max_header_bytes).
_ORIGIN = re.compile(rb"([a-z][a-z0-9+.-]*)://([a-z0-9][a-z0-9.-]*|\[[0-9a-f:.]+\])(?::([0-9]{1,5}))?")
_MAX_ORIGIN = 300  # bytes: longer is no origin a browser sends
# A header name (RFC 9110 token), lower case: a requested name is echoed in the answer only if it
# is one (a control character there would make the response head invalid).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
_ACCESS_CONTROL = b"access-control-"
_SHOWN = 100  # characters of a refused method or header named in the 403


class Cors:
    """The policy of ``server.cors``, worked out once: origin sets, header sets, the header
    lines every answer to an allowed origin carries."""

    def __init__(self, config: CorsConfig, state: ServerState) -> None:
        self._state = state
        self._admin = config.admin
        origins = [o.encode() for o in config.allow_origins]
        self._any = b"*" in origins
        self._exact = frozenset(o for o in origins if b"*" not in o)
        # "https://*.corp.example[:port]": per (scheme, port), the suffixes (".corp.example") a
        # host must end with; str.endswith takes them all in one call.
        suffixes: dict[tuple[bytes, bytes | None], list[bytes]] = {}
        for origin in origins:
            if origin.startswith(b"*") or b"*" not in origin:
                continue
            found = _ORIGIN.fullmatch(origin.replace(b"*.", b"x.", 1))
            assert found is not None, "checked by the configuration"
            scheme, host, port = found.groups()
            suffixes.setdefault((scheme, port), []).append(host[1:])  # "x.corp.example" -> ".corp.example"
        self._suffixes = {key: tuple(value) for key, value in suffixes.items()}
        # With "*" and no credentials the answer says "*" (any cache may share it); otherwise the
        # origin is echoed.
        self._star = self._any and not config.allow_credentials
        headers = [h for h in config.allow_headers if not h.endswith("*")]
        self._headers = frozenset(headers)
        self._header_families = tuple(h[:-1] for h in config.allow_headers if h.endswith("*") and h != "*")
        self._any_header = "*" in config.allow_headers
        common: list[tuple[bytes, bytes]] = [(b"vary", b"origin")]
        if config.allow_credentials:
            common.append((b"access-control-allow-credentials", b"true"))
        self._actual = [*common]
        if config.expose_headers:
            self._actual.append((b"access-control-expose-headers", ", ".join(config.expose_headers).encode()))
        self._preflight = [*common, (b"access-control-allow-methods", _ALLOW_METHODS),
                           (b"access-control-max-age", str(config.max_age).encode())]

    def covers(self, path: str) -> bool:
        """Whether ``path`` is one of the API's paths CORS applies to."""
        if path in _EXACT or path.startswith(_PREFIXES):
            return True
        return self._admin and path.startswith(ADMIN_PREFIX)

    def allowed(self, origin: bytes) -> bool:
        """Whether a request from ``origin`` (the header's bytes) may be answered to a script.
        Anything that is not an origin ("null", no scheme, a path) is not allowed."""
        if origin in self._exact:
            return True
        if not (self._any or self._suffixes) or len(origin) > _MAX_ORIGIN:
            return False
        found = _ORIGIN.fullmatch(origin)
        if found is None:
            return False
        if self._any:
            return True
        scheme, host, port = found.groups()
        suffixes = self._suffixes.get((scheme, port))
        return suffixes is not None and host.endswith(suffixes)

    async def edge(self, scope: Scope, send: Send) -> Send | None:
        """The ``send`` the request is answered through: ``send`` itself when CORS does not
        apply (no Origin, a path not covered), one adding the headers when it does; None when
        the request was a preflight, answered here."""
        origin = _origin(scope["headers"])
        if origin is None or not self.covers(scope["path"]):
            return send
        if scope["method"] == "OPTIONS":
            headers = header_dict(scope)
            method = headers.get("access-control-request-method")
            if method is not None:
                await self._answer_preflight(scope, send, origin, method, headers)
                return None
        if origin is _MANY or not self.allowed(origin):
            return _with_headers(send, [(b"vary", b"origin")])
        return _with_headers(send, [self._allow_origin(origin), *self._actual])

    def _allow_origin(self, origin: bytes) -> tuple[bytes, bytes]:
        return b"access-control-allow-origin", b"*" if self._star else origin

    async def _answer_preflight(self, scope: Scope, send: Send, origin: bytes, method: str,
                                headers: dict[str, str]) -> None:
        started = time.perf_counter()
        rid = (b"x-request-id", request_id(headers).encode())
        asked = [name for part in headers.get("access-control-request-headers", "").split(",")
                 if (name := part.strip().lower())]
        refusal = self._refusal(origin, method, asked)
        if refusal is not None:
            err = PermissionDenied(refusal, code="cors_not_allowed")
            # On the Messages API its own error shape, as every other answer there has.
            anthropic = from_anthropic_client(scope["path"], scope["headers"])
            body = orjson.dumps(error_body(err) if anthropic else err.to_openai())
            await send_bytes(send, err.status, body, [rid, (b"vary", b"origin")], JSON_CT)
            count_refused(self._state, scope, started, err)
            return
        lines = [self._allow_origin(origin), *self._preflight, rid]
        if asked:
            lines.append((b"access-control-allow-headers", ", ".join(asked).encode("latin-1")))
        await send({"type": "http.response.start", "status": 204, "headers": lines})
        await send({"type": "http.response.body", "body": b""})

    def _refusal(self, origin: bytes, method: str, asked: list[str]) -> str | None:
        """Why a preflight is refused, or None when it is allowed."""
        if origin is _MANY or not self.allowed(origin):
            return "this origin may not call the API from a browser (server.cors.allow_origins)"
        if method not in METHODS:
            return f"method {method[:_SHOWN]!r} is not allowed from a browser"
        for name in asked:
            if name in self._headers:
                continue
            if not (self._any_header or name.startswith(self._header_families)) or not _TOKEN.fullmatch(name):
                return f"request header {name[:_SHOWN]!r} is not allowed (server.cors.allow_headers)"
        return None


# Several Origin headers: no browser sends that; never allowed.
_MANY = b"\x00many"


def _origin(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The request's Origin (``_MANY`` when repeated), None when it has none."""
    found = None
    for name, value in headers:
        if name == b"origin":
            found = value if found is None else _MANY
    return found


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """``send`` with ``extra`` added to the response head (replacing any access-control header
    already there). A plain function handing back ``send``'s coroutine: a body part pays no
    extra frame."""

    def cors_send(message: Message) -> Any:
        if message["type"] == "http.response.start":
            kept = [h for h in message.get("headers", ()) if not h[0].startswith(_ACCESS_CONTROL)]
            message = {**message, "headers": [*kept, *extra]}
        return send(message)

    return cors_send

