"""A client that leaves a relayed answer (speech audio, a file's content, a streamed
transcription) while the upstream holds it open: the upstream's connection ends at once, even
when the upstream answered first and never read the large request body still queued for it,
and the record says the answer was abandoned with the status sent.

The upstream (tests/held_upstream.py) answers before reading the body, sends a first piece and
then nothing until the gateway ends the connection, which it reports. The client is a raw
socket that reads up to that first piece and closes: no write of the gateway's finds the client
gone, so only the disconnect watcher can notice it.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.test_metrics import parse, total
from tests.held_upstream import FILE_ID, READY, HeldUpstream
from tests.servers import MASTER_KEY, Gateway, start_gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
MIB = 1024 * 1024
# Far more than the socket buffers between the gateway and the upstream take: most of it is
# still queued in the gateway when the client leaves.
BIG = 8 * MIB
# The client left after the first piece; the upstream's connection must end well before the
# upstream's own minute is over (a graceful close waits for the queued body, which the
# upstream never reads).
ENDED_WITHIN = 10.0


@pytest.fixture(scope="module")
def held() -> Iterator[HeldUpstream]:
    server = HeldUpstream()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(held: HeldUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config: dict[str, Any] = {
        "providers": [{"name": "held", "type": "openai", "api_base": f"{held.url}/v1", "api_key": "sk-held"},
                      {"name": "early413", "type": "openai", "api_base": f"{held.url}/early413/v1",
                       "api_key": "sk-held"}],
        "models": [
            {"name": "held-tts", "provider": "held", "model": "tts-1",
             "info": {"mode": "audio_speech", "input_cost_per_mchar": 15}},
            {"name": "held-transcribe", "provider": "held", "model": "gpt-4o-transcribe",
             "info": {"mode": "audio_transcription", "input_cost_per_mtok": 2.5, "output_cost_per_mtok": 10}},
            {"name": "early413-transcribe", "provider": "early413", "model": "gpt-4o-transcribe",
             "info": {"mode": "audio_transcription"}},
        ],
        "files": {"provider": "held"},
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
    }
    gw = start_gateway(config, tmp_path_factory.mktemp("held"))
    yield gw
    gw.process.stop()


def leave_after_first_piece(gw: Gateway, request: bytes, first: bytes) -> bytes:
    """Sends ``request``, reads the answer up to ``first`` and closes."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as sock:
        sock.sendall(request)
        got = b""
        while first not in got:
            piece = sock.recv(65536)
            assert piece, got[:300]
            got += piece
    return got


def head(method: str, path: str, rid: str, extra: str = "") -> str:
    return (f"{method} {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {MASTER_KEY}\r\n"
            f"X-Request-Id: {rid}\r\n{extra}\r\n")


def logged(gw: Gateway, rid: str, timeout: float = 20.0) -> dict[str, Any]:
    """The request's record once the ledger has it."""
    deadline = time.monotonic() + timeout
    while True:
        resp = httpx.get(f"{gw.url}/admin/v1/logs", params={"request_id": rid}, headers=ADMIN, timeout=30)
        assert resp.status_code == 200, resp.text
        if resp.json()["data"]:
            return dict(resp.json()["data"][0])
        assert time.monotonic() < deadline, f"{rid} never reached the request log"
        time.sleep(0.1)


def test_speech_left_while_its_large_body_is_queued_ends_the_upstream_call_at_once(
        gateway: Gateway, held: HeldUpstream) -> None:
    """Speech whose upstream answered before reading a large body (long ``instructions``) and
    then never read it: the client leaving ends the upstream's connection at once, and the
    record is the answer abandoned with its 200."""
    rid = f"speech-held-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"model": "held-tts", "voice": "alloy", "input": "hi",
                       "instructions": "x" * BIG}).encode()
    got = leave_after_first_piece(gateway, head(
        "POST", "/v1/audio/speech", rid,
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n").encode() + body, READY)
    assert got.startswith(b"HTTP/1.1 200 "), got[:300]
    assert held.wait_ended("/v1/audio/speech", ENDED_WITHIN), "the upstream's connection stayed open"
    record = logged(gateway, rid)
    assert record["status"] == 200 and record["abandoned"] is True, record
    assert record["metadata"]["client_disconnected"] is True


def test_a_streamed_transcription_left_while_its_upload_is_queued_ends_the_upstream_call_at_once(
        gateway: Gateway, held: HeldUpstream) -> None:
    """The same for a streamed transcription, whose upload is sent as a stream of its own (a
    large audio file the upstream never read)."""
    rid = f"transcribe-held-{uuid.uuid4().hex[:8]}"
    boundary = "held-boundary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nheld-transcribe\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"stream\"\r\n\r\ntrue\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp3\"\r\n"
            f"Content-Type: audio/mpeg\r\n\r\n").encode()
    form += b"\0" * (BIG * 2) + f"\r\n--{boundary}--\r\n".encode()  # 16 MiB of audio
    got = leave_after_first_piece(gateway, head(
        "POST", "/v1/audio/transcriptions", rid,
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(form)}\r\n",
    ).encode() + form, b"ready")
    assert got.startswith(b"HTTP/1.1 200 "), got[:300]
    assert held.wait_ended("/v1/audio/transcriptions", ENDED_WITHIN), "the upstream's connection stayed open"
    record = logged(gateway, rid)
    assert record["status"] == 200 and record["abandoned"] is True, record
    assert record["metadata"]["client_disconnected"] is True


