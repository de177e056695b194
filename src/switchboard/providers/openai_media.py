"""OpenAI's media endpoints, shared by the openai, azure and openai-compatible adapters:
moderations, image generations and edits, audio transcriptions, translations and speech, and
the rerank of OpenAI-compatible hosts (vLLM, Jina-style ``/rerank``; TGI's own ``/rerank``).

References: https://platform.openai.com/docs/api-reference/moderations, /images, /audio;
vLLM's and Jina's ``POST /v1/rerank`` ({model, query, documents, top_n, return_documents} ->
{id, results [{index, relevance_score, document}], usage {total_tokens}}); TGI's ``POST /rerank``
({query, texts, return_text} -> [{index, score, text}]).

Bodies pass through with the deployment's model id; responses pass through unchanged (JSON, or
the raw bytes of text, subtitle and audio formats). Each reply carries the usage the ledger
prices: the upstream's tokens when it reports them, and the media units (spend/units.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from switchboard.providers.counts import count
from switchboard.providers.errors import invalid_body, loads, loads_object
from switchboard.providers.media import (
    JSON,
    SPEECH_TYPES,
    FilePart,
    MediaReply,
    document_texts,
    multipart,
    rerank_reply,
)
from switchboard.providers.sse import SSEParser
from switchboard.providers.target import Target
from switchboard.upstream.request import UpstreamRequest

PATHS: dict[str, str] = {
    "moderations": "/moderations",
    "image_generations": "/images/generations",
    "image_edits": "/images/edits",
    "image_variations": "/images/variations",
    "transcriptions": "/audio/transcriptions",
    "translations": "/audio/translations",
    "speech": "/audio/speech",
    "rerank": "/rerank",
}
MULTIPART = frozenset({"image_edits", "image_variations", "transcriptions", "translations"})
IMAGES = frozenset({"image_generations", "image_edits", "image_variations"})
# Transcription formats answered as text, by response_format.
TEXT_TYPES = {"text": "text/plain; charset=utf-8", "srt": "application/x-subrip; charset=utf-8",
              "vtt": "text/vtt; charset=utf-8"}


def build(operation: str, request: JSON, target: Target, url: str) -> UpstreamRequest:
    """The upstream request of a media operation at ``url``."""
    # Keys starting with "_" are the gateway's own notes (e.g. the upload's measured seconds).
    body = {k: v for k, v in request.items() if v is not None and not k.startswith("_")}
    body["model"] = target.model
    if operation in MULTIPART:
        images = body.pop("image", None)
        if isinstance(images, list):  # several images: OpenAI's array field
            body["image[]" if len(images) > 1 else "image"] = images if len(images) > 1 else images[0]
        elif images is not None:
            body["image"] = images
        upload, content_type, size = multipart(body)  # spooled: never held whole in memory
        return UpstreamRequest("POST", url, None, {"Content-Type": content_type, "Content-Length": str(size)},
                               upload=upload)
    return UpstreamRequest("POST", url, orjson.dumps(body), {})


_count = count  # providers/counts.py: whole, not negative, bounded


def _token_usage(usage: Any) -> JSON:
    """OpenAI's image and audio usage ({input_tokens, output_tokens, and the input's details:
    ``input_tokens_details`` for images, ``input_token_details`` for transcriptions}) in the
    canonical form; output tokens of images and speech are billed as image/audio units."""
    if not isinstance(usage, Mapping):
        return {}
    prompt, completion = _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))
    if not prompt and not completion:
        return {}
    out: JSON = {"prompt_tokens": prompt, "completion_tokens": completion,
                 "total_tokens": prompt + completion}
    details = usage.get("input_tokens_details") or usage.get("input_token_details")
    if isinstance(details, Mapping):
        pd = {}
        if image := _count(details.get("image_tokens")):
            pd["image_tokens"] = image
        if audio := _count(details.get("audio_tokens")):
            pd["audio_tokens"] = audio
        if pd:
            out["prompt_tokens_details"] = pd
    return out


def parse(
    operation: str, body: bytes, headers: Mapping[str, str], request: JSON, target: Target
) -> MediaReply:
    if operation == "speech":
        fmt = request.get("response_format") or "mp3"
        content_type = headers.get("content-type") or SPEECH_TYPES.get(fmt, "application/octet-stream")
        text = request.get("input")
        units = {"characters": len(text)} if isinstance(text, str) else {}
        return MediaReply(raw=body, content_type=content_type, usage={"units": units})
    if operation in ("transcriptions", "translations"):
        return _transcription(body, headers, request, target)
    obj = loads_object(body)
    if operation == "moderations":
        if obj is None or not isinstance(obj.get("results"), list):
            raise invalid_body(target)
        return MediaReply(body=obj)
    if operation in IMAGES:
        if obj is None or not isinstance(obj.get("data"), list):
            raise invalid_body(target)
        usage = _token_usage(obj.get("usage"))
        if usage:  # image tokens written: OpenAI bills output tokens of image models as image units
            usage["completion_tokens_details"] = {"image_tokens": usage["completion_tokens"]}
        usage["units"] = {"images": len(obj["data"])}
        return MediaReply(body=obj, usage=usage)
    if operation == "rerank":
        return compatible_rerank_response(body, request, target)
    raise invalid_body(target)


def _transcription(body: bytes, headers: Mapping[str, str], request: JSON, target: Target) -> MediaReply:
    """json and verbose_json answers pass through as JSON; text, srt and vtt as text. The audio's
    seconds: ``duration`` (verbose_json) or ``usage.seconds`` (usage of type duration); tokens
    from ``usage`` of type tokens (gpt-4o-transcribe)."""
    fmt = request.get("response_format") or "json"
    if fmt in TEXT_TYPES:
        content_type = headers.get("content-type") or TEXT_TYPES[fmt]
        return MediaReply(raw=body, content_type=content_type, usage=_seconds_usage(request))
    obj = loads_object(body)
    if obj is None or not isinstance(obj.get("text"), str):
        raise invalid_body(target)
    upstream = obj.get("usage")
    usage = _token_usage(upstream)
    seconds = obj.get("duration")
    if not isinstance(seconds, int | float) and isinstance(upstream, Mapping):
        seconds = upstream.get("seconds")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0:
        usage["units"] = {"audio_seconds": seconds}
    else:
        usage.update(_seconds_usage(request))
    return MediaReply(body=obj, usage=usage)


def _seconds_usage(request: JSON) -> JSON:
    """The seconds the edge measured from the upload (a WAV header), when the answer has none;
    else the call is marked ``unmeasured`` (spend/units.py: never a silent 0)."""
    seconds = request.get("_audio_seconds")
    if isinstance(seconds, int | float) and seconds > 0:
        return {"units": {"audio_seconds": seconds}}
    return {"unmeasured": "audio_seconds"}


# -- rerank on OpenAI-compatible hosts ------------------------------------------------------------


def _root(api_base: str) -> str:
    return api_base[:-3] if api_base.endswith("/v1") else api_base


def compatible_rerank_request(request: JSON, target: Target, *, tgi: bool) -> UpstreamRequest:
    texts = document_texts(request)
    if tgi:  # TGI / text-embeddings-inference: its own route at the server's root
        body: JSON = {"query": request["query"], "texts": texts, "return_text": False}
        return UpstreamRequest("POST", _root(target.api_base) + "/rerank", orjson.dumps(body), {})
    body = {"model": target.model, "query": request["query"], "documents": texts}
    if request.get("top_n") is not None:
        body["top_n"] = request["top_n"]
    return UpstreamRequest("POST", target.api_base + PATHS["rerank"], orjson.dumps(body), {})


def compatible_rerank_response(body: bytes, request: JSON, target: Target) -> MediaReply:
    try:
        obj: Any = loads(body)
    except orjson.JSONDecodeError:
        raise invalid_body(target) from None
    tokens = None
    rid = None
    if isinstance(obj, list):  # TGI: [{index, score}]
        items, score_key = obj, "score"
    elif isinstance(obj, dict) and isinstance(obj.get("results"), list):
        items, score_key = obj["results"], "relevance_score"
        usage = obj.get("usage")
        if isinstance(usage, dict):
            tokens = _count(usage.get("total_tokens") or usage.get("prompt_tokens"))
        rid = obj.get("id") if isinstance(obj.get("id"), str) else None
    else:
        raise invalid_body(target)
    pairs = []
    for item in items:
        if not isinstance(item, dict):
            raise invalid_body(target)
        index, score = item.get("index"), item.get(score_key)
        if (not isinstance(index, int) or isinstance(index, bool) or not isinstance(score, int | float)
                or isinstance(score, bool)):
            raise invalid_body(target)
        pairs.append((index, float(score)))
    return rerank_reply(request, pairs, rid=rid, search_units=None, tokens=tokens or None)


__all__ = ["PATHS", "FilePart", "build", "compatible_rerank_request", "compatible_rerank_response", "parse"]


# -- streams: transcriptions (stream=true) and image generations and edits (partial images) --------

STREAMS = frozenset({"transcriptions", "image_generations", "image_edits"})


class StreamUsage:
    """Watches an OpenAI media SSE stream relayed as it is (transcript.text.delta / .done;
    image_generation.partial_image / .completed, image_edit.*) for what the call is billed: the
    usage of ``transcript.text.done`` and of each ``*.completed`` image, and the images made."""

    __slots__ = ("_images", "_parser", "_request", "_tokens")

    def __init__(self, request: JSON, target: Target) -> None:
        self._parser = SSEParser(target.provider, target.max_event_bytes)
        self._request = request
        self._images = 0
        self._tokens: JSON = {}

    def feed(self, data: bytes) -> None:
        for event in self._parser.feed(data):
            self._event(event.data)

    def _event(self, data: str) -> None:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(obj, dict) or not isinstance(kind := obj.get("type"), str):
            return
        if kind.endswith(".completed") and kind.startswith("image_"):
            self._images += 1
        if kind.endswith(".completed") or kind == "transcript.text.done":
            usage = _token_usage(obj.get("usage"))
            for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
                if key in usage:
                    self._tokens[key] = self._tokens.get(key, 0) + usage[key]
            for kind, n in (usage.get("prompt_tokens_details") or {}).items():  # image, audio
                details = self._tokens.setdefault("prompt_tokens_details", {})
                details[kind] = details.get(kind, 0) + n

    def usage(self, operation: str) -> JSON:
        usage = dict(self._tokens)
        if operation == "transcriptions":
            if not usage:  # no token usage came: the seconds measured from the upload, if any
                usage.update(_seconds_usage(self._request))
            return usage
        if usage.get("completion_tokens"):  # image models bill their output tokens as image units
            usage["completion_tokens_details"] = {"image_tokens": usage["completion_tokens"]}
        usage["units"] = {"images": self._images}
        return usage
