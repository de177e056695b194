"""Image input tokens by OpenAI's published rules (the "Calculating costs" section of the vision
guide), from the image's size when the request carries it.

- ``detail: low``: a flat base cost.
- ``detail: high`` (and ``auto``, counted like ``high``): the image is scaled to fit within
  2048 x 2048, then so that its shortest side is 768 px (only ever down); the cost is the base
  plus a per-tile cost for each 512 px tile of the result.

Base and tile costs: 85 and 170 tokens, except the ``gpt-4o-mini`` family (2833 and 5667).

Claude models follow Anthropic's rule instead (:func:`claude_image_tokens`): one token per 28 x 28
px patch, after the image is scaled to the model's native resolution (:func:`claude_vision`: a long
edge of 1568 px and 1,568 tokens, or 2576 px and 4,784 tokens for Opus 4.7 and later).

The size is read from the image itself when it is inline (a ``data:`` URL of PNG, GIF, JPEG or
WebP, read as every provider reads it (media_urls.py): ``DATA:`` is ``data:``; only the header
bytes are decoded). A remote URL is never fetched for counting: its size is
assumed to be 1024 x 1024 (:data:`ASSUMED_SIZE`), which costs 765 tokens at high detail. That is
what a typical photo costs; a very wide or tall image can cost up to 1,445. An inline image whose
size cannot be read (BMP, bytes that are no image) is assumed so too, not the worst case: OpenAI
refuses what it cannot read (docs/tokens.md). For a Claude model that size costs 1,369.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from dataclasses import dataclass

from switchboard import media_urls

ASSUMED_SIZE = (1024, 1024)


@dataclass(frozen=True, slots=True)
class ClaudeVision:
    """A Claude model's native image resolution: larger images are scaled down to fit it."""

    long_edge: int
    max_tokens: int


# Anthropic's rule (vision guide, "Evaluate image size"): Claude sees an image in 28 x 28 px
# patches, one token each, ceil(width / 28) x ceil(height / 28); an image over the model's native
# resolution is first scaled down, aspect ratio kept, to the largest size within it.
CLAUDE_PATCH = 28
CLAUDE_STANDARD = ClaudeVision(long_edge=1568, max_tokens=1568)
CLAUDE_HIGH = ClaudeVision(long_edge=2576, max_tokens=4784)  # Claude Opus 4.7 and later
# A Claude model's generation in its name: claude-opus-4-7, claude-3-5-sonnet, claude-sonnet-5,
# anthropic.claude-opus-4-7-v1:0, claude-opus-4.7 (OpenRouter); a date after the major version
# (claude-opus-4-20250514) is no minor version.
_CLAUDE_VERSION = re.compile(r"claude-(?:([a-z]+)-)?(\d+)(?:[-.](\d{1,2})(?!\d))?")
# How much of a data URL's base64 is decoded looking for the size (JPEG headers can follow EXIF).
_HEADER_CHARS = 256 * 1024


def costs(model: str) -> tuple[int, int]:
    """(base tokens, tokens per 512 px tile) for ``model``."""
    if "gpt-4o-mini" in model:
        return 2833, 5667
    return 85, 170


def tiles(width: int, height: int) -> int:
    """512 px tiles of an image at high detail, after OpenAI's two scaling steps."""
    w, h = float(width), float(height)
    if w > 2048 or h > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    return math.ceil(w / 512) * math.ceil(h / 512)


def image_tokens(size: tuple[int, int] | None, detail: str, model: str) -> int:
    base, per_tile = costs(model)
    if detail == "low":
        return base
    width, height = size or ASSUMED_SIZE
    return base + per_tile * tiles(width, height)


def is_claude(model: str) -> bool:
    """An Anthropic model, whoever serves it: ``claude-...`` (Anthropic, Vertex AI's
    ``claude-...@date``), ``anthropic.claude-...`` and ``us.anthropic.claude-...`` (Bedrock)."""
    return "claude" in model.lower()


def claude_vision(model: str) -> ClaudeVision:
    """The native resolution of a Claude model: Opus 4.7 and later, and every model of a later
    generation, read larger images (2576 px) than the models before (1568 px)."""
    found = _CLAUDE_VERSION.search(model.lower())
    if found is None:
        return CLAUDE_STANDARD
    family, major, minor = found.group(1), int(found.group(2)), int(found.group(3) or 0)
    if major >= 5 or (family == "opus" and major == 4 and minor >= 7):
        return CLAUDE_HIGH
    return CLAUDE_STANDARD


def claude_image_tokens(size: tuple[int, int] | None, vision: ClaudeVision = CLAUDE_STANDARD) -> int:
    """Tokens of an image for a Claude model by Anthropic's rule; Anthropic has no detail levels.
    An image over the model's token budget is scaled to the largest size within it, which costs
    the budget or a few patches less: counted as the budget, the upper bound."""
    width, height = size or ASSUMED_SIZE
    scale = min(1.0, vision.long_edge / max(width, height))
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    patches = math.ceil(w / CLAUDE_PATCH) * math.ceil(h / CLAUDE_PATCH)
    return min(patches, vision.max_tokens)


def size_of_url(url: str) -> tuple[int, int] | None:
    """(width, height) of an inline ``data:`` image, None for a remote URL or unknown bytes."""
    start = media_urls.data_start(url)
    if start < 0:
        return None
    encoded = url[start : start + _HEADER_CHARS]
    encoded = encoded[: len(encoded) - len(encoded) % 4]
    try:
        head = base64.b64decode(encoded, validate=False)
    except (binascii.Error, ValueError):
        return None
    return size_of_bytes(head)


def size_of_bytes(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a PNG, GIF, JPEG or WebP image."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return _valid(w, h)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            w, h = struct.unpack("<HH", data[6:10])
            return _valid(w, h)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
        if data[:2] == b"\xff\xd8":
            return _jpeg(data)
    except struct.error:
        return None
    return None


def _valid(w: int, h: int) -> tuple[int, int] | None:
    return (w, h) if w > 0 and h > 0 else None


def _webp(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", data[26:30])
        return _valid(w & 0x3FFF, h & 0x3FFF)
    if chunk == b"VP8L" and data[20:21] == b"\x2f":
        bits = int.from_bytes(data[21:25], "little")
        return _valid((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return _valid(w, h)
    return None


# Start-of-frame markers: every SOFn except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF:
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return _valid(w, h)
        i += 2 + length
    return None
