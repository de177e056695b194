"""Media endpoints of the mock upstream: OpenAI's moderations, images and audio (also under
Azure's deployment paths), rerank as Cohere v2 (``/v2/rerank``), vLLM / Jina (``/v1/rerank``) and
TGI (``/rerank``) serve it.

Controls and fault injection work as everywhere (directives in the prompt, query, input or
document text; the ``x-mock-faults`` header). Deterministic answers:

- rerank: a document's score is the share of the query's words it contains;
- moderations: an input containing "violence" is flagged;
- images: ``n`` 1x1 PNGs (``b64_json``) or URLs to ``/images/pixel.png``; ``gpt-image*`` models
  report token usage like OpenAI's;
- transcriptions: "mock transcript of <filename>"; the duration is read from a WAV header (else 1
  second); json, verbose_json, text, srt and vtt as OpenAI answers them;
- speech: ``len(input) * 64`` bytes of audio in the requested format, streamed in 4 KiB chunks.
"""

from __future__ import annotations

import math
import re
import struct
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from switchboard.mock import azure, cohere, openai
from switchboard.mock.capture import MockDisconnect
from switchboard.mock.common import before_answer, json_response, read_json, request_controls

PIXEL_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
CATEGORIES = ("harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
              "illicit/violent", "self-harm", "self-harm/instructions", "self-harm/intent", "sexual",
              "sexual/minors", "violence", "violence/graphic")
SPEECH_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
                "wav": "audio/wav", "pcm": "audio/pcm"}
_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _score(query: str, doc: str) -> float:
    q = _words(query)
    return round(len(q & _words(doc)) / len(q), 6) if q else 0.0


def _doc_text(doc: Any) -> str:
    return doc if isinstance(doc, str) else str(doc.get("text", "")) if isinstance(doc, dict) else ""


# -- auth and faults per flavour ------------------------------------------------------------------


async def _openai_json(request: Request) -> tuple[dict[str, Any], Any] | Response:
    if request.path_params.get("deployment") is not None:
        if (problem := azure.check(request)) is not None:
            return problem
    elif (problem := openai.check_key(request)) is not None:
        return problem
    body = await read_json(request)
    if not isinstance(body, dict):
        return openai.error(400, "We could not parse the JSON body of your request.")
    if request.path_params.get("deployment") is not None:
        body["model"] = request.path_params["deployment"]
    c = request_controls(request, body)
    if (fault := openai.injected(c)) is not None:
        return fault
    await before_answer(c)
    return body, c


async def _openai_form(request: Request) -> tuple[dict[str, Any], Any] | Response:
    if request.path_params.get("deployment") is not None:
        if (problem := azure.check(request)) is not None:
            return problem
    elif (problem := openai.check_key(request)) is not None:
        return problem
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return openai.error(400, "Expected a multipart/form-data body.")
    form = await request.form(max_files=32, max_fields=64)
    body: dict[str, Any] = {}
    for name, value in form.multi_items():
        body.setdefault(name, []).append(value)
    if request.path_params.get("deployment") is not None:
        body["model"] = [request.path_params["deployment"]]
    text = {k: [x for x in vs if isinstance(x, str)] for k, vs in body.items()}
    c = request_controls(request, text)
    if (fault := openai.injected(c)) is not None:
        return fault
    await before_answer(c)
    return body, c


def _one(body: dict[str, Any], name: str) -> Any:
    values = body.get(name) or [None]
    return values[0]


# -- moderations ----------------------------------------------------------------------------------


async def moderations(request: Request) -> Response:
    prepared = await _openai_json(request)
    if isinstance(prepared, Response):
        return prepared
    body, _ = prepared
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs:
        return openai.error(400, "'input' is required", param="input")
    results = []
    for item in inputs:
        text = item if isinstance(item, str) else str(item.get("text", "")) if isinstance(item, dict) else ""
        flagged = "violence" in text.lower()
        results.append({
            "flagged": flagged,
            "categories": {c: flagged and c == "violence" for c in CATEGORIES},
            "category_scores": {c: 0.97 if flagged and c == "violence" else 0.0001 for c in CATEGORIES},
            "category_applied_input_types": {c: ["text"] for c in CATEGORIES},
        })
    model = body.get("model") or "omni-moderation-latest"
    return json_response({"id": f"modr-{uuid.uuid4().hex[:24]}", "model": model, "results": results})


