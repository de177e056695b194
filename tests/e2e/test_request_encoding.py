"""Compressed request bodies (``Content-Encoding``): agents that send long conversations may
compress them. gzip (and x-gzip), deflate and zstd (OpenAI's Codex CLI) are read on every endpoint
with a JSON body, held
to ``server.max_body_bytes`` once decompressed as well as on the wire; another coding is a 415
naming it, and a corrupt or cut stream a 400, never "not valid JSON". Parsing happens before any
state is read: the embedded default suffices."""

from __future__ import annotations

import base64
import gzip
import json
import random
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import zstandard

from switchboard.http.asgi import INFLATE_IN_THREAD_BYTES
from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, openai_config, start_gateway

LIMIT = 65536
AUTH = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "squeezed"}]}).encode()
CODINGS = {"gzip": gzip.compress, "x-gzip": gzip.compress, "deflate": zlib.compress,
           "zstd": zstandard.compress}


def zstd_stream(data: bytes) -> bytes:
    """zstd as a streaming encoder writes it (Codex CLI's): no content size in the frame header."""
    encoder = zstandard.ZstdCompressor().compressobj()
    return encoder.compress(data) + encoder.flush()


@pytest.fixture(scope="module")
def gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = openai_config(mock_upstream, max_body_bytes=LIMIT)
    config["files"] = {"provider": "local-openai"}  # /v1/batches reads its JSON body on its own edge
    gw = start_gateway(config, tmp_path_factory.mktemp("request-encoding"))
    yield gw
    gw.process.stop()


def post(gateway: Gateway, path: str, body: bytes, coding: str) -> httpx.Response:
    headers = {**AUTH, "Content-Encoding": coding, "anthropic-version": "2023-06-01"}
    return httpx.post(gateway.url + path, content=body, headers=headers, timeout=30)


@pytest.mark.parametrize("coding", sorted(CODINGS))
def test_a_compressed_body_is_read_as_the_json_it_holds(gateway: Gateway, coding: str) -> None:
    answer = post(gateway, "/v1/chat/completions", CODINGS[coding](CHAT), coding)
    assert answer.status_code == 200, answer.text
    assert "squeezed" in answer.json()["choices"][0]["message"]["content"]
    messages = json.dumps({"model": "gpt-4o-mini", "max_tokens": 20,
                           "messages": [{"role": "user", "content": "squeezed too"}]}).encode()
    answer = post(gateway, "/v1/messages", CODINGS[coding](messages), coding.upper())
    assert answer.status_code == 200, answer.text
    assert "squeezed too" in answer.json()["content"][0]["text"]
    # The batches edge reads its body too: what it holds is then judged as usual.
    batch = json.dumps({"input_file_id": "file-none", "endpoint": "/v1/chat/completions",
                        "completion_window": "24h"}).encode()
    answer = post(gateway, "/v1/batches", CODINGS[coding](batch), coding)
    assert answer.status_code == 404 and "file-none" in answer.text, answer.text


@pytest.mark.parametrize(("coding", "squeeze"), [("gzip", gzip.compress), ("zstd", zstandard.compress),
                                                ("zstd", zstd_stream)], ids=["gzip", "zstd", "zstd-stream"])
def test_a_body_that_inflates_past_the_limit_is_a_413(gateway: Gateway, coding: str, squeeze: Any) -> None:
    padded = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "0" * LIMIT}]})
    bomb = squeeze(padded.encode())
    assert len(bomb) < LIMIT // 10  # small on the wire
    answer = post(gateway, "/v1/chat/completions", bomb, coding)
    assert answer.status_code == 413, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and "decompressed" in error["message"]


def _zstd_frame(data: bytes, claimed: int) -> bytes:
    """One zstd frame holding ``data`` as a raw block, its header claiming ``claimed`` bytes (RFC
    8878 3.1.1: an 8-byte content size, a 1 MiB window)."""
    header = b"\x28\xb5\x2f\xfd" + bytes([0xC0, 0x50]) + struct.pack("<Q", claimed)
    return header + (1 | len(data) << 3).to_bytes(3, "little") + data  # the last block, raw


