"""``/docs``, the admin API's interactive documentation, over HTTP as a browser meets it: the page
needs no key, it loads only the gateway's own files (Swagger UI ships in the package, so it
works offline), its OpenAPI document is public and declares the bearer scheme, and a call made
with the key Swagger UI's "Authorize" takes works. Stateless: the embedded default is enough."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway

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


def test_the_openapi_document_is_public_and_the_key_it_declares_works(gateway: Gateway) -> None:
    page_url = f"{gateway.url}/docs"
    start_url = next(u for u in _loaded_by(httpx.get(page_url, timeout=10).text) if "start.js" in u)
    start = httpx.get(urljoin(page_url, start_url), timeout=10).text
    spec_url = urljoin(page_url, start.split('url: "', 1)[1].split('"', 1)[0])
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
