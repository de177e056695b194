"""``POST /v1/messages/count_tokens``: an offline estimate of a request's input tokens.

Reference: https://docs.anthropic.com/en/api/messages-count-tokens (request: the Messages
parameters without max_tokens and sampling; response: ``{"input_tokens": N}``).

No tokenizer is shipped (Anthropic's is not public and tiktoken's encodings are downloaded at
run time, which the gateway must not do), so the count is an estimate: one token per 4
characters of the text in system, messages (text, tool calls and results) and tool definitions,
plus 3 tokens per message and a flat 1,600 tokens per image (Anthropic's figure for an image
of about 1.15 megapixels). Expect it to be within tens of percent for English text.
"""

from __future__ import annotations

from typing import Any

import orjson

from switchboard.errors import GatewayError, ModelNotFound
from switchboard.gateway import Gateway
from switchboard.http.anthropic.errors import error_body
from switchboard.http.anthropic.request import count_tokens_request
from switchboard.http.asgi import JSON_CT, Receive, Scope, Send, header_dict, read_body, send_bytes
from switchboard.http.endpoint import check_content_type, request_id

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 3
TOKENS_PER_IMAGE = 1600


def _content_size(content: Any) -> tuple[int, int]:
    """(characters of text, number of images) in a canonical message content."""
    if isinstance(content, str):
        return len(content), 0
    chars = images = 0
    for part in content if isinstance(content, list) else ():
        if part.get("type") == "image_url":
            images += 1
        else:
            chars += len(part.get("text") or "")
    return chars, images


def estimate_tokens(request: dict[str, Any]) -> int:
    chars = images = 0
    messages = request.get("messages") or []
    for msg in messages:
        c, i = _content_size(msg.get("content"))
        chars, images = chars + c, images + i
        for call in msg.get("tool_calls") or ():
            chars += len(call["function"]["name"]) + len(call["function"]["arguments"])
    for tool in request.get("tools") or ():
        chars += len(orjson.dumps(tool["function"]))
    text_tokens = -(-chars // CHARS_PER_TOKEN)  # ceiling division
    return text_tokens + TOKENS_PER_MESSAGE * len(messages) + TOKENS_PER_IMAGE * images


class CountTokensEndpoint:
    def __init__(self, gateway: Gateway, max_body_bytes: int) -> None:
        self.gateway = gateway
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = header_dict(scope)
        rid = request_id(headers)
        extra = [(b"x-request-id", rid.encode()), (b"request-id", rid.encode())]
        try:
            self.gateway.authenticator.authenticate(headers)
            check_content_type(headers)
            body = await read_body(receive, self.max_body_bytes, headers.get("content-length"))
            result = {"input_tokens": self._count(body)}
        except GatewayError as err:
            extra += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in err.headers.items()]
            await send_bytes(send, err.status, orjson.dumps(error_body(err)), extra, JSON_CT)
            return
        except ConnectionAbortedError:
            return
        await send_bytes(send, 200, orjson.dumps(result), extra, JSON_CT)

    def _count(self, body: bytes) -> int:
        request = count_tokens_request(body)
        model = request["model"]
        if model not in self.gateway.routes:
            shown = model if len(model) <= 200 else "(invalid)"
            raise ModelNotFound(f"model: the model '{shown}' does not exist or you do not have access to it",
                                param="model")
        return estimate_tokens(request)
