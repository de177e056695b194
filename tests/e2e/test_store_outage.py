"""The admin API while the database is down (cluster mode): reads such as the alerts and the
analytics answer a clear ``503 store_unavailable`` with ``Retry-After`` (one warning line, no
traceback) while model calls keep being served, and answer again once the database is back."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

from tests.servers import MASTER_KEY, Mock, openai_config, start_gateway
from tests.services import Postgres, RedisServer, _pg_bin, start_postgres

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
READS = ("/admin/v1/alerts", "/admin/v1/analytics", "/admin/v1/keys")


def _pg_ctl(pg: Postgres, *args: str) -> None:
    subprocess.run([*pg._as_user, _pg_bin("pg_ctl"), "-D", str(pg.directory / "data"), *args],
                   check=True, capture_output=True, timeout=60)


def test_admin_reads_answer_503_while_the_database_is_down(
    mock_upstream: Mock, redis_server: RedisServer, tmp_path: Path
) -> None:
    pg = start_postgres()  # its own server: the test stops it
    try:
        config = openai_config(mock_upstream)
        config["database"] = {"url": pg.create_database("outage")}
        config["redis"] = {"url": redis_server.url}
        config["alerts"] = {"rules": [{"name": "breakers", "kind": "breaker"}]}
        gw = start_gateway(config, tmp_path)
        try:
            for path in READS:
                assert httpx.get(gw.url + path, headers=ADMIN, timeout=10).status_code == 200
            _pg_ctl(pg, "stop", "-m", "fast", "-w")
            for path in READS:
                resp = httpx.get(gw.url + path, headers=ADMIN, timeout=30)
                assert resp.status_code == 503, (path, resp.text)
                assert resp.headers["retry-after"] == "5"
                assert resp.json() == {"error": {
                    "message": "the database or Redis cannot be reached right now; try again shortly",
                    "type": "api_error", "param": None, "code": "store_unavailable"}}
            chat = httpx.post(f"{gw.base_url}/chat/completions", headers=ADMIN, timeout=30, json={
                "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "still there?"}]})
            assert chat.status_code == 200  # the request path does not need the database

            options = f"-p {pg.port} -c listen_addresses=127.0.0.1 -k {pg.directory} -c fsync=off"
            _pg_ctl(pg, "-o", options, "-l", str(pg.directory / "log"), "-w", "start")
            deadline = time.monotonic() + 30
            while httpx.get(gw.url + "/admin/v1/alerts", headers=ADMIN, timeout=10).status_code != 200:
                assert time.monotonic() < deadline, "the admin API did not come back with the database"
                time.sleep(0.1)
        finally:
            gw.process.stop()
        gw.process.wait_exit()
        assert "a store is unreachable (ConnectionRefusedError)" in gw.process.output
        assert "unexpected error" not in gw.process.output and "Traceback" not in gw.process.output
    finally:
        pg.stop()