def test_a_zstd_frame_claiming_a_huge_size_is_refused_without_allocating_it(gateway: Gateway) -> None:
    honest = post(gateway, "/v1/chat/completions", _zstd_frame(CHAT, len(CHAT)), "zstd")
    assert honest.status_code == 200, honest.text
    # The header says 1 TiB: not allocated (the process would fail); the frame ends long before.
    lying = post(gateway, "/v1/chat/completions", _zstd_frame(CHAT, 1 << 40), "zstd")
    assert lying.status_code == 400, lying.text
    assert lying.json()["error"]["code"] == "invalid_content_encoding"
    # A header whose size is past the limit, with that much behind it, is the usual 413.
    padded = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "0" * LIMIT}]})
    large = post(gateway, "/v1/chat/completions", _zstd_frame(padded.encode(), len(padded)), "zstd")
    assert large.status_code == 413, large.text


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/batches"])
@pytest.mark.parametrize("coding", ["br", "compress"])
def test_another_coding_is_a_415_naming_it(gateway: Gateway, coding: str, path: str) -> None:
    answer = post(gateway, path, b"(\xb5/\xfd not json", coding)
    assert answer.status_code == 415, answer.text
    error = answer.json()["error"]
    assert error["code"] == "unsupported_content_encoding" and f"'{coding}'" in error["message"]


def test_a_gzip_body_of_several_members_is_one_content(gateway: Gateway) -> None:
    """RFC 1952: members one after another (as concatenated .gz files are) decompress to their
    contents one after another."""
    half = len(CHAT) // 2
    body = gzip.compress(CHAT[:half]) + gzip.compress(CHAT[half:])
    answer = post(gateway, "/v1/chat/completions", body, "gzip")
    assert answer.status_code == 200, answer.text
    # The limit counts every member: two members, each within it, past it together.
    padded = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "0" * LIMIT}]})
    half = len(padded) // 2
    two = gzip.compress(padded[:half].encode()) + gzip.compress(padded[half:].encode())
    answer = post(gateway, "/v1/chat/completions", two, "gzip")
    assert answer.status_code == 413, answer.text
    # Members are counted (each costs a decoder): 64 make a body, 65 do not.
    empty = gzip.compress(b"")
    assert post(gateway, "/v1/chat/completions", empty * 63 + gzip.compress(CHAT), "gzip").status_code == 200
    many = post(gateway, "/v1/chat/completions", empty * 64 + gzip.compress(CHAT), "gzip")
    assert many.status_code == 400, many.text
    error = many.json()["error"]
    assert error["code"] == "invalid_content_encoding" and "64 gzip members" in error["message"]


@pytest.mark.parametrize("body", [gzip.compress(CHAT)[:-12], b"\x1f\x8b not gzip at all",
                                  gzip.compress(CHAT) + b"trailing",
                                  gzip.compress(CHAT) + gzip.compress(CHAT)[:-12]],
                         ids=["cut", "corrupt", "trailing", "second-member-cut"])
def test_a_stream_that_is_not_one_whole_gzip_is_a_400(gateway: Gateway, body: bytes) -> None:
    answer = post(gateway, "/v1/chat/completions", body, "gzip")
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_content_encoding" and "gzip" in error["message"]


@pytest.mark.parametrize("body", [zstandard.compress(CHAT)[:-6], zstd_stream(CHAT)[:-3],
                                  b"(\xb5/\xfd not zstd", b"\x1f\x8b gzip, not zstd",
                                  zstandard.compress(CHAT) + b"trailing", b""],
                         ids=["cut", "cut-stream", "corrupt", "other-coding", "trailing", "empty"])
def test_a_stream_that_is_not_whole_zstd_frames_is_a_400(gateway: Gateway, body: bytes) -> None:
    answer = post(gateway, "/v1/chat/completions", body, "zstd")
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_content_encoding" and "zstd" in error["message"]


