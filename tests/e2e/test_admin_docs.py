"""``/docs``, the admin API's interactive documentation, over HTTP as a browser meets it: the page
needs no key, it loads only the gateway's own files (Swagger UI ships in the package, so it
works offline), its OpenAPI document is public and declares the bearer scheme, and a call made
with the key Swagger UI's "Authorize" takes works. Stateless: the embedded default is enough."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from aiohttp import web

from tests.servers import MASTER_KEY, Gateway, Mock, free_port, openai_config, start_gateway

CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


class _References(HTMLParser):
    """Every URL the page makes a browser load (scripts, styles, icons, images)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for name in ("src", "href"):
            if found.get(name) and tag in ("script", "link", "img", "iframe"):
                self.urls.append(str(found[name]))


def _loaded_by(page: str) -> list[str]:
    parser = _References()
    parser.feed(page)
    return parser.urls


def test_the_page_and_everything_it_loads_need_no_key_and_stay_on_the_gateway(gateway: Gateway) -> None:
    page_url = f"{gateway.url}/docs"
    page = httpx.get(page_url, timeout=10)  # a browser navigating: no Authorization header
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    urls = _loaded_by(page.text)
    assert {urlsplit(u).path.rsplit("/", 1)[-1] for u in urls} == {
        "swagger-ui.css", "favicon-32x32.png", "swagger-ui-bundle.js", "start.js"}
    for url in urls:
        absolute = urljoin(page_url, url)
        assert urlsplit(absolute).netloc == urlsplit(gateway.url).netloc, url  # no CDN
        asset = httpx.get(absolute, timeout=10)
        assert asset.status_code == 200, (url, asset.status_code)
        suffix = "." + urlsplit(absolute).path.rsplit(".", 1)[-1]
        assert asset.headers["content-type"].startswith(CONTENT_TYPES[suffix]), (url, asset.headers)
        assert asset.content and asset.headers["x-content-type-options"] == "nosniff"
    bundle = httpx.get(urljoin(page_url, next(u for u in urls if "swagger-ui-bundle" in u)), timeout=10)
    assert "SwaggerUIBundle" in bundle.text
    start = httpx.get(urljoin(page_url, next(u for u in urls if "start.js" in u)), timeout=10).text
    assert "validatorUrl: null" in start and "http" not in start  # nothing sent elsewhere
    # No OAuth2 flow: no redirect page is referenced (and none is served).
    assert "oauth2" not in page.text + start
    assert httpx.head(page_url, timeout=10).status_code == 200


def _spec_url(page_url: str) -> str:
    """The document's URL as the page's start script names it, resolved against the page."""
    start_url = next(u for u in _loaded_by(httpx.get(page_url, timeout=10).text) if "start.js" in u)
    start = httpx.get(urljoin(page_url, start_url), timeout=10).text
    return urljoin(page_url, start.split('url: "', 1)[1].split('"', 1)[0])


def _base_url(spec_url: str, doc: dict[str, Any]) -> str:
    """Where Swagger UI sends "Try it out": the document's first server resolved against the
    document's URL, without a trailing slash (no server: the document's host root)."""
    url = str(doc["servers"][0]["url"]) if doc.get("servers") else ""
    parts = urlsplit(spec_url)
    resolved = urljoin(spec_url, url) if url else f"{parts.scheme}://{parts.netloc}"
    return resolved.rstrip("/")


def test_the_openapi_document_is_public_and_the_key_it_declares_works(gateway: Gateway) -> None:
    page_url = f"{gateway.url}/docs"
    spec_url = _spec_url(page_url)
    assert urlsplit(spec_url).path == "/admin/v1/openapi.json"
    spec = httpx.get(spec_url, timeout=10)  # what the page's script fetches: no key
    assert spec.status_code == 200 and spec.headers["content-type"].startswith("application/json")
    doc = spec.json()
    assert doc["openapi"].startswith("3.1") and "/admin/v1/keys" in doc["paths"]
    assert doc["components"]["securitySchemes"]["bearer"] == {
        **doc["components"]["securitySchemes"]["bearer"], "type": "http", "scheme": "bearer"}
    assert doc["security"] == [{"bearer": []}]
    # "Try it out" after "Authorize": the operation the document lists, with the bearer key.
    assert "get" in doc["paths"]["/admin/v1/keys"]
    listed = httpx.get(f"{gateway.url}/admin/v1/keys", headers={"Authorization": f"Bearer {MASTER_KEY}"},
                       timeout=10)
    assert listed.status_code == 200 and listed.json()["object"] == "list"
    # The API itself still needs the key.
    refused = httpx.get(f"{gateway.url}/admin/v1/keys", timeout=10)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "missing_api_key"
    assert _base_url(spec_url, doc) == gateway.url


