"""CORS (`server.cors`): a browser application on another origin calling the API.

What a browser sees: the preflight answered before authentication (204 with the allow headers,
or 403 `cors_not_allowed` without them), and every answer to an allowed origin on the API's
paths (success, each kind of error, a stream's first headers) carrying the allow and expose
headers; the admin API left out unless configured; nothing added while `allow_origins` is
empty; a bad configuration refused at load.
"""

from __future__ import annotations

import concurrent.futures
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.e2e.test_services import Upstream, start_upstream
from tests.servers import (
    MASTER_KEY,
    Gateway,
    Mock,
    captured,
    free_port,
    new_marker,
    openai_config,
    spawn,
    start_gateway,
)

APP = "https://chat.corp.example"
WILD = "https://notebook.apps.example"  # allowed by https://*.apps.example
EVIL = "https://evil.example"
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
ACAO = "access-control-allow-origin"


@pytest.fixture(scope="module")
def service() -> Iterator[Upstream]:
    up = start_upstream()
    yield up
    up.process.stop()


@pytest.fixture(scope="module")
def cors(mock_upstream: Mock, service: Upstream,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Origins listed (exact, with a default port written out, and a suffix wildcard), with
    credentials; small bodies and a limited model for the 413 and the 429."""
    config = openai_config(mock_upstream, max_body_bytes=4096, cors={
        "allow_origins": [APP + ":443", "https://*.apps.example", "http://localhost:5173"],
        "allow_credentials": True, "max_age": 120})
    config["models"].append({"name": "limited", "provider": "local-openai", "model": "gpt-4o-mini"})
    config["limits"] = {"models": {"limited": {"rpm": 1}}}
    config["services"] = [{"name": "echo", "url": service.url}]
    gw = start_gateway(config, tmp_path_factory.mktemp("cors"))
    yield gw
    gw.process.stop()


@pytest.fixture(scope="module")
def anyone(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Every origin, no credentials, the admin API included."""
    config = openai_config(mock_upstream, cors={"allow_origins": ["*"], "admin": True})
    gw = start_gateway(config, tmp_path_factory.mktemp("cors-any"))
    yield gw
    gw.process.stop()


def preflight(gw: Gateway, path: str, origin: str, method: str = "POST",
              headers: str | None = "authorization, content-type, x-stainless-os") -> httpx.Response:
    asked = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        asked["Access-Control-Request-Headers"] = headers
    return httpx.options(gw.url + path, headers=asked, timeout=30)


def cors_headers(resp: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in resp.headers.items() if k.startswith("access-control-")}


def assert_allowed(resp: httpx.Response, origin: str = APP) -> None:
    assert resp.headers[ACAO] == origin, resp.headers
    assert resp.headers.get_list("access-control-allow-origin") == [origin]
    assert "origin" in resp.headers["vary"].lower()
    assert resp.headers["access-control-allow-credentials"] == "true"
    exposed = resp.headers["access-control-expose-headers"].split(", ")
    assert {"x-request-id", "x-ratelimit-remaining-requests", "x-switchboard-cost-usd",
            "retry-after"} <= set(exposed)


# -- preflight ------------------------------------------------------------------------------------


def test_a_preflight_is_answered_before_authentication_on_every_api_path(cors: Gateway) -> None:
    for path in ("/v1/chat/completions", "/chat/completions", "/v1/messages", "/v1beta/models/gpt-4o-mini:"
                 "generateContent", "/apis/anything", "/services/echo/x", "/mcp", "/v1/no-such-path"):
        resp = preflight(cors, path, APP)
        assert resp.status_code == 204, (path, resp.text)
        assert resp.content == b""
        assert resp.headers[ACAO] == APP
        assert resp.headers["access-control-allow-credentials"] == "true"
        assert resp.headers["access-control-allow-headers"] == "authorization, content-type, x-stainless-os"
        assert "POST" in resp.headers["access-control-allow-methods"].split(", ")
        assert resp.headers["access-control-max-age"] == "120"
        assert resp.headers["vary"] == "origin"
        assert resp.headers["x-request-id"]
    # What the SDKs send: Anthropic's browser flag and version, the OpenAI SDK's x-stainless-*
    # family, the documented x-switchboard-* and MCP headers.
    sdk = ("anthropic-version, anthropic-dangerous-direct-browser-access, x-api-key, content-type, "
           "x-stainless-retry-count, x-stainless-timeout, x-switchboard-deployment, mcp-session-id")
    assert preflight(cors, "/v1/messages", WILD, headers=sdk).status_code == 204
    # A method the API answers somewhere, and no requested header at all.
    resp = preflight(cors, "/v1/files/file-1", "http://localhost:5173", method="DELETE", headers=None)
    assert resp.status_code == 204, resp.text
    assert "access-control-allow-headers" not in resp.headers


def test_a_preflight_not_allowed_is_403_without_the_allow_headers(cors: Gateway) -> None:
    cases = {
        "origin": preflight(cors, "/v1/chat/completions", EVIL),
        "method": preflight(cors, "/v1/chat/completions", APP, method="PROPFIND"),
        "header": preflight(cors, "/v1/chat/completions", APP, headers="authorization, x-custom"),
    }
    for what, resp in cases.items():
        assert resp.status_code == 403, (what, resp.text)
        assert resp.json()["error"]["code"] == "cors_not_allowed"
        assert resp.json()["error"]["type"] == "permission_error"
        assert what in resp.json()["error"]["message"]
        assert cors_headers(resp) == {}, what
    assert "'x-custom'" in cases["header"].json()["error"]["message"]


def test_a_preflight_not_allowed_on_the_messages_api_is_refused_in_anthropics_shape(cors: Gateway) -> None:
    resp = preflight(cors, "/v1/messages", EVIL, headers="x-api-key, anthropic-version, content-type")
    assert resp.status_code == 403, resp.text
    assert resp.json() == {"type": "error", "error": {
        "type": "permission_error",
        "message": "this origin may not call the API from a browser (server.cors.allow_origins)"}}
    assert cors_headers(resp) == {}


def test_a_requested_header_that_is_no_header_name_is_refused_not_echoed(cors: Gateway) -> None:
    # Within an allowed prefix (x-stainless-*), but no header name (a control character does
    # not get this far: the connection refuses it as malformed HTTP). It is not echoed back.
    with socket.create_connection(("127.0.0.1", cors.port), timeout=10) as sock:
        sock.sendall(b"OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nOrigin: " + APP.encode()
                     + b"\r\nAccess-Control-Request-Method: POST\r\n"
                     b"Access-Control-Request-Headers: content-type, x-stainless-(os)\xff\r\n"
                     b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 403 "), answer
    assert b'"code":"cors_not_allowed"' in answer
    assert b"access-control-allow-origin" not in answer.lower()


@pytest.mark.parametrize("origin", [
    "null", "chat.corp.example", APP + "/", APP + "/app", "HTTPS://CHAT.CORP.EXAMPLE", "https://apps.example",
    "http://notebook.apps.example", "https://notebook.apps.example:8443", "https://evilapps.example",
    "https://x.apps.example.evil.example", "http://localhost:5174", "garbage \xff", "x" * 5000,
])
def test_origins_that_are_not_allowed_or_not_origins(cors: Gateway, origin: str) -> None:
    resp = httpx.options(cors.url + "/v1/chat/completions", timeout=30, headers=[
        ("Origin", origin.encode("latin-1")), ("Access-Control-Request-Method", b"POST")])
    assert resp.status_code == 403, resp.text
    assert resp.json()["error"]["code"] == "cors_not_allowed"
    resp = httpx.post(cors.url + "/v1/chat/completions", json=CHAT, timeout=30,
                      headers=[("Origin", origin.encode("latin-1")), *AUTH.items()])
    assert resp.status_code == 200, resp.text
    assert cors_headers(resp) == {}
    assert resp.headers["vary"] == "origin"


def test_the_admin_api_is_left_out_unless_configured(cors: Gateway, anyone: Gateway) -> None:
    # Left out: the preflight is an ordinary OPTIONS (the admin API wants a key), and an answer
    # carries no header a browser would let a script read it by.
    resp = preflight(cors, "/admin/v1/keys", APP, method="GET")
    assert resp.status_code == 401, resp.text
    assert cors_headers(resp) == {}
    resp = httpx.get(cors.url + "/admin/v1/keys", headers={"Origin": APP, **AUTH}, timeout=30)
    assert resp.status_code == 200
    assert cors_headers(resp) == {}
    # Nor the health probes, whatever the configuration.
    resp = httpx.get(anyone.url + "/health/live", headers={"Origin": APP}, timeout=30)
    assert resp.status_code == 200 and cors_headers(resp) == {}
    # Configured (server.cors.admin): "*" for every origin, as credentials are off.
    resp = preflight(anyone, "/admin/v1/keys", EVIL, method="GET")
    assert resp.status_code == 204, resp.text
    assert resp.headers[ACAO] == "*"
    assert "access-control-allow-credentials" not in resp.headers
    resp = httpx.get(anyone.url + "/admin/v1/keys", headers={"Origin": EVIL, **AUTH}, timeout=30)
    assert resp.status_code == 200
    assert resp.headers[ACAO] == "*"


# -- actual requests ------------------------------------------------------------------------------


def test_the_openai_sdk_from_an_allowed_origin_reads_the_answer_and_its_headers(cors: Gateway) -> None:
    client = openai.OpenAI(base_url=cors.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30,
                           default_headers={"Origin": APP})
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[
        {"role": "user", "content": "hi"}])
    assert raw.parse().choices[0].message.content
    assert_allowed(raw.http_response)
    # A stream: the headers are on its first (and only) head.
    with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert_allowed(stream.http_response)
        assert "[DONE]" in stream.read().decode()
    # The wildcard's origin is echoed too; an error the SDK raises carries the headers.
    client = client.with_options(default_headers={"Origin": WILD})
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert_allowed(caught.value.response, WILD)


def test_every_kind_of_error_carries_the_headers(cors: Gateway) -> None:
    def call(path: str, key: bool = True, **kwargs: Any) -> httpx.Response:
        headers = {"Origin": APP, **(AUTH if key else {})}
        return httpx.post(cors.url + path, headers=headers, timeout=30, **kwargs)

    answers = {
        401: call("/v1/chat/completions", key=False, json=CHAT),
        404: call("/v1/no-such-path", json=CHAT),
        405: httpx.get(cors.url + "/v1/chat/completions", headers={"Origin": APP}, timeout=30),
        413: call("/v1/chat/completions", json={**CHAT, "pad": "x" * 8192}),
        400: call("/v1/chat/completions", json={"model": "gpt-4o-mini"}),
        502: call("/v1/chat/completions", json={**CHAT, "model": "unreachable"}),
    }
    call("/v1/chat/completions", json={**CHAT, "model": "limited"})  # the minute's one request
    answers[429] = call("/v1/chat/completions", json={**CHAT, "model": "limited"})
    for status, resp in answers.items():
        assert resp.status_code == status, (status, resp.text)
        assert_allowed(resp)
    assert answers[429].headers["retry-after"]
    assert "retry-after" in answers[429].headers["access-control-expose-headers"].split(", ")
    # The MCP endpoint and a prompt API, refused before their chains' work.
    assert_allowed(call("/mcp", key=False, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
    assert_allowed(call("/apis/no-such-api", json={}))


def test_the_edges_503_at_shutdown_carries_the_headers(mock_upstream: Mock, tmp_path: Path) -> None:
    """A request still running when the grace period ends is answered by the endpoint itself
    (503 server_shutting_down): still an answer a page can read."""
    config = openai_config(mock_upstream, graceful_shutdown_seconds=0, cors={"allow_origins": [APP]})
    gw = start_gateway(config, tmp_path)
    marker = new_marker()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(httpx.post, gw.url + "/v1/chat/completions", timeout=30,
                              headers={"Origin": APP, **AUTH},
                              json={**CHAT, "messages": [{"role": "user",
                                                          "content": f"mock:hang=1 mock:capture={marker}"}]})
        assert captured(mock_upstream, marker, outcome="pending")[0]["outcome"] == "pending"
        gw.process.proc.send_signal(signal.SIGTERM)
        resp = pending.result()
    assert gw.process.wait_exit(30) == 0
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"]["code"] == "server_shutting_down"
    assert resp.headers[ACAO] == APP
    assert resp.headers["vary"] == "origin"
    assert "x-request-id" in resp.headers["access-control-expose-headers"]


def test_a_service_answer_keeps_only_the_gateways_cors_headers(cors: Gateway) -> None:
    # The service sends "Access-Control-Allow-Origin: *" of its own; two values would make the
    # browser refuse the answer.
    resp = httpx.get(cors.url + "/services/echo/hello?cors=1", headers={"Origin": APP, **AUTH}, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json()["path"] == "/hello"
    assert_allowed(resp)
    assert resp.headers["access-control-expose-headers"].split(", ")[0] == "x-request-id"
    # Without an Origin the service's own headers are relayed as before.
    resp = httpx.get(cors.url + "/services/echo/hello?cors=1", headers=AUTH, timeout=30)
    assert resp.headers[ACAO] == "*"


def test_the_gemini_api_from_a_browser(cors: Gateway) -> None:
    resp = httpx.post(cors.url + "/v1beta/models/gpt-4o-mini:generateContent", timeout=30,
                      headers={"Origin": APP, "x-goog-api-key": MASTER_KEY},
                      json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert resp.status_code == 200, resp.text
    assert_allowed(resp)


def test_any_origin_gets_a_star_without_credentials(anyone: Gateway) -> None:
    resp = httpx.post(anyone.url + "/v1/chat/completions", json=CHAT, headers={"Origin": EVIL, **AUTH},
                      timeout=30)
    assert resp.status_code == 200
    assert resp.headers[ACAO] == "*"
    assert "access-control-allow-credentials" not in resp.headers
    # "*" allows origins, not things that are none.
    resp = preflight(anyone, "/v1/chat/completions", "null")
    assert resp.status_code == 403
    assert preflight(anyone, "/v1/chat/completions", EVIL, headers="x-anything").status_code == 403


# -- off, and the configuration -------------------------------------------------------------------


def test_off_by_default_no_header_and_options_as_before(gateway: Gateway) -> None:
    resp = preflight(gateway, "/v1/chat/completions", APP)
    assert resp.status_code == 405
    assert resp.headers["allow"] == "POST"
    assert cors_headers(resp) == {}
    resp = httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, headers={"Origin": APP, **AUTH},
                      timeout=30)
    assert resp.status_code == 200
    assert cors_headers(resp) == {}
    assert "vary" not in resp.headers


def _check(tmp_path: Path, cors: dict[str, Any]) -> str:
    path = tmp_path / "switchboard.yaml"
    config = {"providers": [{"name": "p", "type": "openai", "api_base": "http://127.0.0.1:9/v1"}],
              "models": [{"name": "m", "provider": "p", "model": "m"}],
              "auth": {"master_key": "sk-test-master-key-123"}, "server": {"cors": cors}}
    path.write_text(yaml.safe_dump(config))
    serve = ["serve", "--config", str(path), "--port", str(free_port())]
    for args in (["config", "check", str(path)], serve):
        proc = spawn(args, inherit=False)
        assert proc.wait_exit(60) == 2, proc.output
        assert "Traceback" not in proc.output
    return proc.output.replace(f"{path}: ", "")


def test_a_bad_configuration_is_refused_at_load(tmp_path: Path) -> None:
    out = _check(tmp_path, {"allow_origins": ["https://chat.corp.example/"], "max_age": 90000,
                            "allow_headers": ["not a name"]})
    assert ("server.cors.allow_origins: 'https://chat.corp.example/' is not an origin: scheme://host[:port] "
            "with no path or trailing slash") in out
    assert "server.cors.max_age: Input should be less than or equal to 86400" in out
    assert "server.cors.allow_headers: 'not a name' is not a header name" in out
    out = _check(tmp_path, {"allow_origins": ["*"], "allow_credentials": True})
    assert "server.cors.allow_credentials: true cannot be combined with allow_origins '*'" in out
    out = _check(tmp_path, {"allow_origins": ["https://a.example"] * 1001})
    assert "server.cors.allow_origins: List should have at most 1000 items" in out
