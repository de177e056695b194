"""The SSE parser (providers/sse.py): events cut the same whatever the reads, line ends of any
kind, and an event that never ends bounded."""

from __future__ import annotations

import itertools

import pytest

from switchboard.errors import UpstreamBadGateway
from switchboard.providers.sse import MAX_EVENT_BYTES, SSEBlocks, SSEEvent, SSEParser

STREAM = (
    b"event: start\ndata: {\"a\":1}\n\n"
    b": a keep-alive comment\n\n"
    b"data: line one\ndata: line two\n\n"
    b"data: {\"b\":2}\n\n"
    b"data: [DONE]\n\n"
)
EVENTS = [
    SSEEvent("start", '{"a":1}'),
    SSEEvent(None, "line one\nline two"),
    SSEEvent(None, '{"b":2}'),
    SSEEvent(None, "[DONE]"),
]


def parse(pieces: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser("prov")
    events = [event for piece in pieces for event in parser.feed(piece)]
    return events + parser.flush()


def cut(data: bytes, *at: int) -> list[bytes]:
    bounds = [0, *at, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_every_two_way_split_gives_the_events_of_the_whole(ending: bytes) -> None:
    data = STREAM.replace(b"\n", ending)
    assert parse([data]) == EVENTS
    for at in range(1, len(data)):
        assert parse(cut(data, at)) == EVENTS, at


def test_one_byte_reads_give_the_events_of_the_whole() -> None:
    data = STREAM.replace(b"\n", b"\r\n")
    assert parse([data[i:i + 1] for i in range(len(data))]) == EVENTS


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
def test_long_events_over_many_reads_give_the_events_of_the_whole(ending: bytes) -> None:
    # Events far longer than a read (gathered in place, only new bytes searched), between short
    # ones, cut at every kind of place: inside a line end, inside the blank line, just after it.
    long = "x" * 100_000
    data = f"data: a\n\ndata: {long}\ndata: {long}\n\ndata: b\n\nevent: e\ndata: {long}\n\n".encode()
    data = data.replace(b"\n", ending)
    want = [SSEEvent(None, "a"), SSEEvent(None, f"{long}\n{long}"), SSEEvent(None, "b"), SSEEvent("e", long)]
    for size in (1000, 4095, 65536):
        pieces = [data[i:i + size] for i in range(0, len(data), size)]
        assert parse(pieces) == want, size
        splitter = SSEBlocks()  # what the Anthropic pass-through uses: the same blocks
        blocks = [block for piece in pieces for block in splitter.blocks(piece)]
        assert blocks == [b"data: a", f"data: {long}\ndata: {long}".encode(), b"data: b",
                          f"event: e\ndata: {long}".encode()], size
        assert splitter.rest() == b""


def test_a_crlf_split_between_reads_inside_an_event_does_not_end_it() -> None:
    # The CR ends one read and the LF starts the next: one line end, not a blank line.
    assert parse([b"data: a\r", b"\ndata: b\r\n\r\n"]) == [SSEEvent(None, "a\nb")]
    assert parse([b"data: a\r", b"\n", b"\r\n"]) == [SSEEvent(None, "a")]
    # Two CRs across reads are a blank line (CR alone ends a line).
    assert parse([b"data: a\r", b"\rdata: b\r\r"]) == [SSEEvent(None, "a"), SSEEvent(None, "b")]


def test_a_final_event_without_a_blank_line_is_flushed() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: one\n\ndata: tw") == [SSEEvent(None, "one")]
    assert parser.pending
    assert parser.feed(b"o\n") == []
    assert parser.flush() == [SSEEvent(None, "two")] and not parser.pending


def test_an_event_that_never_ends_is_refused_past_the_bound() -> None:
    parser = SSEParser("prov")
    assert parser.feed(b'data: {"id":"x","content":"') == []
    piece = b"A" * 65536
    with pytest.raises(UpstreamBadGateway) as refused:
        for _ in range(MAX_EVENT_BYTES // len(piece) + 1):
            assert parser.feed(piece) == []
    assert refused.value.status == 502 and refused.value.code == "upstream_error"
    assert str(refused.value) == ("provider 'prov' sent a stream event longer than 16 MiB without ending it "
                                  "(providers[].max_event_bytes)")
    assert not parser.pending  # what it held is freed


@pytest.mark.parametrize("splitter", [SSEParser, SSEBlocks])
def test_the_bound_is_the_one_given(splitter: type[SSEBlocks]) -> None:
    bound = 100_000
    parser = splitter("prov", bound)
    long = b"data: " + b"A" * (bound - 10) + b"\n\n"  # under the bound, cut across reads: passes
    for i in range(0, len(long), 30_000):
        out = parser.feed(long[i:i + 30_000]) if isinstance(parser, SSEParser) else parser.blocks(
            long[i:i + 30_000])
    assert len(out) == 1 and not parser.pending
    with pytest.raises(UpstreamBadGateway) as refused:  # over it, unfinished: refused
        for _ in range(5):
            parser.blocks(b"A" * 30_000)
    assert str(refused.value).startswith("provider 'prov' sent a stream event longer than 100000 bytes")


def test_an_event_just_under_the_bound_is_read() -> None:
    parser = SSEParser()
    body = b"x" * (MAX_EVENT_BYTES - 16)
    pieces = cut(b"data: " + body + b"\n\ndata: next\n\n", *range(65536, MAX_EVENT_BYTES, 65536))
    events = [event for piece in pieces for event in parser.feed(piece)]
    assert [len(e.data) for e in events] == [len(body), 4]




@pytest.mark.parametrize("block", [
    b"event: ping", b"event: ping\nid: 7", b"id: 7\nretry: 1000", b"event:", b"\xef\xbb\xbfevent: ping",
], ids=["name", "name-id", "id-retry", "empty-name", "bom-name"])
def test_an_event_without_a_data_line_is_no_event(block: bytes) -> None:
    # WHATWG: an event whose data buffer is empty is not dispatched (a keep-alive some servers
    # send as a named event), for feed and feed_data alike.
    data = b"data: a\n\n" + block + b"\n\ndata: b\n\n"
    want = [SSEEvent(None, "a"), SSEEvent(None, "b")]
    assert parse([data]) == want
    assert parse([data[:-2]]) == want  # the last event flushed
    assert data_of([data]) == [b"a", b"b"]
    assert parse([block]) == []


@pytest.mark.parametrize("filler", [b"\n", b": keep-alive\n\n", b"event: ping\n\n", b"\r\n", b":\n"],
                         ids=["blank", "comment", "ping", "crlf", "bare-colon"])
def test_reads_made_only_of_keep_alives_give_nothing_and_keep_the_events_around_them(filler: bytes) -> None:
    # An upstream may send whole reads of nothing else: each is skipped without parsing (the
    # stall such reads cost is gone); the events on either side are read as always.
    flood = filler * (65536 // len(filler))
    pieces = [b"data: a\n\n", flood, flood, b"data: b\n\n"]
    assert parse(pieces) == [SSEEvent(None, "a"), SSEEvent(None, "b")]
    assert data_of(pieces) == [b"a", b"b"]
    assert parse([b"data: a\n\n" + flood + b"data: b\n\n"]) == [SSEEvent(None, "a"), SSEEvent(None, "b")]


def data_of(pieces: list[bytes]) -> list[bytes]:
    parser = SSEParser("prov")
    return [data for piece in pieces for data in parser.feed_data(piece)]


@pytest.mark.parametrize("data", [
    b'data: {"a":1}\n\ndata: \n\ndata: [DONE]\n\n',  # one-line events only
    b"data: a\n\ndata: b\ndata: c\n\n",  # an event of two lines
    b"data: a\n\n\n\ndata: b\n\n",  # a blank line more
    b"data: a\n\n: keep-alive\n\ndata: b\n\n",  # a comment
    b"data: a\n\nevent: e\ndata: b\n\n",  # a named event
    b"data: a\n\ndata:b\n\n",  # no space after the colon
    b"data: a\r\n\r\ndata: b\r\n\r\n",  # CRLF
    b"data: a\n\ndata: b\n",  # an unfinished event
    b"data: a\n\n\xef\xbb\xbfdata: b\n\n",  # a byte order mark
], ids=["one-line", "two-lines", "blank", "comment", "named", "no-space", "crlf", "unfinished", "bom"])
def test_the_data_of_a_read_is_the_data_of_its_events(data: bytes) -> None:
    # feed_data gives each complete event's data as ``feed`` reads it, in bytes, whatever the
    # read holds (one split for a read of whole one-line events, the event-by-event walk for any
    # other) and however the stream is cut.
    parser = SSEParser("prov")
    want = [event.data.encode() for event in parser.feed(data)]
    assert data_of([data]) == want
    for at in range(1, len(data)):
        assert data_of(cut(data, at)) == want, at


def test_the_usual_events_invalid_utf8_is_left_as_it_came() -> None:
    data = b"data: x\xffy\n\ndata: [DONE]\n\n"
    assert data_of([data]) == [b"x\xffy", b"[DONE]"]
    assert data_of(cut(data, 3)) == [b"x\xffy", b"[DONE]"]
