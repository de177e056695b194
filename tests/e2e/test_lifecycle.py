"""Process-level behaviour: embedded default, workers, graceful shutdown, client disconnects."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from switchboard.server import WORKER_READY_SECONDS
from tests.e2e.sdk import ask, stream_text
from tests.servers import (
    MASTER_KEY,
    UPSTREAM_KEY,
    Gateway,
    Mock,
    captured,
    free_port,
    new_marker,
    openai_config,
    running,
    spawn,
    start_gateway,
    start_mock,
    workers_of,
)
from tests.services import RedisServer

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


def test_embedded_default_serves_demo_model(tmp_path: Path) -> None:
    port = free_port()
    # A new user's environment: no master key, no config; nothing inherited from the test run.
    env = {"SWITCHBOARD_DATA_DIR": str(tmp_path / "data")}
    proc = spawn(["serve", "--port", str(port)], env=env, inherit=False)
    try:
        proc.wait_serving()
        key_file = tmp_path / "data" / "master_key"
        key = key_file.read_text().strip()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert (tmp_path / "data" / "switchboard.db").exists()
        assert key in proc.output  # printed so the quickstart can use it
        assert "add a real provider" in proc.output
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
        assert [m.id for m in client.models.list()] == ["demo", "demo-embedding"]
        reply = client.chat.completions.create(model="demo", messages=ask("quickstart"))
        assert reply.choices[0].message.content.endswith("You said: quickstart")
        streamed = client.chat.completions.create(model="demo", messages=ask("s"), stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices).endswith("said: s")
        assert len(client.embeddings.create(model="demo-embedding", input="x").data[0].embedding) == 8
    finally:
        assert proc.stop() == 0


def test_embedded_default_reuses_its_master_key(tmp_path: Path) -> None:
    env = {"SWITCHBOARD_DATA_DIR": str(tmp_path)}
    keys = []
    for _ in range(2):
        proc = spawn(["serve", "--port", str(free_port())], env=env, inherit=False)
        proc.wait_serving()
        proc.stop()
        keys.append((tmp_path / "master_key").read_text())
    assert keys[0] == keys[1]


def test_several_workers_without_redis_are_refused(mock_upstream: Mock, tmp_path: Path) -> None:
    # In-process counters cannot be shared by workers: a limit would be enforced per worker.
    port = free_port()
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(openai_config(mock_upstream)))
    proc = spawn(["serve", "--config", str(path), "--port", str(port), "--workers", "2"],
                 env={"SWITCHBOARD_MASTER_KEY": MASTER_KEY, "UPSTREAM_KEY": UPSTREAM_KEY,
                      "SWITCHBOARD_DATA_DIR": str(tmp_path / "data")})
    assert proc.wait_exit() == 2
    assert "server.workers: more than 1 worker needs redis.url" in proc.output
    with socket.socket() as sock:  # nothing listens: the gateway never started
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_both_workers_serve(mock_upstream: Mock, tmp_path: Path, redis_server: RedisServer) -> None:
    # Request ids carry a prefix drawn once per process, so the ids clients receive tell which
    # worker answered. Concurrent requests on fresh connections reach both workers within a
    # bounded number of rounds. Several workers share their counters through Redis.
    config = {**openai_config(mock_upstream), "redis": {"url": redis_server.url}}
    gw = start_gateway(config, tmp_path, args=["--workers", "2"])
    try:

        def one(i: int) -> str:
            prompt = f"w{i} mock:latency_ms=50"
            with httpx.Client(timeout=30) as http:  # a connection of its own
                resp = http.post(
                    f"{gw.base_url}/chat/completions",
                    json={"model": "gpt-4o-mini", "messages": ask(prompt)},
                    headers=AUTH,
                )
            assert resp.status_code == 200
            assert resp.json()["choices"][0]["message"]["content"].endswith(f"You said: {prompt}")
            rid = resp.headers["x-request-id"]
            assert re.fullmatch(r"[0-9a-f]{24}", rid), rid
            return rid

        prefixes: set[str] = set()
        with ThreadPoolExecutor(8) as pool:
            for attempt in range(20):
                prefixes.update(rid[:12] for rid in pool.map(one, range(attempt * 8, attempt * 8 + 8)))
                if len(prefixes) > 1:
                    break
        assert len(prefixes) == 2, f"only one worker answered: {prefixes}"
    finally:
        assert gw.process.stop() == 0


def _poll(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout}s"
        time.sleep(0.05)  # polling interval of a condition with a deadline, not synchronisation


def _exited_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


# Its waits for a respawn allow for the supervisor's health checks (WORKER_READY_SECONDS each),
# beyond the suite's 120 s; each has its own bound.
@pytest.mark.timeout(4 * WORKER_READY_SECONDS + 150)
def test_respawned_worker_serves_the_settings_the_parent_validated(
    mock_upstream: Mock, tmp_path: Path, redis_server: RedisServer
) -> None:
    # A worker the supervisor restarts (crash, OOM kill) must not read the config file again:
    # an edit made since the start would make workers behind one port disagree.
    config = {**openai_config(mock_upstream), "redis": {"url": redis_server.url}}
    # Hand-offs a parent killed outright left behind: removed at the next start.
    orphans = [tmp_path / "data" / f".serve-settings-{pid}-x" for pid in (_exited_pid(), "oldformat")]
    (tmp_path / "data").mkdir(mode=0o700)
    for orphan in orphans:
        orphan.write_bytes(b"secrets")
    gw = start_gateway(config, tmp_path, args=["--workers", "2"])
    try:
        assert not any(orphan.exists() for orphan in orphans)
        _poll(lambda: len(workers_of(gw.process.proc.pid)) == 2, "two workers")
        before = workers_of(gw.process.proc.pid)
        _poll(lambda: gw.process.output.count("Application startup complete") == 2, "two started workers")
        edited = {**config, "models": [{**m, "name": f"renamed-{m['name']}"} for m in config["models"]]}
        gw.config_path.write_text(yaml.safe_dump(edited))
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        # At least the one killed is replaced (on a loaded machine the supervisor may also replace
        # the other, whose health-check answer came late: every new worker reads the hand-off).
        # The supervisor notices a death between health checks, each waiting up to
        # WORKER_READY_SECONDS for a busy worker's answer: the deadline allows for two.
        respawn = 2 * WORKER_READY_SECONDS + 15
        _poll(lambda: len(workers_of(gw.process.proc.pid) - before) >= 1, "respawned worker", respawn)
        _poll(lambda: gw.process.output.count("Application startup complete") >= 3, "respawned worker up",
              respawn)

        def one(i: int) -> tuple[str, int]:
            with httpx.Client(timeout=30) as http:  # a connection of its own: any worker
                resp = http.post(
                    f"{gw.base_url}/chat/completions",
                    json={"model": "gpt-4o-mini", "messages": ask(f"respawn {i}")},
                    headers=AUTH,
                )
            return resp.headers.get("x-request-id", "")[:12], resp.status_code

        statuses: dict[str, set[int]] = {}
        with ThreadPoolExecutor(8) as pool:
            for attempt in range(20):
                for prefix, status in pool.map(one, range(attempt * 8, attempt * 8 + 8)):
                    statuses.setdefault(prefix, set()).add(status)
                if len(statuses) > 1:
                    break
        assert len(statuses) == 2, f"only one worker answered: {statuses}"
        assert all(s == {200} for s in statuses.values()), statuses
        assert "ConfigError" not in gw.process.output
        # The handed-over settings hold secrets: readable by the owner only, removed at exit.
        (handoff,) = (tmp_path / "data").glob(".serve-settings-*")
        assert stat.S_IMODE(handoff.stat().st_mode) == 0o600
    finally:
        assert gw.process.stop() == 0
    assert not list((tmp_path / "data").glob(".serve-settings-*"))


def test_workers_stop_when_their_parent_is_killed_outright(
    mock_upstream: Mock, tmp_path: Path, redis_server: RedisServer
) -> None:
    # A parent SIGKILLed (OOM killer, kill -9) must not leave its workers serving the port with no
    # supervisor: they drain and exit, and the port is free for the next start.
    config = {**openai_config(mock_upstream), "redis": {"url": redis_server.url}}
    gw = start_gateway(config, tmp_path, args=["--workers", "2"])
    parent = gw.process.proc.pid
    _poll(lambda: len(workers_of(parent)) == 2, "two workers")
    workers = workers_of(parent)
    os.kill(parent, signal.SIGKILL)
    gw.process.proc.wait(30)
    _poll(lambda: not any(running(pid) for pid in workers), "workers exiting")
    gone = f"the supervising process {parent} is gone"
    _poll(lambda: gw.process.output.count(gone) == 2, "both workers saying why they stop")
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", gw.port), timeout=5):
        pass


# A start, two replacements one after the other (each up to WORKER_READY_SECONDS) and a drain:
# over the suite's 120 s on a loaded host; every wait inside has its own bound.
@pytest.mark.timeout(2 * WORKER_READY_SECONDS + 180)
def test_sighup_with_workers_replaces_them_with_the_same_settings(
    mock_upstream: Mock, tmp_path: Path, redis_server: RedisServer
) -> None:
    # uvicorn's parent answers SIGHUP with a rolling restart: each old worker drains as on
    # SIGTERM (the stream in flight finishes), and the new ones run the settings of the start.
    config = {**openai_config(mock_upstream), "redis": {"url": redis_server.url}}
    gw = start_gateway(config, tmp_path, args=["--workers", "2"])
    try:
        parent = gw.process.proc.pid
        _poll(lambda: len(workers_of(parent)) == 2, "two workers")
        before = workers_of(parent)
        edited = {**config, "models": [{**m, "name": f"renamed-{m['name']}"} for m in config["models"]]}
        gw.config_path.write_text(yaml.safe_dump(edited))
        client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
        stream = iter(client.chat.completions.create(
            model="gpt-4o-mini", messages=ask("mock:chunk_delay_ms=100 mock:reply=" + "_".join(["x"] * 20)),
            stream=True,
        ))
        first = next(stream)
        os.kill(parent, signal.SIGHUP)
        text = "".join(c.choices[0].delta.content or "" for c in [first, *stream] if c.choices)
        assert text == " ".join(["x"] * 20)

        def replaced() -> bool:
            # uvicorn gives up a restart whose new worker is not ready within WORKER_READY_SECONDS
            # (it keeps the old worker): said at once, with the gateway's output.
            assert "aborting the restart" not in gw.process.output, gw.process.output
            return not workers_of(parent) & before and len(workers_of(parent)) == 2

        # One worker after the other starts and the old one drains: on a loaded machine each
        # start (imports, configuration, stores) takes several seconds.
        _poll(replaced, "replaced workers", timeout=2 * WORKER_READY_SECONDS + 30)
        with httpx.Client(timeout=30) as http:
            resp = http.post(f"{gw.base_url}/chat/completions", headers=AUTH,
                             json={"model": "gpt-4o-mini", "messages": ask("after the restart")})
        assert resp.status_code == 200, resp.text
    finally:
        assert gw.process.stop() == 0


def test_a_server_secret_that_does_not_open_the_database_is_one_line_and_exit_1(
    mock_upstream: Mock, tmp_path: Path
) -> None:
    gw = start_gateway(openai_config(mock_upstream), tmp_path)  # seals its hashing key
    assert gw.process.stop() == 0
    proc = spawn(["serve", "--config", str(gw.config_path), "--port", str(free_port())], env={
        "SWITCHBOARD_MASTER_KEY": MASTER_KEY, "UPSTREAM_KEY": UPSTREAM_KEY,
        "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"),
        "SWITCHBOARD_SECRET_KEY": "another-server-secret-0123456789abcdefghijkl",
    })
    assert proc.wait_exit() == 1
    assert proc.output.count("previous_secret_keys") == 1, proc.output
    assert "Traceback" not in proc.output and "Uvicorn running" not in proc.output


def test_sigterm_lets_inflight_stream_finish_and_stops_accepting(mock_upstream: Mock, tmp_path: Path) -> None:
    gw = start_gateway(openai_config(mock_upstream), tmp_path)
    client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=ask("mock:chunk_delay_ms=100 drain me"), stream=True
    )
    chunks = iter(stream)
    first = next(chunks)
    gw.process.proc.send_signal(signal.SIGTERM)
    gw.process.wait_for("Waiting for connections to close")
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", gw.port), timeout=5):
        pass
    rest = list(chunks)
    text = "".join(c.choices[0].delta.content or "" for c in [first, *rest] if c.choices)
    assert text.endswith("You said: mock:chunk_delay_ms=100 drain me")
    assert rest[-1].choices[0].finish_reason == "stop"
    assert gw.process.proc.wait(30) == 0


def test_client_disconnect_cancels_upstream_stream(gateway: Gateway, mock_upstream: Mock) -> None:
    marker, rid = new_marker(), new_marker()
    body = {
        "model": "gpt-4o-mini",
        "stream": True,
        "messages": ask(f"mock:chunk_delay_ms=200 mock:capture={marker} " + "long " * 50),
    }
    with (
        httpx.Client(timeout=30) as http,
        http.stream(
            "POST", f"{gateway.base_url}/chat/completions", json=body, headers={**AUTH, "X-Request-Id": rid}
        ) as resp,
    ):
        # The line iterator is kept: dropping it would close the connection at once (httpx's
        # stream closes when its generator is collected), before the check below.
        lines = resp.iter_lines()
        first = next(lines)
        assert first.startswith("data: ")
        # ~10 s of chunks are still to come upstream.
        assert captured(mock_upstream, marker)[0]["outcome"] == "pending"
    left = time.monotonic()
    # Leaving the block closed the connection: the gateway must close its upstream stream,
    # which the mock sees as its caller leaving before the stream was complete.
    (seen,) = captured(mock_upstream, marker, outcome="client_disconnected", timeout=5)
    assert seen["outcome"] == "client_disconnected"
    assert time.monotonic() - left < 2.0  # docs/api.md: within 0.25 s (with slack for a busy machine)
    gateway.process.wait_for_all(rid, "disconnected", timeout=10)


def test_stream_is_relayed_while_upstream_still_produces(client: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    prompt = f"mock:chunk_delay_ms=300 mock:capture={marker} one two three four five"
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=ask(prompt), stream=True)
    chunks = iter(stream)
    first = next(chunks)
    # The first chunk is here while the upstream has ~3 s of chunks still to send.
    assert first.choices[0].delta.role == "assistant"
    assert captured(mock_upstream, marker)[0]["outcome"] == "pending"
    rest = list(chunks)
    assert rest[-1].choices[0].finish_reason == "stop"
    assert stream_text([first, *rest]) == f"Hello from the Switchboard mock. You said: {prompt}"
    (seen,) = captured(mock_upstream, marker, outcome="completed")
    assert seen["outcome"] == "completed"


def test_client_disconnect_cancels_non_stream_request(gateway: Gateway, mock_upstream: Mock) -> None:
    marker, rid = new_marker(), new_marker()
    body = {"model": "gpt-4o-mini", "messages": ask(f"mock:latency_ms=5000 mock:capture={marker} slow")}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{gateway.base_url}/chat/completions",
            json=body,
            headers={**AUTH, "X-Request-Id": rid},
            timeout=0.5,
        )
    left = time.monotonic()
    # Well before the upstream would answer (5 s), the gateway has closed its upstream request.
    (seen,) = captured(mock_upstream, marker, outcome="client_disconnected", timeout=4)
    assert seen["outcome"] == "client_disconnected"
    assert time.monotonic() - left < 2.0  # docs/api.md: within 0.25 s (with slack for a busy machine)
    gateway.process.wait_for_all(rid, "disconnected", timeout=10)
    assert httpx.get(f"{gateway.url}/health/ready").status_code == 200


def test_mock_reports_expected_faults_without_tracebacks() -> None:
    mock = start_mock(api_key=None)
    dropped, hanging = new_marker(), new_marker()
    try:
        prompt = f"mock:disconnect_after=2 mock:capture={dropped}"
        body = {"model": "m", "stream": True, "messages": ask(prompt)}
        with (
            httpx.Client(timeout=10) as http,
            pytest.raises(httpx.RemoteProtocolError),
            http.stream("POST", f"{mock.url}/v1/chat/completions", json=body) as resp,
        ):
            for _ in resp.iter_bytes():
                pass
        assert captured(mock, dropped, outcome="dropped")[0]["outcome"] == "dropped"
        with ThreadPoolExecutor(1) as pool:
            body = {"model": "m", "messages": ask(f"mock:hang=1 mock:capture={hanging}")}
            answer = pool.submit(httpx.post, f"{mock.url}/v1/chat/completions", json=body, timeout=30)
            assert captured(mock, hanging)[0]["outcome"] == "pending"  # the request is hanging
            mock.process.stop()  # SIGTERM while the request hangs
            assert answer.result().status_code == 503
    finally:
        mock.process.stop()
    mock.process.wait_exit()
    out = mock.process.output
    assert "Finished server process" in out
    assert "Traceback" not in out
    assert "ERROR" not in out
    assert out.count("mock: dropping the connection after 2 chunk(s)") == 1
    assert out.count("mock: ending 1 unfinished request(s) at shutdown") == 1


@pytest.mark.parametrize(("args", "expected"), [
    (["--port", "99999"], "Input should be less than or equal to 65535"),
    (["--latency-ms", "-5"], "Input should be greater than or equal to 0"),
])
def test_mock_refuses_out_of_range_options(args: list[str], expected: str) -> None:
    # 99999 would be taken by the socket as 34463: refused, as serve refuses it.
    proc = spawn(["mock", *args], inherit=False)
    assert proc.wait_exit(30) == 2
    assert expected in proc.output
    assert "Uvicorn running" not in proc.output


def test_config_check_accepts_minimal_form(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(MINIMAL)
    proc = spawn(
        ["config", "check", str(path)], env={"UPSTREAM_KEY": "k", "SWITCHBOARD_MASTER_KEY": "m" * 12}
    )
    assert proc.proc.wait(30) == 0
    proc.wait_for("OK (1 provider(s), 1 model(s))")


MINIMAL = """
providers:
  - name: local-openai          # unique name
    type: openai                # later issues add more types
    api_base: http://127.0.0.1:9001/v1
    api_key: ${UPSTREAM_KEY}