def test_zstd_frames_one_after_another_are_one_body(gateway: Gateway) -> None:
    # RFC 8878: a zstd content may be several frames; they are read as one.
    half = len(CHAT) // 2
    answer = post(gateway, "/v1/chat/completions",
                  zstandard.compress(CHAT[:half]) + zstd_stream(CHAT[half:]), "zstd")
    assert answer.status_code == 200, answer.text
    assert "squeezed" in answer.json()["choices"][0]["message"]["content"]


def test_identity_and_a_repeated_coding(gateway: Gateway) -> None:
    assert post(gateway, "/v1/chat/completions", CHAT, "identity").status_code == 200
    headers = [*AUTH.items(), ("Content-Encoding", "gzip"), ("Content-Encoding", "gzip")]
    answer = httpx.post(gateway.url + "/v1/chat/completions", content=gzip.compress(gzip.compress(CHAT)),
                        headers=headers, timeout=30)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "duplicate_header", answer.text


def test_mcp_reads_a_compressed_json_rpc_body(gateway: Gateway) -> None:
    rpc = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}).encode()
    headers = {**AUTH, "Content-Encoding": "gzip", "Accept": "application/json"}
    answer = httpx.post(gateway.url + "/mcp", content=gzip.compress(rpc), headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    reply = answer.json()
    assert reply["id"] == 7 and "tools" in reply["result"], reply


def _form(boundary: str) -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\n"
            f"Content-Type: application/jsonl\r\n\r\n{{}}\r\n--{boundary}--\r\n").encode()


@pytest.mark.parametrize("path", ["/v1/files", "/v1/audio/transcriptions"])
@pytest.mark.parametrize("coding", ["gzip", "br"])
def test_a_streamed_multipart_upload_refuses_a_compressed_body(
    gateway: Gateway, path: str, coding: str,
) -> None:
    # The multipart endpoints parse the body as it arrives: a compressed one is a clear 415, not
    # a complaint about a boundary the parser never found.
    boundary = "squeezedboundary"
    headers = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Encoding": coding,
               "Content-Type": f"multipart/form-data; boundary={boundary}"}
    squeezed = gzip.compress(_form(boundary))
    answer = httpx.post(gateway.url + path, content=squeezed, headers=headers, timeout=30)
    assert answer.status_code == 415, answer.text
    error = answer.json()["error"]
    assert error["code"] == "unsupported_content_encoding" and f"'{coding}'" in error["message"], error
    # Uncompressed, the same upload is read (the transcription then fails on its made-up audio).
    del headers["Content-Encoding"]
    plain = httpx.post(gateway.url + path, content=_form(boundary), headers=headers, timeout=30)
    assert plain.status_code != 415, plain.text


def test_a_large_compressed_body_is_read_whole(
    mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # Over INFLATE_IN_THREAD_BYTES on the wire: decompressed in a worker thread, with the same result.
    config = openai_config(mock_upstream, max_body_bytes=8 << 20)
    config["models"].append({"name": "roomy", "provider": "local-openai", "model": "gpt-4o-mini",
                             "info": {"context_window": 10_000_000}})
    gw = start_gateway(config, tmp_path_factory.mktemp("request-encoding-large"))
    try:
        noise = base64.b64encode(random.Random(7).randbytes(3 << 20)).decode()
        body = json.dumps({"model": "roomy", "max_tokens": 5,
                           "messages": [{"role": "user", "content": f"mock:capture={new_marker()} {noise}"}]})
        marker = json.loads(body)["messages"][0]["content"].split()[0].split("=")[1]
        for n, (coding, squeeze) in enumerate([("gzip", gzip.compress), ("zstd", zstd_stream)], 1):
            squeezed = squeeze(body.encode())
            assert len(squeezed) > INFLATE_IN_THREAD_BYTES
            answer = post(gw, "/v1/chat/completions", squeezed, coding)
            assert answer.status_code == 200, answer.text[:500]
            sent = captured(mock_upstream, marker, count=n)
            assert sent[-1]["body"]["messages"][0]["content"].endswith(noise[-100:]), coding
    finally:
        gw.process.stop()
