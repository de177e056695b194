"""The streaming multipart reader of uploads: parts found wherever the reads split the body
(a boundary cut in two included), the file's bytes unchanged, limits held, and malformed
bodies refused as 400 invalid_multipart; and the batch output's usage lines."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import pytest

from switchboard.errors import PayloadTooLarge, UnsupportedMediaType
from switchboard.http.files import multipart
from switchboard.http.files.costing import OutputTooLarge, line_usage, lines

FORM = (b"--xyz\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
        b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a b.jsonl\"\r\n"
        b"Content-Type: application/jsonl\r\n\r\n" + b"line\r\n--xy not the end\r\n" * 50 +
        b"\r\n--xyz--\r\n")


def receiver(body: bytes, size: int) -> Any:
    pieces = [body[i:i + size] for i in range(0, len(body), size)] or [b""]

    async def receive() -> dict[str, Any]:
        piece = pieces.pop(0)
        return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

    return receive


async def read_form(body: bytes, size: int, limit: int = 1 << 20) -> list[tuple[str, str | None, bytes]]:
    reader = multipart.MultipartReader(receiver(body, size), b"xyz", limit)
    out = []
    while (part := await reader.next_part()) is not None:
        data = b"".join([piece async for piece in reader.data()])
        out.append((part.name, part.filename, data))
    return out


@pytest.mark.parametrize("size", [1, 2, 5, 7, 64, 100_000])
async def test_parts_whatever_the_reads(size: int) -> None:
    parts = await read_form(FORM, size)
    assert [(n, f) for n, f, _ in parts] == [("purpose", None), ("file", "a b.jsonl")]
    assert parts[0][2] == b"batch"
    assert parts[1][2] == b"line\r\n--xy not the end\r\n" * 50


async def test_limits_and_malformed_bodies() -> None:
    with pytest.raises(PayloadTooLarge):
        await read_form(FORM, 64, limit=100)
    for body in (b"", b"no boundary at all", FORM[:-12], b"--xyz\r\nNo-Colon\r\n\r\nx\r\n--xyz--\r\n",
                 b"--xyz\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--xyz--\r\n",
                 b"--xyz\r\nContent-Disposition: form-data\r\n\r\nx\r\n--xyz--\r\n"):
        with pytest.raises(multipart.MalformedMultipart):
            await read_form(body, 3)


def test_boundary_and_names() -> None:
    assert multipart.boundary_of('multipart/form-data; boundary="a b"') == b"a b"
    assert multipart.boundary_of("multipart/form-data; charset=utf-8; boundary=xyz") == b"xyz"
    with pytest.raises(UnsupportedMediaType):
        multipart.boundary_of("application/json")
    with pytest.raises(multipart.MalformedMultipart):
        multipart.boundary_of("multipart/form-data")
    assert multipart.safe_filename('../../etc/pa"ss\r\nwd') == "passwd"
    assert multipart.safe_filename(None) == "upload"
    assert multipart.safe_content_type("text/plain; charset=x") == "text/plain"
    assert multipart.safe_content_type("evil\r\nx: y") == "application/octet-stream"


async def test_encoded_form_reads_back() -> None:
    async def data() -> AsyncGenerator[bytes, None]:
        yield b"abc"
        yield b"def"

    body = b"".join([p async for p in multipart.encode("xyz", [("purpose", "batch")], "f.jsonl", "text/plain",
                                                          data())])
    parts = await read_form(body, 4)
    assert parts == [("purpose", None, b"batch"), ("file", "f.jsonl", b"abcdef")]


async def test_output_lines_and_usage() -> None:
    async def chunks() -> AsyncGenerator[bytes, None]:
        yield b'{"response": {"status_code": 200, "body": {"model": "m", '
        yield b'"usage": {"prompt_tokens": 3}}}}\n{"re'
        yield b'sponse": {"status_code": 500, "body": {"model": "m", '
        yield b'"usage": {"prompt_tokens": 9}}}}\n\nnot json'

    got = [line_usage(line) async for line in lines(chunks(), 1 << 20)]
    assert got == [("m", {"prompt_tokens": 3}), None, None]
    with pytest.raises(OutputTooLarge):
        _ = [line async for line in lines(chunks(), 10)]
    responses = line_usage(b'{"response": {"status_code": 200, "body": {"model": "m", "usage": '
                           b'{"input_tokens": 4, "output_tokens": 2}}}}')
    assert responses is not None
    assert responses[1]["prompt_tokens"] == 4 and responses[1]["completion_tokens"] == 2


async def test_a_file_before_its_fields_is_kept_on_disk_whole() -> None:
    from switchboard.http.files.service import _spool
    from switchboard.upstream.request import file_pieces

    blob = bytes(range(256)) * 12_000  # 3 MB: past the 1 MiB kept in memory

    async def pieces() -> AsyncGenerator[bytes, None]:
        for i in range(0, len(blob), 65_536):
            yield blob[i:i + 65_536]

    spooled = await _spool(pieces(), len(blob))
    try:
        assert b"".join([p async for p in file_pieces(spooled)]) == blob
    finally:
        spooled.close()
    with pytest.raises(PayloadTooLarge):
        await _spool(pieces(), len(blob) - 1)
