"""The media endpoints' inbound APIs: rerank, moderations, images, audio (docs/api-media.md).

JSON endpoints (``/v1/rerank``, ``/v1/moderations``, ``/v1/images/generations``,
``/v1/audio/speech``) decode like the OpenAI API's; multipart endpoints (``/v1/images/edits``,
``/v1/images/variations``, ``/v1/audio/transcriptions``, ``/v1/audio/translations``) are read by
:class:`FormEndpoint`, which parses the form as it arrives with every size bounded (multipart.py)
and leaves the form for ``decode`` to check after authentication. Each request is checked field
by field: unknown fields, wrong types and missing required fields are refused (400) naming the
field. Errors are OpenAI-shaped, as on every ``/v1`` endpoint (Cohere-shaped on Cohere's own ``/v2/rerank``).
Streamed answers (speech audio; transcriptions and images with ``stream: true``) are relayed as
the upstream sends them by :class:`RelayEndpoint`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import struct
from collections.abc import Callable
from typing import Any

import orjson

from switchboard.context import RequestContext, StreamReply
from switchboard.errors import GatewayError, InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from switchboard.http import validate as v
from switchboard.http.asgi import Receive, refuse_content_encoding
from switchboard.http.endpoint import Endpoint, Responder, timing_headers
from switchboard.http.errors import ServerShuttingDown
from switchboard.http.media.multipart import Form, FormLimits, InvalidMultipart, read_form
from switchboard.http.openai_api import OpenAIJson, parse_object
from switchboard.pipeline.media import STREAMED
from switchboard.providers.media import FilePart

Check = Callable[[Any], str | None]
JSON = dict[str, Any]

_FORM = "_form"  # ctx.request key: the parsed form, until decode checks it
_FORM_ERROR = "_form_error"
MAX_DOCUMENTS = 10_000
MAX_SPEECH_CHARS = 4096

log = logging.getLogger("switchboard.http")


def _refuse(message: str, param: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def _check_fields(body: JSON, spec: dict[str, Check], required: tuple[str, ...]) -> JSON:
    for key in body:
        if key not in spec:
            raise _refuse(f"unknown parameter '{key}'", key, "unknown_parameter")
    for key in required:
        if body.get(key) is None:
            raise _refuse(f"'{key}' is required", key, "missing_required_parameter")
    for key, value in body.items():
        if value is None:
            continue
        problem = spec[key](value)
        if problem:
            raise _refuse(f"'{key}' {problem}", key, "invalid_type")
    return body


def _nonempty_string(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    return None if value.strip() else "must not be empty"


def _any(value: Any) -> str | None:
    return None


def _documents(value: Any) -> str | None:
    if not isinstance(value, list) or not value:
        return "must be a non-empty array of strings or {\"text\": ...} objects"
    if len(value) > MAX_DOCUMENTS:
        return f"must hold at most {MAX_DOCUMENTS} documents"
    for doc in value:
        if isinstance(doc, str):
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
            return "must hold strings or {\"text\": ...} objects"
    return None


def _moderation_input(value: Any) -> str | None:
    if isinstance(value, str):
        return None
    if not isinstance(value, list) or not value:
        return "must be a string, an array of strings or an array of content parts"
    if all(isinstance(x, str) for x in value):
        return None
    for part in value:
        if not isinstance(part, dict) or part.get("type") not in ("text", "image_url"):
            return "must hold strings, or objects of type 'text' or 'image_url'"
        # Each part's content too: one without it would be the upstream's to refuse, or to skip.
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            return "a 'text' part must hold its 'text' string"
        image = part.get("image_url")
        has_url = isinstance(image, dict) and isinstance(image.get("url"), str)
        if part["type"] == "image_url" and not has_url:
            return "an 'image_url' part must hold {\"url\": ...}"
    return None


def _voice(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return None
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return None
    return "must be a voice name or an object with an 'id'"


def _max_len(limit: int) -> Check:
    def check(value: Any) -> str | None:
        problem = _nonempty_string(value)
        if problem:
            return problem
        return None if len(value) <= limit else f"must be at most {limit} characters"

    return check


RERANK: dict[str, Check] = {
    "model": v.string, "query": _nonempty_string, "documents": _documents,
    "top_n": v.integer(1), "return_documents": v.boolean, "max_tokens_per_doc": v.integer(1),
}
MODERATIONS: dict[str, Check] = {"model": v.string, "input": _moderation_input}
IMAGE_OPTIONS: dict[str, Check] = {
    "model": v.string, "prompt": _nonempty_string, "n": v.integer(1, 10), "size": v.string,
    "quality": v.string, "response_format": v.one_of("url", "b64_json"), "user": v.string,
    "safety_identifier": v.string, "background": v.string, "output_format": v.string,
    "output_compression": v.integer(0, 100),
    "stream": v.boolean, "partial_images": v.integer(0, 3),
}
IMAGE_GENERATIONS: dict[str, Check] = {**IMAGE_OPTIONS, "style": v.string, "moderation": v.string}
SPEECH: dict[str, Check] = {
    "model": v.string, "input": _max_len(MAX_SPEECH_CHARS), "voice": _voice, "instructions": v.string,
    "response_format": v.one_of("mp3", "opus", "aac", "flac", "wav", "pcm"), "speed": v.number(0.25, 4.0),
    "stream_format": v.one_of("audio"),
}


def rerank_request(body: Any) -> JSON:
    return _check_fields(body, RERANK, ("model", "query", "documents"))


def _default_model(body: JSON, model: str) -> JSON:
    """``body`` with OpenAI's default ``model`` when it names none: absent, or null as clients
    that write every optional field send it (null is no value, as for every other field)."""
    if body.get("model") is None:
        body["model"] = model
    return body


def moderations_request(body: Any) -> JSON:
    return _default_model(_check_fields(body, MODERATIONS, ("input",)), "omni-moderation-latest")


def image_generations_request(body: Any) -> JSON:
    return _default_model(_check_fields(body, IMAGE_GENERATIONS, ("prompt",)), "dall-e-2")


def speech_request(body: Any) -> JSON:
    return _check_fields(body, SPEECH, ("model", "input", "voice"))


# -- multipart forms ------------------------------------------------------------------------------

# "text" | "int" | "number" | "bool" | "file" | "files" | "list" | "object" (a text value, e.g.
# "auto", or members sent as name[key] fields)
FieldKind = str

# A form's numbers as a JSON body would write them (and as the SDKs send them: str() of the
# value, "0.2", "1e-05"): ASCII digits, a sign, a fraction, an exponent. int() and float() also
# read " 5", "+5", "1_0", other scripts' digits (U+0665, an Arabic-Indic 5) and "inf" or "nan".
_INTEGER = re.compile(r"-?[0-9]{1,20}")
_NUMBER = re.compile(r"-?(?:[0-9]{1,30}(?:\.[0-9]{1,30})?|\.[0-9]{1,30})(?:[eE][+-]?[0-9]{1,3})?")


def _convert(name: str, kind: FieldKind, values: list[str | FilePart]) -> Any:
    files = [x for x in values if isinstance(x, FilePart)]
    texts = [x for x in values if isinstance(x, str)]
    if kind in ("file", "files"):
        if texts or not files:
            raise _refuse(f"'{name}' must be a file upload", name, "invalid_type")
        if kind == "file" and len(files) > 1:
            raise _refuse(f"'{name}' may be sent only once", name, "invalid_value")
        return files if kind == "files" else files[0]
    if files:
        raise _refuse(f"'{name}' must be a text field, not a file", name, "invalid_type")
    if kind == "list":
        return texts
    if kind == "object":
        kind = "text"
    if len(texts) > 1:
        raise _refuse(f"'{name}' may be sent only once", name, "invalid_value")
    text = texts[0]
    if kind == "int":
        if not _INTEGER.fullmatch(text):
            raise _refuse(f"'{name}' must be an integer", name, "invalid_type")
        return int(text)
    if kind == "number":
        number = float(text) if _NUMBER.fullmatch(text) else math.nan
        if not math.isfinite(number):  # also a finite text too large for a float ("1e999")
            raise _refuse(f"'{name}' must be a number", name, "invalid_type")
        return number
    if kind == "bool":
        if text.lower() not in ("true", "false"):
            raise _refuse(f"'{name}' must be true or false", name, "invalid_type")
        return text.lower() == "true"
    return text


# An object's member as a form field: chunking_strategy[type], chunking_strategy[prefix_padding_ms].
_MEMBER = re.compile(r"^[a-z_]{1,64}\[[A-Za-z0-9_]{1,64}\]$")


def _check_form(form: Form, kinds: dict[str, FieldKind], spec: dict[str, Check], required: tuple[str, ...],
                aliases: dict[str, str] | None = None) -> JSON:
    out: JSON = {}
    for raw_name, values in form.items():
        name = (aliases or {}).get(raw_name, raw_name)
        # Only a member name of plain characters is passed on: the name is written into the
        # upstream's form, where a quote would let it name another field (a second 'model').
        if (name not in kinds and _MEMBER.match(raw_name)
                and kinds.get(raw_name.split("[", 1)[0]) == "object"):
            # an object's members as the SDKs send them (chunking_strategy[type]=server_vad)
            out[raw_name] = _convert(raw_name, "text", values)
            continue
        if name not in kinds:
            shown = raw_name[:100]
            raise _refuse(f"unknown parameter '{shown}'", shown, "unknown_parameter")
        value = _convert(name, kinds[name], values)
        if name in out and kinds[name] == "files":
            out[name] = [*out[name], *value]
        elif name in out:
            raise _refuse(f"'{name}' may be sent only once", name, "invalid_value")
        else:
            out[name] = value
    for key in required:
        if out.get(key) is None:
            raise _refuse(f"'{key}' is required", key, "missing_required_parameter")
    for key, value in out.items():
        check = spec.get(key)
        if check is not None and (problem := check(value)):
            raise _refuse(f"'{key}' {problem}", key, "invalid_type")
    return out


IMAGE_EDIT_KINDS: dict[str, FieldKind] = {
    "image": "files", "mask": "file", "prompt": "text", "model": "text", "n": "int", "size": "text",
    "quality": "text", "response_format": "text", "user": "text", "safety_identifier": "text",
    "background": "text",
    "input_fidelity": "text", "output_format": "text", "output_compression": "int", "stream": "bool",
    "partial_images": "int",
}
MAX_EDIT_IMAGES = 16


def image_edits_form(form: Form) -> JSON:
    body = _check_form(form, IMAGE_EDIT_KINDS, {**IMAGE_OPTIONS, "input_fidelity": v.string},
                       ("image", "prompt"), aliases={"image[]": "image"})
    if len(body["image"]) > MAX_EDIT_IMAGES:
        raise _refuse(f"'image' may hold at most {MAX_EDIT_IMAGES} images", "image")
    body.setdefault("model", "dall-e-2")
    return body


# dall-e-2's variations of one image: no prompt, and only these fields (OpenAI's reference).
IMAGE_VARIATION_KINDS: dict[str, FieldKind] = {
    "image": "file", "model": "text", "n": "int", "size": "text", "response_format": "text", "user": "text",
}
IMAGE_VARIATION: dict[str, Check] = {
    "model": v.string, "n": v.integer(1, 10), "size": v.one_of("256x256", "512x512", "1024x1024"),
    "response_format": v.one_of("url", "b64_json"), "user": v.string,
}


def image_variations_form(form: Form) -> JSON:
    body = _check_form(form, IMAGE_VARIATION_KINDS, IMAGE_VARIATION, ("image",))
    body.setdefault("model", "dall-e-2")
    return body


TRANSCRIPTION_KINDS: dict[str, FieldKind] = {
    "file": "file", "model": "text", "language": "text", "prompt": "text", "response_format": "text",
    "temperature": "number", "timestamp_granularities[]": "list", "include[]": "list",
    "chunking_strategy": "object", "stream": "bool",
    # gpt-4o-transcribe-diarize: up to 4 speakers' names and their samples (data URLs), each a
    # form field bounded as any (multipart.py: max_field_bytes).
    "known_speaker_names[]": "list", "known_speaker_references[]": "list",
}
TRANSLATION: dict[str, Check] = {
    "model": v.string, "response_format": v.one_of("json", "text", "srt", "verbose_json", "vtt"),
    "temperature": v.number(0, 1),
}
TRANSCRIPTION: dict[str, Check] = {
    **TRANSLATION,
    "response_format": v.one_of("json", "text", "srt", "verbose_json", "vtt", "diarized_json"),
}
TRANSLATION_KINDS = {k: TRANSCRIPTION_KINDS[k]
                     for k in ("file", "model", "prompt", "response_format", "temperature")}


def _audio_form(form: Form, kinds: dict[str, FieldKind], checks: dict[str, Check]) -> JSON:
    body = _check_form(form, kinds, checks, ("file", "model"))
    seconds = wav_seconds(body["file"].head(WAV_HEADER_BYTES), body["file"].size)
    if seconds is not None:
        body["_audio_seconds"] = seconds
    return body


def transcriptions_form(form: Form) -> JSON:
    return _audio_form(form, TRANSCRIPTION_KINDS, TRANSCRIPTION)


def translations_form(form: Form) -> JSON:
    return _audio_form(form, TRANSLATION_KINDS, TRANSLATION)


WAV_HEADER_BYTES = 64 * 1024


# WAV encodings whose samples have a fixed size: PCM, IEEE float, A-law, mu-law, extensible.
_FIXED_SIZE_WAV = frozenset({1, 3, 6, 7, 0xFFFE})


def wav_seconds(data: bytes, size: int | None = None) -> float | None:
    """The duration of a PCM WAV file from its header (the data chunk's size over the bytes a
    player consumes per second), or None for anything else: the measure billed when the upstream
    does not report seconds. ``data`` is the file's start; ``size`` its whole length (the data
    chunk ends there at most).

    The rate is the sample rate times the channels times the sample size, what a decoder plays:
    the header's own byte-rate field is redundant, unused by decoders and set at will by whoever
    wrote the file, so it would let a caller bill a minute of audio as a second."""
    total = len(data) if size is None else size
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(data):
        kind, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if kind == b"fmt " and size >= 16 and pos + 24 <= len(data):
            encoding, channels, rate = struct.unpack_from("<HHI", data, pos + 8)
            bits = struct.unpack_from("<H", data, pos + 22)[0]
            if encoding in _FIXED_SIZE_WAV:
                byte_rate = rate * channels * ((bits + 7) // 8)
        elif kind == b"data":
            if not byte_rate:
                return None
            size = min(size, total - pos - 8)
            return round(size / byte_rate, 3)
        pos += 8 + size + (size & 1)
    return None


# -- inbound APIs --------------------------------------------------------------------------------


async def _close_files(form: Form) -> None:
    for values in form.values():
        for value in values:
            if isinstance(value, FilePart):
                value.file.close()


class MediaInbound(OpenAIJson):
    """A media endpoint's wire format: JSON or a form in, JSON out (raw replies pass the edge
    as they are), OpenAI-shaped errors (the encoders of :class:`OpenAIJson`)."""

    dialect = "openai"  # no pass-through exchange is registered for media (pipeline/native.py)

    def __init__(self, operation: str, check: Callable[[Any], JSON] | None = None,
                 form: Callable[[Form], JSON] | None = None) -> None:
        super().__init__(operation)
        self._check = check
        self._form = form

    def decode(self, ctx: RequestContext) -> None:
        if self._form is not None:
            if isinstance(ctx.request.get(_FORM_ERROR), GatewayError):
                # Taken out of the request and raised unnamed: its traceback holds this frame,
                # which holds the request (a reference cycle otherwise).
                raise ctx.request.pop(_FORM_ERROR)
            form: Form = ctx.request[_FORM]
            ctx.after(lambda _: _close_files(form))  # the spooled uploads, once answered
            ctx.request = self._form(form)
        else:
            assert self._check is not None
            ctx.request = self._check(parse_object(ctx.body))
        # An SSE answer relayed as it comes; speech audio always is (pipeline/media.py).
        ctx.stream = ctx.request.get("stream") is True or self.operation in STREAMED


class RelayEndpoint(Endpoint):
    """A media endpoint whose streamed answers are relayed as the upstream sent them: speech
    audio, and the SSE of streamed transcriptions and images. The reply's chunks are
    ``{"raw": bytes}`` (pipeline/media.py), written in order under the upstream's content type.
    An upstream failure after the first byte becomes an SSE ``error`` event in an event stream;
    in audio it cannot, so it is recorded and the connection dropped (the client sees an
    incomplete answer, never a cut file passed off as whole)."""

    async def _stream(self, ctx: RequestContext, result: StreamReply, out: Responder) -> None:
        try:
            outcome = ctx.outcome
            outcome.status, outcome.stream, out.started = 200, True, True
            content_type = ctx.response_headers.pop("content-type", "application/octet-stream")
            headers = [(b"content-type", content_type.encode("latin-1")),
                       *out.headers(ctx.response_headers), *timing_headers(ctx)]
            await out.send({"type": "http.response.start", "status": 200, "headers": headers})
            ctx.response_headers["content-type"] = content_type  # sent; kept for _cut_at_shutdown
            try:
                async for batch in result.chunks:
                    for chunk in batch:
                        outcome.chunks_sent += 1
                        await out.stream_data(chunk["raw"])
            except GatewayError as err:
                outcome.failed(err)
                if not content_type.startswith("text/event-stream"):
                    await out.abort()  # recorded and logged as failed; no traceback
                    return
                await out.stream_data(_error_event(err))
            await out.stream_end()
        finally:
            await result.aclose()

    async def _cut_at_shutdown(self, ctx: RequestContext, out: Responder) -> None:
        """At shutdown an event stream ends with an ``error`` event; audio has no room for error
        bytes, so its connection is dropped, as on an upstream failure mid-audio: a cut file is
        never ended as if whole."""
        if not (out.started and ctx.outcome.stream):
            await super()._cut_at_shutdown(ctx, out)
            return
        err = ServerShuttingDown("the server is shutting down; retry the request")
        log.warning("request %s: cut short by server shutdown", ctx.request_id)
        ctx.outcome.failed(err)
        try:
            # Only what can be written at once, as Endpoint._cut_at_shutdown: a client that takes
            # nothing would hold the request past the process' own end, its record never written.
            async with asyncio.timeout(0):
                if not ctx.response_headers.get("content-type", "").startswith("text/event-stream"):
                    await out.abort()
                    return
                await out.stream_data(_error_event(err))
                await out.stream_end()
        except Exception:  # the connection may already be gone, or full; nothing more to tell
            log.debug("request %s: could not send the shutdown notice", ctx.request_id)


def _error_event(err: GatewayError) -> bytes:
    """OpenAI's error event of the image and transcription streams."""
    event = {"type": "error", "error": err.to_openai()["error"]}
    return b"event: error\ndata: " + orjson.dumps(event) + b"\n\n"


