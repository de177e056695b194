"""``switchboard logs`` against a running gateway: a table and JSON with filters, ``show`` with
the stored bodies (and each record of a request id two callers sent), ``--follow`` printing a
request made after it started (and each record of a request id sent twice) and ending cleanly on
Ctrl-C, going on through polls that fail for a while and ending on a refusal, and the API's errors
as one line. On the embedded default (SQLite) and a cluster (PostgreSQL + Redis)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.sdk import ask
from tests.e2e.test_logs_api import (
    World,
    _post,
    abandon_a_stream,
    build_world,
    lookup,
    store_body,
    stream_to_the_end,
)
from tests.e2e.test_usage import Deployment, deployment  # noqa: F401 - the module's gateways
from tests.servers import MASTER_KEY, Process, spawn
from tests.threaded_server import ThreadedServer

ENV = {"COLUMNS": "400"}


@pytest.fixture(scope="module")
def world(deployment: Deployment) -> World:  # noqa: F811
    return build_world(deployment)


def start(world: World, *args: str, url: str | None = None) -> Process:
    return spawn(["logs", *args, "--url", url or world.deployment.gateway.url, "--key", MASTER_KEY], env=ENV)


DROP = 0  # in Front.answers: close the connection without answering
CUT = -1  # in Front.answers: a head promising a body, and the connection closed after part of it


class Front(ThreadedServer):
    """Plain HTTP in front of the gateway: each request is passed on, unless ``answers`` holds
    statuses, in which case the next request to the request log gets the first of them instead
    (an error in the gateway's shape), or its connection is closed unanswered (DROP) or with its
    answer cut short (CUT)."""

    def __init__(self, backend: int) -> None:
        self.backend = backend
        self.answers: deque[int] = deque()
        super().__init__(self._serve, name="front")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")  # GET: no body
            if self.answers and b" /admin/v1/logs" in head.split(b"\r\n", 1)[0]:
                status = self.answers.popleft()
                if status == CUT:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 100\r\n\r\n{\"object\": \"li")
                    await writer.drain()
                elif status != DROP:
                    body = json.dumps({"error": {"message": f"refused by the front ({status})",
                                                 "type": "api_error", "code": f"front_{status}"}}).encode()
                    writer.write(f"HTTP/1.1 {status} Front\r\nContent-Type: application/json\r\n"
                                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
                    await writer.drain()
                return
            back_reader, back_writer = await asyncio.open_connection("127.0.0.1", self.backend)
            back_writer.write(head)
            while data := await back_reader.read(65536):  # urllib asks for Connection: close
                writer.write(data)
                await writer.drain()
            back_writer.close()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest.fixture
def front(world: World) -> Iterator[Front]:
    server = Front(world.deployment.gateway.port)
    yield server
    server.stop()


def _until_taken(front: Front, timeout: float = 30.0) -> None:
    """Until the CLI has polled through every answer queued at the front."""
    deadline = time.monotonic() + timeout
    while front.answers:
        assert time.monotonic() < deadline, "the CLI stopped polling"
        time.sleep(0.05)


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


def test_abandoned_finds_the_streams_the_client_left(world: World) -> None:
    url = world.deployment.gateway.url
    tenant = f"left-{uuid.uuid4().hex[:6]}"  # its own tenant, apart from the other tests' calls
    _post(url, "/admin/v1/tenants", {"id": tenant, "name": tenant})
    key = _post(url, "/admin/v1/keys", {"models": ["*"], "tenant": tenant})["key"]
    read, left = stream_to_the_end(world.deployment, key), abandon_a_stream(world.deployment, key)
    for rid in (read, left):
        lookup(url, rid)
    found = {}
    for flag in ("--abandoned", "--not-abandoned"):
        code, output = cli(world, "--tenant", tenant, flag, "--json")
        assert code == 0, output
        found[flag] = [(r["request_id"], r["abandoned"]) for r in json.loads(output)["data"]]
    assert found == {"--abandoned": [(left, True)], "--not-abandoned": [(read, False)]}
    code, output = cli(world, "show", left)
    assert code == 0 and "abandoned" in output, output


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


def test_show_prints_each_record_of_a_request_id_sent_twice(world: World) -> None:
    """Two callers who sent the same X-Request-Id have a record each: ``show`` prints both (with
    --json the newest, and says how many there are), never one as if it were the only one."""
    rid = f"shared-{uuid.uuid4().hex}"
    keys = (world.keys["a"], world.keys["team_a"])
    for key in keys:
        world.deployment.sdk(key["key"]).chat.completions.create(
            model="gpt-4o-mini", messages=ask("the same id"), extra_headers={"x-request-id": rid})
    deadline = time.monotonic() + 30
    while len(world.get(request_id=rid).json()["data"]) < 2:
        assert time.monotonic() < deadline, "the two records never reached the request log"
        time.sleep(0.1)
    code, output = cli(world, "show", rid)
    assert code == 0, output
    assert all(key["id"] in output for key in keys), output
    assert "2 records have the request id" in output
    code, output = cli(world, "show", rid, "--json")
    assert code == 0, output
    assert f"2 records have the request id '{rid}'" in output and f"--request-id {rid}" in output


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


def test_follow_prints_every_record_of_a_request_id_sent_twice(world: World) -> None:
    """Two requests sent with the same X-Request-Id (a retrying proxy) have a record each; the
    follow prints both, not only the first one it saw of that id."""
    proc = start(world, "--follow", "--interval", "0.2", "--json", "--tenant", world.tenants[0])
    rid = f"twice-{uuid.uuid4().hex}"
    client = world.deployment.sdk(world.keys["a"]["key"])
    try:
        proc.wait_for_all(world.calls["plain"], timeout=30)  # the first page is printed
        client.chat.completions.create(model="gpt-4o-mini", messages=ask("once"),
                                       extra_headers={"x-request-id": rid})
        proc.wait_for_all(rid, timeout=30)  # the first record printed, its id seen
        client.chat.completions.create(model="gpt-4o-mini", messages=ask("twice"),
                                       extra_headers={"x-request-id": rid})
        deadline = time.monotonic() + 30
        while proc.output.count(f'"request_id":"{rid}"') < 2:
            assert time.monotonic() < deadline, proc.output[-2000:]
            time.sleep(0.1)
    finally:
        code = proc.stop(signal.SIGINT)
    assert code == 0, proc.output
    proc.wait_exit(10)
    lines = [json.loads(line) for line in proc.output.splitlines() if line.startswith("{")]
    printed = [r for r in lines if r["request_id"] == rid]
    assert len(printed) == 2 and printed[0]["created_at"] <= printed[1]["created_at"], printed


def test_control_characters_in_a_logged_body_are_shown_escaped(world: World) -> None:
    store_body(world.deployment, world.records["team"], "clear the screen \x1b[2J\x07 please", None)
    code, output = cli(world, "show", world.calls["team"])
    assert code == 0, output
    assert "clear the screen \\x1b[2J\\x07 please" in output
    assert "\x1b" not in output and "\x07" not in output


def test_follow_goes_on_through_polls_that_fail_for_a_while(world: World, front: Front) -> None:
    """A gateway restarting or waiting on its database (503, 502, no answer) interrupts the
    follow, it does not end it: each failed poll is a warning, the next ones wait longer, and
    the records made meanwhile are printed once the gateway answers again."""
    proc = start(world, "--follow", "--interval", "0.2", "--json", "--tenant", world.tenants[0],
                 url=front.url)
    try:
        proc.wait_for_all(world.calls["plain"], timeout=30)  # the first page came through
        front.answers.extend([503, DROP, CUT, 502])
        _until_taken(front)
        raw = world.deployment.sdk(world.keys["a"]["key"]).chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=ask("through a hiccup"))
        rid = raw.headers["x-request-id"]
        assert json.loads(proc.wait_for_all(rid, timeout=30))["request_id"] == rid
        proc.wait_for_all("following again after 4 failed polls", timeout=30)
    finally:
        code = proc.stop(signal.SIGINT)
    assert code == 0, proc.output
    proc.wait_exit(10)
    warnings = [line for line in proc.lines if line.startswith("warning: ")]
    assert len(warnings) == 4, proc.output
    assert "HTTP 503: refused by the front (503) (front_503)" in warnings[0]
    assert "cannot reach the gateway" in warnings[1] and "HTTP 502" in warnings[3]
    assert "cannot reach the gateway" in warnings[2] and "IncompleteRead" in warnings[2]  # cut short
    # The wait doubles with each poll failed in a row.
    assert [w.rsplit("trying again in ", 1)[1].strip() for w in warnings] == ["0.4 s", "0.8 s", "1.6 s",
                                                                               "3.2 s"]
    assert "Traceback" not in proc.output


@pytest.mark.parametrize("status", [401, 403, 404])
def test_follow_ends_on_a_refusal(world: World, front: Front, status: int) -> None:
    """A key revoked, a permission withdrawn or a gateway without the request log will not answer
    otherwise on the next poll: the follow ends with one error line and exit code 1."""
    proc = start(world, "--follow", "--interval", "0.2", "--json", "--tenant", world.tenants[0],
                 url=front.url)
    proc.wait_for_all(world.calls["plain"], timeout=30)
    front.answers.append(status)
    assert proc.wait_exit(30) == 1, proc.output
    assert f"error: HTTP {status}: refused by the front ({status})" in proc.output
    assert "warning:" not in proc.output and "Traceback" not in proc.output
