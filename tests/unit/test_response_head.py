"""The response head the edge writes (http/cycle.py) is byte for byte uvicorn's, and refuses the
header names and values uvicorn refuses: each case is sent through uvicorn's own request cycle
and through the gateway's, and the bytes written, the framing decided and the error raised are
compared. The gateway's HTTP protocol hands every request to the gateway's cycle."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from switchboard.http.cycle import GatewayCycle
from tests.unit.test_protocol_cycles import exchange, request, serving

DATE = (b"date", b"Thu, 03 Dec 2026 18:00:00 GMT")


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: Any) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def head(
    kind: type[RequestResponseCycle], headers: list[tuple[bytes, bytes]], *, status: int = 200,
    method: str = "POST", keep_alive: bool = True,
) -> tuple[bytes, tuple[Any, ...], str | None]:
    """What a cycle of ``kind`` writes for a response start, its framing state after, and the
    error it raised."""
    transport = Transport()
    logger = logging.getLogger("test")
    cycle = kind(
        scope={"type": "http", "method": method, "http_version": "1.1"},  # type: ignore[typeddict-item]
        transport=transport, flow=FlowControl(transport), logger=logger, access_logger=logger,
        access_log=False, default_headers=[DATE], message_event=asyncio.Event(),
        expect_100_continue=False, keep_alive=keep_alive, on_response=lambda: None,
    )
    error = None
    try:
        await cycle.send({"type": "http.response.start", "status": status, "headers": headers})
    except (RuntimeError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    state = (cycle.response_started, cycle.keep_alive, cycle.chunked_encoding, cycle.expected_content_length)
    return transport.written, state, error


CASES: dict[str, tuple[list[tuple[bytes, bytes]], dict[str, Any]]] = {
    "content-length": ([(b"Content-Type", b"application/json"), (b"Content-Length", b"12")], {}),
    "chunked declared": ([(b"transfer-encoding", b"Chunked")], {}),
    "length unknown": ([(b"x-request-id", b"abc")], {}),
    "length unknown, HEAD": ([(b"x-a", b"1")], {"method": "HEAD"}),
    "204": ([], {"status": 204}),
    "304": ([(b"etag", b'"x"')], {"status": 304}),
    "connection close": ([(b"Connection", b"Keep-Alive, CLOSE "), (b"content-length", b"0")], {}),
    "connection keep-alive": ([(b"connection", b"keep-alive"), (b"content-length", b"0")], {}),
    "not keep-alive": ([(b"content-length", b"3")], {"keep_alive": False}),
    "two lengths": ([(b"content-length", b"3"), (b"content-length", b"5")], {}),
    "length after chunked": ([(b"transfer-encoding", b"chunked"), (b"content-length", b"5")], {}),
    "tab and high bytes in a value": ([(b"x-note", b"a\tb \xc3\xa9 \xff"), (b"content-length", b"0")], {}),
    "unknown status": ([(b"content-length", b"0")], {"status": 599}),
    "space in a name": ([(b"x bad", b"1")], {}),
    "colon in a name": ([(b"x:bad", b"1")], {}),
    "tab in a name": ([(b"x\tbad", b"1")], {}),
    "parenthesis in a name": ([(b"x(", b"1")], {}),
    "DEL in a name": ([(b"x\x7f", b"1")], {}),
    "CR LF in a value": ([(b"x-ok", b"1"), (b"x-a", b"1\r\nx-injected: 1")], {}),
    "NUL in a value": ([(b"x-a", b"\x00")], {}),
    "DEL in a value": ([(b"x-a", b"\x7f")], {}),
    "bad name and bad value": ([(b"x-a", b"\n"), (b"x b", b"1")], {}),
    "a length that is not a number": ([(b"content-length", b"ten")], {}),
    "a length with a sign and spaces": ([(b"content-length", b" +3 ")], {}),
    "chunked after a bad length": ([(b"content-length", b"ten"), (b"transfer-encoding", b"chunked")], {}),
    "a bad length after chunked": ([(b"transfer-encoding", b"chunked"), (b"content-length", b"ten")], {}),
    "an empty name": ([(b"", b"1"), (b"content-length", b"0")], {}),
}


@pytest.mark.parametrize("case", CASES)
async def test_the_head_is_uvicorns(case: str) -> None:
    headers, options = CASES[case]
    theirs = await head(RequestResponseCycle, headers, **options)
    ours = await head(GatewayCycle, headers, **options)
    assert ours == theirs


async def test_refused_headers_are_refused_before_anything_is_written() -> None:
    written, (started, *_), error = await head(GatewayCycle, [(b"x-a", b"1\r\nx-injected: 1")])
    assert (written, started, error) == (b"", True, "RuntimeError: Invalid HTTP header value.")
    written, _, error = await head(GatewayCycle, [(b"x a", b"1")])
    assert (written, error) == (b"", "RuntimeError: Invalid HTTP header name.")


async def test_every_request_of_the_gateway_protocol_gets_the_gateway_cycle() -> None:
    async with serving() as (served, port):
        answer = await exchange(served, port, request("1.1", "/", None), b"hello")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 5\r\n" in answer
    assert served.cycles == [GatewayCycle]


# The bytes pinned, not only compared with uvicorn's: the special names in mixed case and in any
# place, repeated headers, and a CR LF smuggled into a name or a value.
PINNED: dict[str, tuple[list[tuple[bytes, bytes]], dict[str, Any], bytes, str | None]] = {
    "mixed-case length": (
        [(b"X-Request-ID", b"Ab"), (b"CoNtEnT-LeNgTh", b"7")], {},
        b"HTTP/1.1 200 OK\r\ndate: Thu, 03 Dec 2026 18:00:00 GMT\r\nx-request-id: Ab\r\n"
        b"content-length: 7\r\n\r\n", None,
    ),
    "mixed-case chunked and close": (
        [(b"Transfer-Encoding", b"chunked"), (b"CONNECTION", b"Close")], {},
        b"HTTP/1.1 200 OK\r\ndate: Thu, 03 Dec 2026 18:00:00 GMT\r\ntransfer-encoding: chunked\r\n"
        b"connection: Close\r\n\r\n", None,
    ),
    "a name that only contains a special one": (
        [(b"X-Content-Length", b"9"), (b"x-connection-id", b"c1")], {},
        b"HTTP/1.1 200 OK\r\ndate: Thu, 03 Dec 2026 18:00:00 GMT\r\nx-content-length: 9\r\n"
        b"x-connection-id: c1\r\ntransfer-encoding: chunked\r\n\r\n", None,
    ),
    "duplicates": (
        [(b"x-a", b"1"), (b"X-A", b"2"), (b"Content-Length", b"2"), (b"content-length", b"40")], {},
        b"HTTP/1.1 200 OK\r\ndate: Thu, 03 Dec 2026 18:00:00 GMT\r\nx-a: 1\r\nx-a: 2\r\n"
        b"content-length: 2\r\ncontent-length: 40\r\n\r\n", None,
    ),
    "duplicates, not keep-alive, HEAD": (
        [(b"x-a", b"1"), (b"x-a", b"1")], {"method": "HEAD", "keep_alive": False},
        b"HTTP/1.1 200 OK\r\ndate: Thu, 03 Dec 2026 18:00:00 GMT\r\nx-a: 1\r\nx-a: 1\r\n"
        b"connection: close\r\n\r\n", None,
    ),
    "CR LF in a value": (
        [(b"content-length", b"0"), (b"x-a", b"1\r\nSet-Cookie: a=b")], {},
        b"", "RuntimeError: Invalid HTTP header value.",
    ),
    "CR LF in a name": (
        [(b"content-length", b"0"), (b"x-a\r\nset-cookie", b"a=b")], {},
        b"", "RuntimeError: Invalid HTTP header name.",
    ),
    "CR LF in a length": (
        [(b"content-length", b"0\r\nx-b: 1")], {}, b"", "RuntimeError: Invalid HTTP header value.",
    ),
}


@pytest.mark.parametrize("case", PINNED)
async def test_the_head_bytes_are_pinned(case: str) -> None:
    headers, options, expected, error = PINNED[case]
    for kind in (RequestResponseCycle, GatewayCycle):
        written, _, raised = await head(kind, headers, **options)
        assert (written, raised) == (expected, error), kind.__name__


async def parts(
    kind: type[RequestResponseCycle], headers: list[tuple[bytes, bytes]], messages: list[dict[str, Any]],
    *, method: str = "POST",
) -> tuple[list[bytes], tuple[Any, ...], str | None]:
    """What a cycle of ``kind`` writes for each body message after the head, its state after
    them, and the error one raised (the messages after it not sent)."""
    transport = Transport()
    logger = logging.getLogger("test")
    completed: list[bool] = []
    cycle = kind(
        scope={"type": "http", "method": method, "http_version": "1.1"},  # type: ignore[typeddict-item]
        transport=transport, flow=FlowControl(transport), logger=logger, access_logger=logger,
        access_log=False, default_headers=[DATE], message_event=asyncio.Event(),
        expect_100_continue=False, keep_alive=True, on_response=lambda: completed.append(True),
    )
    await cycle.send({"type": "http.response.start", "status": 200, "headers": headers})
    written: list[bytes] = []
    error = None
    for message in messages:
        transport.written = b""
        try:
            await cycle.send(message)
        except RuntimeError as exc:
            error = f"{type(exc).__name__}: {exc}"
            break
        written.append(transport.written)
    state = (cycle.response_complete, cycle.message_event.is_set(), completed, cycle.expected_content_length)
    return written, state, error


def part(body: Any, more: bool | None = True) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "http.response.body", "body": body}
    if more is not None:
        message["more_body"] = more
    return message


# A stream's parts with more to follow are written by the gateway's cycle itself (http/cycle.py);
# whatever the parts, the bytes, the completion and the errors are uvicorn's.
BODIES: dict[str, tuple[list[tuple[bytes, bytes]], list[dict[str, Any]], dict[str, Any]]] = {
    "a stream": ([], [part(b"data: 1\n\n"), part(bytearray(b"data: 2\n\n")), part(b"data: [DONE]\n\n"),
                      part(b"", None)], {}),
    "a stream of 300 bytes a part, ended with data": ([], [part(b"x" * 300), part(b"y" * 17, False)], {}),
    "an empty part with more to follow": ([], [part(b""), part(b"a"), {"type": "http.response.body"}], {}),
    "a part with no body key": ([], [{"type": "http.response.body", "more_body": True}, part(b"", False)],
                                {}),
    "a memoryview": ([], [part(memoryview(b"abc")), part(b"", False)], {}),
    "HEAD, chunked declared": ([(b"transfer-encoding", b"chunked")], [part(b"abc"), part(b"", False)],
                               {"method": "HEAD"}),
    "a declared length": ([(b"content-length", b"6")], [part(b"abc"), part(b"def", False)], {}),
    "a declared length exceeded": ([(b"content-length", b"2")], [part(b"abc")], {}),
    "a part after the end": ([], [part(b"a", False), part(b"b")], {}),
    "another message type": ([], [{"type": "http.response.trailers", "more_body": True}], {}),
}


@pytest.mark.parametrize("case", BODIES)
async def test_the_body_is_uvicorns(case: str) -> None:
    headers, messages, options = BODIES[case]
    theirs = await parts(RequestResponseCycle, headers, messages, **options)
    ours = await parts(GatewayCycle, headers, messages, **options)
    assert ours == theirs


async def test_a_streams_parts_are_framed_as_they_come() -> None:
    written, (complete, *_), error = await parts(
        GatewayCycle, [], [part(b"data: a\n\n"), part(b"data: [DONE]\n\n"), part(b"", None)])
    assert written == [b"9\r\ndata: a\n\n\r\n", b"e\r\ndata: [DONE]\n\n\r\n", b"0\r\n\r\n"]
    assert (complete, error) == (True, None)
