"""Media operations' shared types: rerank, moderations, images, audio (docs/api-media.md).

Adapters implement ``media_request(operation, request, target)`` and ``media_response(operation,
body, headers, request, target)`` (providers/base.py); the operations are named by
:data:`OPERATION_NAMES`. A request's uploaded files are :class:`FilePart` values inside the
canonical request; :func:`multipart` writes a request with such parts as a multipart body.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

JSON = dict[str, Any]

# operation -> how errors name it
OPERATION_NAMES: dict[str, str] = {
    "rerank": "rerank",
    "moderations": "moderations",
    "image_generations": "image generation",
    "image_edits": "image edits",
    "image_variations": "image variations",
    "transcriptions": "audio transcriptions",
    "translations": "audio translations",
    "speech": "text to speech",
}

# The speech endpoint's audio formats, by its response_format (default mp3): the API's own table
# (docs/api-media.md), the content type of an answer whose upstream named none.
SPEECH_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
                "wav": "audio/wav", "pcm": "audio/pcm"}


# Uploads and the multipart bodies built from them stay in memory up to this size, then spill to a
# temporary file: an upload is never held whole in memory.
SPOOL_BYTES = 1024 * 1024
CHUNK_BYTES = 64 * 1024


def spooled() -> IO[bytes]:
    return tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)


class FilePart:
    """One uploaded file of a multipart request, bounded in size by the edge, held in a spooled
    temporary file (memory up to :data:`SPOOL_BYTES`, disk beyond)."""

    __slots__ = ("content_type", "file", "filename", "size")

    def __init__(self, filename: str, content_type: str, file: IO[bytes], size: int) -> None:
        self.filename = filename
        self.content_type = content_type
        self.file = file
        self.size = size

    @classmethod
    def of(cls, filename: str, content_type: str, data: bytes) -> FilePart:
        file = spooled()
        file.write(data)
        return cls(filename, content_type, file, len(data))

    def head(self, n: int) -> bytes:
        """The first ``n`` bytes (e.g. a WAV header)."""
        self.file.seek(0)
        return self.file.read(n)

    def chunks(self) -> Iterator[bytes]:
        self.file.seek(0)
        while piece := self.file.read(CHUNK_BYTES):
            yield piece

    def __repr__(self) -> str:
        return f"FilePart({self.filename!r}, {self.content_type!r}, {self.size} bytes)"


class MediaStreamUsage(Protocol):
    """Fed a media stream's bytes as they are relayed; ``usage`` is the canonical usage once it
    has ended (providers/openai_media.py ``StreamUsage``)."""

    def feed(self, data: bytes) -> None: ...

    def usage(self, operation: str) -> JSON: ...


@dataclass(slots=True)
class MediaReply:
    """What a media call answered: a JSON body for the client, or raw bytes (``content_type``
    set: audio, subtitles, plain text), and the canonical usage with its media units
    (``usage["units"]``, spend/units.py)."""

    body: JSON | None = None
    raw: bytes | None = None
    content_type: str | None = None
    usage: JSON | None = None
    headers: dict[str, str] = field(default_factory=dict)


def multipart(fields: JSON) -> tuple[IO[bytes], str, int]:
    """``fields`` as a multipart/form-data body: (a spooled file positioned at its start, the
    content type, its length). FilePart values are files (copied in chunks, never whole), lists
    repeated fields (names such as ``image[]`` kept as given), other values text."""
    boundary = "switchboard-" + secrets.token_hex(12)
    out = spooled()
    for raw_name, value in fields.items():
        name = _escaped(raw_name)
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            out.write(f"--{boundary}\r\n".encode())
            if isinstance(item, FilePart):
                filename = _escaped(item.filename)
                kind = item.content_type.replace("\r", "").replace("\n", "")
                out.write((f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                           f"Content-Type: {kind}\r\n\r\n").encode())
                for piece in item.chunks():
                    out.write(piece)
            else:
                out.write(f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
                out.write(_text(item).encode())
            out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    size = out.tell()
    out.seek(0)
    return out, f"multipart/form-data; boundary={boundary}", size


def _escaped(value: str) -> str:
    """A field or file name inside its quotes, as browsers write it (the HTML standard's
    multipart/form-data encoding): a quote or a line break cannot end the name early."""
    return value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- rerank: the canonical (Cohere-compatible) response ------------------------------------------

# One search unit: one query over up to this many documents (Cohere's definition), used when the
# upstream does not report search units itself.
DOCS_PER_SEARCH_UNIT = 100


def document_texts(request: JSON) -> list[str]:
    """The documents as strings (the edge accepts strings or ``{"text": ...}`` objects)."""
    return [d if isinstance(d, str) else str(d.get("text", "")) for d in request.get("documents") or ()]


def rerank_reply(request: JSON, results: list[tuple[int, float]], *, rid: str | None,
                 search_units: int | None, tokens: int | None) -> MediaReply:
    """The client's response from (index, score) pairs: sorted by score, cut at ``top_n``, each
    with its document when ``return_documents`` is set; search units as the upstream reported
    them, else one per query and :data:`DOCS_PER_SEARCH_UNIT` documents."""
    texts = document_texts(request)
    ordered = sorted(results, key=lambda r: r[1], reverse=True)
    top_n = request.get("top_n")
    if isinstance(top_n, int) and not isinstance(top_n, bool):
        ordered = ordered[:top_n]
    out = []
    for index, score in ordered:
        item: JSON = {"index": index, "relevance_score": score}
        if request.get("return_documents") and 0 <= index < len(texts):
            item["document"] = {"text": texts[index]}
        out.append(item)
    if search_units is None:
        search_units = max(1, -(-len(texts) // DOCS_PER_SEARCH_UNIT))
    billed: JSON = {"search_units": search_units}
    usage: JSON = {"units": {"search_units": search_units}}
    if tokens:
        billed["input_tokens"] = tokens
        usage.update(prompt_tokens=tokens, completion_tokens=0, total_tokens=tokens)
    body: JSON = {"id": rid or "rerank-" + secrets.token_hex(12), "results": out,
                  "meta": {"billed_units": billed}}
    return MediaReply(body=body, usage=usage)
