"""Provider type ``gemini``: the Gemini API of Google AI Studio.

``api_base`` is ``https://generativelanguage.googleapis.com`` (the default); the adapter appends
``/v1beta/models/<model>:generateContent`` (``:streamGenerateContent?alt=sse`` when streaming,
``:batchEmbedContents`` for embeddings). The key goes in the ``x-goog-api-key`` header.
Translation: ``providers/google/``. Reference: https://ai.google.dev/api
"""

from __future__ import annotations

from urllib.parse import quote

from pydantic import BaseModel

from switchboard.config.schema import ProviderConfig
from switchboard.providers.base import JSON
from switchboard.providers.errors import loads_object
from switchboard.providers.google import GoogleAdapter
from switchboard.providers.google.embeddings import batch_embed_body, from_batch_embed, model_id
from switchboard.providers.spec import ProviderOptions, ProviderSpec
from switchboard.providers.target import Target
from switchboard.upstream.auth import StaticHeaderAuth, UpstreamAuth
from switchboard.upstream.request import UpstreamRequest


class GeminiOptions(ProviderOptions):
    """No keys beyond the common ones (api_base, api_key, timeouts, headers)."""


class GeminiAdapter(GoogleAdapter):
    type = "gemini"

    def model_url(self, target: Target, method: str) -> str:
        return f"{target.api_base}/v1beta/models/{quote(model_id(target.model), safe='.-_')}:{method}"

    def embeddings_request(self, request: JSON, target: Target) -> UpstreamRequest:
        return self.post(self.model_url(target, "batchEmbedContents"), batch_embed_body(request, target))

    def embeddings_response(self, body: bytes, target: Target) -> JSON:
        return from_batch_embed(loads_object(body), target)


def _auth(config: ProviderConfig, options: BaseModel) -> UpstreamAuth:
    key = config.api_key.get_secret_value() if config.api_key else None
    return StaticHeaderAuth.header("x-goog-api-key", key)


SPEC = ProviderSpec(
    type="gemini",
    adapter=GeminiAdapter(),
    options=GeminiOptions,
    default_api_base="https://generativelanguage.googleapis.com",
    make_auth=_auth,
)
