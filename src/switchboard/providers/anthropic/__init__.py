"""Provider type 'anthropic': the Anthropic Messages API (https://api.anthropic.com).

``api_base`` is the host as Anthropic documents it; the adapter appends ``/v1/messages``.
Credentials go in ``x-api-key``; ``anthropic-version`` (and ``anthropic-beta``) come from the
provider options. Anthropic has no embeddings or legacy completions endpoint: those stay
unsupported. The translation lives in ``request.py``, ``response.py`` and ``stream.py``; the
mapping tables are in docs/providers/anthropic.md.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from pydantic import BaseModel

from switchboard.config.schema import ProviderConfig
from switchboard.errors import GatewayError
from switchboard.providers.anthropic import native, response, thinking
from switchboard.providers.anthropic.options import AnthropicOptions
from switchboard.providers.anthropic.request import (
    COUNT_TOKENS_PATH,
    MESSAGES_PATH,
    build_body,
    count_tokens_body,
    options_of,
    request_headers,
)
from switchboard.providers.anthropic.stream import AnthropicStreamDecoder
from switchboard.providers.base import JSON, ProviderAdapter
from switchboard.providers.spec import ProviderSpec
from switchboard.providers.target import Target
from switchboard.upstream.auth import StaticHeaderAuth, UpstreamAuth
from switchboard.upstream.request import UpstreamRequest

__all__ = ["SPEC", "AnthropicAdapter", "AnthropicOptions", "AnthropicStreamDecoder"]


class AnthropicAdapter(ProviderAdapter):
    type = "anthropic"
    # Anthropic fetches http(s) image URLs itself (image source type "url").
    inline_images = False

    def chat_request(self, request: JSON, target: Target) -> UpstreamRequest:
        body = build_body(request, target)
        stream = bool(body.get("stream"))
        headers = request_headers(options_of(target), stream)
        return UpstreamRequest("POST", target.api_base + MESSAGES_PATH, orjson.dumps(body), headers, stream)

    def chat_response(self, body: bytes, target: Target) -> JSON:
        return response.chat_completion(body, target)

    def chat_stream(self, request: JSON, target: Target) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder(target)

    # Not part of the adapter protocol yet: the canonical chat request -> /v1/messages/count_tokens.
    def count_tokens_request(self, request: JSON, target: Target) -> UpstreamRequest:
        body = count_tokens_body(request, target)
        headers = request_headers(options_of(target), False)
        url = target.api_base + COUNT_TOKENS_PATH
        return UpstreamRequest("POST", url, orjson.dumps(body), headers, False)

    def count_tokens_response(self, body: bytes, target: Target) -> JSON:
        return response.count_tokens(body, target)

    def error(self, status: int, headers: Mapping[str, str], body: bytes, target: Target) -> GatewayError:
        return response.error(status, headers, body, target)

    def answer_error(self, headers: Mapping[str, str], body: bytes, target: Target) -> GatewayError | None:
        return response.answer_error(headers, body, target)

    def output_bound(self, request: JSON, target: Target) -> int | None:
        # What build_body sends as max_tokens when the caller gave none: the default, with the
        # thinking budget asked for (thinking later turned off for a tool loop only lowers it).
        if request.get("max_completion_tokens") or request.get("max_tokens"):
            return None
        try:
            return thinking.thinking(request, options_of(target).default_max_tokens, False)[1]
        except GatewayError:  # refused when the call is made
            return None

    def output_text(self, mark: bytes) -> str:
        # The pass-through stream (native.NativeStream) marks content block events unparsed.
        return native.output_text(mark)


def _auth(config: ProviderConfig, options: BaseModel) -> UpstreamAuth:
    key = config.api_key.get_secret_value() if config.api_key else None
    return StaticHeaderAuth.header("x-api-key", key)


SPEC = ProviderSpec(
    type="anthropic",
    adapter=AnthropicAdapter(),
    options=AnthropicOptions,
    default_api_base="https://api.anthropic.com",
    make_auth=_auth,
)
