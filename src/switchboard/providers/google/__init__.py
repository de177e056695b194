"""The Gemini wire format, shared by provider types ``gemini`` (AI Studio) and ``vertex``.

Both serve the same ``generateContent`` body at different URLs with different credentials;
subclasses say where (``model_url``) and how embeddings are called. The translation lives in
``request`` / ``response`` / ``stream`` / ``embeddings`` / ``errors`` beside this file.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from switchboard.errors import GatewayError
from switchboard.providers import google_images
from switchboard.providers.base import JSON, ProviderAdapter
from switchboard.providers.errors import loads_object
from switchboard.providers.google.errors import error_object, from_error_object, google_error
from switchboard.providers.google.request import generate_content_body
from switchboard.providers.google.response import chat_completion
from switchboard.providers.google.stream import GoogleStreamDecoder
from switchboard.providers.media import MediaReply
from switchboard.providers.target import Target
from switchboard.upstream.request import UpstreamRequest

_JSON_HEADERS = {"Content-Type": "application/json"}
_SSE_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}


class GoogleAdapter(ProviderAdapter):
    # Gemini takes image bytes inline (or Files API / gs:// URIs), not arbitrary http URLs.
    inline_images = True

    def model_url(self, target: Target, method: str) -> str:
        """The URL of ``<model>:<method>`` (e.g. ``generateContent``)."""
        raise NotImplementedError

    def post(self, url: str, body: JSON, stream: bool = False) -> UpstreamRequest:
        headers = dict(_SSE_HEADERS if stream else _JSON_HEADERS)
        return UpstreamRequest("POST", url, orjson.dumps(body), headers, stream)

    def chat_body(self, request: JSON, target: Target) -> JSON:
        """The generateContent body; a subclass adds what only its API takes."""
        return generate_content_body(request, target)

    def chat_request(self, request: JSON, target: Target) -> UpstreamRequest:
        body = self.chat_body(request, target)
        if request.get("stream"):
            return self.post(self.model_url(target, "streamGenerateContent") + "?alt=sse", body, stream=True)
        return self.post(self.model_url(target, "generateContent"), body)

    def chat_response(self, body: bytes, target: Target) -> JSON:
        return chat_completion(loads_object(body), target)

    def chat_stream(self, request: JSON, target: Target) -> GoogleStreamDecoder:
        return GoogleStreamDecoder(target)

    def error(self, status: int, headers: Mapping[str, str], body: bytes, target: Target) -> GatewayError:
        return google_error(status, headers, body, target)

    def answer_error(self, headers: Mapping[str, str], body: bytes, target: Target) -> GatewayError | None:
        err = error_object(body)  # status 0: the error's own code or status name says it
        return from_error_object(err, 0, headers, target) if err else None

    # image generation on Imagen models (providers/google_images.py)
    def media_request(self, operation: str, request: JSON, target: Target) -> UpstreamRequest:
        if operation != "image_generations" or not google_images.is_imagen(target):
            return super().media_request(operation, request, target)
        return google_images.imagen_request(request, target, self.model_url)

    def media_response(
        self, operation: str, body: bytes, headers: Mapping[str, str], request: JSON, target: Target
    ) -> MediaReply:
        if operation != "image_generations" or not google_images.is_imagen(target):
            return super().media_response(operation, body, headers, request, target)
        return google_images.imagen_response(body, target)
