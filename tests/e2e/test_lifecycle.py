"""Process-level behaviour: embedded default, workers, graceful shutdown, client disconnects."""

from __future__ import annotations

import os
import signal
import socket
import stat
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.sdk import ask
from tests.servers import MASTER_KEY, Gateway, Mock, free_port, openai_config, spawn, start_gateway


def test_embedded_default_serves_demo_model(tmp_path: Path) -> None:
    port = free_port()
    env = {"SWITCHBOARD_DATA_DIR": str(tmp_path / "data"), "SWITCHBOARD_MASTER_KEY": ""}
    proc = spawn(["serve", "--port", str(port)], env=env)
    try:
        proc.wait_for("Application startup complete")
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
    env = {"SWITCHBOARD_DATA_DIR": str(tmp_path), "SWITCHBOARD_MASTER_KEY": ""}
    keys = []
    for _ in range(2):
        proc = spawn(["serve", "--port", str(free_port())], env=env)
        proc.wait_for("Application startup complete")
        proc.stop()
        keys.append((tmp_path / "master_key").read_text())
    assert keys[0] == keys[1]


def test_multiple_workers_serve(mock_upstream: Mock, tmp_path: Path) -> None:
    gw = start_gateway(openai_config(mock_upstream), tmp_path, args=["--workers", "2"])
    try:
        client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0)
        for i in range(6):
            assert client.chat.completions.create(model="gpt-4o-mini", messages=ask(f"w{i}")).choices
    finally:
        assert gw.process.stop() == 0


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


def mock_stats(mock: Mock) -> dict[str, int]:
    return httpx.get(f"{mock.url}/_mock/stats").json()


def test_client_disconnect_cancels_upstream_stream(gateway: Gateway, mock_upstream: Mock) -> None:
    before = mock_stats(mock_upstream)["cancelled"]
    body = {
        "model": "gpt-4o-mini",
        "stream": True,
        "messages": ask("mock:chunk_delay_ms=200 " + "long " * 50),
    }
    with (
        httpx.Client(timeout=30) as http,
        http.stream(
            "POST",
            f"{gateway.base_url}/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
        ) as resp,
    ):
        first = next(resp.iter_lines())
        assert first.startswith("data: ")
    # The gateway notices the disconnect and closes its upstream stream; the mock counts that.
    gateway.process.wait_for("client disconnected")
    with httpx.Client(timeout=30) as http:
        for _ in range(100):
            if mock_stats(mock_upstream)["cancelled"] > before:
                break
            http.get(f"{mock_upstream.url}/_mock/stats")  # a round trip lets the mock finish its cleanup
    assert mock_stats(mock_upstream)["cancelled"] == before + 1


def test_stream_is_relayed_while_upstream_still_produces(client: openai.OpenAI, mock_upstream: Mock) -> None:
    before = mock_stats(mock_upstream)["completed"]
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=ask("mock:chunk_delay_ms=300 one two three four five"), stream=True
    )
    chunks = iter(stream)
    first = next(chunks)
    # The first chunk is here while the upstream has ~3 s of chunks still to send.
    assert first.choices[0].delta.role == "assistant"
    assert mock_stats(mock_upstream)["completed"] == before
    rest = list(chunks)
    assert rest[-1].choices[0].finish_reason == "stop"
    assert mock_stats(mock_upstream)["completed"] == before + 1


def test_client_disconnect_cancels_non_stream_request(gateway: Gateway) -> None:
    body = {"model": "gpt-4o-mini", "messages": ask("mock:latency_ms=5000 slow")}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{gateway.base_url}/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
            timeout=0.5,
        )
    gateway.process.wait_for("client disconnected", timeout=10)
    assert httpx.get(f"{gateway.url}/health/ready").status_code == 200


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
    )
    assert proc.proc.wait(30) == 2
    proc.wait_for(expected)
    assert str(path) in proc.output
    assert "Traceback" not in proc.output


def test_config_check_missing_file(tmp_path: Path) -> None:
    proc = spawn(["config", "check", str(tmp_path / "absent.yaml")])
    assert proc.proc.wait(30) == 2
    proc.wait_for("file not found")


def test_serve_with_invalid_config_exits_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("auth: {}\n")
    proc = spawn(["serve", "--config", str(path), "--port", str(free_port())])
    assert proc.proc.wait(30) == 2
    proc.wait_for("auth.master_key: Field required")
    assert "Traceback" not in proc.output


def test_secrets_not_in_environment_dump_of_config_check(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(MINIMAL.replace("api_base: http://127.0.0.1:9001/v1", "api_base: 5"))
    secret = "sk-very-secret-upstream-value"
    proc = spawn(
        ["config", "check", str(path)], env={"UPSTREAM_KEY": secret, "SWITCHBOARD_MASTER_KEY": "m" * 12}
    )
    proc.proc.wait(30)
    assert secret not in proc.output
    assert os.environ.get("UPSTREAM_KEY") != secret
