"""The golden chat requests: texts in several languages and scripts, names, multi-turn
conversations, tool definitions, tool calls and results, and images at low, high and auto detail
with sizes known (inline PNG, JPEG, GIF, WebP) or not (remote URLs)."""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

TEXTS = [
    "Hello, how are you today?",
    "Der schnelle braune Fuchs springt über den faulen Hund. Größe, Übermaß!",
    "Le cœur a ses raisons que la raison ne connaît point.",
    "El veloz murciélago hindú comía feliz cardillo y kiwi.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "我能吞下玻璃而不伤身体。今天天气很好\uff0c我们去公园散步吧。",
    "私はガラスを食べられます。それは私を傷つけません。東京タワー",
    "다람쥐 헌 쳇바퀴에 타고파. 안녕하세요!",
    "أنا قادر على أكل الزجاج و هذا لا يؤلمني.",
    "मैं काँच खा सकता हूँ और मुझे उससे कोई चोट नहीं पहुंचती।",
    "Emoji: 🎉🚀👩‍👩‍👧‍👦 and flags 🇩🇪🇯🇵, plus a zero-width\u200bjoiner.",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\nprint([fib(i) for i in range(10)])",
    '{"json": [1, 2, 3], "nested": {"a": null, "b": true}}\n\n\n   trailing   spaces   ',
    "Special-token text is plain text here: <|endoftext|> and <|endofprompt|>.",
    "Numbers 1234567890 3.14159 -42 1e10 0xFF and dates 2026-12-02T01:00:00Z",
    "",
    "a" * 500,
    "The quick brown fox jumps over the lazy dog. " * 40,
]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "description": "The unit of temperature to return",
                         "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}
SEARCH = {
    "type": "function",
    "function": {
        "name": "search_documents",
        "description": "Search the knowledge base.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "Free text, any language."},
                "limit": {"type": "integer", "description": "At most this many results"},
                "tags": {"type": "array", "description": "Filter by tags", "items": {"type": "string"}},
            },
        },
    },
}
NO_PARAMS = {"type": "function", "function": {"name": "get_time", "description": "Current UTC time."}}
BOOKING = {
    "type": "function",
    "function": {
        "name": "book_flight",
        "description": "Réserver un vol — 予約",
        "parameters": {
            "type": "object",
            "properties": {
                "from": {"type": "string", "description": "IATA code"},
                "to": {"type": "string", "description": "IATA code"},
                "class": {"type": "string", "enum": ["economy", "premium", "business", "first"]},
                "passengers": {
                    "type": "object", "description": "Who flies",
                    "properties": {"adults": {"type": "integer"}, "children": {"type": "integer"}},
                },
            },
            "required": ["from", "to"],
        },
    },
}
TOOL_SETS = [[WEATHER], [SEARCH], [NO_PARAMS], [BOOKING], [WEATHER, SEARCH, NO_PARAMS], [WEATHER, BOOKING]]


def png(width: int, height: int) -> bytes:
    """A real 1-bit grayscale PNG of the given size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(row * height)) + chunk(
        b"IEND", b"")


def jpeg(width: int, height: int) -> bytes:
    """The header of a baseline JPEG: SOI, a JFIF APP0 segment, an EXIF-like APP1, SOF0."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 300) + b"Exif\x00\x00" + b"\x00" * 294
    components = b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + components
    return b"\xff\xd8" + app0 + app1 + sof + b"\xff\xd9"


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00;"


