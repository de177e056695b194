"""The image type base64 data is, read from its first bytes (the format's signature).

Clients often label every data-URL image ``image/jpeg`` whatever it holds; OpenAI reads the
bytes, while Anthropic, Bedrock Converse and Gemini refuse an image whose bytes are not the type
it is sent as ("Image does not match the provided media type"). Adapters send the type the bytes
show where they can tell it.
"""

from __future__ import annotations

import base64
import binascii

# The leading bytes of the four types these APIs take (webp: RIFF....WEBP, checked apart).
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
