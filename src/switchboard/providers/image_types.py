"""The image type base64 bytes are, read from their first bytes (the format's signature).

Clients often label every image ``image/jpeg`` (or a type the upstream refuses) whatever it is;
upstreams that check the label against the bytes refuse such an image, so adapters send the type
the bytes show where they can tell it.
"""

from __future__ import annotations

import base64
import binascii

_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
          (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"))


def sniffed(data: str) -> str | None:
    """The image type the first bytes of base64 ``data`` show (jpeg, png, gif, webp), else None."""
    try:
        head = base64.b64decode(data[:16], validate=True)  # 12 bytes: enough for every signature
    except (binascii.Error, ValueError):
        return None
    for magic, media_type in _MAGIC:
        if head.startswith(magic):
            return media_type
    return "image/webp" if head[:4] == b"RIFF" and head[8:12] == b"WEBP" else None