def webp(width: int, height: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (
        height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def pdf(pages: int, *, packed: bool = False, filler: int = 0) -> bytes:
    """A PDF of ``pages`` pages: a page tree (``/Type /Pages``) and its page objects, written
    plainly (``/Type /Page`` in the file) or, as PDF 1.5 writers do, in a compressed object
    stream; ``filler`` bytes of an (uncompressed) content stream before them."""
    kids = " ".join(f"{3 + i} 0 R" for i in range(pages))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode()]
    page_objects = [b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]>>" for _ in range(pages)]
    out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
    if filler:
        out += b"9 0 obj\n<< /Length %d >>\nstream\n" % filler + b"q" * filler + b"\nendstream\nendobj\n"
    for number, body in enumerate(objects, 1):
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    if packed:
        stream = zlib.compress(b"\n".join(page_objects))
        out += (b"%d 0 obj\n<< /Type /ObjStm /N %d /First 0 /Filter /FlateDecode /Length %d >>\nstream\n"
                % (3 + pages, pages, len(stream)) + stream + b"\nendstream\nendobj\n")
    else:
        for number, body in enumerate(page_objects, 3):
            out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    return out + b"trailer\n<< /Root 1 0 R >>\n%%EOF\n"


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


# (url, (width, height) or None when the size is not in the request)
IMAGES: list[tuple[str, tuple[int, int] | None]] = [
    (data_url("image/png", png(512, 512)), (512, 512)),
    (data_url("image/png", png(4000, 3000)), (4000, 3000)),
    (data_url("image/png", png(100, 2500)), (100, 2500)),
    (data_url("image/jpeg", jpeg(1920, 1080)), (1920, 1080)),
    (data_url("image/jpeg", jpeg(800, 600)), (800, 600)),
    (data_url("image/gif", gif(300, 200)), (300, 200)),
    (data_url("image/webp", webp(2048, 4096)), (2048, 4096)),
    ("https://example.com/cat.png", None),
]


def image_part(i: int, detail: str | None) -> dict[str, Any]:
    url = IMAGES[i % len(IMAGES)][0]
    image: dict[str, Any] = {"url": url}
    if detail is not None:
        image["detail"] = detail
    return {"type": "image_url", "image_url": image}


def sizes() -> dict[str, tuple[int, int]]:
    return {url: size for url, size in IMAGES if size is not None}


def _tool_round(text: str, tools: list[dict[str, Any]], call_args: str) -> list[dict[str, Any]]:
    name = tools[0]["function"]["name"]
    return [
        {"role": "user", "content": text},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": name, "arguments": call_args}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"ok": true, "temperature": 21}'},
    ]


def chat_cases() -> list[tuple[str, str, dict[str, Any]]]:
    """(case id, model, canonical chat request)."""
    models = ["gpt-4o", "gpt-4", "gpt-4o-mini", "gpt-4.1", "gpt-3.5-turbo", "o3-mini"]
    cases: list[tuple[str, str, dict[str, Any]]] = []
    for i, text in enumerate(TEXTS):  # plain text, every language, two encodings each
        for model in ("gpt-4o", "gpt-4"):
            cases.append((f"text{i}-{model}", model, {"messages": [{"role": "user", "content": text}]}))
    for i, model in enumerate(models):  # system + names + multi-turn
        msgs = [
            {"role": "system", "content": "You are a helpful, pattern-following assistant."},
            {"role": "system", "name": "example_user", "content": TEXTS[i + 1]},
            {"role": "system", "name": "example_assistant", "content": TEXTS[i + 2]},
            {"role": "user", "name": "Zoë", "content": TEXTS[i + 3]},
            {"role": "assistant", "content": TEXTS[i + 4]},
            {"role": "user", "content": TEXTS[i + 5]},
        ]
        cases.append((f"dialogue-{model}", model, {"messages": msgs}))
    for i, tools in enumerate(TOOL_SETS):  # tool definitions, with and without tool traffic
        for model in ("gpt-4o", "gpt-4"):
            msgs = [{"role": "system", "content": "You answer about the weather."},
                    {"role": "user", "content": TEXTS[i]}]
            cases.append((f"tools{i}-{model}", model, {"messages": msgs, "tools": tools}))
        args = '{"location": "Zürich, CH", "unit": "celsius"}' if i % 2 else '{"query": "東京", "limit": 3}'
        cases.append((f"toolcall{i}", models[i], {"messages": _tool_round(TEXTS[i + 2], tools, args),
                                                   "tools": tools}))
    multi = [  # several calls in one assistant message
        {"role": "user", "content": "Weather in Paris and in Kyiv?"},
        {"role": "assistant", "content": "Checking both.", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "get_current_weather",
                                                         "arguments": '{"location":"Paris"}'}},
            {"id": "b", "type": "function", "function": {"name": "get_current_weather",
                                                         "arguments": '{"location":"Київ"}'}}]},
        {"role": "tool", "tool_call_id": "a", "content": "18C, cloudy"},
        {"role": "tool", "tool_call_id": "b", "content": "12°C, дощ"},
    ]
    cases.append(("parallel-calls-gpt-4o", "gpt-4o", {"messages": multi, "tools": [WEATHER]}))
    cases.append(("parallel-calls-gpt-4", "gpt-4", {"messages": multi, "tools": [WEATHER]}))
    details: list[str | None] = ["low", "high", "auto", None]
    for i in range(len(IMAGES) * 2):  # images: every size, every detail, three image cost tables
        model = ("gpt-4o", "gpt-4o-mini", "gpt-4.1")[i % 3]
        parts = [{"type": "text", "text": TEXTS[i % len(TEXTS)]}, image_part(i, details[i % 4])]
        if i % 5 == 0:
            parts.append(image_part(i + 3, "high"))
        cases.append((f"image{i}-{model}", model, {"messages": [{"role": "user", "content": parts}]}))
    return cases
