"""An incremental Server-Sent Events parser shared by the adapters whose providers stream SSE."""

from __future__ import annotations

from dataclasses import dataclass

# Ints: ``bytes in bytes`` first tries its operand as an integer, raising and catching an error.
_CR, _LF = ord("\r"), ord("\n")


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: str


class SSEParser:
    """Splits a byte stream into events as they complete (WHATWG rules for data/event lines)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[SSEEvent]:
        buf = self._buf + data if self._buf else data
        if _CR in buf:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        # One split for the whole read: a stream's read usually holds several events.
        blocks = buf.split(b"\n\n")
        self._buf = blocks.pop()
        events: list[SSEEvent] = []
        for block in blocks:
            if block[:6] == b"data: " and _LF not in block:  # the usual event: one data line
                events.append(SSEEvent(None, block[6:].decode("utf-8", "replace")))
            elif (event := self._parse(block)) is not None:
                events.append(event)
        return events

    @property
    def pending(self) -> bool:
        """True when bytes of an unfinished event are buffered."""
        return bool(self._buf.strip())

    def flush(self) -> list[SSEEvent]:
        """Parse a final event not followed by a blank line (some servers omit it)."""
        rest, self._buf = self._buf, b""
        event = self._parse(rest.strip(b"\n")) if rest.strip() else None
        return [event] if event is not None else []

    @staticmethod
    def _parse(block: bytes) -> SSEEvent | None:
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
        if not data and name is None:
            return None
        return SSEEvent(name, "\n".join(data))