class CohereRerankInbound(MediaInbound):
    """``/v2/rerank``, Cohere's own path: errors in Cohere's shape (``{"message"}``, with the
    gateway's code and param beside it), which Cohere's SDK reads."""

    def encode_error(self, error: GatewayError, ctx: RequestContext | None = None) -> bytes:
        return orjson.dumps({"message": error.message, "code": error.code, "param": error.param})


class FormEndpoint(RelayEndpoint):
    """An endpoint whose body is multipart/form-data, parsed while it is read (multipart.py)."""

    def __init__(self, *args: Any, limits: FormLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._form_limits = limits

    async def _read_body(self, ctx: RequestContext, receive: Receive) -> GatewayError | None:
        media = (ctx.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if media != "multipart/form-data":
            return UnsupportedMediaType(f"unsupported content type '{media[:100]}'; send multipart/form-data")
        try:
            refuse_content_encoding(ctx.headers.get("content-encoding"))
        except GatewayError as err:
            return err
        try:
            form = await read_form(receive, ctx.headers.get("content-type"),
                                   ctx.headers.get("content-length"), self._form_limits)
        except PayloadTooLarge as err:
            return err.with_traceback(None)
        except InvalidMultipart as err:  # answered after authentication, like malformed JSON
            # Without its traceback, which holds the frames that hold the request (a cycle).
            ctx.request = {_FORM_ERROR: err.with_traceback(None)}
            return None
        except ConnectionAbortedError:
            ctx.outcome.client_disconnected = True
            return None
        ctx.request = {_FORM: form}
        return None


RERANK_API = MediaInbound("rerank", rerank_request)
MODERATIONS_API = MediaInbound("moderations", moderations_request)
IMAGE_GENERATIONS_API = MediaInbound("image_generations", image_generations_request)
IMAGE_EDITS_API = MediaInbound("image_edits", form=image_edits_form)
IMAGE_VARIATIONS_API = MediaInbound("image_variations", form=image_variations_form)
TRANSCRIPTIONS_API = MediaInbound("transcriptions", form=transcriptions_form)
TRANSLATIONS_API = MediaInbound("translations", form=translations_form)
SPEECH_API = MediaInbound("speech", speech_request)

# path -> inbound API; the app mounts each with and without the /v1 prefix. "/v2/rerank" (mounted
# as given too) is where Cohere's own SDK posts: its ClientV2 works against the gateway unchanged.
JSON_ROUTES: dict[str, MediaInbound] = {
    "/rerank": RERANK_API,
    "/v2/rerank": CohereRerankInbound("rerank", rerank_request),
    "/moderations": MODERATIONS_API,
    "/images/generations": IMAGE_GENERATIONS_API,
    "/audio/speech": SPEECH_API,
}
FORM_ROUTES: dict[str, MediaInbound] = {
    "/images/edits": IMAGE_EDITS_API,
    "/images/variations": IMAGE_VARIATIONS_API,
    "/audio/transcriptions": TRANSCRIPTIONS_API,
    "/audio/translations": TRANSLATIONS_API,
}
OPERATIONS = frozenset(api.operation for api in (*JSON_ROUTES.values(), *FORM_ROUTES.values()))
