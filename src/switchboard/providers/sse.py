"""An incremental Server-Sent Events parser shared by the adapters whose providers stream SSE."""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.errors import UpstreamBadGateway

# Ints: ``bytes in bytes`` first tries its operand as an integer, raising and catching an error.
_CR, _LF = ord("\r"), ord("\n")
_BOM_DATA, _BOM_EVENT = "\ufeffdata", "\ufeffevent"
_DATA = b"data"  # in every block that holds a data line
# The most one unfinished event may hold, by default (providers[].max_event_bytes sets it per
# provider). Real events are far smaller (a partial image's base64 is a few MiB); an upstream
# that never ends its event is refused here instead of being buffered until the total timeout
# (docs/architecture.md#time-bounds). Only an event longer than _RESCAN is measured.
MAX_EVENT_BYTES = 16 * 1024 * 1024
_MIB = 1024 * 1024
# An unfinished event up to this long is joined to the next read and searched again with it
# (cheaper than a bytearray's bookkeeping for the usual event cut in two); a longer one is not.
_RESCAN = 16 * 1024
# What an event's data may hold and still hold nothing: spaces and tabs (JSON's whitespace; a CR
# never outlives the parser) and the LFs that join empty data lines (``data:`` twice).
_SPACE, _SPACE_BYTES = " \t\n", b" \t\n"


def empty_data(data: str | bytes) -> bool:
    """Whether an event's data holds nothing: ``data:`` or ``data: `` then a blank line, or data
    lines holding only spaces. The event-stream rules dispatch such an event (with empty data),
    but it carries nothing, so the decoders skip it, as they skip comments and data-less blocks,
    whereas data that is not JSON (``data: hello``) is an invalid event. Asked only of data that
    did not parse, so the usual event never pays for it."""
    if isinstance(data, bytes):
        return not data.strip(_SPACE_BYTES)
    return not data.strip(_SPACE)


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: str


class SSEBlocks:
    """Cuts a byte stream into SSE blocks (the text between blank lines), line ends (CRLF, CR,
    LF) normalised to LF, in time linear in the bytes fed. The unfinished block a read ends with
    is kept as bytes; up to _RESCAN of them (an event cut between two reads) are joined to the
    next read and split again with it; a longer one becomes a bytearray that later reads are
    appended to, searching only their own bytes (and the one before them) for the blank line."""

    __slots__ = ("_buf", "_cr", "_max", "_provider")

    def __init__(self, provider: str | None = None, max_bytes: int = MAX_EVENT_BYTES) -> None:
        self._buf = b""  # a bytearray while a long event is gathered (_long)
        self._cr = False  # the last read ended in CR: a LF starting the next ends the same line
        self._provider = provider
        self._max = max_bytes

    def blocks(self, data: bytes) -> list[bytes]:
        """The blocks ``data`` completes, in order."""
        if self._cr:
            self._cr = False
            if data[:1] == b"\n":
                data = data[1:]
        if _CR in data:
            self._cr = data[-1] == _CR
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf = self._buf
        if not buf:  # one split for the whole read: a stream's read usually holds several events
            blocks = data.split(b"\n\n")
            self._buf = blocks.pop()
        elif len(buf) <= _RESCAN:  # an event cut between two reads: joined and split again
            blocks = (buf + data).split(b"\n\n")
            self._buf = blocks.pop()
        else:
            blocks = self._long(data)
        return blocks

    def _long(self, data: bytes) -> list[bytes]:
        """``blocks`` for a long unfinished event: appended to in place, only the new bytes
        searched for its end."""
        buf = self._buf
        if buf.__class__ is bytes:
            buf = self._buf = bytearray(buf)  # type: ignore[assignment]  # see __init__
        start = len(buf) - 1
        buf += data
        if buf.find(b"\n\n", start) < 0:
            if len(buf) > self._max:
                raise self._too_large()
            return []
        blocks = bytes(buf).split(b"\n\n")
        self._buf = blocks.pop()
        return blocks

    def rest(self) -> bytes:
        """The bytes of an unfinished block (at the stream's end), taken out."""
        rest, self._buf = self._buf, b""
        return bytes(rest)

    @property
    def pending(self) -> bool:
        """True when bytes of an unfinished event are buffered."""
        return bool(self._buf.strip())

    def _too_large(self) -> UpstreamBadGateway:
        self._buf = b""
        where = "the upstream" if self._provider is None else f"provider '{self._provider}'"
        limit = self._max
        size = f"{limit // _MIB} MiB" if limit % _MIB == 0 else f"{limit} bytes"
        return UpstreamBadGateway(f"{where} sent a stream event longer than {size} without ending it "
                                  "(providers[].max_event_bytes)")


