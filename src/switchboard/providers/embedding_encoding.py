"""``encoding_format: base64`` for every provider.

Only OpenAI-shaped upstreams can return base64 vectors themselves; for the others the gateway
packs the float vectors the adapter returned, as OpenAI does (little-endian float32).
"""

from __future__ import annotations

import base64
import struct
from typing import Any


def pack(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def apply_encoding_format(request: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    if request.get("encoding_format") != "base64":
        return body
    for item in body.get("data") or ():
        vector = item.get("embedding") if isinstance(item, dict) else None
        if isinstance(vector, list):
            item["embedding"] = pack(vector)
    return body