models:
  - name: gpt-4o-mini           # what clients send as "model"
    provider: local-openai
    model: gpt-4o-mini          # id sent upstream
auth:
  master_key: ${SWITCHBOARD_MASTER_KEY}
"""


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        (
            MINIMAL,
            {"SWITCHBOARD_MASTER_KEY": "m" * 12},
            "providers[0].api_key: environment variable UPSTREAM_KEY is not set",
        ),
        (
            MINIMAL.replace("type: openai", "type: openia"),
            None,
            "providers[0].type: unknown provider type 'openia'",
        ),
        (MINIMAL.replace("provider: local-openai", "provider: other"), None, "unknown provider 'other'"),
        (MINIMAL + "extra_key: 1\n", None, "extra_key: unknown key"),
        (
            MINIMAL.replace(
                "    model: gpt-4o-mini          # id sent upstream",
                "    model: 5\n    timeouts: {total: -1}",
            ),
            None,
            "models[0].timeouts.total: Input should be greater than 0",
        ),
        # A bound set to infinity is no bound: a trickling client held for ever, a drain never ending.
        (MINIMAL + "server: {header_timeout_seconds: .inf}\n", None,
         "server.header_timeout_seconds: Input should be less than or equal to 86400"),
        (MINIMAL + "server: {drain_seconds: .inf}\n", None,
         "server.drain_seconds: Input should be less than or equal to 86400"),
        (MINIMAL + "server: {keep_alive_seconds: 1e300}\n", None,
         "server.keep_alive_seconds: Input should be less than or equal to 86400"),
        (MINIMAL.replace("    api_key: ${UPSTREAM_KEY}", "    api_key: k\n    timeouts: {total: .inf}"), None,
         "providers[0].timeouts.total: Input should be less than or equal to 86400"),
        ("providers: [\n", None, "invalid YAML"),
        ("- just\n- a list\n", None, "(top level): expected a mapping"),
    ],
)
def test_config_check_reports_file_key_and_problem(
    tmp_path: Path, text: str, env: dict[str, str] | None, expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    proc = spawn(
        ["config", "check", str(path)],
        env=env if env is not None else {"UPSTREAM_KEY": "k", "SWITCHBOARD_MASTER_KEY": "m" * 12},
        inherit=False,
    )
    assert proc.wait_exit(30) == 2
    assert expected in proc.output
    assert str(path) in proc.output
    assert "Traceback" not in proc.output


def test_config_check_missing_file(tmp_path: Path) -> None:
    proc = spawn(["config", "check", str(tmp_path / "absent.yaml")])
    assert proc.proc.wait(30) == 2
    proc.wait_for("file not found")


def test_serve_with_invalid_config_exits_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("auth: {}\n")
    proc = spawn(["serve", "--config", str(path), "--port", str(free_port())], inherit=False)
    assert proc.wait_exit(30) == 2
    assert "auth.master_key: Field required" in proc.output
    assert "Traceback" not in proc.output


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]])
def test_serve_on_a_port_in_use_is_one_line_and_exit_1(
    mock_upstream: Mock, tmp_path: Path, redis_server: RedisServer, workers: list[str]
) -> None:
    # As for an unreachable database: said before anything starts, not uvicorn's error and exit 3.
    config = {**openai_config(mock_upstream), "redis": {"url": redis_server.url}}
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = spawn(["serve", "--config", str(path), "--port", str(port), *workers], env={
            "SWITCHBOARD_MASTER_KEY": MASTER_KEY, "UPSTREAM_KEY": UPSTREAM_KEY,
            "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"),
        })
        assert proc.wait_exit(30) == 1
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in proc.output
    assert "Application startup" not in proc.output
    assert "Traceback" not in proc.output


def test_config_check_never_prints_the_secrets_it_resolves(tmp_path: Path) -> None:
    # The children inherit nothing: the secret can reach them only through the env given here.
    secret = "sk-very-secret-upstream-value"
    master = "m" * 12
    good = tmp_path / "ok.yaml"
    good.write_text(MINIMAL)
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL.replace("api_base: http://127.0.0.1:9001/v1", "api_base: 5"))

    def check(path: Path, env: dict[str, str]) -> tuple[int, str]:
        proc = spawn(["config", "check", str(path)], env=env, inherit=False)
        code = proc.wait_exit(30)
        return code, proc.output

    # Without the variable the check says so: it does resolve the key from the environment.
    code, out = check(bad, {"SWITCHBOARD_MASTER_KEY": master})
    assert code == 2 and "environment variable UPSTREAM_KEY is not set" in out
    # With it, that complaint is gone (the secret was read), the real problem is reported, and
    # the secret is not printed.
    code, out = check(bad, {"SWITCHBOARD_MASTER_KEY": master, "UPSTREAM_KEY": secret})
    assert code == 2
    assert "providers[0].api_base" in out and "UPSTREAM_KEY is not set" not in out
    assert secret not in out and master not in out
    code, out = check(good, {"SWITCHBOARD_MASTER_KEY": master, "UPSTREAM_KEY": secret})
    assert code == 0 and "OK (1 provider(s), 1 model(s))" in out
    assert secret not in out and master not in out
