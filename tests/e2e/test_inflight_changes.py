"""Control-plane changes made while a request is in flight, end to end: what the request that
is under way does next once the change is visible (the admin's answer), on the embedded default
(SQLite, in-process feed) and on a cluster (PostgreSQL and Redis)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.sdk import ask
from tests.ledger import database_of, wait_for
from tests.servers import MASTER_KEY, Gateway, Mock, free_port, openai_config, start_gateway
from tests.services import Postgres, RedisServer

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
OLD_KEY = "sk-old-upstream-key-0000000000000OLD"
NEW_KEY = "sk-new-upstream-key-0000000000000NEW"
WAIT = 30.0


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return _event({"id": "chatcmpl-held", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


class HeldUpstream:
    """An OpenAI-shaped upstream that holds its first request until :meth:`release` (``held``
    is set once it has it). ``stream=False``: that request is then answered 500 (a retryable
    failure), every later one 200; the credential of each is recorded. ``stream=True``: every
    request is a stream of one chunk, then the rest (the last chunk and the usage: 300 prompt
    tokens, 100 completion tokens), held after the first chunk until the release."""

    def __init__(self, stream: bool = False) -> None:
        self.held = threading.Event()
        self._release = threading.Event()
        self.credentials: list[str] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream.credentials.append(self.headers.get("Authorization", ""))
                if stream:
                    self._stream()
                elif len(upstream.credentials) == 1:
                    upstream.held.set()
                    upstream._release.wait(WAIT)
                    self._send(500, {"error": {"message": "held, then failed", "type": "server_error"}})
                else:
                    self._send(200, {
                        "id": "chatcmpl-held", "object": "chat.completion", "created": 1, "model": "m",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "answered"},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(_chunk({"role": "assistant", "content": "held "}))
                self.wfile.flush()
                upstream.held.set()
                upstream._release.wait(WAIT)
                self.wfile.write(_chunk({"content": "then done"}, "stop"))
                self.wfile.write(_event({"id": "chatcmpl-held", "object": "chat.completion.chunk",
                                         "created": 1, "model": "m", "choices": [],
                                         "usage": {"prompt_tokens": 300, "completion_tokens": 100,
                                                   "total_tokens": 400}}))
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    def release(self) -> None:
        self._release.set()

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


@dataclass
class World:
    gateway: Gateway
    database: str  # where its usage ledger is


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def world(request: pytest.FixtureRequest, mock_upstream: Mock,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    config = openai_config(mock_upstream)
    if request.param == "cluster":
        postgres: Postgres = request.getfixturevalue("postgres")
        redis: RedisServer = request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"inflight_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
    tmp: Path = tmp_path_factory.mktemp(f"inflight-{request.param}")
    gw = start_gateway(config, tmp)
    yield World(gw, database_of(config, tmp))
    gw.process.stop()


@pytest.fixture
def gateway(world: World) -> Gateway:
    return world.gateway


def admin(gw: Gateway, method: str, path: str, body: Any = None) -> httpx.Response:
    resp = httpx.request(method, f"{gw.url}/admin/v1{path}", json=body, headers=ADMIN, timeout=WAIT)
    assert resp.status_code < 300, resp.text
    return resp


def held_model(gw: Gateway, upstream: HeldUpstream) -> tuple[str, dict[str, Any]]:
    """A stored provider of ``upstream`` with the credential OLD_KEY, and a model of it: (the
    model's name, the provider as created)."""
    name = f"held-{uuid.uuid4().hex[:8]}"
    provider = admin(gw, "POST", "/providers",
                     {"name": name, "type": "openai", "api_base": upstream.url, "api_key": OLD_KEY})
    admin(gw, "POST", "/models", {"name": f"{name}-model", "provider": name, "model": "m"})
    return f"{name}-model", provider.json()


def asked(gw: Gateway, model: str) -> tuple[threading.Thread, list[httpx.Response]]:
    """A chat request to ``model`` sent from a thread: (the thread, its answer once joined)."""
    answer: list[httpx.Response] = []
    body = {"model": model, "messages": ask("hello")}
    asking = threading.Thread(target=lambda: answer.append(httpx.post(
        f"{gw.base_url}/chat/completions", headers=ADMIN, timeout=WAIT, json=body)))
    asking.start()
    return asking, answer


def test_a_retry_after_a_credential_rotation_uses_the_new_credential(gateway: Gateway) -> None:
    """A request whose first attempt fails after the provider's credential was rotated (the new
    one added, the old one removed, both answered) retries with the new credential, never the
    old one."""
    upstream = HeldUpstream()
    try:
        model, provider = held_model(gateway, upstream)
        name = provider["name"]
        asking, answer = asked(gateway, model)
        assert upstream.held.wait(WAIT)
        admin(gateway, "POST", f"/providers/{name}/credentials", {"api_key": NEW_KEY})
        admin(gateway, "DELETE", f"/providers/{name}/credentials/{provider['credentials'][0]['id']}")
        upstream.release()
        asking.join(WAIT)
        (resp,) = answer
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-switchboard-attempts"] == "2"
        assert upstream.credentials == [f"Bearer {OLD_KEY}", f"Bearer {NEW_KEY}"]
    finally:
        upstream.stop()


def test_a_deployment_removed_while_its_request_waits_is_not_retried(gateway: Gateway) -> None:
    """A model deleted while its request's first attempt is under way: that attempt's failure
    is the answer (the upstream's error, clearly named), no retry goes to the removed
    deployment, and the next request is refused as for any unknown model."""
    upstream = HeldUpstream()
    try:
        model, _ = held_model(gateway, upstream)
        asking, answer = asked(gateway, model)
        assert upstream.held.wait(WAIT)
        admin(gateway, "DELETE", f"/models/{model}")
        upstream.release()
        asking.join(WAIT)
        (resp,) = answer
        assert resp.status_code == 502, resp.text
        assert resp.json()["error"]["code"] == "upstream_error"
        assert resp.headers["x-switchboard-attempts"] == "1"
        assert upstream.credentials == [f"Bearer {OLD_KEY}"]
        after = httpx.post(f"{gateway.base_url}/chat/completions", headers=ADMIN, timeout=WAIT,
                           json={"model": model, "messages": ask("hello")})
        assert after.status_code == 404 and after.json()["error"]["code"] == "model_not_found"
    finally:
        upstream.stop()


def priced_model(gw: Gateway, upstream: HeldUpstream, prices: dict[str, float]) -> str:
    """A stored provider of ``upstream`` and a model of it with ``prices``: the model's name."""
    name = f"priced-{uuid.uuid4().hex[:8]}"
    admin(gw, "POST", "/providers", {"name": name, "type": "openai", "api_base": upstream.url,
                                     "api_key": OLD_KEY})
    admin(gw, "POST", "/models", {"name": name, "provider": name, "model": "m", "info": prices})
    return name


def stream_body(model: str) -> dict[str, Any]:
    return {"model": model, "messages": ask("hello"), "stream": True,
            "stream_options": {"include_usage": True}}


def stream_around(gw: Gateway, upstream: HeldUpstream, headers: dict[str, str], model: str,
                  change: Callable[[], object]) -> str:
    """Stream a chat answer from ``model`` and, once its first chunk has reached the caller (the
    rest held upstream), make ``change``, then let the stream end: its request id (the stream
    ended with [DONE])."""
    with httpx.stream("POST", f"{gw.base_url}/chat/completions", headers=headers,
                      json=stream_body(model), timeout=WAIT) as streaming:
        assert streaming.status_code == 200
        lines = streaming.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))
        assert upstream.held.wait(WAIT)
        change()
        upstream.release()
        assert "data: [DONE]" in list(lines)
        return streaming.headers["x-request-id"]


