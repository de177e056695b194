"""The application/vnd.amazon.eventstream decoder and encoder.

The three fixed vectors are the byte arrays of awslabs/aws-c-event-stream
``tests/message_deserializer_test.c`` (test_outgoing_no_op_valid,
test_outgoing_application_data_no_headers_valid,
test_outgoing_application_one_compressed_header_pair_valid).
"""

from __future__ import annotations

import struct
import uuid
import zlib
from datetime import UTC, datetime

import pytest

from switchboard.upstream.eventstream import (
    EventStreamDecoder,
    EventStreamError,
    HeaderType,
    Message,
    decode_headers,
    encode_message,
)

NO_OP = bytes([
    0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x05, 0xC2, 0x48, 0xEB, 0x7D, 0x98, 0xC8, 0xFF,
])
NO_HEADERS = bytes([
    0x00, 0x00, 0x00, 0x1D, 0x00, 0x00, 0x00, 0x00, 0xFD, 0x52, 0x8C, 0x5A, 0x7B, 0x27, 0x66, 0x6F,
    0x6F, 0x27, 0x3A, 0x27, 0x62, 0x61, 0x72, 0x27, 0x7D, 0xC3, 0x65, 0x39, 0x36,
])
ONE_HEADER = (
    bytes([0x00, 0x00, 0x00, 0x3D, 0x00, 0x00, 0x00, 0x20, 0x07, 0xFD, 0x83, 0x96, 0x0C])
    + b"content-type"
    + bytes([0x07, 0x00, 0x10])
    + b"application/json"
    + b"{'foo':'bar'}"
    + bytes([0x8D, 0x9C, 0x08, 0xB1])
)


def decode_all(data: bytes) -> list[Message]:
    decoder = EventStreamDecoder()
    messages = decoder.feed(data)
    decoder.close()
    return messages


def test_published_vectors_decode() -> None:
    assert decode_all(NO_OP) == [Message({}, b"")]
    assert decode_all(NO_HEADERS) == [Message({}, b"{'foo':'bar'}")]
    assert decode_all(ONE_HEADER) == [Message({"content-type": "application/json"}, b"{'foo':'bar'}")]


def test_encoder_reproduces_the_published_vectors() -> None:
    assert encode_message({}, b"") == NO_OP
    assert encode_message({}, b"{'foo':'bar'}") == NO_HEADERS
    assert encode_message({"content-type": "application/json"}, b"{'foo':'bar'}") == ONE_HEADER


def test_every_header_value_type_round_trips() -> None:
    when = datetime(2024, 5, 17, 8, 30, 15, 123000, tzinfo=UTC)
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    headers = {
        "t": True, "f": False, "byte": (HeaderType.BYTE, -7), "short": (HeaderType.SHORT, -300),
        "int": (HeaderType.INTEGER, 70_000), "long": 2**40, "bytes": b"\x00\xff", "str": "héllo",
        "ts": when, "uuid": ident,
    }
    [message] = decode_all(encode_message(headers, b"payload"))
    assert message.headers == {
        "t": True, "f": False, "byte": -7, "short": -300, "int": 70_000, "long": 2**40, "bytes": b"\x00\xff",
        "str": "héllo", "ts": when, "uuid": ident,
    }
    assert message.payload == b"payload"
    assert message.header("str") == "héllo" and message.header("int") is None


def test_byte_by_byte_feeding_yields_each_message_once() -> None:
    data = b"".join(encode_message({":event-type": f"e{i}"}, str(i).encode()) for i in range(3))
    decoder = EventStreamDecoder()
    got = [m for i in range(len(data)) for m in decoder.feed(data[i : i + 1])]
    assert [m.header(":event-type") for m in got] == ["e0", "e1", "e2"]
    assert decoder.pending == 0
    decoder.close()


def test_several_messages_in_one_chunk_and_a_partial_tail() -> None:
    first, second = encode_message({"a": "1"}, b"x"), encode_message({"b": "2"}, b"y")
    decoder = EventStreamDecoder()
    assert [m.payload for m in decoder.feed(first + second[:5])] == [b"x"]
    assert decoder.pending == 5
    with pytest.raises(EventStreamError, match="ended inside a message"):
        decoder.close()
    assert [m.payload for m in decoder.feed(second[5:])] == [b"y"]


def test_prelude_crc_mismatch_raises() -> None:
    bad = bytearray(NO_HEADERS)
    bad[8] ^= 0xFF
    with pytest.raises(EventStreamError, match="prelude CRC"):
        EventStreamDecoder().feed(bytes(bad))


def test_message_crc_mismatch_raises() -> None:
    bad = bytearray(NO_HEADERS)
    bad[14] ^= 0x01  # a payload byte
    with pytest.raises(EventStreamError, match="message CRC"):
        EventStreamDecoder().feed(bytes(bad))


def test_impossible_lengths_raise() -> None:
    prelude = struct.pack(">II", 8, 0)
    with pytest.raises(EventStreamError, match="impossible message length"):
        EventStreamDecoder().feed(prelude + struct.pack(">I", zlib.crc32(prelude)))


def test_malformed_header_blocks_raise() -> None:
    with pytest.raises(EventStreamError):
        decode_headers(b"\x03abc")  # name without a type byte
    with pytest.raises(EventStreamError):
        decode_headers(b"\x01a\x07\x00\x09abc")  # string longer than the block
    with pytest.raises(EventStreamError, match="unknown header value type"):
        decode_headers(b"\x01a\x0a")


def test_timestamp_header_beyond_datetimes_range_is_malformed() -> None:
    # An int64 of milliseconds runs far past year 9999: a decoding error, not an OverflowError.
    for millis in (2**63 - 1, -(2**63)):
        with pytest.raises(EventStreamError, match="timestamp out of range"):
            decode_headers(b"\x01t\x08" + struct.pack(">q", millis))
