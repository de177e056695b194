"""multipart/form-data, read as it arrives and written as it is sent: an upload is never held
whole in memory.

:class:`MultipartReader` parses the ASGI body stream (RFC 7578 over RFC 2046) with
python-multipart's streaming :class:`~python_multipart.multipart.MultipartParser`: each part's
headers (bounded), then its data in pieces as they come. Every byte counts against the body limit
(413 once over it), and so does every part against the part limit; anything that is not
well-formed multipart is a 400 ``invalid_multipart`` (:class:`InvalidMultipart`, the one error of
every multipart reader: the media endpoints' forms are read with this reader too). :func:`encode`
writes a new body, our own boundary, the caller's fields checked and the file's pieces passed
through.
"""

from __future__ import annotations

import re
import secrets
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from switchboard.errors import GatewayError, InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from switchboard.http.asgi import Receive

MAX_HEADER_BYTES = 16 * 1024  # one part's headers
MAX_HEADERS = 32  # header lines of one part
MAX_PARTS = 32
# RFC 2046 §5.1.1: 1 to 70 characters, these ones, not ending in a space
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,./:=? -]{0,69}[0-9A-Za-z'()+_,./:=?-]$")
_SAFE_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$")


class InvalidMultipart(InvalidRequest):
    code = "invalid_multipart"


MalformedMultipart = InvalidMultipart


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a multipart/form-data content type; 415 for another type, 400 without one."""
    media, params = parse_options_header(content_type)
    if media != b"multipart/form-data":
        shown = media.decode("latin-1")[:100] or "none"
        raise UnsupportedMediaType(f"unsupported content type '{shown}'; send multipart/form-data")
    boundary = params.get(b"boundary", b"")
    if not _BOUNDARY.match(boundary.decode("latin-1")):
        raise InvalidMultipart("the multipart/form-data content type has no valid boundary")
    return boundary


@dataclass(slots=True)
class Part:
    name: str
    filename: str | None
    content_type: str | None


def _part(headers: dict[bytes, bytes]) -> Part:
    disposition, params = parse_options_header(headers.get(b"content-disposition"))
    if disposition != b"form-data":
        raise InvalidMultipart("each part needs 'Content-Disposition: form-data; name=...'")
    name = params.get(b"name", b"").decode("utf-8", "replace")
    if not name:
        raise InvalidMultipart("a part has no name")
    filename = params.get(b"filename")
    content_type = headers.get(b"content-type")
    return Part(name, filename.decode("utf-8", "replace") if filename is not None else None,
                content_type.decode("latin-1") if content_type is not None else None)


class MultipartReader:
    """Parts of one multipart body, read from ``receive`` with at most ``limit`` bytes and
    ``max_parts`` parts in all.

    The parser is fed one ASGI message at a time, and only when what it found in the previous
    one (part headers, data pieces, part ends) has been taken: at most one message is buffered.
    """

    def __init__(self, receive: Receive, boundary: bytes, limit: int, max_parts: int = MAX_PARTS) -> None:
        self._receive = receive
        self._limit = limit
        self._max_parts = max_parts
        self._total = 0
        self._parts = 0
        self._eof = False
        self._done = False
        self._in_part = False
        self._name = ""  # the current part's
        self._events: deque[tuple[str, bytes | Part | Exception | None]] = deque()
        self._headers: dict[bytes, bytes] = {}
        self._header_bytes = 0
        self._field = bytearray()
        self._value = bytearray()
        callbacks = {"on_part_begin": self._on_part_begin, "on_header_field": self._on_header_field,
                     "on_header_value": self._on_header_value, "on_header_end": self._on_header_end,
                     "on_headers_finished": self._on_headers_finished, "on_part_data": self._on_part_data,
                     "on_part_end": self._on_part_end, "on_end": self._on_end}
        # It holds this object's callbacks (bound methods): a reference cycle, let go of once the
        # body has been read (or refused).
        self._parser: MultipartParser | None = MultipartParser(
            boundary, callbacks,  # type: ignore[arg-type]
            max_header_count=MAX_HEADERS, max_header_size=MAX_HEADER_BYTES)

    # -- the parser's callbacks: what it finds, queued in order ---------------------------------

    def _on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > self._max_parts:
            raise PayloadTooLarge(f"the form has more than {self._max_parts} parts")
        self._headers = {}
        self._header_bytes = 0

    def _header_piece(self, into: bytearray, data: bytes, start: int, end: int) -> None:
        self._header_bytes += end - start
        if self._header_bytes > MAX_HEADER_BYTES:
            raise InvalidMultipart(f"a part's headers exceed {MAX_HEADER_BYTES} bytes")
        into += data[start:end]

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_piece(self._field, data, start, end)

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_piece(self._value, data, start, end)

    def _on_header_end(self) -> None:
        self._headers[bytes(self._field).lower()] = bytes(self._value).strip(b" \t")
        self._field.clear()
        self._value.clear()

    def _on_headers_finished(self) -> None:
        self._events.append(("part", _part(self._headers)))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self._events.append(("data", data[start:end]))

    def _on_part_end(self) -> None:
        self._events.append(("end", None))

    def _on_end(self) -> None:
        self._events.append(("done", None))

    def close(self) -> None:
        """Done with the body, read or not: let go of the parser, whose callbacks (this object's
        bound methods) hold this object, so a form refused before its end (a field over its
        bound, the client gone) leaves no reference cycle for the cyclic garbage collector."""
        self._parser = None
        self._events.clear()

    # -- reading -------------------------------------------------------------------------------

    async def _event(self) -> tuple[str, bytes | Part | Exception | None]:
        while not self._events:
            if self._eof:
                raise InvalidMultipart("the body ends before its closing boundary")
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ConnectionAbortedError("client disconnected while sending the body")
            chunk = message.get("body", b"")
            self._total += len(chunk)
            if self._total > self._limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {self._limit} bytes")
            self._eof = not message.get("more_body")
            parser = self._parser
            assert parser is not None  # let go of only once nothing more is read
            try:
                parser.write(chunk)
            except (MultipartParseError, GatewayError) as exc:  # after what came before it
                # Kept without its traceback, which holds this frame (a cycle through the queue).
                self._events.append(("error", exc.with_traceback(None)))
                self._eof = True  # the parser is left mid-state: nothing more is read
            else:
                if self._eof and parser.state != MultipartState.END:
                    cut = InvalidMultipart("the body ends before its closing boundary")
                    self._events.append(("error", cut))
            if self._eof:
                self._parser = parser = None
        kind, value = self._events.popleft()
        if isinstance(value, GatewayError):
            try:
                raise value
            finally:
                del value  # its traceback holds this frame: a reference cycle otherwise
        if isinstance(value, MultipartParseError):
            raise InvalidMultipart(f"the multipart body is malformed: {value}") from None
        return kind, value

    async def next_part(self) -> Part | None:
        """The next part's headers (its data follows through :meth:`data`); None after the last."""
        if self._done:
            return None
        if self._in_part:  # the previous part's data was not read: skip it
            async for _ in self.data():
                pass
        kind, value = await self._event()
        if kind == "done":
            self._done = True
            return None
        if not isinstance(value, Part):  # the parser reports a part's headers before its data
            raise InvalidMultipart("the multipart body is malformed")
        self._in_part = True
        self._name = value.name
        return value

    async def data(self) -> AsyncIterator[bytes]:
        """The current part's data in pieces, as they arrive."""
        while self._in_part:
            kind, value = await self._event()
            if kind == "end":
                self._in_part = False
            elif isinstance(value, bytes):
                yield value

    async def value(self, limit: int, too_large: type[GatewayError] = InvalidMultipart) -> str:
        """The current part's data as text, at most ``limit`` bytes (else ``too_large``)."""
        out = bytearray()
        async for piece in self.data():
            out += piece
            if len(out) > limit:
                raise too_large(f"the field '{self._name[:100]}' exceeds the limit of {limit} bytes")
        try:
            return out.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidMultipart(f"the field '{self._name[:100]}' is not UTF-8 text") from None


def safe_filename(name: str | None) -> str:
    """A file name safe to put in a header: the last path segment, no quotes or control bytes.
    A backslash is kept, as OpenAI keeps it (``q\\x.jsonl``): it is a character of the name, not
    a separator, on every client but old Windows browsers (which sent a whole path);
    :func:`file_head` escapes it."""
    base = (name or "").rsplit("/", 1)[-1]
    cleaned = "".join(c for c in base if c.isprintable() and c not in '"\r\n')[:255].strip()
    return cleaned or "upload"


def safe_content_type(value: str | None) -> str:
    media = (value or "").split(";", 1)[0].strip()
    return media if _SAFE_TYPE.match(media) else "application/octet-stream"


def new_boundary() -> str:
    return "switchboard-" + secrets.token_hex(16)


def field_bytes(boundary: str, name: str, value: str) -> bytes:
    return (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n').encode()


def file_head(boundary: str, name: str, filename: str, content_type: str) -> bytes:
    # In a quoted string a backslash escapes the next character (RFC 9110 quoted-pair): doubled,
    # as the OpenAI SDK (httpx) writes it, the upstream reads the name as it was sent.
    quoted = filename.replace("\\", "\\\\")
    return (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{quoted}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n").encode()


async def encode(boundary: str, fields: Iterable[tuple[str, str]], filename: str, content_type: str,
                 data: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A multipart/form-data body: ``fields`` then the file ``data`` as it comes."""
    yield b"".join(field_bytes(boundary, k, v) for k, v in fields) + file_head(
        boundary, "file", filename, content_type)
    async for piece in data:
        yield piece
    yield f"\r\n--{boundary}--\r\n".encode()
