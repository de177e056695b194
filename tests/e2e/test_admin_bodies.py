"""Admin bodies that are not a JSON object: valid JSON of another kind (``[]``, ``3``, ``null``)
is refused saying the body must be a JSON object, malformed JSON saying it is not valid JSON, an
empty body saying it is empty, a body nested deeper than 128 levels saying so however deep it
is (past the parser's own limit it was FastAPI's bare 400 ``api_error`` with no code, then words
that depended on the Python version), all 400 ``invalid_json`` with no parameter
named (the model API's words and code); a field that should be an object and is not is
``invalid_value`` naming the field, as is a time given as a number (times are RFC 3339 text).
Parsing is the admin app's, whatever the backend: the embedded default suffices."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.servers import MASTER_KEY, Gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}
ROUTES = [("POST", "/admin/v1/keys"), ("PATCH", "/admin/v1/keys/key_0123456789abcdef"),
          ("POST", "/admin/v1/teams"), ("PUT", "/admin/v1/limits"), ("PUT", "/admin/v1/budgets"),
          ("POST", "/admin/v1/providers"), ("POST", "/admin/v1/subscriptions")]


def _send(gw: Gateway, method: str, path: str, raw: bytes) -> dict[str, Any]:
    resp = httpx.request(method, gw.url + path, content=raw, headers=ADMIN, timeout=10)
    assert resp.status_code == 400, resp.text
    error: dict[str, Any] = resp.json()["error"]
    return error


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("raw", [b"[]", b"[1, 2]", b"3", b'"text"', b"null", b"true", b"NaN", b"1e309",
                                 b"100000000000000000000"])
def test_a_body_that_is_not_an_object(gateway: Gateway, method: str, path: str, raw: bytes) -> None:
    assert _send(gateway, method, path, raw) == {
        "message": "the request body must be a JSON object", "type": "invalid_request_error",
        "param": None, "code": "invalid_json"}


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("content_type", ["application/json", None])
def test_an_empty_body_says_so(gateway: Gateway, method: str, path: str, content_type: str | None) -> None:
    """Not pydantic's bare "Field required" with no parameter: what is wrong and what to send."""
    headers = {"Authorization": ADMIN["Authorization"]}
    if content_type is not None:
        headers["content-type"] = content_type
    resp = httpx.request(method, gateway.url + path, headers=headers, timeout=10)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == {
        "message": "the request body is empty; send a JSON object", "type": "invalid_request_error",
        "param": None, "code": "invalid_json"}


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_malformed_json_names_no_parameter(gateway: Gateway, method: str, path: str) -> None:
    error = _send(gateway, method, path, b'{"models": ')
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_json", None)
    assert error["message"].startswith("the request body is not valid JSON")


def test_a_field_that_is_not_an_object_is_an_invalid_value(gateway: Gateway) -> None:
    body = b'{"scope": "tenant", "max_amount": 1, "downgrade": []}'
    error = _send(gateway, "PUT", "/admin/v1/budgets", body)
    assert (error["code"], error["param"]) == ("invalid_value", "downgrade")


@pytest.mark.parametrize(("method", "path"), ROUTES)
# 5,000 levels: past Python's parser on 3.11 and 3.12, not on 3.13; 20,000: past it on each.
@pytest.mark.parametrize("raw", [b"[" * depth + b"]" * depth for depth in (200, 5000, 20000)]
                         + [b'{"models": ["*"], "metadata": ' + b'{"a": ' * depth + b"1" + b"}" * (depth + 1)
                            for depth in (200, 5000, 20000)])
def test_a_body_nested_too_deep_is_invalid_json(gateway: Gateway, method: str, path: str, raw: bytes) -> None:
    """The same words whatever the depth and the Python version (its parser's own limit differs)."""
    assert _send(gateway, method, path, raw) == {
        "message": "the request body nests deeper than 128 levels of arrays and objects",
        "type": "invalid_request_error", "param": None, "code": "invalid_json"}
    assert httpx.get(gateway.url + "/admin/v1/keys", headers=ADMIN, timeout=10).status_code == 200