# -- images ---------------------------------------------------------------------------------------


def _images(request: Request, model: str, n: int, response_format: str | None, prompt: str,
            input_images: int = 0) -> Response:
    base = str(request.base_url).rstrip("/")
    data = []
    for _ in range(n):
        inline = response_format == "b64_json" or model.startswith("gpt-image")
        item: dict[str, Any] = {"b64_json": PIXEL_B64} if inline else {"url": f"{base}/images/pixel.png"}
        item["revised_prompt"] = f"{prompt} ({input_images} input image(s))" if input_images else prompt
        data.append(item)
    out: dict[str, Any] = {"created": 1700000000, "data": data}
    if model.startswith("gpt-image"):
        text = len(prompt.split())
        out["usage"] = {"input_tokens": text + 65 * input_images, "output_tokens": 272 * n,
                        "total_tokens": text + 65 * input_images + 272 * n,
                        "input_tokens_details": {"text_tokens": text, "image_tokens": 65 * input_images}}
    return json_response(out)


def _sse(event: dict[str, Any]) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def _image_stream(n: int, prompt: str, partials: int, kind: str, input_images: int = 0) -> Response:
    """OpenAI's streamed images: ``partials`` partial images, then the completed one, per image."""
    text = len(prompt.split())
    events = []
    for _ in range(n):
        for i in range(partials):
            events.append(_sse({"type": f"{kind}.partial_image", "b64_json": PIXEL_B64,
                                "partial_image_index": i, "created_at": 1700000000, "size": "1024x1024",
                                "quality": "low",
                                "background": "opaque", "output_format": "png"}))
        usage = {"input_tokens": text + 65 * input_images, "output_tokens": 272,
                 "total_tokens": text + 65 * input_images + 272,
                 "input_tokens_details": {"text_tokens": text, "image_tokens": 65 * input_images}}
        events.append(_sse({"type": f"{kind}.completed", "b64_json": PIXEL_B64, "created_at": 1700000000,
                            "size": "1024x1024", "quality": "low", "background": "opaque",
                            "output_format": "png", "usage": usage}))
    return StreamingResponse(iter(events), media_type="text/event-stream")


async def image_generations(request: Request) -> Response:
    prepared = await _openai_json(request)
    if isinstance(prepared, Response):
        return prepared
    body, _ = prepared
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        return openai.error(400, "'prompt' is required", param="prompt")
    n = body.get("n") or 1
    model = str(body.get("model") or "dall-e-2")
    if body.get("stream") and model.startswith("gpt-image"):
        return _image_stream(n, prompt, body.get("partial_images") or 0, "image_generation")
    return _images(request, model, n, body.get("response_format"), prompt)


async def image_edits(request: Request) -> Response:
    prepared = await _openai_form(request)
    if isinstance(prepared, Response):
        return prepared
    body, _ = prepared
    images = [f for f in (body.get("image") or []) + (body.get("image[]") or []) if isinstance(f, UploadFile)]
    prompt = _one(body, "prompt")
    if not images:
        return openai.error(400, "'image' is required", param="image")
    if not isinstance(prompt, str) or not prompt:
        return openai.error(400, "'prompt' is required", param="prompt")
    for image in images:
        if not (await image.read(8)).startswith(b"\x89PNG"):
            return openai.error(400, "Invalid image file: the mock takes PNG images only", param="image")
    n = int(_one(body, "n") or 1)
    model = str(_one(body, "model") or "dall-e-2")
    if _one(body, "stream") == "true" and model.startswith("gpt-image"):
        partials = int(_one(body, "partial_images") or 0)
        return _image_stream(n, prompt, partials, "image_edit", len(images))
    return _images(request, model, n, _one(body, "response_format"), prompt, len(images))