def test_a_file_content_left_part_way_ends_the_upstream_call_at_once(
        gateway: Gateway, held: HeldUpstream) -> None:
    """A file's content left after its first bytes, the upstream sending nothing more: noticed
    at once (not at a next write that may never come), the upstream's connection ended, and the
    request recorded with the status sent (200) in the failure log and the metrics, not as a
    499, and no longer counted as a stream in flight."""
    metrics = f"{gateway.url}/metrics"
    uploaded = httpx.post(f"{gateway.url}/v1/files", headers=ADMIN, data={"purpose": "batch"},
                          files={"file": ("a.jsonl", b"{}\n")}, timeout=30)
    assert uploaded.status_code == 200 and uploaded.json()["id"] == FILE_ID, uploaded.text
    ok_before, gone_before = files_counted(metrics)
    rid = f"content-held-{uuid.uuid4().hex[:8]}"
    path = f"/v1/files/{FILE_ID}/content"
    got = leave_after_first_piece(gateway, head("GET", path, rid).encode(), READY)
    assert got.startswith(b"HTTP/1.1 200 "), got[:300]
    assert held.wait_ended(path, ENDED_WITHIN), "the upstream's connection stayed open"
    line = gateway.process.wait_for_all(f"request_id={rid}", "request failed", timeout=20)
    assert "status=200" in line and "client_disconnected=true" in line, line
    deadline = time.monotonic() + 20
    while (now := files_counted(metrics))[0] < ok_before + 1:
        assert time.monotonic() < deadline, now
        time.sleep(0.1)
    assert now == (ok_before + 1, gone_before)
    samples = parse(httpx.get(metrics, headers=ADMIN, timeout=10).text)
    assert total(samples, "switchboard_streams_in_flight") == 0


def files_counted(metrics: str) -> tuple[float, float]:
    """``switchboard_requests_total`` of the files operation answered 200, and recorded 499."""
    samples = parse(httpx.get(metrics, headers=ADMIN, timeout=10).text)
    return (total(samples, "switchboard_requests_total", operation="files", status="200"),
            total(samples, "switchboard_requests_total", operation="files", status="499"))


@pytest.mark.parametrize("stream", [False, True])
def test_an_upload_refused_by_the_upstream_before_it_read_it_ends_the_upstream_connection_at_once(
        gateway: Gateway, held: HeldUpstream, stream: bool) -> None:
    """A transcription (streamed or not) whose upstream answers a whole 413 before reading the
    20 MiB upload: the client gets the error, and the upstream's connection, with most of the
    upload still queued for it, ends at once rather than waiting (in vain) for the upstream to
    read the rest."""
    path = "/early413/v1/audio/transcriptions"
    before = held.ended.count(path)
    audio = b"\0" * (20 * MIB)
    fields = {"model": "early413-transcribe", "stream": "true" if stream else "false"}
    resp = httpx.post(f"{gateway.url}/v1/audio/transcriptions", headers=ADMIN, timeout=30,
                      data=fields, files={"file": ("a.mp3", audio, "audio/mpeg")})
    assert resp.status_code == 413, resp.text
    assert resp.json()["error"]["message"], resp.text
    with held.changed:
        ended = held.changed.wait_for(lambda: held.ended.count(path) > before, ENDED_WITHIN)
    assert ended, "the upstream's connection stayed open"


def test_a_file_upload_refused_by_the_upstream_before_it_read_it_ends_the_upstream_connection_at_once(
        gateway: Gateway, held: HeldUpstream) -> None:
    """The same for ``POST /v1/files``, whose body is the caller's, streamed on as it arrives
    rather than spooled first: the caller gets the 413, and the upstream's connection, with the
    rest of the 20 MiB file queued for it, ends at once."""
    path = "/early413/v1/files"
    before = held.ended.count(path)
    named = {**ADMIN, "x-switchboard-model": "early413-transcribe"}  # the files go to its provider
    resp = httpx.post(f"{gateway.url}/v1/files", headers=named, timeout=30, data={"purpose": "batch"},
                      files={"file": ("a.jsonl", b"\0" * (20 * MIB), "application/jsonl")})
    assert resp.status_code == 413, resp.text
    assert resp.json()["error"]["message"] == "request too large", resp.text
    with held.changed:
        ended = held.changed.wait_for(lambda: held.ended.count(path) > before, ENDED_WITHIN)
    assert ended, "the upstream's connection stayed open"

