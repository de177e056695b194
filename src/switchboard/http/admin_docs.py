"""``/docs``: the admin API's interactive documentation (Swagger UI), for a browser, offline.

- ``GET /docs``: the page. It is served without credentials (a browser cannot send a bearer
  header when it navigates, and the page holds no data), and loads only this gateway's own
  files: Swagger UI's script and style, from the installed ``swagger-ui-py`` package (its
  ``swagger_ui/static``; only the files, none of its framework glue) and served under
  ``/docs/assets/``, and the start script below. Its Content-Security-Policy keeps it to them.
- ``GET /admin/v1/openapi.json``: the admin API's OpenAPI document, public too. It describes
  the API (the same for every install of this version) and nothing of its state; it declares the
  bearer scheme, so Swagger UI's "Authorize" takes an admin key and "Try it out" sends it. Those
  calls are ordinary admin API calls: authenticated and checked like any other.

The key is a bearer token (no OAuth2 flow), so there is no OAuth2 redirect page.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import orjson

from switchboard import __version__
from switchboard.errors import NotFound
from switchboard.http.asgi import JSON_CT, Receive, Scope, Send, send_bytes
from switchboard.http.endpoint import request_id

PAGE = "/docs"
ASSETS = "/docs/assets/"
SPEC = "/admin/v1/openapi.json"

_JS = b"text/javascript; charset=utf-8"
_HTML = (b"content-type", b"text/html; charset=utf-8")
# name under /docs/assets/ -> (the packaged file, or None for the start script; content type)
_FILES: dict[str, tuple[str | None, bytes]] = {
    "swagger-ui-bundle.js": ("swagger-ui-bundle.js", _JS),
    "swagger-ui.css": ("swagger-ui.css", b"text/css; charset=utf-8"),
    "favicon-32x32.png": ("favicon-32x32.png", b"image/png"),
    "start.js": (None, _JS),
}

# Relative URLs: the page works under a path prefix (a reverse proxy) as at the root; so do the
# calls it makes, the document's server being relative too (http/admin/app.py). The validator
# badge would call validator.swagger.io: off.
_START = b"""window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "admin/v1/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    layout: "BaseLayout",
    validatorUrl: null,
  });
});
"""

_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Switchboard admin API</title>
<link rel="stylesheet" href="docs/assets/swagger-ui.css?v={__version__}">
<link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png?v={__version__}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js?v={__version__}"></script>
<script src="docs/assets/start.js?v={__version__}"></script>
</body>
</html>
""".encode()

# Swagger UI sets inline styles and draws some icons as data: URIs; nothing else is needed.
_POLICY = (b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
           b"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; "
           b"form-action 'none'; frame-ancestors 'none'")
_PAGE_HEADERS = [(b"content-security-policy", _POLICY), (b"x-content-type-options", b"nosniff"),
                 (b"referrer-policy", b"no-referrer"), (b"cache-control", b"no-cache")]
# Asset URLs carry the version: a day in the browser's cache, a new URL after an upgrade.
_ASSET_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"cache-control", b"public, max-age=86400")]


@cache
def _asset(name: str) -> bytes:
    """A packaged file, read once (the bundle is some 1.5 MB)."""
    packaged = _FILES[name][0]
    if packaged is None:
        return _START
    return resources.files("swagger_ui").joinpath(f"static/{packaged}").read_bytes()


class AdminDocs:
    """The page, its assets and the public OpenAPI document. ``openapi`` builds the admin
    application's document (FastAPI caches it); it is serialised once."""

    def __init__(self, openapi: Callable[[], dict[str, Any]]) -> None:
        self._openapi = openapi
        self._spec: bytes | None = None

    async def page(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_bytes(send, 200, _PAGE, [*_id(scope), *_PAGE_HEADERS], _HTML)

    async def spec(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._spec is None:
            self._spec = orjson.dumps(self._openapi())
        await send_bytes(send, 200, self._spec, [*_id(scope), (b"cache-control", b"no-cache")], JSON_CT)

    async def asset(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /docs/assets/<name>``: one of the files above, else 404 (no other file is
        reachable: the name is looked up, never joined into a path)."""
        name = scope["path"][len(ASSETS):]
        if name not in _FILES:
            err = NotFound(f"no documentation asset '{name[:64]}'", code="unknown_url")
            await send_bytes(send, err.status, orjson.dumps(err.to_openai()), _id(scope), JSON_CT)
            return
        kind = (b"content-type", _FILES[name][1])
        await send_bytes(send, 200, _asset(name), [*_id(scope), *_ASSET_HEADERS], kind)


def _id(scope: Scope) -> list[tuple[bytes, bytes]]:
    rid = request_id({k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]})
    return [(b"x-request-id", rid.encode())]