async def _form_with_file(request: Request, field: str) -> tuple[dict[str, Any], UploadFile] | Response:
    """The form and its required file ``field``, or OpenAI's 400."""
    prepared = await _openai_form(request)
    if isinstance(prepared, Response):
        return prepared
    body, _ = prepared
    upload = _one(body, field)
    if not isinstance(upload, UploadFile):
        return openai.error(400, f"'{field}' is required", param=field)
    return body, upload


async def image_variations(request: Request) -> Response:
    prepared = await _form_with_file(request, "image")
    if isinstance(prepared, Response):
        return prepared
    body, image = prepared
    if not (await image.read(8)).startswith(b"\x89PNG"):
        return openai.error(400, "Invalid image file: the mock takes PNG images only", param="image")
    model = str(_one(body, "model") or "dall-e-2")
    if model != "dall-e-2":  # as OpenAI: variations are dall-e-2's only
        return openai.error(400, f"Invalid model {model}. The model must be dall-e-2.", param="model")
    n = int(_one(body, "n") or 1)
    base = str(request.base_url).rstrip("/")
    inline = _one(body, "response_format") == "b64_json"
    data = [{"b64_json": PIXEL_B64} if inline else {"url": f"{base}/images/pixel.png"} for _ in range(n)]
    return json_response({"created": 1700000000, "data": data})


# -- audio ----------------------------------------------------------------------------------------


def wav_seconds(data: bytes) -> float | None:
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    byte_rate = struct.unpack_from("<I", data, 28)[0]
    return round((len(data) - 44) / byte_rate, 3) if byte_rate else None


def _timestamp(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


async def _audio(request: Request, task: str) -> Response:
    prepared = await _form_with_file(request, "file")
    if isinstance(prepared, Response):
        return prepared
    body, upload = prepared
    if not _one(body, "model"):
        return openai.error(400, "'model' is required", param="model")
    data = await upload.read()
    seconds = wav_seconds(data) or 1.0
    text = f"mock {task} of {upload.filename}"
    fmt = _one(body, "response_format") or "json"
    model = str(_one(body, "model"))
    if _one(body, "stream") == "true" and task == "transcribe" and not model.startswith("whisper"):
        # gpt-4o-transcribe and the like stream; whisper-1 ignores stream
        words = text.split(" ")
        events = [_sse({"type": "transcript.text.delta", "delta": w if not i else " " + w})
                  for i, w in enumerate(words)]
        tokens = math.ceil(seconds * 10)
        events.append(_sse({"type": "transcript.text.done", "text": text, "usage": {
            "type": "tokens", "input_tokens": tokens, "output_tokens": len(words),
            "total_tokens": tokens + len(words),
            "input_token_details": {"text_tokens": 0, "audio_tokens": tokens}}}))
        return StreamingResponse(iter(events), media_type="text/event-stream")
    end = _timestamp(seconds, ",")
    if fmt == "text":
        return Response(text + "\n", media_type="text/plain")
    if fmt == "srt":
        return Response(f"1\n00:00:00,000 --> {end}\n{text}\n\n", media_type="application/x-subrip")
    if fmt == "vtt":
        vtt = f"WEBVTT\n\n00:00:00.000 --> {_timestamp(seconds, '.')}\n{text}\n\n"
        return Response(vtt, media_type="text/vtt")
    if fmt == "diarized_json":  # gpt-4o-transcribe-diarize: the first known speaker's, else "A"
        speakers = body.get("known_speaker_names[]") or []
        if len(speakers) != len(body.get("known_speaker_references[]") or []):
            return openai.error(400, "known_speaker_names and known_speaker_references must have the same "
                                "length", param="known_speaker_names")
        speaker = str(speakers[0]) if speakers else "A"
        return json_response({
            "task": "transcribe", "duration": seconds, "text": text,
            "segments": [{"type": "transcript.text.segment", "id": "seg_0", "start": 0.0, "end": seconds,
                          "text": text, "speaker": speaker}],
            "usage": {"type": "duration", "seconds": math.ceil(seconds)},
        })
    if fmt == "verbose_json":
        return json_response({
            "task": task, "language": "english", "duration": seconds, "text": text,
            "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": seconds, "text": text, "tokens": [1],
                          "temperature": 0.0, "avg_logprob": -0.1, "compression_ratio": 1.0,
                          "no_speech_prob": 0.01}],
        })
    return json_response({"text": text, "usage": {"type": "duration", "seconds": math.ceil(seconds)}})