def test_a_key_revoked_while_its_stream_runs(world: World) -> None:
    """A key revoked (answered) while one of its streams runs: its next request is refused at
    once, the stream already authorised runs to its end, and its usage is recorded once, under
    the key, at its cost."""
    upstream = HeldUpstream(stream=True)
    try:
        gw = world.gateway
        model = priced_model(gw, upstream, {"input_cost_per_mtok": 1, "output_cost_per_mtok": 2})
        key = admin(gw, "POST", "/keys", {"models": [model], "max_budget_usd": 1}).json()
        auth = {"Authorization": f"Bearer {key['key']}"}

        def revoke() -> None:
            admin(gw, "DELETE", f"/keys/{key['id']}")
            refused = httpx.post(f"{gw.base_url}/chat/completions", headers=auth, timeout=WAIT,
                                 json=stream_body(model))
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "key_disabled"

        rid = stream_around(gw, upstream, auth, model, revoke)
        record = wait_for(world.database, {rid})[rid]
        assert record.key_id == key["id"] and record.cost_usd == Decimal("0.0005")
        (row,) = admin(gw, "GET", f"/usage?key={key['id']}").json()["data"]
        assert row["requests"] == 1 and row["errors"] == 0  # the stream (a refused key spends nothing)
        assert Decimal(row["cost_usd"]) == Decimal("0.0005")
    finally:
        upstream.stop()


