"""The binary ``application/vnd.amazon.eventstream`` framing: an incremental decoder and an encoder.

Reference: the Smithy "Amazon Event Stream Specification"
(https://smithy.io/2.0/aws/amazon-eventstream.html). Every integer is big-endian:

    message := total_length:u32 headers_length:u32 prelude_crc:u32 headers payload message_crc:u32
    header  := name_length:u8 name:utf8 type:u8 value

``prelude_crc`` is the CRC32 of the first 8 bytes and ``message_crc`` the CRC32 of everything
before it; both are checked and a mismatch raises :class:`EventStreamError` (the stream cannot be
trusted afterwards). Header value types: 0 true, 1 false, 2 int8, 3 int16, 4 int32, 5 int64,
6 bytes (u16 length), 7 string (u16 length), 8 timestamp (int64 ms since the epoch), 9 uuid (16 bytes).
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any

PRELUDE = 12  # total_length, headers_length, prelude_crc
MIN_MESSAGE = PRELUDE + 4
# Generous bound against garbage lengths; the spec caps payloads at 24 MiB and headers at 128 KiB.
MAX_MESSAGE = 32 * 1024 * 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

HeaderValue = bool | int | bytes | str | datetime | uuid.UUID


class EventStreamError(ValueError):
    """The bytes are not a valid event stream (bad CRC, impossible length, truncated header)."""


class HeaderType(IntEnum):
    TRUE = 0
    FALSE = 1
    BYTE = 2
    SHORT = 3
    INTEGER = 4
    LONG = 5
    BYTES = 6
    STRING = 7
    TIMESTAMP = 8
    UUID = 9


_INT_FORMATS = {
    HeaderType.BYTE: ">b", HeaderType.SHORT: ">h", HeaderType.INTEGER: ">i", HeaderType.LONG: ">q",
}


@dataclass(frozen=True, slots=True)
class Message:
    headers: dict[str, HeaderValue]
    payload: bytes

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value if isinstance(value, str) else None


def _value(kind: int, data: bytes | memoryview, pos: int) -> tuple[HeaderValue, int]:
    """Decode one header value of type ``kind`` at ``pos``; returns (value, next position)."""
    if kind == HeaderType.TRUE:
        return True, pos
    if kind == HeaderType.FALSE:
        return False, pos
    fmt = _INT_FORMATS.get(kind)  # type: ignore[call-overload]
    if fmt is not None:
        size = struct.calcsize(fmt)
        return struct.unpack_from(fmt, data, pos)[0], pos + size
    if kind in (HeaderType.BYTES, HeaderType.STRING):
        (length,) = struct.unpack_from(">H", data, pos)
        raw = bytes(data[pos + 2 : pos + 2 + length])
        if len(raw) != length:
            raise EventStreamError("header value runs past the header block")
        return (raw.decode() if kind == HeaderType.STRING else raw), pos + 2 + length
    if kind == HeaderType.TIMESTAMP:
        (millis,) = struct.unpack_from(">q", data, pos)
        return _EPOCH + timedelta(milliseconds=millis), pos + 8
    if kind == HeaderType.UUID:
        raw = bytes(data[pos : pos + 16])
        if len(raw) != 16:
            raise EventStreamError("header value runs past the header block")
        return uuid.UUID(bytes=raw), pos + 16
    raise EventStreamError(f"unknown header value type {kind}")


def decode_headers(block: bytes | memoryview) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    pos, end = 0, len(block)
    try:
        while pos < end:
            name_length = block[pos]
            name = bytes(block[pos + 1 : pos + 1 + name_length]).decode()
            pos += 1 + name_length
            if pos >= end:
                raise EventStreamError("header without a value type")
            kind = block[pos]
            headers[name], pos = _value(kind, block, pos + 1)
    except (struct.error, UnicodeDecodeError, IndexError):
        raise EventStreamError("malformed header block") from None
    except OverflowError:  # a timestamp beyond datetime's years 1-9999
        raise EventStreamError("header timestamp out of range") from None
    if pos != end:
        raise EventStreamError("header value runs past the header block")
    return headers


class EventStreamDecoder:
    """Fed bytes as they arrive; returns the messages completed so far."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message still buffered."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        messages: list[Message] = []
        pos = 0
        view = memoryview(self._buffer)
        try:
            while len(self._buffer) - pos >= PRELUDE:
                total = self._check_prelude(view, pos)
                if len(self._buffer) - pos < total:
                    break
                messages.append(self._message(view[pos : pos + total]))
                pos += total
        finally:
            view.release()
        if pos:
            del self._buffer[:pos]
        return messages

    def close(self) -> None:
        """Raise when the stream ended inside a message."""
        if self._buffer:
            raise EventStreamError(f"stream ended inside a message ({len(self._buffer)} bytes left over)")

    @staticmethod
    def _check_prelude(view: memoryview, pos: int) -> int:
        total, headers_length, crc = struct.unpack_from(">III", view, pos)
        if zlib.crc32(view[pos : pos + 8]) != crc:
            raise EventStreamError("prelude CRC mismatch")
        if not MIN_MESSAGE <= total <= MAX_MESSAGE or headers_length > total - MIN_MESSAGE:
            raise EventStreamError(f"impossible message length {total} (headers {headers_length})")
        return int(total)

    @staticmethod
    def _message(frame: memoryview) -> Message:
        (crc,) = struct.unpack_from(">I", frame, len(frame) - 4)
        if zlib.crc32(frame[:-4]) != crc:
            raise EventStreamError("message CRC mismatch")
        (headers_length,) = struct.unpack_from(">I", frame, 4)
        headers = decode_headers(frame[PRELUDE : PRELUDE + headers_length])
        return Message(headers, bytes(frame[PRELUDE + headers_length : -4]))


