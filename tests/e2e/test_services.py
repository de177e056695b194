"""Plain REST services behind the gateway, end to end with httpx (and raw sockets where a client
library would tidy a hostile request): a test service (tests/e2e/service_upstream.py) proxied
under ``/services/{name}/`` with virtual keys, subscriptions, rate limits and the request log;
every way a caller might make the gateway reach another host fails; the size and time bounds
answer 413, 502 and 504 while the gateway keeps serving; services are managed through
``/admin/v1/services``. Every test runs on the embedded default (SQLite, in-process state) and
on a cluster (PostgreSQL and Redis)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import zstandard

from tests import ledger
from tests.e2e.test_metrics import parse, total
from tests.servers import MASTER_KEY, Gateway, Mock, Process, free_port, openai_config, start_gateway
from tests.services import Postgres, RedisServer

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
SERVICE_SECRET = "svc-secret-token-0123456789"
STORED_SECRET = "stored-secret-value-9876543210"
UPSTREAM_SCRIPT = Path(__file__).with_name("service_upstream.py")


@dataclass
class Upstream:
    port: int
    process: Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def seen(self) -> list[dict[str, Any]]:
        resp = httpx.get(f"{self.url}/_seen", timeout=10)
        resp.raise_for_status()
        return list(resp.json())


def start_upstream() -> Upstream:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(UPSTREAM_SCRIPT), str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    process = Process(proc)
    process.wait_for("Uvicorn running on")
    return Upstream(port, process)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = start_upstream()
    yield up
    up.process.stop()


@pytest.fixture(scope="module")
def canary() -> Iterator[Upstream]:
    """Another listener on this host: no request may ever reach it."""
    up = start_upstream()
    yield up
    up.process.stop()


def services_config(mock: Mock, upstream: Upstream) -> dict[str, Any]:
    config = openai_config(mock)
    url = upstream.url
    config["services"] = [
        {"name": "echo", "url": f"{url}/base", "description": "Echoes what it is sent",
         "headers": {"X-Service-Token": SERVICE_SECRET},
         "max_request_bytes": 65536, "max_response_bytes": 100_000,
         "timeout_seconds": {"connect": 2, "total": 1.5}},
        {"name": "limited", "url": url, "rpm": 3},
        {"name": "gated", "url": url, "require_approval": True},
        {"name": "acme-only", "url": url, "tenant": "acme"},
        {"name": "readonly", "url": url, "methods": ["GET"]},
    ]
    # The request log keeps the bodies (and headers) of calls to "echo", its "ssn" fields redacted.
    config["request_log"] = {"bodies": [{"model": "service:echo", "headers": True}],
                             "max_body_bytes": 8192, "redact": {"fields": ["ssn"]}}
    return config


@dataclass
class World:
    kind: str
    gateway: Gateway
    upstream: Upstream
    canary: Upstream
    config: dict[str, Any] = field(default_factory=dict)
    tmp: Path | None = None
    second: Gateway | None = None

    @property
    def url(self) -> str:
        return self.gateway.url

    def peer(self) -> Gateway:
        """Another instance on the same state: on a cluster a second gateway (started once);
        embedded state is one process's, so the same gateway."""
        if self.kind == "embedded":
            return self.gateway
        if self.second is None:
            assert self.tmp is not None
            (self.tmp / "second").mkdir()
            self.second = start_gateway(self.config, self.tmp / "second")
        return self.second

    def key(self, team: str | None = None, tenant: str | None = None, role: str | None = None) -> str:
        body: dict[str, Any] = {"models": ["gpt-4o-mini"]}
        if tenant is not None:
            body["tenant"] = tenant
            ok = httpx.post(f"{self.url}/admin/v1/tenants", json={"id": tenant}, headers=ADMIN, timeout=10)
            assert ok.status_code in (201, 409), ok.text
        if team is not None:
            body["team"] = team
        if role is not None:
            body["role"] = role
        resp = httpx.post(f"{self.url}/admin/v1/keys", json=body, headers=ADMIN, timeout=10)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["key"])

    def call(self, method: str, path: str, key: str | None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def world(request: pytest.FixtureRequest, mock_upstream: Mock, upstream: Upstream, canary: Upstream,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    config = services_config(mock_upstream, upstream)
    if request.param == "cluster":
        postgres: Postgres = request.getfixturevalue("postgres")
        redis: RedisServer = request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"svc_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
    tmp = tmp_path_factory.mktemp(f"services-{request.param}")
    gw = start_gateway(config, tmp)
    # The tenant of the configuration's "acme-only" service, which several tests name: made here,
    # not by whichever of them happens to run first.
    acme = httpx.post(f"{gw.url}/admin/v1/tenants", json={"id": "acme"}, headers=ADMIN, timeout=10)
    assert acme.status_code == 201, acme.text
    world = World(request.param, gw, upstream, canary, config, tmp)
    yield world
    gw.process.stop()
    if world.second is not None:
        world.second.process.stop()


def new_team() -> str:
    return f"team-{uuid.uuid4().hex[:8]}"


def test_methods_query_and_bodies_are_proxied_with_headers_stripped_and_added(world: World) -> None:
    key = world.key(new_team())
    rid = f"svc-{uuid.uuid4().hex}"
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        payload = f'{{"method": "{method}"}}'.encode() if method != "GET" else b""
        resp = world.call(method, "/services/echo/items/42?x=1&y=a%20b", key, content=payload, headers={
            "Cookie": "gateway-session=caller-cookie", "x-api-key": "sk-caller-leak",
            "Connection": "keep-alive, X-Hop", "X-Hop": "hop-value", "X-Custom": "kept",
            "x-request-id": rid, "X-Forwarded-Host": "evil.example", "Content-Type": "application/json",
            "Accept-Encoding": "identity",
        })
        assert resp.status_code == 200, resp.text
        echo = resp.json()
        assert (echo["method"], echo["path"], echo["query"]) == (method, "/base/items/42", "x=1&y=a%20b")
        assert echo["body"] == payload.decode()
        sent = echo["headers"]
        for gone in ("authorization", "cookie", "x-api-key", "x-hop", "x-forwarded-host"):
            assert gone not in sent, (gone, sent)
        assert sent["x-service-token"] == SERVICE_SECRET  # the configured header
        assert sent["x-custom"] == "kept" and sent["x-request-id"] == rid
        assert sent["host"] == f"127.0.0.1:{world.upstream.port}"
        assert sent["accept-encoding"] == "identity"  # the caller's own, not the gateway's
        # The service's answer: its own headers, less cookies; the gateway's request id.
        assert resp.headers["x-upstream"] == "echo" and "set-cookie" not in resp.headers
        assert resp.headers["x-request-id"] == rid
        assert SERVICE_SECRET not in resp.headers.get("x-service-token", "")
    # A repeated header reaches the service with every value in order; a configured header
    # replaces whatever the caller sent under its name.
    repeated = httpx.get(f"{world.url}/services/echo/multi", timeout=30, headers=[
        ("Authorization", f"Bearer {key}"), ("X-Multi", "a"), ("X-Service-Token", "forged"), ("X-Multi", "b"),
        ("Accept", "text/plain"), ("Accept", "application/json")])
    assert repeated.status_code == 200, repeated.text
    sent_list = repeated.json()["header_list"]
    assert [v for k, v in sent_list if k == "x-multi"] == ["a", "b"]
    assert [v for k, v in sent_list if k == "accept"] == ["text/plain", "application/json"]
    assert [v for k, v in sent_list if k == "x-service-token"] == [SERVICE_SECRET]
    head = world.call("HEAD", "/services/echo/items/42", key)
    assert head.status_code == 200 and head.content == b""
    big_head = world.call("HEAD", "/services/echo/big?bytes=500000", key)  # no body: no size bound
    assert big_head.status_code == 200 and big_head.headers["content-length"] == "500000"
    # A body streamed in pieces (chunked) arrives whole.
    pieces = [bytes([65 + i % 26]) * 10_000 for i in range(6)]
    streamed = world.call("POST", "/services/echo/upload", key, content=iter(pieces))
    assert streamed.status_code == 200, streamed.text
    whole = b"".join(pieces)
    assert streamed.json()["body_bytes"] == len(whole)
    assert streamed.json()["body_sha256"] == hashlib.sha256(whole).hexdigest()
    # The service's own statuses are relayed as they are.
    missing = world.call("GET", "/services/echo/nothing?status=404", key)
    assert missing.status_code == 404 and missing.json()["path"] == "/base/nothing"
    # A method the service does not take: 405, the service never asked.
    assert world.call("POST", "/services/readonly/x", key, content=b"{}").status_code == 405
    assert world.call("GET", "/services/readonly/x", key).status_code == 200


def test_the_callers_key_never_reaches_the_service_whichever_header_carried_it(world: World) -> None:
    """The gateway reads a caller's key from Authorization, x-api-key or x-goog-api-key: the
    service sees none of them, the one that authenticated the call included."""
    key = world.key(new_team())
    for header in ("x-api-key", "x-goog-api-key"):
        resp = httpx.get(f"{world.url}/services/echo/hello", headers={header: key}, timeout=30)
        assert resp.status_code == 200, resp.text
        sent = resp.json()["headers"]
        assert not {"authorization", "x-api-key", "x-goog-api-key"} & set(sent), (header, sent)
        assert key not in resp.text
    # Sent beside Authorization, the other key headers are dropped too.
    resp = world.call("GET", "/services/echo/hello", key, headers={"x-goog-api-key": "sk-caller-leak"})
    assert resp.status_code == 200 and "sk-caller-leak" not in resp.text, resp.text


def test_the_callers_own_provider_credential_never_reaches_the_service(world: World) -> None:
    """The header carrying a caller's own provider credential (auth.caller_credentials.header,
    x-provider-authorization by default) is for the gateway's provider calls: a service never
    sees it, whatever its case."""
    key = world.key(new_team())
    for header in ("x-provider-authorization", "X-Provider-Authorization"):
        resp = world.call("GET", "/services/echo/hello", key,
                          headers={header: "Bearer sk-provider-own-0123456789", "x-kept": "yes"})
        assert resp.status_code == 200, resp.text
        sent = resp.json()["headers"]
        assert sent["x-kept"] == "yes" and "x-provider-authorization" not in sent, sent
        assert "sk-provider-own" not in resp.text


def test_headers_that_could_reroute_or_remethod_a_call_never_reach_the_service(world: World) -> None:
    """Every X-Forwarded-* header (as documented, not only the four best known), the headers some
    frameworks take as the request's real path or method (which would reach a path or a method
    the gateway never checked: a GET-only service deleting), and every header named in any of
    several Connection lines are dropped."""
    key = world.key(new_team())
    dropped = {"x-forwarded-prefix": "/admin", "x-forwarded-server": "evil.example",
               "x-forwarded-uri": "/admin/users", "x-forwarded-scheme": "https", "x-forwarded-ssl": "on",
               "x-original-url": "/admin/users", "x-rewrite-url": "/admin/users",
               "x-http-method-override": "DELETE", "x-http-method": "DELETE", "x-method-override": "DELETE",
               "x-hop-one": "1", "x-hop-two": "2"}
    resp = httpx.get(f"{world.url}/services/readonly/orders/1", timeout=30, headers=[
        ("Authorization", f"Bearer {key}"), ("Connection", "x-hop-one"), ("Connection", "X-Hop-Two"),
        ("X-Kept", "yes"), *dropped.items()])
    assert resp.status_code == 200, resp.text
    sent = resp.json()["headers"]
    assert sent["x-kept"] == "yes"
    assert not set(dropped) & set(sent), sorted(set(dropped) & set(sent))


def test_a_body_sent_without_a_content_type_reaches_the_service_without_one(world: World) -> None:
    """The gateway adds no Content-Type the caller did not send (the HTTP client's default
    ``application/octet-stream`` would tell the service something the caller never said)."""
    key = world.key(new_team())
    for method in ("POST", "PUT", "PATCH"):
        resp = world.call(method, "/services/echo/raw", key, content=b"plain bytes")
        assert resp.status_code == 200, resp.text
        assert resp.json()["body"] == "plain bytes" and "content-type" not in resp.json()["headers"], method
        typed = world.call(method, "/services/echo/raw", key, content=b"a=1",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert typed.json()["headers"]["content-type"] == "application/x-www-form-urlencoded"


def test_a_service_error_echoing_its_credential_is_scrubbed_for_caller_and_log(world: World) -> None:
    """A service answering an error with what it was sent (as "Incorrect API key provided: ..."
    answers do) gets its configured credential replaced by [redacted], in the answer and in the
    request log's copy; a success is relayed byte for byte."""
    key = world.key(new_team())
    rid = f"svc-echoed-{uuid.uuid4().hex}"
    denied = world.call("POST", "/services/echo/login?status=401", key, content=b'{"n": 1}',
                        headers={"x-request-id": rid, "Content-Type": "application/json"})
    assert denied.status_code == 401, denied.text
    assert SERVICE_SECRET not in denied.text and SERVICE_SECRET[:14] not in denied.text
    echoed = denied.json()  # still the service's JSON, its length declared for the new body
    assert echoed["headers"]["x-service-token"] == "[redacted]" and echoed["path"] == "/base/login"
    assert denied.headers["content-length"] == str(len(denied.content))
    assert denied.headers["x-upstream"] == "echo" and "set-cookie" not in denied.headers
    record = _logged(world, rid, bodies=True)
    assert record["status"] == 401 and SERVICE_SECRET not in json.dumps(record)
    assert "/base/login" in str(record["response"])
    failing = world.call("GET", "/services/echo/x?status=503", key)
    assert failing.status_code == 503 and SERVICE_SECRET not in failing.text
    # A service without credentials among its headers: its errors are relayed as they came.
    plain = world.call("GET", "/services/limited/x?status=400", key)
    assert plain.status_code == 400 and plain.json()["path"] == "/x"
    ok = world.call("GET", "/services/echo/x", key)  # a success is the service's own business
    assert ok.status_code == 200 and ok.json()["headers"]["x-service-token"] == SERVICE_SECRET


# The limit a scrubbed error body is cut to for "echo": its max_response_bytes (under 1 MiB).
ECHO_MAX_RESPONSE = 100_000


@pytest.mark.parametrize("query", ["gzip=1", "encoding=zstd"])
def test_a_gzip_or_zstd_service_error_is_decompressed_scrubbed_and_bounded(world: World, query: str) -> None:
    """A compressed error body is decompressed to be scrubbed and relayed so (no Content-Encoding
    left), zstd like gzip; one decompressing to far more than the bound (a small bomb) is cut at
    it, scrubbed, never decompressed whole."""
    key = world.key(new_team())
    accept = {"Accept-Encoding": "gzip, zstd"}
    packed = world.call("GET", f"/services/echo/x?status=403&{query}", key, headers=accept)
    assert packed.status_code == 403 and "content-encoding" not in packed.headers, packed.headers
    assert packed.json()["headers"]["x-service-token"] == "[redacted]" and SERVICE_SECRET not in packed.text
    assert packed.headers["content-length"] == str(len(packed.content))
    padded = world.call("GET", f"/services/echo/x?status=403&{query}&pad={1 << 20}", key, headers=accept)
    assert padded.status_code == 403 and "content-encoding" not in padded.headers, padded.headers
    # Cut at the bound, then scrubbed (shorter by what "[redacted]" saves on the secret).
    assert ECHO_MAX_RESPONSE - 1000 < len(padded.content) <= ECHO_MAX_RESPONSE, len(padded.content)
    assert padded.headers["content-length"] == str(len(padded.content))
    assert b'"x-service-token": "[redacted]"' in padded.content and SERVICE_SECRET not in padded.text


def _readable(content: bytes) -> bytes:
    """``content`` and, where it is gzip or zstd data, what it decompresses to (what a client
    decoding it reads)."""
    if content[:2] == b"\x1f\x8b":
        return content + gzip.decompress(content)
    if content[:4] == b"\x28\xb5\x2f\xfd":  # a zstd frame's magic number
        return content + zstandard.ZstdDecompressor().decompressobj().decompress(content)
    return content


@pytest.mark.parametrize("encoding", ["br", "gzip, br", "zstd"])
def test_a_service_error_the_gateway_cannot_decode_is_withheld(world: World, encoding: str) -> None:
    """An error body in an encoding the gateway cannot read (br), or a zstd frame it refuses to
    decode (one asking for a 16 MiB window, over RFC 9659's 8 MiB), could echo the service's
    credential where scrubbing cannot see it: it is replaced by a generic error, the service's
    status kept, for the caller and in the request log."""
    key = world.key(new_team())
    rid = f"svc-withheld-{uuid.uuid4().hex}"
    query = f"encoding={quote(encoding)}" + ("&window_log=24" if encoding == "zstd" else "")
    denied = world.call("GET", f"/services/echo/x?status=401&{query}", key,
                        headers={"x-request-id": rid, "Accept-Encoding": "br, zstd, gzip"})
    assert denied.status_code == 401, denied.text
    assert "content-encoding" not in denied.headers and denied.headers["content-type"] == "application/json"
    assert denied.headers["content-length"] == str(len(denied.content))
    error = denied.json()["error"]
    assert error["code"] == "service_error_withheld" and "'echo'" in error["message"], error
    assert SERVICE_SECRET.encode() not in _readable(denied.content)
    assert denied.headers["x-upstream"] == "echo"  # the service's other headers still come through
    record = _logged(world, rid, bodies=True)
    assert record["status"] == 401 and SERVICE_SECRET not in json.dumps(record)
    assert "service_error_withheld" in str(record["response"])
    # A success in such an encoding is the service's own business: relayed as it came.
    with httpx.stream("GET", f"{world.url}/services/echo/x?{query}",
                      headers={"Authorization": f"Bearer {key}"}, timeout=30) as ok:
        relayed = b"".join(ok.iter_raw())  # as it came (httpx would decode a coding it knows: zstd)
    assert ok.status_code == 200 and ok.headers["content-encoding"] == encoding
    assert SERVICE_SECRET.encode() in _readable(relayed)


def test_a_streamed_response_is_relayed_as_it_arrives(world: World) -> None:
    key = world.key(new_team())
    began = time.monotonic()
    arrivals: list[float] = []
    with httpx.stream("GET", f"{world.url}/services/echo/stream?n=5&delay=0.2",
                      headers={"Authorization": f"Bearer {key}"}, timeout=30) as resp:
        assert resp.status_code == 200
        lines = []
        for line in resp.iter_lines():
            arrivals.append(time.monotonic() - began)
            lines.append(line)
    assert lines == [f"line {i}" for i in range(5)]
    # The first line came long before the last: nothing was held back until the end.
    assert arrivals[-1] - arrivals[0] >= 0.5
    # A client that leaves mid-stream stops the relay; the log says so.
    rid = f"svc-gone-{uuid.uuid4().hex}"
    with httpx.stream("GET", f"{world.url}/services/echo/stream?n=100&delay=0.1", timeout=30,
                      headers={"Authorization": f"Bearer {key}", "x-request-id": rid}) as resp:
        assert next(resp.iter_lines()) == "line 0"
    record = _logged(world, rid)
    assert record["metadata"].get("client_disconnected") is True and record["latency_ms"] < 5000


def test_keys_tenants_and_unknown_services(world: World) -> None:
    no_key = world.call("GET", "/services/echo/x", None)
    assert no_key.status_code == 401
    assert world.call("GET", "/services/echo/x", "sk-not-a-key").status_code == 401
    key = world.key(new_team())
    unknown = world.call("GET", "/services/nope/x", key)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "service_not_found"
    # Another tenant's service does not exist for this tenant's keys; it does for that tenant's.
    assert world.call("GET", "/services/acme-only/x", key).status_code == 404
    acme = world.key(new_team(), tenant="acme")
    assert world.call("GET", "/services/acme-only/x", acme).status_code == 200
    # The master key is a platform admin of the default tenant.
    assert world.call("GET", "/services/echo/x", MASTER_KEY).status_code == 200


def test_a_service_that_needs_approval_serves_a_team_once_approved(world: World) -> None:
    team = new_team()
    key = world.key(team)
    refused = world.call("GET", "/services/gated/x", key)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "subscription_required"
    assert refused.json()["error"]["param"] is None  # the service is named in the path, not a parameter
    asked = httpx.post(f"{world.url}/admin/v1/subscriptions", json={"service": "gated"},
                       headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert asked.status_code == 201, asked.text
    assert asked.json()["model"] == "service:gated" and asked.json()["status"] == "pending"
    pending = world.call("GET", "/services/gated/x", key)
    assert pending.status_code == 403 and pending.json()["error"]["code"] == "subscription_pending"
    approved = httpx.post(f"{world.url}/admin/v1/subscriptions/{asked.json()['id']}/approve", headers=ADMIN,
                          timeout=10)
    assert approved.status_code == 200, approved.text
    assert world.call("GET", "/services/gated/x", key).status_code == 200
    # Another team is still refused; a service that needs no approval cannot be subscribed to.
    assert world.call("GET", "/services/gated/x", world.key(new_team())).status_code == 403
    needless = httpx.post(f"{world.url}/admin/v1/subscriptions", json={"service": "echo"},
                          headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert needless.status_code == 400 and needless.json()["error"]["code"] == "approval_not_required"
    nothing = httpx.post(f"{world.url}/admin/v1/subscriptions", json={"service": "acme-only"},
                         headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert nothing.status_code == 400 and nothing.json()["error"]["code"] == "service_not_found"


def test_the_services_rate_limit_per_key(world: World) -> None:
    key = world.key(new_team())
    before = parse(httpx.get(f"{world.url}/metrics", headers=ADMIN, timeout=10).text)
    for i in range(3):
        resp = world.call("GET", f"/services/limited/n{i}", key)
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-ratelimit-limit-requests"] == "3"
    probe = f"again-{uuid.uuid4().hex}"
    refused = world.call("GET", f"/services/limited/{probe}", key)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.headers["x-ratelimit-scope"] == "service"
    assert int(refused.headers["retry-after"]) >= 1
    assert not [r for r in world.upstream.seen() if probe in r["path"]]  # never sent on
    # Counted by its scope, as the refusal names it (counted as it went by, before its answer).
    after = parse(httpx.get(f"{world.url}/metrics", headers=ADMIN, timeout=10).text)
    refusals = "switchboard_rate_limit_rejections_total"
    assert total(after, refusals, scope="service") - total(before, refusals, scope="service") == 1
    # The limit is per key: another key still gets through.
    other = world.call("GET", "/services/limited/other?ratelimit=1", world.key(new_team()))
    assert other.status_code == 200
    # A service's own headers under the names the gateway answers its limits with do not
    # travel beside the gateway's: the caller reads one value, the gateway's.
    assert other.headers.get_list("x-ratelimit-limit-requests") == ["3"]
    assert other.headers.get_list("x-ratelimit-remaining-requests") == ["2"]
    assert "x-ratelimit-scope" not in other.headers  # the service's own; the gateway's is on a 429


def test_the_services_rate_limit_is_the_key_lineages_across_a_rotation(world: World) -> None:
    """A rotated key carries on its predecessor's window (the key's rate-limit windows are held
    under its lineage): during the grace period the two keys share the service's rpm."""
    issued = httpx.post(f"{world.url}/admin/v1/keys", json={"models": ["gpt-4o-mini"], "team": new_team()},
                        headers=ADMIN, timeout=10)
    assert issued.status_code == 201, issued.text
    old = issued.json()["key"]
    for i in range(2):
        assert world.call("GET", f"/services/limited/r{i}", old).status_code == 200
    rotate = f"{world.url}/admin/v1/keys/{issued.json()['id']}/rotate"
    rotated = httpx.post(rotate, json={"grace_seconds": 600}, headers=ADMIN, timeout=10)
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()["key"]
    third = world.call("GET", "/services/limited/r2", new)
    assert third.status_code == 200, third.text
    assert third.headers["x-ratelimit-remaining-requests"] == "0"
    for key in (new, old):
        refused = world.call("GET", "/services/limited/r3", key)
        assert refused.status_code == 429, refused.text
        assert refused.headers["x-ratelimit-scope"] == "service"


def test_a_services_own_429_keeps_its_own_limit_headers(world: World) -> None:
    """A 429 the service itself sends, with limit headers of its own: they describe the limit that
    refused, and reach the caller as sent, none of the gateway's beside or in place of them. A
    429 of the service's without any gets the gateway's, as any other answer does."""
    key = world.key(new_team())
    refused = world.call("GET", "/services/limited/own?status=429&ratelimit=1", key)
    assert refused.status_code == 429 and refused.json()["path"] == "/own", refused.text
    assert {name: refused.headers.get_list(name) for name in (
        "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
        "x-ratelimit-scope", "retry-after")} == {
        "x-ratelimit-limit-requests": ["1000"], "x-ratelimit-remaining-requests": ["999"],
        "x-ratelimit-reset-requests": ["30s"], "x-ratelimit-scope": ["upstream-own"], "retry-after": ["30"]}
    bare = world.call("GET", "/services/limited/bare?status=429", key)
    assert bare.status_code == 429 and bare.json()["path"] == "/bare", bare.text
    assert bare.headers.get_list("x-ratelimit-limit-requests") == ["3"]
    assert bare.headers.get_list("x-ratelimit-remaining-requests") == ["1"]


def _logged(world: World, request_id: str, timeout: float = 20.0, *, bodies: bool = False) -> dict[str, Any]:
    """The request's record once the ledger has it (and its bodies, when ``bodies``)."""
    deadline = time.monotonic() + timeout
    while True:
        resp = httpx.get(f"{world.url}/admin/v1/logs", params={"request_id": request_id}, headers=ADMIN,
                         timeout=30)
        assert resp.status_code == 200, resp.text
        if resp.json()["data"] and (not bodies or resp.json()["data"][0].get("response") is not None):
            return dict(resp.json()["data"][0])
        assert time.monotonic() < deadline, f"{request_id} never reached the request log"
        time.sleep(0.1)


def test_a_redacted_field_is_never_logged_from_a_json_body_the_log_cannot_read_whole(world: World) -> None:
    """A service's body is collected only up to ``max_body_bytes``: a JSON body past it is cut
    before it can be parsed, so its fields cannot be found; nor in JSON led by a byte order mark.
    A redacted field's value is never stored from them: a body cut is kept out whole, one with a
    mark is read as the JSON it is."""
    key = world.key(new_team())
    ssn = f"ssn-{uuid.uuid4().hex[:12]}"
    cut_rid, bom_rid = (f"svc-redact-{uuid.uuid4().hex}" for _ in range(2))
    big = json.dumps({"ssn": ssn, "notes": "n" * 20_000}).encode()
    for rid, body in ((cut_rid, big), (bom_rid, b"\xef\xbb\xbf" + json.dumps({"ssn": ssn, "n": 1}).encode())):
        sent = world.call("POST", "/services/echo/accounts", key, content=body,
                          headers={"x-request-id": rid, "Content-Type": "application/json"})
        assert sent.status_code == 200, sent.text
    cut = _logged(world, cut_rid, bodies=True)
    assert ssn not in json.dumps(cut) and cut["request"] == "[REDACTED]" and cut["truncated"] is True
    assert "/base/accounts" in str(cut["response"])  # the echo, short and whole: read as JSON
    marked = _logged(world, bom_rid, bodies=True)
    assert json.loads(marked["request"]) == {"ssn": "[REDACTED]", "n": 1}


def test_every_call_is_in_the_request_log_and_the_usage_report(world: World) -> None:
    team = new_team()
    key = world.key(team)
    rid = f"svc-log-{uuid.uuid4().hex}"
    # A caller's own provider credential (auth.caller_credentials.header) is a credential too.
    own = f"sk-caller-own-{uuid.uuid4().hex}"
    assert world.call("POST", "/services/echo/orders", key, content=b'{"n": 1}',
                      headers={"x-request-id": rid, "Content-Type": "application/json",
                               "x-provider-authorization": own}).status_code == 200
    record = _logged(world, rid, bodies=True)
    # The bodies, as the request-log policy keeps them: never a credential.
    assert "1" in str(record["request"]) and "/base/orders" in str(record["response"])
    assert key not in str(record)  # the caller's key: neither forwarded nor logged
    assert record["request_headers"]["content-type"] == "application/json"
    assert record["request_headers"]["x-provider-authorization"] == "[REDACTED]"
    assert own not in str(record["request_headers"])
    assert record["model"] == "service:echo" and record["status"] == 200
    assert record["metadata"]["operation"] == "service"
    assert record["prompt_tokens"] == 0 and record["completion_tokens"] == 0
    assert record["team"] == team and record["provider"] == "service"
    failed = f"svc-log-{uuid.uuid4().hex}"
    slow = world.call("GET", "/services/echo/slow?seconds=3", key, headers={"x-request-id": failed})
    assert slow.status_code == 504
    timed_out = _logged(world, failed, bodies=True)  # the failed call with its body, joined
    assert timed_out["status"] == 504 and "error" in str(timed_out["response"])
    # The id joining a record and its body is made only for a call whose body is kept.
    unkept = f"svc-log-{uuid.uuid4().hex}"
    assert world.call("GET", "/services/readonly/x", key, headers={"x-request-id": unkept}).status_code == 200
    assert world.tmp is not None
    records = ledger.wait_for(ledger.database_of(world.config, world.tmp), {rid, failed, unkept})
    assert records[unkept].log_id is None and records[rid].log_id is not None
    report = httpx.get(f"{world.url}/admin/v1/usage", params={"group_by": "model"}, headers=ADMIN, timeout=30)
    assert report.status_code == 200, report.text
    assert "service:echo" in report.text
    # Metrics, as for every endpoint: the operation is "service" (flushed every few seconds).
    deadline = time.monotonic() + 20
    metrics = f"{world.url}/metrics"
    while 'operation="service"' not in (text := httpx.get(metrics, headers=ADMIN, timeout=10).text):
        assert time.monotonic() < deadline, text[-2000:]
        time.sleep(0.2)


def _raw(port: int, target: str, host: str | None = None) -> int:
    """The status of one request sent byte for byte (no client library to normalise it)."""
    return _raw_reply(port, target, host)[0]


def _raw_reply(port: int, target: str, host: str | None = None) -> tuple[int, bytes]:
    """(status, body) of one request sent byte for byte, with no header but Host, the key and
    Connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        request = (f"GET {target} HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\n"
                   f"Authorization: Bearer {MASTER_KEY}\r\nConnection: close\r\n\r\n")
        sock.sendall(request.encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_the_catalog_documents_each_services_methods_and_a_generated_client_reaches_its_paths(
        world: World) -> None:
    key = world.key(new_team())
    resp = world.call("GET", "/admin/v1/catalog/openapi.json", key)
    assert resp.status_code == 200, resp.text
    paths = resp.json()["paths"]
    # Only the methods the service takes are documented; all seven by default.
    assert set(paths["/services/readonly/{path}"]) == {"get"}
    assert set(paths["/services/echo/{path}"]) == {"get", "head", "post", "put", "patch", "delete", "options"}
    catalog = world.call("GET", "/admin/v1/catalog", key, params={"kind": "service"}).json()["data"]
    assert {e["name"]: e["methods"] for e in catalog}["readonly"] == ["GET"]
    # An undocumented method is the 405 it always was.
    assert world.call("POST", "/services/readonly/x", key).status_code == 405
    # A client generated from the document fills {path} as one parameter, its slashes encoded;
    # the service sees a plain multi-segment path under its base path.
    for template, method in (("/services/echo/{path}", "post"), ("/services/readonly/{path}", "get")):
        operation = paths[template][method]
        assert [p["name"] for p in operation["parameters"]] == ["path"]
        target = template.replace("{path}", quote("v2/orders/42", safe=""))
        assert "%2F" in target
        answer = world.call(method.upper(), f"{target}?expand=items", key)
        assert answer.status_code == 200, answer.text
        echo = answer.json()
        base = "/base" if template.startswith("/services/echo") else ""
        assert (echo["path"], echo["raw_path"], echo["query"]) == (
            f"{base}/v2/orders/42", f"{base}/v2/orders/42", "expand=items")


def test_no_caller_can_make_the_gateway_reach_another_host(world: World) -> None:
    canary = f"127.0.0.1:{world.canary.port}"
    rejected = [
        "/services/echo/../_seen", "/services/echo/../../x", "/services/echo/%2e%2e/%2e%2e/x",
        "/services/echo/%2E%2E/x", "/services/echo/.%2e/x", "/services/echo/%252e%252e/x",
        "/services/echo/./x", "/services/echo/..;/x", f"/services/echo//{canary}/x",
        f"/services/echo/%2f%2f{canary}/x", f"/services/echo/..%2f{canary}", "/services/echo/a%252fb",
        # An encoded slash is a slash, and checked as one.
        "/services/echo/a%2F..%2F..%2F_seen", f"/services/echo/x%2F%2e%2e%2F%2e%2e%2F{canary}",
        f"/services/echo/%2F%2F{canary}/x", "/services/echo/a%2F%2Fb",
        "/services/echo/..\\..\\x", f"/services/echo/%5c%5c{canary}/x", "/services/echo/x%00y",
        "/services/echo/%250a", "/services/ech%6f/x", f"/services/echo%2f..%2f{canary}/x",
        "/services/../admin/v1/keys", f"/services//{canary}/x",
    ]
    before = len(world.upstream.seen())
    for target in rejected:
        status = _raw(world.gateway.port, target)
        assert status in (400, 404), (target, status)
    assert len(world.upstream.seen()) == before, "a rejected path reached the service"
    # Accepted, but only ever at the service's own host and under its base path.
    harmless = [
        (f"/services/echo/@{canary}/x", None), (f"/services/echo/x?next=http://{canary}/", None),
        (f"http://{canary}/services/echo/absolute", canary), ("/services/echo/hosted", canary),
        (f"/services/echo/redirect?to=http://{canary}/stolen", None),
    ]
    for target, host in harmless:
        status = _raw(world.gateway.port, target, host)
        assert status in (200, 302), (target, status)
    seen = world.upstream.seen()[before:]
    assert len(seen) == len(harmless)
    for request in seen:
        assert request["path"].startswith("/base/"), request
        assert request["host"] == f"127.0.0.1:{world.upstream.port}", request
    assert world.canary.seen() == [], "another listener was contacted"
    # Nothing the caller did not send is added: no Accept-Encoding (bodies are relayed as they are).
    status, body = _raw_reply(world.gateway.port, "/services/echo/plain")
    assert status == 200 and "accept-encoding" not in json.loads(body)["headers"]


def test_an_encoded_services_prefix_names_no_service(world: World) -> None:
    """The route is chosen on the decoded path; the service's name is read from the path as sent.
    A prefix sent encoded (``/%73ervices/echo/x`` or ``/services%2Fecho/x``, both
    ``/services/echo/x`` decoded) is no service's: it must not be read at the wrong offset as the
    call of another service (here ``s`` and ``2Fecho``, registered to be hit)."""
    for name in ("s", "2Fecho"):
        created = httpx.post(f"{world.url}/admin/v1/services", headers=ADMIN, timeout=10,
                             json={"name": name, "url": f"{world.upstream.url}/other"})
        assert created.status_code in (201, 409), created.text
    before = len(world.upstream.seen())
    for target in ("/%73ervices/echo/x", "/services%2Fecho/x", "/%73ervices/s/x"):
        status, body = _raw_reply(world.gateway.port, target)
        assert (status, json.loads(body)["error"]["code"]) == (404, "service_not_found"), (target, body)
    assert world.upstream.seen()[before:] == []
    assert _raw(world.gateway.port, "/services/s/x") == 200  # the service is there, by its own path


def test_a_websocket_upgrade_is_refused_clearly(world: World) -> None:
    """The gateway relays HTTP exchanges only: an upgrade to a WebSocket is answered with an
    OpenAI-shaped error, the service never asked."""
    before = len(world.upstream.seen())
    with socket.create_connection(("127.0.0.1", world.gateway.port), timeout=10) as sock:
        sock.sendall((f"GET /services/echo/ws HTTP/1.1\r\nHost: 127.0.0.1:{world.gateway.port}\r\n"
                      f"Authorization: Bearer {MASTER_KEY}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                      ).encode())
        data = b""
        while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), data
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(body) < length and (chunk := sock.recv(65536)):
            body += chunk
    assert json.loads(body)["error"]["code"] == "websocket_not_supported", body
    assert world.upstream.seen()[before:] == []


def test_a_redirect_to_the_services_own_url_names_the_gateways_path_for_it(world: World) -> None:
    """A redirect is relayed, not followed; when its target is one of the service's own URLs
    under its base path (absolute, scheme-relative or path-absolute), the caller gets the
    gateway's path for it rather than the service's internal address. Other targets are left
    as they are."""
    key = world.key(new_team())
    own = f"127.0.0.1:{world.upstream.port}"
    cases = {
        f"http://{own}/base/login?next=%2Fx": "/services/echo/login?next=%2Fx",
        f"HTTP://{own}/base": "/services/echo", f"//{own}/base/y": "/services/echo/y",
        "/base/z#frag": "/services/echo/z#frag",
        f"http://{own}/other": f"http://{own}/other", f"http://{own}/basement": f"http://{own}/basement",
        f"https://{own}/base/x": f"https://{own}/base/x", "/other": "/other", "relative": "relative",
        f"http://127.0.0.1:{world.canary.port}/base/x": f"http://127.0.0.1:{world.canary.port}/base/x",
        f"http://127.0.0.10:{world.upstream.port}/base/x": f"http://127.0.0.10:{world.upstream.port}/base/x",
    }
    for target, expected in cases.items():
        resp = world.call("GET", f"/services/echo/redirect?to={quote(target, safe='')}", key)
        assert resp.status_code == 302, resp.text
        assert resp.headers["location"] == expected, (target, resp.headers["location"])


def test_size_and_time_bounds_and_the_gateway_keeps_serving(world: World) -> None:
    key = world.key(new_team())
    big = world.call("POST", "/services/echo/upload", key, content=b"x" * 70_000)
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    # Chunked, no declared length: refused once it grows past the limit.
    chunked = world.call("POST", "/services/echo/upload", key, content=iter([b"y" * 30_000] * 4))
    assert chunked.status_code == 413, chunked.text
    slow = world.call("GET", "/services/echo/slow?seconds=3", key)
    assert slow.status_code == 504 and slow.json()["error"]["code"] == "upstream_timeout"
    large = world.call("GET", "/services/echo/big?bytes=200000", key)
    assert large.status_code == 502 and large.json()["error"]["code"] == "upstream_response_too_large"
    fits = world.call("GET", "/services/echo/big?bytes=90000", key)
    assert fits.status_code == 200 and len(fits.content) == 90_000
    # A body with no declared length is cut at the limit: the client never gets it whole.
    try:
        cut = world.call("GET", "/services/echo/bigchunked?bytes=300000", key)
        assert len(cut.content) <= 100_000 + 65536
    except httpx.HTTPError:
        pass
    for _ in range(3):
        assert world.call("GET", "/services/echo/still", key).status_code == 200
    assert httpx.get(f"{world.url}/health/ready", timeout=10).status_code == 200
    assert "Traceback" not in world.gateway.process.output


def test_services_managed_through_the_admin_api(world: World) -> None:
    name = f"stored-{uuid.uuid4().hex[:6]}"
    body = {"name": name, "url": f"{world.upstream.url}/api", "description": "Stored",
            "headers": {"X-Stored-Token": STORED_SECRET}, "rpm": 100}
    created = httpx.post(f"{world.url}/admin/v1/services", json=body, headers=ADMIN, timeout=10)
    assert created.status_code == 201, created.text
    shown = created.json()
    assert (shown["name"], shown["origin"], shown["tenant"], shown["headers"]) == (
        name, "admin", "default", ["X-Stored-Token"])
    again = httpx.post(f"{world.url}/admin/v1/services", json=body, headers=ADMIN, timeout=10)
    assert again.status_code == 409
    listed = httpx.get(f"{world.url}/admin/v1/services", headers=ADMIN, timeout=10)
    assert listed.status_code == 200
    names = {s["name"]: s for s in listed.json()["data"]}
    assert name in names and names["echo"]["origin"] == "config" and "acme-only" not in names
    assert STORED_SECRET not in listed.text and SERVICE_SECRET not in listed.text
    key = world.key(new_team())
    called = world.call("GET", f"/services/{name}/things", key)
    assert called.status_code == 200, called.text
    assert called.json()["path"] == "/api/things"
    assert called.json()["headers"]["x-stored-token"] == STORED_SECRET
    patched = httpx.patch(f"{world.url}/admin/v1/services/{name}", headers=ADMIN, timeout=10,
                          json={"headers": {"X-Stored-Token": None, "X-Other": "v2"}, "methods": ["GET"]})
    assert patched.status_code == 200, patched.text
    assert patched.json()["headers"] == ["X-Other"] and patched.json()["methods"] == ["GET"]
    after = world.call("GET", f"/services/{name}/things", key)
    assert after.json()["headers"].get("x-other") == "v2" and "x-stored-token" not in after.json()["headers"]
    assert world.call("POST", f"/services/{name}/things", key).status_code == 405
    got = httpx.get(f"{world.url}/admin/v1/services/{name}", headers=ADMIN, timeout=10)
    assert got.status_code == 200 and got.json()["rpm"] == 100
    # Audited.
    audit = httpx.get(f"{world.url}/admin/v1/audit", params={"resource_id": name}, headers=ADMIN, timeout=10)
    assert {e["action"] for e in audit.json()["data"]} >= {"service.create", "service.update"}
    # Another tenant's service: invisible to this tenant's keys and admins. A tenant other than
    # the default one reaches public addresses only (egress): an internal literal is refused at
    # once, a name that resolves inward when it is called, before anything is sent.
    refused = httpx.post(f"{world.url}/admin/v1/services", json={**body, "name": name, "tenant": "acme"},
                         headers=ADMIN, timeout=10)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "upstream_address_refused"
    inward = {**body, "name": name, "tenant": "acme", "url": body["url"].replace("127.0.0.1", "localhost")}
    other = httpx.post(f"{world.url}/admin/v1/services", json=inward, headers=ADMIN, timeout=10)
    assert other.status_code == 201, other.text
    probe = f"egress-{uuid.uuid4().hex[:8]}"
    blocked = world.call("GET", f"/services/{name}/{probe}", world.key(new_team(), tenant="acme"))
    assert blocked.status_code == 502 and blocked.json()["error"]["code"] == "upstream_address_refused"
    assert "localhost" in blocked.json()["error"]["message"]
    assert not [r for r in world.upstream.seen() if probe in r["path"]]
    moved = httpx.patch(f"{world.url}/admin/v1/services/{name}", params={"tenant": "acme"}, headers=ADMIN,
                        json={"url": "http://169.254.169.254/latest"}, timeout=10)
    assert moved.status_code == 400 and moved.json()["error"]["code"] == "upstream_address_refused"
    admin = world.key(new_team(), tenant="globex", role="tenant_admin")
    assert httpx.get(f"{world.url}/admin/v1/services/{name}", headers={"Authorization": f"Bearer {admin}"},
                     timeout=10).status_code == 404
    assert world.call("GET", f"/services/{name}/x", world.key(new_team(), tenant="globex")).status_code == 404
    # A developer may not register services.
    dev = httpx.post(f"{world.url}/admin/v1/services", json={**body, "name": "mine"},
                     headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert dev.status_code == 403
    # A team admin registers and manages its own team's services only.
    # (Not the operator: held to public addresses, a name is judged when called.)
    team = new_team()
    lead = {"Authorization": f"Bearer {world.key(team, role='team_admin')}"}
    services = f"{world.url}/admin/v1/services"
    owned = httpx.post(services, json={**inward, "name": f"{name}-team", "tenant": None}, headers=lead,
                       timeout=10)
    assert owned.status_code == 201 and owned.json()["team"] == team, owned.text
    elsewhere = httpx.post(services, json={**body, "name": f"{name}-x", "team": "other"}, headers=lead,
                           timeout=10)
    assert elsewhere.status_code == 400 and elsewhere.json()["error"]["code"] == "team_not_allowed"
    moved = httpx.patch(f"{world.url}/admin/v1/services/{name}-team", json={"team": "other"}, headers=lead,
                        timeout=10)
    assert moved.status_code == 400 and moved.json()["error"]["code"] == "team_not_allowed"
    assert httpx.patch(f"{world.url}/admin/v1/services/{name}", json={"rpm": 1}, headers=lead,
                       timeout=10).status_code == 404  # not its team's
    assert httpx.delete(f"{services}/{name}-team", headers=lead, timeout=10).status_code == 204
    deleted = httpx.delete(f"{world.url}/admin/v1/services/{name}", headers=ADMIN, timeout=10)
    assert deleted.status_code == 204
    assert world.call("GET", f"/services/{name}/things", key).status_code == 404
    # The YAML's services cannot be changed here.
    fixed = httpx.patch(f"{world.url}/admin/v1/services/echo", json={"rpm": 1}, headers=ADMIN, timeout=10)
    assert fixed.status_code == 400 and fixed.json()["error"]["code"] == "service_configured"


def test_a_service_moved_to_another_origin_takes_its_headers_only_if_given_again(world: World) -> None:
    """Stored headers are never shown, so whoever may change a service's URL must not be able to
    send them to a host of their choosing: a move to another scheme, host or port needs each
    header given again (or dropped) in the same change; a move within the origin does not."""
    name = f"moving-{uuid.uuid4().hex[:6]}"
    services = f"{world.url}/admin/v1/services"
    here = f"{world.upstream.url}/api"
    elsewhere = here.replace("127.0.0.1", "localhost")  # the same server, another origin
    created = httpx.post(services, headers=ADMIN, timeout=10, json={
        "name": name, "url": here, "headers": {"X-Stored-Token": STORED_SECRET, "X-Other": "v1"}})
    assert created.status_code == 201, created.text
    within = httpx.patch(f"{services}/{name}", json={"url": here + "/v2"}, headers=ADMIN, timeout=10)
    assert within.status_code == 200, within.text
    for given in (None, {"X-Other": None}, {"x-other": "v2"}):
        change: dict[str, Any] = {"url": elsewhere}
        if given is not None:
            change["headers"] = given
        refused = httpx.patch(f"{services}/{name}", json=change, headers=ADMIN, timeout=10)
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert (error["code"], error["param"]) == ("headers_required", "headers")
        assert "X-Stored-Token" in error["message"] and STORED_SECRET not in refused.text
    key = world.key(new_team())
    assert world.call("GET", f"/services/{name}/x", key).json()["headers"]["x-stored-token"] == STORED_SECRET
    moved = httpx.patch(f"{services}/{name}", headers=ADMIN, timeout=10,
                        json={"url": elsewhere, "headers": {"x-stored-token": None, "X-Other": "v2"}})
    assert moved.status_code == 200, moved.text
    assert moved.json()["headers"] == ["X-Other"] and moved.json()["url"] == elsewhere
    seen = world.call("GET", f"/services/{name}/x", key).json()["headers"]
    assert "x-stored-token" not in seen and seen["x-other"] == "v2"


def test_deleting_a_service_revokes_its_approved_subscriptions(world: World) -> None:
    """A service registered again under a deleted one's name is not open at once to the teams
    approved for the old one, on any instance: the delete revokes their subscriptions."""
    name = f"gone-{uuid.uuid4().hex[:6]}"
    services = f"{world.url}/admin/v1/services"
    body = {"name": name, "url": f"{world.upstream.url}/api", "require_approval": True}
    assert httpx.post(services, json=body, headers=ADMIN, timeout=10).status_code == 201
    key = world.key(new_team())
    asked = httpx.post(f"{world.url}/admin/v1/subscriptions", json={"service": name},
                       headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert asked.status_code == 201, asked.text
    sub = asked.json()["id"]
    approved = httpx.post(f"{world.url}/admin/v1/subscriptions/{sub}/approve", headers=ADMIN, timeout=10)
    assert approved.status_code == 200, approved.text
    peer = world.peer()
    for gateway in (world.gateway, peer):  # the approval cached on both instances
        called = httpx.get(f"{gateway.url}/services/{name}/x", headers={"Authorization": f"Bearer {key}"},
                           timeout=10)
        assert called.status_code == 200, called.text
    assert httpx.delete(f"{services}/{name}", headers=ADMIN, timeout=10).status_code == 204
    shown = httpx.get(f"{world.url}/admin/v1/subscriptions/{sub}", headers=ADMIN, timeout=10).json()
    assert shown["status"] == "revoked", shown
    revoked = {"resource_id": sub, "action": "subscription.revoke"}
    audit = httpx.get(f"{world.url}/admin/v1/audit", params=revoked, headers=ADMIN, timeout=10).json()["data"]
    assert [(e["before"]["status"], e["after"]["status"]) for e in audit] == [("approved", "revoked")]
    assert httpx.post(services, json=body, headers=ADMIN, timeout=10).status_code == 201
    deadline = time.monotonic() + 5
    for gateway in (world.gateway, peer):
        while True:  # the peer hears of the revocation over the change feed
            refused = httpx.get(f"{gateway.url}/services/{name}/x",
                                headers={"Authorization": f"Bearer {key}"}, timeout=10)
            if refused.status_code != 200 or time.monotonic() > deadline:
                break
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "subscription_revoked"
    # The team may ask again; the new service's approval is a new decision.
    again = httpx.post(f"{world.url}/admin/v1/subscriptions", json={"service": name},
                       headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert again.status_code == 201 and again.json()["status"] == "pending", again.text


def test_a_team_named_for_a_service_must_exist_in_its_tenant(world: World) -> None:
    """A tenant or platform admin naming a team that does not exist (or is another tenant's)
    registered the service for it anyway: 404 ``team_not_found`` now, as on the other admin
    routes, on registration and on a change, and nothing is stored."""
    services = f"{world.url}/admin/v1/services"
    team = httpx.post(f"{world.url}/admin/v1/teams", json={"name": "Owners"}, headers=ADMIN, timeout=10)
    assert team.status_code == 201, team.text
    owners = team.json()["id"]
    name = f"teamed-{uuid.uuid4().hex[:6]}"
    body = {"name": name, "url": f"{world.upstream.url}/api"}
    globex_admin = {"Authorization": f"Bearer {world.key(new_team(), tenant='globex', role='tenant_admin')}"}
    for headers, team_id in [(ADMIN, "no-such-team"), (globex_admin, "no-such-team"), (globex_admin, owners)]:
        refused = httpx.post(services, json={**body, "team": team_id}, headers=headers, timeout=10)
        assert refused.status_code == 404, refused.text
        assert (refused.json()["error"]["code"], refused.json()["error"]["message"]) == (
            "team_not_found", f"no team '{team_id}'")
    for tenant in ("default", "globex"):
        assert httpx.get(f"{services}/{name}", params={"tenant": tenant}, headers=ADMIN,
                         timeout=10).status_code == 404
    created = httpx.post(services, json={**body, "team": owners}, headers=ADMIN, timeout=10)
    assert created.status_code == 201 and created.json()["team"] == owners, created.text
    moved = httpx.patch(f"{services}/{name}", json={"team": "no-such-team"}, headers=ADMIN, timeout=10)
    assert moved.status_code == 404 and moved.json()["error"]["code"] == "team_not_found", moved.text
    assert httpx.get(f"{services}/{name}", headers=ADMIN, timeout=10).json()["team"] == owners
    # A change that leaves the team, or names an existing one, is taken.
    assert httpx.patch(f"{services}/{name}", json={"rpm": 5}, headers=ADMIN, timeout=10).status_code == 200
    kept = httpx.patch(f"{services}/{name}", json={"team": owners}, headers=ADMIN, timeout=10)
    assert kept.status_code == 200 and kept.json()["team"] == owners, kept.text
    assert httpx.delete(f"{services}/{name}", headers=ADMIN, timeout=10).status_code == 204


def test_a_default_tenant_admin_is_not_the_operator_and_reaches_public_addresses_only(world: World) -> None:
    """Only what a platform admin registers (or last points elsewhere) for the default tenant is
    exempt from the egress rules; a tenant admin of the default tenant is held to them like any
    other tenant's: an internal literal refused at once, a name resolving inward when called."""
    services = f"{world.url}/admin/v1/services"
    lead = {"Authorization": f"Bearer {world.key(role='tenant_admin')}"}
    caller = world.key(new_team())
    name = f"inside-{uuid.uuid4().hex[:6]}"
    for url in (f"{world.upstream.url}/api", "http://169.254.169.254/latest/meta-data/", "http://[::1]:9/"):
        refused = httpx.post(services, json={"name": name, "url": url}, headers=lead, timeout=10)
        assert refused.status_code == 400, refused.text
        err = refused.json()["error"]
        assert (err["code"], err["param"], err["type"]) == ("upstream_address_refused", "url",
                                                            "invalid_request_error"), err
    inward = {"name": name, "url": f"{world.upstream.url.replace('127.0.0.1', 'localhost')}/api"}
    created = httpx.post(services, json=inward, headers=lead, timeout=10)
    assert created.status_code == 201 and created.json()["tenant"] == "default", created.text
    probe = f"egress-{uuid.uuid4().hex[:8]}"
    blocked = world.call("GET", f"/services/{name}/{probe}", caller)
    assert blocked.status_code == 502, blocked.text
    assert blocked.json()["error"]["code"] == "upstream_address_refused"
    assert not [r for r in world.upstream.seen() if probe in r["path"]]
    # A change that keeps the URL keeps its rules, whoever makes it.
    assert httpx.patch(f"{services}/{name}", json={"rpm": 50}, headers=ADMIN, timeout=10).status_code == 200
    assert world.call("GET", f"/services/{name}/{probe}", caller).status_code == 502
    # The platform admin points it at the same host: now the operator's own.
    moved = httpx.patch(f"{services}/{name}", json={"url": f"{world.upstream.url}/api"}, headers=ADMIN,
                        timeout=10)
    assert moved.status_code == 200, moved.text
    called = world.call("GET", f"/services/{name}/{probe}", caller)
    assert called.status_code == 200 and called.json()["path"] == f"/api/{probe}", called.text
    # ... which the tenant admin may change but not keep inward.
    kept = httpx.patch(f"{services}/{name}", json={"description": "kept"}, headers=lead, timeout=10)
    assert kept.status_code == 200 and world.call("GET", f"/services/{name}/x", caller).status_code == 200
    back = httpx.patch(f"{services}/{name}", json={"url": f"{world.upstream.url}/other"}, headers=lead,
                       timeout=10)
    assert back.status_code == 400 and back.json()["error"]["code"] == "upstream_address_refused"
    renamed = httpx.patch(f"{services}/{name}", json={"url": inward["url"] + "2"}, headers=lead, timeout=10)
    assert renamed.status_code == 200, renamed.text
    assert world.call("GET", f"/services/{name}/{probe}", caller).status_code == 502
    assert httpx.delete(f"{services}/{name}", headers=lead, timeout=10).status_code == 204


def test_every_answer_shows_whose_egress_rules_a_service_follows(world: World) -> None:
    """``egress`` (read-only): ``operator`` for the configuration file's services and what the
    platform admin registered or last pointed elsewhere in the default tenant; ``public_only``
    for a default-tenant admin's and every other tenant's (docs/access.md, "Egress")."""
    services = f"{world.url}/admin/v1/services"
    lead = {"Authorization": f"Bearer {world.key(role='tenant_admin')}"}
    theirs, ours, acme = (f"egress-{uuid.uuid4().hex[:6]}" for _ in range(3))
    public = f"{world.upstream.url.replace('127.0.0.1', 'localhost')}/api"
    made = {theirs: httpx.post(services, json={"name": theirs, "url": public}, headers=lead, timeout=10),
            ours: httpx.post(services, json={"name": ours, "url": public}, headers=ADMIN, timeout=10),
            acme: httpx.post(services, json={"name": acme, "url": public, "tenant": "acme"}, headers=ADMIN,
                             timeout=10)}
    assert all(r.status_code == 201 for r in made.values()), [r.text for r in made.values()]
    assert {n: r.json()["egress"] for n, r in made.items()} == {
        theirs: "public_only", ours: "operator", acme: "public_only"}
    listed = httpx.get(services, headers=lead, timeout=10).json()["data"]
    assert {s["name"]: s["egress"] for s in listed if s["name"] in (theirs, ours, "echo")} == {
        theirs: "public_only", ours: "operator", "echo": "operator"}
    assert httpx.get(f"{services}/{acme}", params={"tenant": "acme"}, headers=ADMIN,
                     timeout=10).json()["egress"] == "public_only"
    # A change that keeps the URL keeps the rules; a new URL takes those of whoever set it.
    kept = httpx.patch(f"{services}/{theirs}", json={"rpm": 5}, headers=ADMIN, timeout=10)
    assert kept.status_code == 200 and kept.json()["egress"] == "public_only", kept.text
    moved = httpx.patch(f"{services}/{theirs}", json={"url": public + "2"}, headers=ADMIN, timeout=10)
    assert moved.status_code == 200 and moved.json()["egress"] == "operator", moved.text
    assert httpx.get(f"{services}/{theirs}", headers=lead, timeout=10).json()["egress"] == "operator"
    back = httpx.patch(f"{services}/{ours}", json={"url": public + "3"}, headers=lead, timeout=10)
    assert back.status_code == 200 and back.json()["egress"] == "public_only", back.text
    # Not a field anyone sets.
    refused = httpx.patch(f"{services}/{ours}", json={"egress": "operator"}, headers=ADMIN, timeout=10)
    assert refused.status_code == 400, refused.text
    audit = httpx.get(f"{world.url}/admin/v1/audit", params={"resource_id": ours}, headers=ADMIN, timeout=10)
    update = next(e for e in audit.json()["data"] if e["action"] == "service.update")
    assert (update["before"]["egress"], update["after"]["egress"]) == ("operator", "public_only")
    for name in (theirs, ours):
        assert httpx.delete(f"{services}/{name}", headers=ADMIN, timeout=10).status_code == 204
    assert httpx.delete(f"{services}/{acme}", params={"tenant": "acme"}, headers=ADMIN,
                        timeout=10).status_code == 204


def test_a_change_reaches_every_instance_within_a_second(world: World) -> None:
    peer = world.peer()
    name = f"moving-{uuid.uuid4().hex[:6]}"
    key = world.key(new_team())
    auth = {"Authorization": f"Bearer {key}"}

    def on_peer() -> httpx.Response:
        return httpx.get(f"{peer.url}/services/{name}/where", headers=auth, timeout=10)

    def within_a_second(check: Any, what: str) -> None:
        done = time.monotonic()
        while not check(on_peer()):
            assert time.monotonic() - done < 1.0, f"{what} did not reach the other instance within 1 s"
            time.sleep(0.02)

    assert on_peer().status_code == 404  # the other instance now knows there is no such service
    body = {"name": name, "url": f"{world.upstream.url}/one", "headers": {"X-Version": "1"}}
    created = httpx.post(f"{world.url}/admin/v1/services", json=body, headers=ADMIN, timeout=10)
    assert created.status_code == 201, created.text
    within_a_second(lambda r: r.status_code == 200 and r.json()["path"] == "/one/where", "the creation")
    changed = httpx.patch(f"{world.url}/admin/v1/services/{name}", headers=ADMIN, timeout=10,
                          json={"url": f"{world.upstream.url}/two", "headers": {"X-Version": "2"}})
    assert changed.status_code == 200, changed.text
    within_a_second(lambda r: r.status_code == 200 and r.json()["path"] == "/two/where"
                    and r.json()["headers"]["x-version"] == "2", "the change")
    removed = httpx.delete(f"{world.url}/admin/v1/services/{name}", headers=ADMIN, timeout=10)
    assert removed.status_code == 204
    within_a_second(lambda r: r.status_code == 404, "the removal")


@pytest.mark.parametrize(("body", "where"), [
    ({"name": "../x", "url": "http://127.0.0.1:1"}, "name"),
    ({"name": "ok", "url": "ftp://127.0.0.1/"}, "url"),
    ({"name": "ok", "url": "http://127.0.0.1:1/?q=1"}, "url"),
    ({"name": "ok", "url": "http://user@127.0.0.1:1/"}, "url"),
    ({"name": "ok", "url": "http://127.0.0.1:1", "headers": {"Host": "evil"}}, "headers"),
    ({"name": "ok", "url": "http://127.0.0.1:1", "headers": {"X-A": "a\r\nX-B: b"}}, "headers"),
    ({"name": "ok", "url": "http://127.0.0.1:1", "headers": {"bad name": "v"}}, "headers"),
    ({"name": "ok", "url": "http://127.0.0.1:1", "rpm": 0}, "rpm"),
    ({"name": "ok", "url": "http://127.0.0.1:1", "methods": ["TRACE"]}, "methods"),
    ({"name": "ok", "url": "http://127.0.0.1:1", "methods": []}, "methods"),
    ({"name": "ok", "url": "http://127.0.0.1:1", "max_request_bytes": -1}, "max_request_bytes"),
    ({"name": "ok", "url": "http://127.0.0.1:1", "timeout_seconds": {"total": 0}}, "timeout_seconds"),
    ({"name": "ok", "url": "http://127.0.0.1:1", "surprise": True}, "surprise"),
    ({"url": "http://127.0.0.1:1"}, "name"),
    ({"name": "ok", "url": "http://169.254.169.254/latest", "tenant": "acme"}, "url"),
    ({"name": "ok", "url": "http://[::ffff:10.0.0.1]:80/", "tenant": "acme"}, "url"),
    ({"name": "ok", "url": "http://2130706433:1/"}, "url"),  # 127.0.0.1 as one decimal number
    ({"name": "ok", "url": "http://127.1:1/"}, "url"),
    # A number where text goes is a wrong type, not text (the YAML's reading of it).
    ({"name": 2024, "url": "http://127.0.0.1:1"}, "name"),
    ({"name": "ok", "url": "http://127.0.0.1:1", "description": 5}, "description"),
    ({"name": "ok", "url": "http://127.0.0.1:1", "team": -1}, "team"),
    ({"name": "ok", "url": "http://127.0.0.1:1", "headers": {"X-A": 1}}, "headers"),
])
def test_bad_service_definitions_are_refused(world: World, body: dict[str, Any], where: str) -> None:
    resp = httpx.post(f"{world.url}/admin/v1/services", json=body, headers=ADMIN, timeout=10)
    assert resp.status_code == 400, resp.text
    assert where in (resp.json()["error"].get("param") or "") + resp.json()["error"]["message"]


def test_a_refused_header_is_named_once(world: World) -> None:
    body = {"name": "ok", "url": "http://127.0.0.1:1", "headers": {"Connection": "close"}}
    created = httpx.post(f"{world.url}/admin/v1/services", json=body, headers=ADMIN, timeout=10)
    patched = httpx.patch(f"{world.url}/admin/v1/services/echo", json={"headers": {"Connection": "close"}},
                          headers=ADMIN, timeout=10)
    for resp in (created, patched):
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["param"] == "headers"
        assert resp.json()["error"]["message"] == (
            "headers: 'Connection' is set by the gateway and cannot be configured"), resp.text


def test_the_operator_lets_tenants_reach_the_hosts_it_names(
    mock_upstream: Mock, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    config = openai_config(mock_upstream)
    config["egress"] = {"allowed_hosts": ["localhost"]}
    gw = start_gateway(config, tmp_path_factory.mktemp("services-egress"))
    try:
        created = httpx.post(f"{gw.url}/admin/v1/tenants", json={"id": "acme"}, headers=ADMIN, timeout=10)
        assert created.status_code == 201, created.text
        body = {"name": "billing", "tenant": "acme", "url": upstream.url.replace("127.0.0.1", "localhost")}
        registered = httpx.post(f"{gw.url}/admin/v1/services", json=body, headers=ADMIN, timeout=10)
        assert registered.status_code == 201, registered.text
        issued = httpx.post(f"{gw.url}/admin/v1/keys", json={"tenant": "acme", "models": ["*"]},
                            headers=ADMIN, timeout=10)
        assert issued.status_code == 201, issued.text
        called = httpx.get(f"{gw.url}/services/billing/invoices", timeout=10,
                           headers={"Authorization": f"Bearer {issued.json()['key']}"})
        assert called.status_code == 200, called.text
        assert called.json()["path"] == "/invoices"
        # The name is allowed, not the address it has.
        direct = {**body, "name": "direct", "url": upstream.url}
        literal = httpx.post(f"{gw.url}/admin/v1/services", json=direct, headers=ADMIN, timeout=10)
        assert literal.status_code == 400 and literal.json()["error"]["code"] == "upstream_address_refused"
    finally:
        gw.process.stop()


@pytest.mark.parametrize("key", ["sk-not-a-key", None], ids=["bad-key", "no-key"])
def test_a_refused_key_with_expect_100_continue_gets_401_before_the_body_is_sent(
        world: World, key: str | None) -> None:
    """As on /v1/*: a client holding its body back until ``100 Continue`` is answered 401 at once,
    never told to send a body that would be sent for nothing, and the service is not called."""
    body = b'{"upload": "' + b"x" * 4096 + b'"}'
    mark = f"call={uuid.uuid4().hex}"
    auth = f"Authorization: Bearer {key}\r\n" if key is not None else ""
    head = (f"POST /services/echo/upload?{mark} HTTP/1.1\r\nHost: gateway\r\n{auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n")
    with socket.create_connection(("127.0.0.1", world.gateway.port), timeout=10) as sock:
        sock.sendall(head.encode())
        reply = b""
        while chunk := sock.recv(65536):  # the gateway ends its answer without waiting for the body
            reply += chunk
    assert not reply.startswith(b"HTTP/1.1 100"), reply
    head_bytes, _, answer = reply.partition(b"\r\n\r\n")
    assert head_bytes.startswith(b"HTTP/1.1 401 "), reply
    assert b"\r\nconnection: close" in head_bytes.lower()
    assert json.loads(answer)["error"]["type"] == "authentication_error"
    assert all(seen["query"] != mark for seen in world.upstream.seen())
    # The same request with a good key is told to send its body, and served.
    with socket.create_connection(("127.0.0.1", world.gateway.port), timeout=10) as sock:
        good = f"Host: gateway\r\nAuthorization: Bearer {MASTER_KEY}\r\n"
        sock.sendall(head.replace(f"Host: gateway\r\n{auth}", good).encode())
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        served = b""
        while b"\r\n\r\n" not in served:
            served += sock.recv(65536)
    assert served.startswith(b"HTTP/1.1 200 "), served


def test_a_service_response_the_client_left_part_way_is_abandoned(world: World) -> None:
    """A service's answer is relayed as it arrives: a client that leaves after its status was
    sent left it part-way, as a client leaves a model-call stream. The record keeps the status
    sent, says ``abandoned``, and ``?abandoned=true`` finds it; one read to its end is not."""
    key = world.key(new_team())
    rid = f"svc-abandoned-{uuid.uuid4().hex}"
    with httpx.stream("GET", f"{world.url}/services/echo/stream?n=100&delay=0.1", timeout=30,
                      headers={"Authorization": f"Bearer {key}", "x-request-id": rid}) as resp:
        assert next(resp.iter_lines()) == "line 0"
    record = _logged(world, rid)
    assert record["status"] == 200
    assert record["abandoned"] is True and record["metadata"]["client_disconnected"] is True
    found = httpx.get(f"{world.url}/admin/v1/logs", params={"abandoned": "true", "model": "service:echo"},
                      headers=ADMIN, timeout=30)
    assert rid in [r["request_id"] for r in found.json()["data"]]
    whole = f"svc-whole-{uuid.uuid4().hex}"
    read = world.call("GET", "/services/echo/stream?n=3&delay=0.05", key, headers={"x-request-id": whole})
    assert read.status_code == 200 and read.text.count("line") == 3
    record = _logged(world, whole)
    assert record["status"] == 200 and "client_disconnected" not in record["metadata"]
    assert record["abandoned"] is False and "abandoned" not in record["metadata"]


def test_a_client_that_gives_up_before_the_service_answers_is_499_and_the_call_is_cancelled(
        world: World) -> None:
    """As on /v1/*: a client that closes while the service is still working is noticed, the
    service call is cancelled (the gateway neither waits for the answer nor writes it to a gone
    connection), and the record says 499 ``client_disconnected``."""
    key = world.key(new_team())
    rid = f"svc-gave-up-{uuid.uuid4().hex}"
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{world.url}/services/echo/slow?seconds=1", timeout=0.3,
                  headers={"Authorization": f"Bearer {key}", "x-request-id": rid})
    record = _logged(world, rid)
    assert record["status"] == 499 and record["metadata"]["client_disconnected"] is True
    assert record["abandoned"] is False and "abandoned" not in record["metadata"]
    assert record["latency_ms"] < 1000  # recorded when the client left, not once the service answered
    line = world.gateway.process.wait_for_all(rid, "client disconnected", timeout=20)
    assert "upstream call cancelled" in line, line


def test_a_service_answer_left_part_way_is_one_status_in_ledger_log_and_metrics(world: World) -> None:
    """A client that leaves a service's answer after its status was sent keeps that status (200)
    everywhere, as a model-call stream it left does: the usage record, the request log and
    ``switchboard_requests_total`` (not a 499 there), and the stream is no longer in flight."""
    key = world.key(new_team())
    metrics = f"{world.url}/metrics"

    def counted() -> tuple[float, float]:
        samples = parse(httpx.get(metrics, headers=ADMIN, timeout=10).text)
        return tuple(total(samples, "switchboard_requests_total", operation="service", status=s)  # type: ignore[return-value]
                     for s in ("200", "499"))

    ok_before, gone_before = counted()
    rid = f"svc-left-{uuid.uuid4().hex}"
    with httpx.stream("GET", f"{world.url}/services/echo/stream?n=100&delay=0.1", timeout=30,
                      headers={"Authorization": f"Bearer {key}", "x-request-id": rid}) as resp:
        assert next(resp.iter_lines()) == "line 0"
    logged = _logged(world, rid)
    assert logged["status"] == 200 and logged["abandoned"] is True and logged["stream"] is True
    assert world.tmp is not None
    usage = ledger.wait_for(ledger.database_of(world.config, world.tmp), {rid})[rid]
    assert usage.status == 200 and usage.metadata["abandoned"] is True
    deadline = time.monotonic() + 20
    while (now := counted())[0] < ok_before + 1:
        assert time.monotonic() < deadline, now
        time.sleep(0.2)
    assert now == (ok_before + 1, gone_before)
    samples = parse(httpx.get(metrics, headers=ADMIN, timeout=10).text)
    assert total(samples, "switchboard_streams_in_flight") == 0


def test_a_client_leaving_an_answer_given_before_its_body_was_read_cancels_the_call_at_once(
        world: World) -> None:
    """A service may answer before it reads the request's body, and then never read it: the
    client's leaving is still noticed at once (not at the next line, half a minute on), the
    service's connection is closed, and the record says the answer was abandoned."""
    key = world.key(new_team())
    mark = f"hold={uuid.uuid4().hex}"
    rid = f"svc-early-{uuid.uuid4().hex}"
    declared = 8 * 1024 * 1024  # more than is ever sent: the body stays open
    head = (f"POST /services/limited/hold?{mark} HTTP/1.1\r\nHost: gateway\r\n"
            f"Authorization: Bearer {key}\r\nx-request-id: {rid}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", world.gateway.port), timeout=10) as sock:
        sock.sendall(head.encode() + b"x" * (1024 * 1024))
        reply = b""
        while b"ready\n" not in reply:  # the status and the first line, relayed
            chunk = sock.recv(65536)
            assert chunk, reply
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200 "), reply
    record = _logged(world, rid, timeout=10)  # noticed when the client left, not at the next line
    assert record["status"] == 200, record
    assert record["abandoned"] is True and record["metadata"]["client_disconnected"] is True
    deadline = time.monotonic() + 10
    while mark not in httpx.get(f"{world.upstream.url}/_ended", timeout=10).json():
        assert time.monotonic() < deadline, "the service's connection was never closed"
        time.sleep(0.05)


@pytest.mark.parametrize("lines", [1, 3], ids=["before-the-watcher", "with-the-watcher-waiting"])
def test_a_client_leaving_while_the_service_still_reads_its_body_is_recorded_as_gone(
        world: World, lines: int) -> None:
    """A service that answered and goes on reading the request's body: the client leaving
    mid-answer is seen first by the proxy's own reader of that body, whether the disconnect
    watcher has not started yet (the client leaves at the first line) or waits behind that reader
    (at the third, half a second apart). It is recorded as the client leaving (the answer
    abandoned with its 200), never as a 502 of the service's, and the service's connection is
    closed at once."""
    key = world.key(new_team())
    mark = f"drain={uuid.uuid4().hex}"
    rid = f"svc-drain-{uuid.uuid4().hex}"
    declared = 8 * 1024 * 1024  # more than is ever sent: the body stays open
    every = 0.5 if lines > 1 else 30
    head = (f"POST /services/limited/drain?{mark}&every={every} HTTP/1.1\r\nHost: gateway\r\n"
            f"Authorization: Bearer {key}\r\nx-request-id: {rid}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", world.gateway.port), timeout=10) as sock:
        sock.sendall(head.encode() + b"x" * 65536)
        reply = b""
        while (b"ready\n" in reply) + reply.count(b"line\n") < lines:  # the lines relayed so far
            chunk = sock.recv(65536)
            assert chunk, reply
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200 ") and b"ready\n" in reply, reply
        left = time.monotonic()
    deadline = left + 10
    while not any(mark in query for query in httpx.get(f"{world.upstream.url}/_ended", timeout=10).json()):
        assert time.monotonic() < deadline, "the service's connection was never closed"
        time.sleep(0.05)
    assert time.monotonic() - left < 5, "the service's connection was closed late"
    record = _logged(world, rid, timeout=10)
    assert record["status"] == 200 and record["error_code"] is None, record
    assert record["abandoned"] is True and record["metadata"]["client_disconnected"] is True
    line = world.gateway.process.wait_for_all(rid, "client disconnected", timeout=10)
    assert "service response cut" not in world.gateway.process.output.split(rid, 1)[1], line
