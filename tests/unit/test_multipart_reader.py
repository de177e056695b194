"""The one multipart reader (python-multipart underneath) as its callers see it: a part's data
handed on before the body has all arrived, each bound refused, an error found after a part
reported after that part, and the media forms read through it."""

from __future__ import annotations

from typing import Any

import pytest

from switchboard.errors import PayloadTooLarge
from switchboard.http.files import multipart
from switchboard.http.media.multipart import FormLimits, read_form


def messages(*bodies: bytes) -> tuple[Any, list[int]]:
    pending = list(bodies)
    taken: list[int] = []

    async def receive() -> dict[str, Any]:
        taken.append(1)
        return {"type": "http.request", "body": pending.pop(0), "more_body": bool(pending)}

    return receive, taken


def part(name: str, data: bytes, headers: str = "") -> bytes:
    head = f'--xyz\r\nContent-Disposition: form-data; name="{name}"\r\n{headers}\r\n'
    return head.encode() + data + b"\r\n"


async def test_data_flows_on_before_the_body_has_arrived() -> None:
    head = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\nfirst'
    receive, taken = messages(head, b"second", b"third", b"\r\n--xyz--\r\n")
    reader = multipart.MultipartReader(receive, b"xyz", 1 << 20)
    found = await reader.next_part()
    assert found is not None and found.filename == "f"
    pieces = reader.data()
    assert await anext(pieces) == b"first" and len(taken) == 1  # one message read so far
    assert b"".join([p async for p in pieces]) == b"secondthird"
    assert await reader.next_part() is None


async def test_bounds_and_errors_in_order() -> None:
    many = b"".join(part(f"f{i}", b"x") for i in range(5)) + b"--xyz--\r\n"
    reader = multipart.MultipartReader(messages(many)[0], b"xyz", 1 << 20, max_parts=4)
    with pytest.raises(PayloadTooLarge):
        while await reader.next_part() is not None:
            pass
    huge = part("a", b"x", "X-Big: " + "y" * (multipart.MAX_HEADER_BYTES + 1) + "\r\n") + b"--xyz--\r\n"
    with pytest.raises(multipart.InvalidMultipart):
        await multipart.MultipartReader(messages(huge)[0], b"xyz", 1 << 20).next_part()
    broken = part("first", b"ok") + b"--xyz\r\nNo colon here\r\n\r\n"  # one message, the error after a part
    reader = multipart.MultipartReader(messages(broken)[0], b"xyz", 1 << 20)
    first = await reader.next_part()
    assert first is not None and first.name == "first" and await reader.value(10) == "ok"
    with pytest.raises(multipart.InvalidMultipart):
        await reader.next_part()
    long = part("f", b"x" * 11) + b"--xyz--\r\n"
    reader = multipart.MultipartReader(messages(long)[0], b"xyz", 1 << 20)
    await reader.next_part()
    with pytest.raises(multipart.InvalidMultipart, match="'f' exceeds"):
        await reader.value(10)


async def test_padding_and_epilogue_are_allowed() -> None:
    body = (b"\r\n" + part("a", b"1") + b'--xyz \t\r\nContent-Disposition: form-data; name="b"\r\n\r\n2\r\n'
            b"--xyz--\r\nepilogue, ignored")
    reader = multipart.MultipartReader(messages(body)[0], b"xyz", 1 << 20)
    assert [(p.name, await reader.value(10)) async for p in parts(reader)] == [("a", "1"), ("b", "2")]


async def parts(reader: multipart.MultipartReader) -> Any:
    while (found := await reader.next_part()) is not None:
        yield found


async def test_media_forms_share_the_reader_and_its_error() -> None:
    assert multipart.boundary_of("multipart/form-data; boundary=" + "b" * 70) == b"b" * 70
    with pytest.raises(multipart.InvalidMultipart):
        multipart.boundary_of("multipart/form-data; boundary=" + "b" * 71)
    ctype = "multipart/form-data; boundary=xyz"
    with pytest.raises(multipart.InvalidMultipart):  # the same class the files edge raises
        await read_form(messages(b"--xyz\r\ngarbage")[0], ctype, None, FormLimits())
    with pytest.raises(multipart.InvalidMultipart):
        await read_form(messages(b"--xyz--\r\n")[0], ctype, None, FormLimits())  # no parts
    form = await read_form(messages(part("a", b"1") + part("a", b"2") + b"--xyz--\r\n")[0], ctype, None,
                           FormLimits())
    assert form == {"a": ["1", "2"]}
