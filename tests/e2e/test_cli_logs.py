"""``switchboard logs`` against a running gateway: a table and JSON with filters, ``show`` with
the stored bodies, ``--follow`` printing a request made after it started and ending cleanly on
Ctrl-C, and the API's errors as one line. On the embedded default (SQLite) and a cluster
(PostgreSQL + Redis)."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest

from tests.e2e.sdk import ask
from tests.e2e.test_logs_api import World, build_world, lookup, store_body
from tests.e2e.test_usage import Deployment, deployment  # noqa: F401 - the module's gateways
from tests.servers import MASTER_KEY, Process, spawn

ENV = {"COLUMNS": "400"}


@pytest.fixture(scope="module")
def world(deployment: Deployment) -> World:  # noqa: F811
    return build_world(deployment)


def start(world: World, *args: str) -> Process:
    return spawn(["logs", *args, "--url", world.deployment.gateway.url, "--key", MASTER_KEY], env=ENV)


def cli(world: World, *args: str) -> tuple[int, str]:
    proc = start(world, *args)
    return proc.wait_exit(60), proc.output


def test_a_table_and_json_with_filters(world: World) -> None:
    code, output = cli(world, "--tenant", world.tenants[0])
    assert code == 0, output
    for name in ("plain", "slow", "failed", "house", "team"):
        assert world.calls[name] in output
    assert world.calls["b"] not in output and "cost usd" in output and "house-model" in output
    code, output = cli(world, "--tenant", world.tenants[0], "--model", "house-model", "--json")
    assert code == 0, output
    page: dict[str, Any] = json.loads(output)
    assert [r["request_id"] for r in page["data"]] == [world.calls["house"]]
    code, output = cli(world, "--tenant", world.tenants[0], "--status", "5xx", "--json")
    assert code == 0 and [r["request_id"] for r in json.loads(output)["data"]] == [world.calls["failed"]]
    code, output = cli(world, "-q", world.word, "--json", "--bodies")
    assert code == 0, output
    found = json.loads(output)["data"]
    assert {r["request_id"] for r in found} == {world.calls["plain"], world.calls["b"]}
    assert all(world.word in r["request"] for r in found)
    code, output = cli(world, "--tenant", world.tenants[0], "--limit", "2")
    assert code == 0 and "more: --cursor " in output, output
    cursor = output.split("more: --cursor ")[1].split()[0]
    code, output = cli(world, "--tenant", world.tenants[0], "--limit", "2", "--cursor", cursor, "--json")
    assert code == 0 and len(json.loads(output)["data"]) == 2, output


def test_show_prints_one_record_with_its_bodies(world: World) -> None:
    code, output = cli(world, "show", world.calls["plain"])
    assert code == 0, output
    assert world.calls["plain"] in output and world.word in output and "a reply" in output
    assert "user-agent" in output and "latency_ms" in output
    code, output = cli(world, "show", world.calls["team"], "--json")
    assert code == 0, output
    record = json.loads(output)
    assert (record["request_id"], record["team"]) == (world.calls["team"], world.team)
    code, output = cli(world, "show", "no-such-request")
    assert code == 1 and "no request 'no-such-request'" in output and "Traceback" not in output


def test_api_errors_are_one_line(world: World) -> None:
    code, output = cli(world, "--status", "6xx")
    assert code == 1 and "invalid_status" in output and "Traceback" not in output
    code, output = cli(world, "--cursor", "garbage")
    assert code == 1 and "invalid_cursor" in output and "Traceback" not in output


def test_follow_prints_new_requests_and_ends_on_ctrl_c(world: World) -> None:
    proc = start(world, "--follow", "--interval", "0.2", "--json", "--tenant", world.tenants[0])
    try:
        proc.wait_for_all(world.calls["plain"], timeout=30)  # the newest records first
        raw = world.deployment.sdk(world.keys["a"]["key"]).chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=ask("follow me"))
        rid = raw.headers["x-request-id"]
        line = proc.wait_for_all(rid, timeout=30)
        assert json.loads(line)["request_id"] == rid
        lookup(world.deployment.gateway.url, rid)
    finally:
        code = proc.stop(signal.SIGINT)
    assert code == 0, proc.output
    proc.wait_exit(10)
    assert "Traceback" not in proc.output
    lines = [json.loads(line) for line in proc.output.splitlines() if line.startswith("{")]
    assert [r["request_id"] for r in lines].count(rid) == 1  # printed once, however often polled
    assert world.calls["b"] not in proc.output


def test_control_characters_in_a_logged_body_are_shown_escaped(world: World) -> None:
    store_body(world.deployment, world.records["team"], "clear the screen \x1b[2J\x07 please", None)
    code, output = cli(world, "show", world.calls["team"])
    assert code == 0, output
    assert "clear the screen \\x1b[2J\\x07 please" in output
    assert "\x1b" not in output and "\x07" not in output
