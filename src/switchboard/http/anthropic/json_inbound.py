"""Bodiless or whole-body JSON endpoints of the Anthropic API (``/v1/models``,
``/v1/messages/batches``): as OpenAI's (http/openai_api.py), errors in Anthropic's shape."""

from __future__ import annotations

import orjson

from switchboard.context import RequestContext
from switchboard.errors import GatewayError
from switchboard.http.anthropic.errors import error_body
from switchboard.http.anthropic.stream import event
from switchboard.http.openai_api import OpenAIJson


class AnthropicJson(OpenAIJson):
    dialect = "anthropic"

    def encode_error(self, error: GatewayError, ctx: RequestContext | None = None) -> bytes:
        return orjson.dumps(error_body(error))

    def encode_stream_error(self, error: GatewayError, ctx: RequestContext | None = None) -> bytes:
        return event("error", error=error_body(error)["error"])