class SSEParser(SSEBlocks):
    """Splits a byte stream into events as they complete (WHATWG rules for data/event lines)."""

    __slots__ = ()

    def feed(self, data: bytes) -> list[SSEEvent]:
        # SSEBlocks.blocks inlined (the same lines): it runs once per network read of every
        # stream, where a call costs more than the rest of it.
        if self._cr:
            self._cr = False
            if data[:1] == b"\n":
                data = data[1:]
        if _CR in data:
            self._cr = data[-1] == _CR
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf = self._buf
        if not buf:  # one split for the whole read: a stream's read usually holds several events
            blocks = data.split(b"\n\n")
            self._buf = blocks.pop()
        elif len(buf) <= _RESCAN:  # an event cut between two reads: joined and split again
            blocks = (buf + data).split(b"\n\n")
            self._buf = blocks.pop()
        else:
            blocks = self._long(data)
        events: list[SSEEvent] = []
        for block in blocks:
            if block[:6] == b"data: " and _LF not in block:  # the usual event: one data line
                events.append(SSEEvent(None, block[6:].decode("utf-8", "replace")))
            elif block and (event := self._parse(block)) is not None:
                events.append(event)
        return events

    def feed_data(self, data: bytes) -> list[bytes]:
        """The data of each event ``data`` completes, as UTF-8 (event names, comments and
        data-less events dropped), for a decoder that reads only the data: the usual one-line
        event's is cut from the read as it came, with no text decoded and no event object made.
        Invalid UTF-8 in it is left as it came (``feed`` replaces it); any other event's data is
        ``feed``'s, encoded."""
        if (not self._buf and not self._cr and data[:6] == b"data: " and data[-2:] == b"\n\n"
                and _CR not in data):
            # A read of whole one-line data events only (the usual read of an OpenAI stream):
            # their data by one split, with no test and slice per event. Kept when no piece holds
            # a LF (a second line, a blank line more, a comment or a name would): a join and a
            # memchr, several times cheaper than counting the read's LFs (a loop per byte).
            events = data[6:-2].split(b"\n\ndata: ")
            if _LF not in b"".join(events):
                return events
        out: list[bytes] = []
        for block in self.blocks(data):
            if block[:6] == b"data: " and _LF not in block:  # the usual event: one data line
                out.append(block[6:])
            elif block and (event := self._parse(block)) is not None:
                out.append(event.data.encode())
        return out

    def flush(self) -> list[SSEEvent]:
        """Parse a final event not followed by a blank line (some servers omit it)."""
        rest, self._buf = self._buf, b""
        event = self._parse(rest.strip(b"\n")) if rest.strip() else None
        return [event] if event is not None else []

    @staticmethod
    def _parse(block: bytes) -> SSEEvent | None:
        if _DATA not in block:  # no data line (a comment, a keep-alive name): no event, at a
            return None  # memchr's cost (an upstream may send reads made of nothing else)
        name: str | None = None
        data: list[str] = []
        for raw in block.split(b"\n"):
            if not raw or raw.startswith(b":"):
                continue
            line = raw.decode("utf-8", "replace")
            key, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if key == "data":
                data.append(value)
            elif key == "event":
                name = value
            # A stream may start with a UTF-8 byte order mark, to be ignored (WHATWG): looked
            # for only on a line no field name matched, so the usual events cost nothing more.
            elif key == _BOM_DATA:
                data.append(value)
            elif key == _BOM_EVENT:
                name = value
        if not data:  # no data line: not an event (WHATWG), e.g. a keep-alive "event: ping"
            return None
        return SSEEvent(name, "\n".join(data))