def _created(gw: Gateway, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = httpx.post(gw.url + path, json=body, headers=ADMIN, timeout=10)
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


@pytest.mark.parametrize("number", [1893456000, 1893456000.5, -62135596800, 253402300799000, 0, True,
                                    "1893456000", "1893456000.5", "-62135596800", "253402300799000", "1e9"])
def test_a_time_is_rfc3339_text_never_a_number(gateway: Gateway, number: Any) -> None:
    """A number was read as a Unix time, in seconds or, past 2e10, in milliseconds:
    ``sunset_at: -62135596800`` (year 1 in seconds) became 1968, ``expires_at: 1893456000`` 2030;
    and so was a number written as a string (``"1893456000"``)."""
    name = f"t{uuid.uuid4().hex[:8]}"
    _created(gateway, "/admin/v1/prompts", {"name": name, "model": "gpt-4o-mini",
                                             "messages": [{"role": "user", "content": "hi"}]})
    _created(gateway, "/admin/v1/apis", {"name": name, "prompt": name})
    key = _created(gateway, "/admin/v1/keys", {"models": ["*"]})["id"]
    for method, path, body, param in [
        ("POST", "/admin/v1/keys", {"models": ["*"], "expires_at": number}, "expires_at"),
        ("PATCH", f"/admin/v1/keys/{key}", {"expires_at": number}, "expires_at"),
        ("POST", "/admin/v1/apis", {"name": f"{name}-2", "prompt": name, "sunset_at": number}, "sunset_at"),
        ("PATCH", f"/admin/v1/apis/{name}", {"sunset_at": number}, "sunset_at"),
    ]:
        error = _send(gateway, method, path, json.dumps(body).encode())
        expected = f"{param}: expected an RFC 3339 time with a zone, e.g. 2026-06-01T00:00:00Z"
        assert error == {"message": expected, "type": "invalid_request_error", "param": param,
                         "code": "invalid_value"}, (path, error)
    # The same time as text is taken.
    later = httpx.patch(f"{gateway.url}/admin/v1/apis/{name}", json={"sunset_at": "2030-01-01T00:00:00Z"},
                        headers=ADMIN, timeout=10)
    assert later.status_code == 200 and later.json()["sunset_at"] == "2030-01-01T00:00:00+00:00", later.text


@pytest.mark.parametrize("number", ["1893456000", "-62135596800", "1e9"])
def test_a_time_in_the_query_string_is_rfc3339_never_a_number(gateway: Gateway, number: str) -> None:
    """The audit log's ``since=1893456000`` read as 2030 and answered an empty page."""
    resp = httpx.get(gateway.url + "/admin/v1/audit", params={"since": number}, headers=ADMIN, timeout=10)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == {
        "message": "since: expected an RFC 3339 time with a zone, e.g. 2026-06-01T00:00:00Z",
        "type": "invalid_request_error", "param": "since", "code": "invalid_value"}
    text = httpx.get(gateway.url + "/admin/v1/audit", params={"since": "2030-01-01T00:00:00Z"}, headers=ADMIN,
                     timeout=10)
    assert text.status_code == 200 and text.json()["data"] == [], text.text


@pytest.mark.parametrize(("method", "path"), [("GET", "/admin/v1/keys/"), ("POST", "/admin/v1/tenants/"),
                                              ("GET", "/admin/v1/budgets/"), ("DELETE", "/admin/v1/limits/")])
def test_a_trailing_slash_is_an_unknown_url_not_a_redirect(gateway: Gateway, method: str, path: str) -> None:
    """It was an empty 307 to the same path without the slash, on whatever host the Host header
    named."""
    resp = httpx.request(method, gateway.url + path, json={}, timeout=10,
                         headers={**ADMIN, "Host": "elsewhere.example"})
    assert resp.status_code == 404, resp.text
    assert "location" not in resp.headers
    assert resp.json()["error"] == {"message": f"unknown request URL: {method} {path}",
                                    "type": "not_found_error", "param": None, "code": "unknown_url"}


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(("encoding", "reason"), [
    ("utf-16", "str is not valid UTF-8"), ("utf-32", "str is not valid UTF-8"),
    ("utf-8-sig", "UTF-8 byte order mark (BOM) is not supported")])
def test_a_body_not_in_utf8_is_invalid_json(gateway: Gateway, method: str, path: str, encoding: str,
                                           reason: str) -> None:
    """Python's parser read UTF-16, UTF-32 and a byte order mark, which the model API refuses."""
    raw = json.dumps({"models": ["*"], "name": "x"}).encode(encoding)
    assert _send(gateway, method, path, raw) == {
        "message": f"the request body is not valid JSON: {reason}", "type": "invalid_request_error",
        "param": None, "code": "invalid_json"}


@pytest.mark.parametrize("field", ["path", "query", "body"])
def test_a_field_named_as_a_request_part_is_named_in_the_error(gateway: Gateway, field: str) -> None:
    """A field called ``path``, ``query`` or ``body`` was left out of ``param`` (the words of a
    validation error's location FastAPI starts with were dropped wherever they came): an unknown
    one was "unknown field" naming nothing, a bad value under one named its parent only."""
    error = _send(gateway, "POST", "/admin/v1/teams", json.dumps({"name": "x", field: 1}).encode())
    assert error == {"message": f"{field}: unknown field", "type": "invalid_request_error",
                     "param": field, "code": "unknown_parameter"}
    error = _send(gateway, "POST", "/admin/v1/keys",
                  json.dumps({"models": ["*"], "metadata": {field: "x" * 1001}}).encode())
    assert (error["param"], error["code"]) == (f"metadata.{field}", "invalid_value"), error
    assert error["message"].startswith(f"metadata.{field}: "), error
    error = _send(gateway, "PATCH", "/admin/v1/services/no-such-service", json.dumps({field: "x"}).encode())
    assert (error["param"], error["code"]) == (field, "unknown_parameter"), error


def test_a_json_body_sent_without_a_content_type_is_read_as_json(gateway: Gateway) -> None:
    """As on the model API (``requests.post(url, data=json.dumps(body))`` sends none): it was
    refused as "the request body must be a JSON object", which it is, or, on an optional body
    (a rotation's grace), the same. A named content type other than JSON is still a 415."""
    auth = {"Authorization": ADMIN["Authorization"]}
    name = f"t{uuid.uuid4().hex[:8]}"
    resp = httpx.post(gateway.url + "/admin/v1/teams", content=json.dumps({"name": name}).encode(),
                      headers=auth, timeout=10)
    assert resp.status_code == 201, resp.text
    assert resp.json()["name"] == name
    key = _created(gateway, "/admin/v1/keys", {"models": ["*"]})["id"]
    resp = httpx.post(f"{gateway.url}/admin/v1/keys/{key}/rotate", content=b'{"grace_seconds": 60}',
                      headers=auth, timeout=10)
    assert resp.status_code == 201, resp.text
    rotated = resp.json()  # the grace asked for, not the default hour
    ends = datetime.fromisoformat(rotated["previous_expires_at"]) - datetime.fromisoformat(
        rotated["created_at"])
    assert timedelta(seconds=59) <= ends <= timedelta(seconds=61), rotated
    # Bad JSON without a content type is still refused in the same words as with one.
    assert _send(gateway, "POST", "/admin/v1/teams", b"[]") == {
        "message": "the request body must be a JSON object", "type": "invalid_request_error",
        "param": None, "code": "invalid_json"}
    resp = httpx.post(gateway.url + "/admin/v1/teams", content=b"[]", headers=auth, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_json", resp.text
    resp = httpx.post(gateway.url + "/admin/v1/teams", content=json.dumps({"name": name}).encode(),
                      headers={**auth, "content-type": "text/plain"}, timeout=10)
    assert resp.status_code == 415 and resp.json()["error"]["code"] == "unsupported_media_type", resp.text


@pytest.mark.parametrize("field", ["url", "openapi_url"])
def test_a_service_url_too_long_is_refused_without_being_echoed(gateway: Gateway, field: str) -> None:
    """A URL of another scheme was quoted whole in the error before its length was looked at:
    3 MB sent, 3 MB answered (on a PATCH twice, with pydantic's "Value error, " before it)."""
    name = f"s{uuid.uuid4().hex[:8]}"
    _created(gateway, "/admin/v1/services", {"name": name, "url": "http://127.0.0.1:9/"})
    long = "ftp://127.0.0.1:9/" + "a" * 3_000_000
    body = {"url": "http://127.0.0.1:9/", field: long}
    for method, path in [("POST", "/admin/v1/services"), ("PATCH", f"/admin/v1/services/{name}")]:
        sent = {**body, "name": f"{name}-2"} if method == "POST" else {field: long}
        error = _send(gateway, method, path, json.dumps(sent).encode())
        assert error == {"message": f"{field}: {'the service URL' if field == 'url' else field} is over 2048 "
                                    "characters", "type": "invalid_request_error", "param": field,
                         "code": "invalid_value"}, (method, str(error)[:300])


def test_a_service_patch_words_its_errors_as_a_registration_does(gateway: Gateway) -> None:
    """A PATCH's errors began "Value error, " (pydantic's words for a check's own), a POST's not."""
    name = f"s{uuid.uuid4().hex[:8]}"
    _created(gateway, "/admin/v1/services", {"name": name, "url": "http://127.0.0.1:9/"})
    posted = _send(gateway, "POST", "/admin/v1/services",
                   json.dumps({"name": f"{name}-2", "url": "ftp://127.0.0.1:9/"}).encode())
    patched = _send(gateway, "PATCH", f"/admin/v1/services/{name}", json.dumps({"url": "ftp://127.0.0.1:9/"}).encode())
    assert patched == posted == {
        "message": "url: must be an http:// or https:// URL with a host, got 'ftp://127.0.0.1:9/'",
        "type": "invalid_request_error", "param": "url", "code": "invalid_value"}


@pytest.mark.parametrize(("path", "body"), [
    ("/admin/v1/keys", {"models": ["*"], "metadata": {"k" * 1_000_000: 1}}),
    ("/admin/v1/teams", {"name": "x", "k" * 1_000_000: 1}),
    ("/admin/v1/mcp/servers",
     {"name": "m", "url": "http://127.0.0.1:9/", "tool_prices": {"k" * 1_000_000: -1}}),
])
def test_a_huge_key_is_not_echoed_whole_in_the_error(gateway: Gateway, path: str,
                                                     body: dict[str, Any]) -> None:
    """The key's name was the error's param and began its message: a 1 MB name sent, 2 MB
    answered (a 4 MiB body, 8 MiB). It is cut, as the names of refused text are (text_input.py)."""
    resp = httpx.post(gateway.url + path, content=json.dumps(body).encode(), headers=ADMIN, timeout=30)
    assert resp.status_code == 400, resp.text[:300]
    assert len(resp.content) < 2000, resp.text[:300]
    error = resp.json()["error"]
    assert error["message"].startswith(error["param"] + ": "), error
    assert error["param"].endswith("k" * 100), error
