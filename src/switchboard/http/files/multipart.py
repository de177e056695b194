"""multipart/form-data, read as it arrives and written as it is sent: an upload is never held
whole in memory.

:class:`MultipartReader` parses the ASGI body stream (RFC 7578 over RFC 2046): each part's
headers (bounded), then its data in pieces as they come. Every byte counts against the
body limit (413 once over it); anything that is not well-formed multipart is a 400
``invalid_multipart``. :func:`encode` writes a new body, our own boundary, the caller's fields
checked and the file's pieces passed through.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from switchboard.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from switchboard.http.asgi import Receive

MAX_HEADER_BYTES = 16 * 1024  # one part's headers
MAX_PREAMBLE_BYTES = 64 * 1024
_BOUNDARY = re.compile(r"""boundary=(?:"([^"]{1,70})"|([0-9A-Za-z'()+_,./:=?-]{1,70}))""", re.I)
_PARAM = re.compile(r"""\s*([A-Za-z0-9_*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))""")
_SAFE_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$")


class MalformedMultipart(InvalidRequest):
    code = "invalid_multipart"


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a multipart/form-data content type; 415 for another type, 400 without one."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "multipart/form-data":
        shown = media[:100] or "none"
        raise UnsupportedMediaType(f"unsupported content type '{shown}'; send multipart/form-data")
    match = _BOUNDARY.search(content_type or "")
    if match is None:
        raise MalformedMultipart("the multipart/form-data content type has no valid boundary")
    return (match.group(1) or match.group(2)).encode("latin-1")


@dataclass(slots=True)
class Part:
    name: str
    filename: str | None
    content_type: str | None


def _params(value: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for piece in value.split(";")[1:]:
        match = _PARAM.match(piece)
        if match:
            quoted, plain = match.group(2), match.group(3)
            out[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else plain
    return out


def _part(block: bytes) -> Part:
    headers: dict[str, str] = {}
    for line in block.split(b"\r\n") if block else ():
        key, sep, value = line.partition(b":")
        if not sep or not key.strip():
            raise MalformedMultipart("a part header is not 'Name: value'")
        headers[key.strip().lower().decode("latin-1")] = value.strip().decode("utf-8", "replace")
    disposition = headers.get("content-disposition")
    if disposition is None or disposition.split(";", 1)[0].strip().lower() != "form-data":
        raise MalformedMultipart("each part needs 'Content-Disposition: form-data; name=...'")
    params = _params(disposition)
    name = params.get("name")
    if not name:
        raise MalformedMultipart("a part has no name")
    filename = params.get("filename*") or params.get("filename")
    if filename is not None and filename.lower().startswith("utf-8''"):
        from urllib.parse import unquote

        filename = unquote(filename[7:])
    return Part(name, filename, headers.get("content-type"))


class MultipartReader:
    """Parts of one multipart body, read from ``receive`` with at most ``limit`` bytes in all."""

    def __init__(self, receive: Receive, boundary: bytes, limit: int) -> None:
        self._receive = receive
        self._delimiter = b"\r\n--" + boundary
        self._buf = bytearray(b"\r\n")  # so a first boundary at the very start matches too
        self._limit = limit
        self._total = 0
        self._eof = False
        self._done = False
        self._in_part = False

    async def _fill(self) -> bool:
        if self._eof:
            return False
        message = await self._receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError("client disconnected while sending the body")
        chunk = message.get("body", b"")
        self._total += len(chunk)
        if self._total > self._limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {self._limit} bytes")
        self._buf += chunk
        if not message.get("more_body"):
            self._eof = True
        return True

    async def next_part(self) -> Part | None:
        """The next part's headers (its data follows through :meth:`data`); None after the last."""
        if self._done:
            return None
        if self._in_part:  # the previous part's data was not read: skip it
            async for _ in self.data():
                pass
        buf, delimiter = self._buf, self._delimiter
        while (i := buf.find(delimiter)) < 0:
            if len(buf) > MAX_PREAMBLE_BYTES + len(delimiter):
                raise MalformedMultipart("the body does not start with its boundary")
            if not await self._fill():
                raise MalformedMultipart("the body has no multipart boundary")
        del buf[:i + len(delimiter)]
        while len(buf) < 2:
            if not await self._fill():
                raise MalformedMultipart("the body ends after a boundary")
        if buf[:2] == b"--":
            self._done = True
            return None
        # the boundary line's end (transport padding allowed), then the headers and a blank line
        while (end := buf.find(b"\r\n\r\n")) < 0 and not buf.startswith(b"\r\n\r\n"):
            if len(buf) > MAX_HEADER_BYTES:
                raise MalformedMultipart(f"a part's headers exceed {MAX_HEADER_BYTES} bytes")
            if not await self._fill():
                raise MalformedMultipart("the body ends inside a part's headers")
        line_end = buf.find(b"\r\n")
        if buf[:line_end].strip(b" \t"):
            raise MalformedMultipart("unexpected bytes after a boundary")
        if buf.startswith(b"\r\n\r\n"):
            block, rest = b"", 4
        else:
            block, rest = bytes(buf[line_end + 2:end]), end + 4
        del buf[:rest]
        self._in_part = True
        return _part(block)

    async def data(self) -> AsyncIterator[bytes]:
        """The current part's data in pieces, as they arrive."""
        buf, delimiter = self._buf, self._delimiter
        keep = len(delimiter) - 1
        while True:
            i = buf.find(delimiter)
            if i >= 0:
                if i:
                    piece = bytes(buf[:i])
                    del buf[:i]
                    self._in_part = False
                    yield piece
                self._in_part = False
                return
            if len(buf) > keep:
                piece = bytes(buf[:-keep])
                del buf[:-keep]
                yield piece
            if not await self._fill():
                raise MalformedMultipart("the body ends inside a part (no closing boundary)")

    async def value(self, limit: int) -> str:
        """The current part's data as text, at most ``limit`` bytes."""
        out = bytearray()
        async for piece in self.data():
            out += piece
            if len(out) > limit:
                raise MalformedMultipart(f"a form field exceeds {limit} bytes")
        try:
            return out.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedMultipart("a form field is not UTF-8 text") from None


def safe_filename(name: str | None) -> str:
    """A file name safe to put in a header: the last path segment, no quotes or control bytes."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
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
    return (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n").encode()


async def encode(boundary: str, fields: Iterable[tuple[str, str]], filename: str, content_type: str,
                 data: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A multipart/form-data body: ``fields`` then the file ``data`` as it comes."""
    yield b"".join(field_bytes(boundary, k, v) for k, v in fields) + file_head(
        boundary, "file", filename, content_type)
    async for piece in data:
        yield piece
    yield f"\r\n--{boundary}--\r\n".encode()
