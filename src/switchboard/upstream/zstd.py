"""The zstd content coding's bounds, shared by the request bodies clients send (http/asgi.py)
and the error bodies services answer (services/proxy.py): one decoder set-up, one window bound."""

from __future__ import annotations

import zstandard

# The largest zstd window a frame may ask the decoder to keep: 8 MiB, the bound RFC 9659 sets for
# the zstd content coding (a frame may otherwise ask for gigabytes of memory).
ZSTD_MAX_WINDOW = 8 << 20


def decompressor() -> zstandard.ZstdDecompressor:
    """A decoder that refuses (``zstandard.ZstdError``) a frame asking for a window over
    ``ZSTD_MAX_WINDOW``."""
    return zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)


def head(body: bytes, limit: int) -> bytes | None:
    """The first ``limit`` bytes (or fewer) ``body``'s zstd frames decompress to, one after
    another; None when it is not zstd data or a frame asks for too large a window. Only that much
    is ever produced, whatever a frame header claims (a small bomb stays small); a frame cut short
    gives what its whole blocks hold, as a gzip stream cut short gives what it inflates to."""
    try:
        return decompressor().stream_reader(body, read_across_frames=True).read(limit)
    except zstandard.ZstdError:
        return None