def test_a_budget_lowered_and_models_changed_while_a_keys_stream_runs(world: World) -> None:
    """While one of a key's streams runs, its budget is lowered below what the stream will have
    cost: the stream runs to its end and is recorded once at its cost, and the next request is
    refused for the budget; its allowed models changed then: refused for the model."""
    upstream = HeldUpstream(stream=True)
    try:
        gw = world.gateway
        model = priced_model(gw, upstream, {"input_cost_per_mtok": 1, "output_cost_per_mtok": 2})
        key = admin(gw, "POST", "/keys", {"models": [model]}).json()
        auth = {"Authorization": f"Bearer {key['key']}"}
        budget = {"scope": "key", "subject": key["id"], "max_amount": 1, "period": "total"}
        admin(gw, "PUT", "/budgets", budget)
        lowered = {**budget, "max_amount": 0.0004}
        rid = stream_around(gw, upstream, auth, model, lambda: admin(gw, "PUT", "/budgets", lowered))
        assert wait_for(world.database, {rid})[rid].cost_usd == Decimal("0.0005")
        next_one = {**stream_body(model), "max_tokens": 1}
        over = httpx.post(f"{gw.base_url}/chat/completions", headers=auth, timeout=WAIT, json=next_one)
        assert over.status_code == 429, over.text
        assert over.json()["error"]["code"] == "budget_exceeded"
        admin(gw, "PATCH", f"/keys/{key['id']}", {"models": ["gpt-4o-mini"]})
        moved = httpx.post(f"{gw.base_url}/chat/completions", headers=auth, timeout=WAIT, json=next_one)
        assert moved.status_code in (403, 404), moved.text
        assert moved.json()["error"]["code"] != "budget_exceeded"
    finally:
        upstream.stop()


def test_a_price_changed_mid_stream_charges_the_price_the_request_was_routed_with(world: World) -> None:
    """A model's prices changed (and answered) while one of its streams runs: that stream is
    charged the prices in force when it was routed, the next request the new ones."""
    upstream = HeldUpstream(stream=True)
    try:
        gw = world.gateway
        name = priced_model(gw, upstream, {"input_cost_per_mtok": 1, "output_cost_per_mtok": 2})
        body = stream_body(name)
        new = {"info": {"input_cost_per_mtok": 10, "output_cost_per_mtok": 20}}
        during = stream_around(gw, upstream, ADMIN, name, lambda: admin(gw, "PATCH", f"/models/{name}", new))
        after = httpx.post(f"{gw.base_url}/chat/completions", headers=ADMIN, timeout=WAIT, json=body)
        assert after.status_code == 200
        found = wait_for(world.database, {during, after.headers["x-request-id"]})
        assert found[during].cost_usd == Decimal("0.0005")  # 300 x 1 + 100 x 2, per million
        assert found[after.headers["x-request-id"]].cost_usd == Decimal("0.005")  # 300 x 10 + 100 x 20
    finally:
        upstream.stop()
