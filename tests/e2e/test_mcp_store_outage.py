"""``/mcp`` while the database is down (cluster mode): a call that needs it (a key never read
before) answers as the model API does, ``503 store_unavailable`` with ``Retry-After``, in a
JSON-RPC error body, on a plain JSON and on an SSE reply alike; served again once it is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_store_outage import _pg_ctl, _pg_start
from tests.mcp_servers import McpUpstream, start_mcp_server
from tests.servers import MASTER_KEY, start_gateway
from tests.services import RedisServer, start_postgres

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
CALL = {"jsonrpc": "2.0", "id": 11, "method": "tools/call",
        "params": {"name": "math__add", "arguments": {"a": 1, "b": 2}}}


@pytest.fixture(scope="module")
def math() -> Iterator[McpUpstream]:
    server = start_mcp_server("math")
    yield server
    server.process.stop()


def _call(url: str, key: str, accept: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "Accept": accept, "Content-Type": "application/json"}
    return httpx.post(url, headers=headers, json=CALL, timeout=30)


def _key(url: str) -> str:
    resp = httpx.post(f"{url}/admin/v1/keys", json={"models": ["*"]}, headers=ADMIN, timeout=10)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


def test_an_mcp_call_needing_the_stopped_database_gets_a_retryable_503(
    math: McpUpstream, redis_server: RedisServer, tmp_path: Path
) -> None:
    pg = start_postgres()  # its own server: the test stops it
    try:
        config: dict[str, Any] = {
            "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
            "mcp_servers": [{"name": "math", "url": math.url}],
            "database": {"url": pg.create_database("mcp_outage")},
            "redis": {"url": redis_server.url},
        }
        gw = start_gateway(config, tmp_path)
        try:
            keys = [_key(gw.url) for _ in range(2)]  # neither read by the request path yet
            _pg_ctl(pg, "stop", "-m", "fast", "-w")
            for key, accept in zip(keys, ("application/json", "application/json, text/event-stream"),
                                   strict=True):
                resp = _call(gw.url + "/mcp", key, accept)
                assert resp.status_code == 503, (accept, resp.status_code, resp.text)
                assert resp.headers["retry-after"] == "5"
                body = resp.json()
                # Refused before the message is read (as a 401 is): its id is not known yet.
                assert body["jsonrpc"] == "2.0" and body["id"] is None, body
                assert body["error"]["code"] == -32002, body
                assert body["error"]["data"]["code"] == "store_unavailable", body

            _pg_start(pg)
            deadline = time.monotonic() + 30
            while (resp := _call(gw.url + "/mcp", keys[0], "application/json")).status_code != 200:
                assert time.monotonic() < deadline, resp.text
                time.sleep(0.2)
            assert resp.json()["result"]["structuredContent"] == {"result": 3}
        finally:
            gw.process.stop()
        gw.process.wait_exit()
        assert "unexpected error" not in gw.process.output, gw.process.output
        assert "Traceback" not in gw.process.output, gw.process.output
    finally:
        pg.stop()