# ---- encoding (the mock upstream and the tests) ----

TypedValue = HeaderValue | tuple[HeaderType, Any]


def encode_header(name: str, value: TypedValue) -> bytes:
    """One header. Plain ints are encoded as int64; pass ``(HeaderType.SHORT, 5)`` to choose."""
    kind, val = value if isinstance(value, tuple) else (_kind_of(value), value)
    return _encoded(name.encode(), kind, val)


def _encoded(raw_name: bytes, kind: HeaderType, val: Any) -> bytes:
    out = bytes([len(raw_name)]) + raw_name + bytes([kind])
    if kind in (HeaderType.TRUE, HeaderType.FALSE):
        return out
    if kind in _INT_FORMATS:
        return out + struct.pack(_INT_FORMATS[kind], val)
    if kind in (HeaderType.BYTES, HeaderType.STRING):
        data = val.encode() if isinstance(val, str) else bytes(val)
        return out + struct.pack(">H", len(data)) + data
    if kind == HeaderType.TIMESTAMP:
        return out + struct.pack(">q", (val - _EPOCH) // timedelta(milliseconds=1))
    return out + val.bytes  # UUID


def _kind_of(value: HeaderValue) -> HeaderType:
    if isinstance(value, bool):
        return HeaderType.TRUE if value else HeaderType.FALSE
    if isinstance(value, int):
        return HeaderType.LONG
    if isinstance(value, str):
        return HeaderType.STRING
    if isinstance(value, bytes):
        return HeaderType.BYTES
    if isinstance(value, datetime):
        return HeaderType.TIMESTAMP
    return HeaderType.UUID


def encode_message(headers: dict[str, TypedValue], payload: bytes) -> bytes:
    block = b"".join(encode_header(k, v) for k, v in headers.items())
    total = PRELUDE + len(block) + len(payload) + 4
    prelude = struct.pack(">II", total, len(block))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + block + payload
    return body + struct.pack(">I", zlib.crc32(body))
