"""The gzip content coding, whole: RFC 1952 lets a body be several members one after another
(concatenated files; servers and proxies that compress piece by piece), and they are one
content. Shared by the upstream client's answers (upstream/http1.py) and the request bodies
clients send (http/asgi.py)."""

from __future__ import annotations

import zlib

WBITS = 16 + zlib.MAX_WBITS  # the gzip wrapper
# After a member's end the input is fed in pieces, from PIECE_MIN bytes up (doubling while a
# member goes on, to PIECE_MAX): zlib copies whatever follows a member's end into unused_data, so
# a body of many tiny members fed whole would cost its size squared (a 1 MiB body of empty
# members: some 27 GB copied). In pieces, each member's end copies the rest of one piece, at
# most about twice the member's own size (or PIECE_MIN).
PIECE_MIN = 64
PIECE_MAX = 64 * 1024


class TooManyMembers(ValueError):
    """More members than the decoder was told to take."""


class Gunzip:
    """A gzip body's decoder, fed as the body arrives. What follows a member and is not one is
    zlib's error, as for any corrupt body. The bound on the content is the caller's:
    ``decompress(data, limit)`` gives at most ``limit`` bytes, and ``unconsumed_tail`` is not
    empty when more was left: given back to ``decompress`` (zlib's contract), it goes on where it
    stopped. ``max_members``: more is ``TooManyMembers`` (each member costs a
    decoder, some microseconds: a caller's body has no reason for many; a stream compressed event
    by event does)."""

    __slots__ = ("_left", "_member", "_members")

    def __init__(self, max_members: int | None = None) -> None:
        self._member = zlib.decompressobj(WBITS)
        self._left = b""  # input not fed once the bound was reached
        self._members = -1 if max_members is None else max_members - 1  # left to begin; -1: any

    def decompress(self, data: bytes, limit: int) -> bytes:
        self._left = b""  # given back in ``data`` by a caller going on, or never to be
        member = self._member
        out = member.decompress(data, limit)
        if not member.unused_data:  # within a member, or at the end of the last: the common case
            return out
        parts = [out]
        size = len(out)
        # The input still to feed, next piece last: what followed the member (copied once), and
        # in front of it, each time a member ends inside a piece, the rest of that piece.
        todo = [memoryview(member.unused_data)]
        piece = PIECE_MIN
        fresh = True  # the member ended: the next piece begins a new one
        while todo:
            if fresh:  # what is left begins a member (or is zlib's error)
                if self._members == 0:
                    raise TooManyMembers
                self._members -= 1
                member, fresh = zlib.decompressobj(WBITS), False
            if size >= limit:  # content left past the bound: the caller reads unconsumed_tail
                self._left = b"".join(bytes(view) for view in reversed(todo))
                break
            view = todo.pop()
            feed = view[:piece]
            if len(view) > piece:
                todo.append(view[piece:])
            piece = min(2 * piece, PIECE_MAX)
            out = member.decompress(feed, limit - size)
            parts.append(out)
            size += len(out)
            if member.unconsumed_tail:  # the bound reached inside this piece
                self._left = b"".join(bytes(view) for view in reversed(todo))
                break
            if member.unused_data:  # the member ended inside this piece
                todo.append(memoryview(member.unused_data))
                piece, fresh = PIECE_MIN, True
        self._member = member
        return b"".join(parts)

    @property
    def unconsumed_tail(self) -> bytes:
        return self._member.unconsumed_tail + self._left

    @property
    def unused_data(self) -> bytes:
        return b""  # what follows a member begins the next one (or is zlib's error)

    @property
    def eof(self) -> bool:
        """The last member fed is whole (False: the body was cut short)."""
        return self._member.eof

    def flush(self) -> bytes:
        return self._member.flush()