class PrefixProxy:
    """A reverse proxy serving the gateway under ``/tools/gateway/``: the prefix is stripped
    from each request passed on (as nginx's ``location /tools/gateway/ { proxy_pass
    http://gateway/; }``); anything outside it is the proxy's own 404."""

    PREFIX = "/tools/gateway"

    def __init__(self, upstream: str) -> None:
        self.port = free_port()
        self._upstream = upstream
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        assert self._ready.wait(10), "the proxy did not start"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.PREFIX}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", self.PREFIX + "/{tail:.*}", self._pass)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    async def _pass(self, request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        async with httpx.AsyncClient() as client:
            answer = await client.request(request.method, f"{self._upstream}/{request.match_info['tail']}",
                                          params=request.query_string, headers=headers,
                                          content=await request.read(), timeout=10)
        return web.Response(status=answer.status_code, body=answer.content,
                            headers={"content-type": answer.headers.get("content-type", "text/plain")})

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


def test_behind_a_path_prefix_try_it_out_calls_the_prefixed_api(gateway: Gateway) -> None:
    """The page, its document and the calls "Try it out" makes all stay under the proxy's
    prefix: the document's server is relative to where it is served."""
    proxy = PrefixProxy(gateway.url)
    try:
        page_url = f"{proxy.url}/docs"
        spec_url = _spec_url(page_url)
        assert spec_url == f"{proxy.url}/admin/v1/openapi.json"
        spec = httpx.get(spec_url, timeout=10)
        assert spec.status_code == 200, spec.text
        doc = spec.json()
        base = _base_url(spec_url, doc)
        assert base == proxy.url
        listed = httpx.get(base + "/admin/v1/keys", headers={"Authorization": f"Bearer {MASTER_KEY}"},
                           timeout=10)
        assert listed.status_code == 200 and listed.json()["object"] == "list"
    finally:
        proxy.stop()


@pytest.mark.parametrize(("method", "target", "status"), [
    ("GET", "/docs/assets/nope.js", 404),
    ("GET", "/docs/assets/../../admin/v1/keys", 404),  # a name, never a path: not the admin API
    ("GET", "/docs/assets/%2e%2e/swagger-ui.css.map", 404),
    ("GET", "/docs/assets/swagger-ui.css.map", 404),  # only the files the page loads
    ("GET", "/docs/oauth2-redirect", 404),
    ("POST", "/docs", 405),
    ("POST", "/docs/assets/start.js", 405),
    ("DELETE", "/admin/v1/openapi.json", 401),  # only reading the document is public
])
def test_nothing_else_is_served_there(gateway: Gateway, method: str, target: str, status: int) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        head = f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        sock.sendall(head.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    reply, _, body = data.partition(b"\r\n\r\n")
    assert int(reply.split(b" ", 2)[1]) == status, (target, reply, body)
    assert b'"error"' in body


@pytest.fixture(scope="module")
def private_docs(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = openai_config(mock_upstream, public_docs=False)
    gw = start_gateway(config, tmp_path_factory.mktemp("private-docs"))
    yield gw
    gw.process.stop()


@pytest.mark.parametrize(("method", "target"), [
    ("GET", "/docs"),
    ("HEAD", "/docs"),
    ("GET", "/docs/assets/swagger-ui-bundle.js"),
    ("GET", "/docs/assets/start.js"),
    ("POST", "/docs/assets/start.js"),  # not a 405: nothing is there
])
def test_with_public_docs_off_the_page_is_not_served(private_docs: Gateway, method: str, target: str) -> None:
    resp = httpx.request(method, f"{private_docs.url}{target}", timeout=10)
    assert resp.status_code == 404, (target, resp.status_code)
    if method != "HEAD":
        assert resp.json()["error"]["code"] == "unknown_url"


def test_with_public_docs_off_the_document_needs_a_key(private_docs: Gateway) -> None:
    refused = httpx.get(f"{private_docs.url}/admin/v1/openapi.json", timeout=10)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "missing_api_key"
    spec = f"{private_docs.url}/admin/v1/openapi.json"
    wrong = httpx.get(spec, headers={"Authorization": "Bearer sk-nope"}, timeout=10)
    assert wrong.status_code == 401
    doc = httpx.get(f"{private_docs.url}/admin/v1/openapi.json",
                    headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10)
    assert doc.status_code == 200, doc.text
    assert doc.json()["openapi"].startswith("3.1") and "/admin/v1/keys" in doc.json()["paths"]
    assert "/admin/v1/openapi.json" not in doc.json()["paths"]
    # A key of the lowest role reads it too: it describes the API, not its state.
    master = {"Authorization": f"Bearer {MASTER_KEY}"}
    viewer = httpx.post(f"{private_docs.url}/admin/v1/keys", headers=master,
                        json={"name": "docs-viewer", "role": "viewer", "models": ["*"]}, timeout=10)
    assert viewer.status_code in (200, 201), viewer.text
    seen = httpx.get(f"{private_docs.url}/admin/v1/openapi.json",
                     headers={"Authorization": f"Bearer {viewer.json()['key']}"}, timeout=10)
    assert seen.status_code == 200 and seen.json() == doc.json()
