"""The media endpoints' multipart reader (bounded, streamed into spooled files), the multipart
writer for upstreams, and the WAV duration measure."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from python_multipart.multipart import parse_options_header

from switchboard.errors import PayloadTooLarge
from switchboard.http.media import _check_form, image_edits_form, transcriptions_form, wav_seconds
from switchboard.http.media.multipart import FormLimits, InvalidMultipart, read_form
from switchboard.providers.media import SPOOL_BYTES, FilePart, multipart

BOUNDARY = "b0undary"
CT = f"multipart/form-data; boundary={BOUNDARY}"


def form_body(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, data in parts:
        out += f"--{BOUNDARY}\r\n".encode()
        if filename is None:
            out += f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        else:
            out += (f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                    "Content-Type: audio/wav\r\n\r\n").encode()
        out += data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def receiver(body: bytes, piece: int = 7) -> Any:
    chunks = [body[i:i + piece] for i in range(0, len(body), piece)] or [b""]
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                for i, c in enumerate(chunks)]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return receive


def wav(seconds: float, rate: int = 8000, byte_rate: int | None = None, encoding: int = 1) -> bytes:
    data = b"\0\0" * int(rate * seconds)
    fmt = struct.pack("<HHIIHH", encoding, 1, rate, rate * 2 if byte_rate is None else byte_rate, 2, 16)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", len(data)) + data)


async def test_a_form_is_read_in_small_pieces_into_fields_and_files() -> None:
    body = form_body(("model", None, b"whisper-1"), ("file", "a.wav", b"RIFF-data"), ("tag", None, b"x"),
                     ("tag", None, b"y"))
    form = await read_form(receiver(body), CT, str(len(body)), FormLimits())
    assert form["model"] == ["whisper-1"] and form["tag"] == ["x", "y"]
    [file] = form["file"]
    assert isinstance(file, FilePart) and file.filename == "a.wav" and file.content_type == "audio/wav"
    assert file.size == 9 and file.head(100) == b"RIFF-data"


async def test_a_large_file_spills_to_disk_and_is_copied_in_chunks() -> None:
    data = bytes(range(256)) * (SPOOL_BYTES // 256 * 3)
    body = form_body(("file", "big.wav", data))
    form = await read_form(receiver(body, 65536), CT, None, FormLimits(max_body_bytes=10 * SPOOL_BYTES,
                                                                         max_file_bytes=5 * SPOOL_BYTES))
    [file] = form["file"]
    assert isinstance(file, FilePart) and file.size == len(data)
    assert file.file._rolled  # type: ignore[attr-defined]  # on disk, not in memory
    upload, content_type, size = multipart({"model": "m", "file": file})
    raw = upload.read()
    assert len(raw) == size and data in raw
    assert parse_options_header(content_type)[0] == b"multipart/form-data"


@pytest.mark.parametrize(("body", "limits", "error"), [
    (form_body(("file", "a.wav", b"x" * 101)), FormLimits(max_file_bytes=100), PayloadTooLarge),
    (form_body(("prompt", None, b"x" * 101)), FormLimits(max_field_bytes=100), PayloadTooLarge),
    (form_body(*[("f", None, b"x")] * 5), FormLimits(max_parts=4), PayloadTooLarge),
    (form_body(("file", "a.wav", b"x" * 200)), FormLimits(max_body_bytes=150), PayloadTooLarge),
    (b"--b0undary\r\nnonsense", FormLimits(), InvalidMultipart),
    (b"", FormLimits(), InvalidMultipart),
    (f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(), FormLimits(),
     InvalidMultipart),
])
async def test_limits_and_malformed_bodies(body: bytes, limits: FormLimits, error: type[Exception]) -> None:
    with pytest.raises(error):
        await read_form(receiver(body), CT, None, limits)


async def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    with pytest.raises(PayloadTooLarge):
        await read_form(receiver(b""), CT, "999999", FormLimits(max_body_bytes=1000))


@pytest.mark.parametrize("content_type", ["application/json", "multipart/form-data", None])
async def test_a_missing_boundary_is_refused(content_type: str | None) -> None:
    with pytest.raises(InvalidMultipart):
        await read_form(receiver(b"x"), content_type, None, FormLimits())


def test_form_checks_convert_types_and_name_the_field() -> None:
    audio = FilePart.of("a.wav", "audio/wav", wav(1.5))
    body = transcriptions_form({"file": [audio], "model": ["whisper-1"], "temperature": ["0.2"]})
    assert body["temperature"] == 0.2 and body["_audio_seconds"] == 1.5
    vad = transcriptions_form({"file": [audio], "model": ["m"], "chunking_strategy[type]": ["server_vad"],
                               "chunking_strategy[threshold]": ["0.5"]})
    assert vad["chunking_strategy[type]"] == "server_vad" and vad["chunking_strategy[threshold]"] == "0.5"
    assert transcriptions_form({"file": [audio], "model": ["m"], "chunking_strategy": ["auto"]})[
        "chunking_strategy"] == "auto"
    png = FilePart.of("p.png", "image/png", b"\x89PNG")
    edits = image_edits_form({"image[]": [png, png], "prompt": ["hat"], "n": ["2"]})
    assert len(edits["image"]) == 2 and edits["n"] == 2 and edits["model"] == "dall-e-2"
    with pytest.raises(Exception, match="'n' must be an integer") as failed:
        _check_form({"n": ["two"]}, {"n": "int"}, {}, ())
    assert getattr(failed.value, "param", None) == "n"


def test_a_member_name_cannot_name_another_upstream_field() -> None:
    audio = FilePart.of("a.wav", "audio/wav", b"RIFF")
    forged = 'chunking_strategy[x]"; name="model'
    with pytest.raises(Exception, match="unknown parameter") as refused:
        transcriptions_form({"file": [audio], "model": ["whisper-1"], forged: ["gpt-4o-transcribe"]})
    assert getattr(refused.value, "code", None) == "unknown_parameter"
    # The writer escapes quotes and line breaks in names as browsers do, whatever reaches it.
    body, _, _ = multipart({"model": "whisper-1", forged: "x", 'a\r\nb': "y",
                                       "file": FilePart.of('q"\r\n.wav', "audio/wav\r\nX-A: 1", b"RIFF")})
    text = body.read().decode()
    assert 'name="chunking_strategy[x]%22; name=%22model"' in text
    assert 'name="a%0D%0Ab"' in text and 'filename="q%22%0D%0A.wav"' in text
    assert "Content-Type: audio/wavX-A: 1\r\n" in text
    assert text.count('name="model"') == 1


def test_wav_seconds() -> None:
    assert wav_seconds(wav(2.0)) == 2.0
    data = wav(3.0)
    assert wav_seconds(data[:100], len(data)) == 3.0  # from the header and the file's size
    assert wav_seconds(b"ID3not a wav") is None
    assert wav_seconds(b"RIFF\0\0\0\0WAVEdata\0\0\0\0") is None  # no fmt chunk


def test_wav_seconds_ignore_the_byte_rate_field_players_ignore() -> None:
    # The byte-rate field is the caller's to write: the duration is what a decoder plays.
    assert wav_seconds(wav(3.0, byte_rate=1_600_000)) == 3.0
    assert wav_seconds(wav(3.0, byte_rate=0xFFFFFFF0)) == 3.0
    assert wav_seconds(wav(3.0, byte_rate=0)) == 3.0
    # A compressed encoding (0x55: MP3 in a WAV) has no fixed sample size: not measured.
    assert wav_seconds(wav(3.0, encoding=0x55)) is None
    assert wav_seconds(wav(3.0)[:30] + b"\0" * 6, 100) is None  # a fmt chunk cut short
