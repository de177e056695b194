"""Provider type 'cohere': Cohere's API v2 (chat, streaming chat, embeddings).

``api_base`` is ``https://api.cohere.com`` as Cohere documents it; the adapter appends ``/v2/chat``
and ``/v2/embed``. Credentials: ``Authorization: Bearer <api_key>``.

References: https://docs.cohere.com/reference/chat, https://docs.cohere.com/reference/chat-stream,
https://docs.cohere.com/reference/embed, and the OpenAPI spec ``cohere-openapi.yaml`` in
github.com/cohere-ai/cohere-developer-experience. Translation details live in request.py,
response.py and stream.py; docs/providers/cohere.md has the tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import orjson
from pydantic import BaseModel

from switchboard.config.schema import ProviderConfig
from switchboard.errors import GatewayError
from switchboard.providers.base import JSON, ProviderAdapter
from switchboard.providers.cohere import request as req
from switchboard.providers.cohere import rerank
from switchboard.providers.cohere import response as resp
from switchboard.providers.cohere.stream import CohereStreamDecoder
from switchboard.providers.media import MediaReply
from switchboard.providers.spec import ProviderOptions, ProviderSpec
from switchboard.providers.target import Target
from switchboard.upstream.auth import StaticHeaderAuth, UpstreamAuth
from switchboard.upstream.request import UpstreamRequest

DEFAULT_API_BASE = "https://api.cohere.com"
CHAT_PATH = "/v2/chat"
EMBED_PATH = "/v2/embed"

_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
_SSE_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}

EmbedInputType = Literal["search_document", "search_query", "classification", "clustering"]


class CohereOptions(ProviderOptions):
    # Cohere's embed models need to know what the text is for; OpenAI's API has no such field.
    # A request may still override it with an extra ``input_type`` field.
    embed_input_type: EmbedInputType = "search_document"
    # Sent as X-Client-Name, which Cohere uses to attribute traffic.
    client_name: str | None = None


class CohereAdapter(ProviderAdapter):
    type = "cohere"
    # Cohere accepts web image URLs itself (ImageUrl.url: "a base64 data URI or a web URL").
    inline_images = False

    def _post(self, path: str, body: JSON, target: Target, stream: bool) -> UpstreamRequest:
        headers = dict(_SSE_HEADERS if stream else _JSON_HEADERS)
        return UpstreamRequest("POST", target.api_base + path, orjson.dumps(body), headers, stream)

    def chat_request(self, request: JSON, target: Target) -> UpstreamRequest:
        body = req.chat_body(request, target)
        return self._post(CHAT_PATH, body, target, body["stream"])

    def chat_response(self, body: bytes, target: Target) -> JSON:
        return resp.chat_response(body, target)

    def chat_stream(self, request: JSON, target: Target) -> CohereStreamDecoder:
        return CohereStreamDecoder(target)

    def embeddings_request(self, request: JSON, target: Target) -> UpstreamRequest:
        options = target.options if isinstance(target.options, CohereOptions) else CohereOptions()
        body = req.embed_body(request, target, options.embed_input_type)
        return self._post(EMBED_PATH, body, target, False)

    def embeddings_response(self, body: bytes, target: Target) -> JSON:
        return resp.embeddings_response(body, target)

    # rerank (providers/cohere/rerank.py); Cohere has no other media operation
    def media_request(self, operation: str, request: JSON, target: Target) -> UpstreamRequest:
        if operation != "rerank":
            return super().media_request(operation, request, target)
        return rerank.rerank_request(request, target)

    def media_response(
        self, operation: str, body: bytes, headers: Mapping[str, str], request: JSON, target: Target
    ) -> MediaReply:
        if operation != "rerank":
            return super().media_response(operation, body, headers, request, target)
        return rerank.rerank_response(body, request, target)

    def error(self, status: int, headers: Mapping[str, str], body: bytes, target: Target) -> GatewayError:
        return resp.error(status, headers, body, target)


def _auth(config: ProviderConfig, options: BaseModel) -> UpstreamAuth:
    assert isinstance(options, CohereOptions)
    headers = {}
    if config.api_key is not None:
        headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
    if options.client_name:
        headers["X-Client-Name"] = options.client_name
    return StaticHeaderAuth(headers)


SPEC = ProviderSpec(
    type="cohere",
    adapter=CohereAdapter(),
    options=CohereOptions,
    default_api_base=DEFAULT_API_BASE,
    make_auth=_auth,
)