async def transcriptions(request: Request) -> Response:
    return await _audio(request, "transcribe")


async def translations(request: Request) -> Response:
    return await _audio(request, "translate")


async def speech(request: Request) -> Response:
    prepared = await _openai_json(request)
    if isinstance(prepared, Response):
        return prepared
    body, c = prepared
    text = body.get("input")
    if not isinstance(text, str) or not text or not body.get("voice"):
        return openai.error(400, "'input' and 'voice' are required", param="input")
    fmt = body.get("response_format") or "mp3"
    size = len(text) * 64
    pattern = (b"ID3" if fmt == "mp3" else fmt.encode()[:4]) + bytes(range(256))

    async def audio() -> AsyncIterator[bytes]:
        sent = chunks = 0
        while sent < size:
            if chunks == c.disconnect_after:  # mock:disconnect_after=N: drop the connection mid-audio
                raise MockDisconnect("mock: dropping the connection mid-audio")
            piece = (pattern * (4096 // len(pattern) + 1))[: min(4096, size - sent)]
            sent += len(piece)
            chunks += 1
            if c.chunk_delay_ms:
                await c.sleep(c.chunk_delay_ms)
            yield piece

    return StreamingResponse(audio(), media_type=SPEECH_TYPES.get(fmt, "audio/mpeg"))


# -- Imagen (Gemini API and Vertex AI :predict, routed here by mock/gemini.py) -------------------


def _google_error(status: int, message: str) -> Response:
    statuses = {400: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
    return json_response({"error": {"code": status, "message": message,
                                    "status": statuses.get(status, "UNKNOWN")}}, status)


async def imagen_predict(request: Request, model: str) -> Response:
    body = await read_json(request)
    instances = body.get("instances") if isinstance(body, dict) else None
    if not isinstance(instances, list) or not instances or not isinstance(instances[0], dict) \
            or not isinstance(instances[0].get("prompt"), str):
        return _google_error(400, "Invalid JSON payload: instances[0].prompt is required")
    parameters = body.get("parameters") or {}
    count = parameters.get("sampleCount", 4)
    if not isinstance(count, int) or not 1 <= count <= 4:
        return _google_error(400, "sampleCount must be between 1 and 4")
    if parameters.get("aspectRatio", "1:1") not in ("1:1", "3:4", "4:3", "9:16", "16:9"):
        return _google_error(400, "Unsupported aspect ratio")
    c = request_controls(request, body)
    if c.status:
        return _google_error(c.status, f"mock: injected error {c.status}")
    await before_answer(c)
    mime = (parameters.get("outputOptions") or {}).get("mimeType", "image/png")
    kept = max(0, count - c.filtered)
    predictions: list[dict[str, Any]] = [{"bytesBase64Encoded": PIXEL_B64, "mimeType": mime}] * kept
    if c.filtered_silently:  # Imagen leaves filtered images out: {} when none is left
        return json_response({"predictions": predictions} if predictions else {})
    predictions += [{"raiFilteredReason": IMAGEN_FILTERED}] * (count - kept)
    return json_response({"predictions": predictions})


# What Imagen says of an image its safety filters removed (Vertex AI's wording).
IMAGEN_FILTERED = ("Unable to show generated images. All images were filtered out because they violated "
                   "Vertex AI's usage guidelines. You will not be charged for blocked images. Try rephrasing "
                   "the prompt. Support codes: 58061214")


# -- rerank ---------------------------------------------------------------------------------------

COHERE_RERANK_FIELDS = frozenset({"model", "query", "documents", "top_n", "max_tokens_per_doc", "priority"})


async def cohere_rerank(request: Request) -> Response:
    if (problem := cohere.check_key(request)) is not None:
        return problem
    body = await read_json(request)
    if not isinstance(body, dict):
        return cohere.error(400, "invalid request: body must be a JSON object")
    unknown = sorted(set(body) - COHERE_RERANK_FIELDS)
    if unknown:
        return cohere.error(400, f"invalid request: unknown field: parameter '{unknown[0]}' is not valid")
    docs, query = body.get("documents"), body.get("query")
    if not isinstance(body.get("model"), str) or not isinstance(query, str) or not query:
        return cohere.error(400, "invalid request: model and query are required")
    if not isinstance(docs, list) or not docs or not all(isinstance(d, str) for d in docs):
        return cohere.error(400, "invalid request: documents must be a non-empty list of strings")
    c = request_controls(request, body)
    if (fault := cohere.injected(c)) is not None:
        return fault
    await before_answer(c)
    ranked = sorted(((i, _score(query, d)) for i, d in enumerate(docs)), key=lambda r: r[1], reverse=True)
    if isinstance(body.get("top_n"), int):
        ranked = ranked[: body["top_n"]]
    return json_response({
        "id": str(uuid.uuid4()),
        "results": [{"index": i, "relevance_score": s} for i, s in ranked],
        "meta": {"api_version": {"version": "2"},
                 "billed_units": {"search_units": math.ceil(len(docs) / 100)}},
    })


async def compatible_rerank(request: Request) -> Response:
    """vLLM's and Jina's /v1/rerank."""
    if (problem := openai.check_key(request)) is not None:
        return problem
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("query"), str) \
            or not isinstance(body.get("documents"), list):
        return openai.error(400, "'query' and 'documents' are required", param="documents")
    c = request_controls(request, body)
    if (fault := openai.injected(c)) is not None:
        return fault
    await before_answer(c)
    query, docs = body["query"], [_doc_text(d) for d in body["documents"]]
    ranked = sorted(((i, _score(query, d)) for i, d in enumerate(docs)), key=lambda r: r[1], reverse=True)
    if isinstance(body.get("top_n"), int):
        ranked = ranked[: body["top_n"]]
    tokens = sum(len(d.split()) + len(query.split()) for d in docs)
    return json_response({
        "id": f"rerank-{uuid.uuid4().hex[:16]}", "model": body.get("model"),
        "usage": {"total_tokens": tokens},
        "results": [{"index": i, "document": {"text": docs[i]}, "relevance_score": s} for i, s in ranked],
    })


async def tgi_rerank(request: Request) -> Response:
    """TGI / text-embeddings-inference's /rerank: {query, texts} -> [{index, score}]."""
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("query"), str) \
            or not isinstance(body.get("texts"), list):
        return json_response({"error": "query and texts are required", "error_type": "Validation"}, 422)
    c = request_controls(request, body)
    if (fault := openai.injected(c)) is not None:
        return fault
    await before_answer(c)
    scored = [{"index": i, "score": _score(body["query"], str(t))} for i, t in enumerate(body["texts"])]
    return json_response(sorted(scored, key=lambda r: r["score"], reverse=True))


def routes() -> list[Route]:
    out = [
        Route("/v2/rerank", cohere_rerank, methods=["POST"]),
        Route("/v1/rerank", compatible_rerank, methods=["POST"]),
        Route("/rerank", tgi_rerank, methods=["POST"]),
    ]
    handlers = {"moderations": moderations, "images/generations": image_generations,
                "images/edits": image_edits, "images/variations": image_variations,
                "audio/transcriptions": transcriptions,
                "audio/translations": translations, "audio/speech": speech}
    for path, handler in handlers.items():
        out.append(Route(f"/v1/{path}", handler, methods=["POST"]))
        out.append(Route(f"/openai/deployments/{{deployment}}/{path}", handler, methods=["POST"]))
    return out
