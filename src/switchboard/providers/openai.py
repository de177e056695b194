"""OpenAI's own API: the canonical form is its wire format, so translation is nearly the identity.

Reference: https://platform.openai.com/docs/api-reference/chat (request, response, streaming
chunk and error shapes). ``api_base`` includes ``/v1``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel

from switchboard.config.schema import ProviderConfig
from switchboard.errors import GatewayError, UpstreamBadGateway
from switchboard.providers import account, capabilities, openai_media
from switchboard.providers.base import JSON, DeferredError, ProviderAdapter
from switchboard.providers.embedding_task import without_hints
from switchboard.providers.errors import (
    invalid_body,
    loads_object,
    openai_param,
    text_message,
    upstream_error,
)
from switchboard.providers.media import MediaReply, MediaStreamUsage
from switchboard.providers.openai_extensions import to_openai
from switchboard.providers.params import THOUGHTS
from switchboard.providers.spec import ProviderOptions, ProviderSpec
from switchboard.providers.sse import SSEParser, empty_data
from switchboard.providers.target import Target
from switchboard.upstream.auth import StaticHeaderAuth, UpstreamAuth
from switchboard.upstream.request import UpstreamRequest

# Content-Type: application/json is a session default of the upstream client.
_SSE_HEADERS = {"Accept": "text/event-stream"}


# vLLM's finish reasons for an answer its engine gave up on (vllm/v1/engine ``FinishReason``):
# "abort" (the engine aborted the request: generation paused for a weight update, a failed KV
# transfer, a scheduler's abort) and "error" (a request-level internal error). The answer was cut
# by the server, so it is the server's failure, as a 5xx is: a 502, retried and fallen back from
# (in a stream, the error event), never a finish reason no OpenAI client knows. Every
# OpenAI-shaped type reads them: OpenAI sends neither, but an ``openai`` provider's api_base (or
# an Azure resource) may be a vLLM server.
CUT_BY_SERVER = ("abort", "error")  # a tuple: a finish_reason of any JSON type is compared, not hashed


def server_cut(reason: str, target: Target) -> UpstreamBadGateway:
    """The error for an answer the server stopped with a :data:`CUT_BY_SERVER` finish reason."""
    return UpstreamBadGateway(f"provider '{target.provider}' stopped the answer before it was complete "
                              f"(finish_reason '{reason}')")


def check_finish(choices: list[Any], target: Target) -> None:
    """Raises when a choice of a whole reply was cut by the server (CUT_BY_SERVER). Read from the
    parsed choices, so a reason written with JSON escapes ("\\u0061bort") is caught too; for the
    usual one or few choices this costs fewer instructions than searching the body's bytes."""
    for choice in choices:
        if choice.__class__ is dict and choice.get("finish_reason") in CUT_BY_SERVER:
            raise server_cut(choice["finish_reason"], target)


class OpenAIOptions(ProviderOptions):
    organization: str | None = None
    project: str | None = None


class OpenAIStreamDecoder(DeferredError):
    """OpenAI SSE: one JSON chunk per ``data:`` event, ended by ``data: [DONE]``.

    An error event raises only after the chunks that preceded it in the same read were returned,
    so the client receives everything the provider sent before failing.
    """

    __slots__ = ("_done", "_ended", "_finished", "_n", "_open", "_parser", "_said", "_target")

    def __init__(self, target: Target, n: Any = 1) -> None:
        self._parser = SSEParser(target.provider, target.max_event_bytes)
        self._target = target
        self._done = False
        self._finished = False  # a finish_reason was seen
        # Finish reasons are read only while a choice is open: with n > 1 each choice's own
        # finish may be a server's abort, in any later chunk; n = 1 stops reading at the first.
        self._n = n if n.__class__ is int and n > 1 else 1
        self._open = True
        self._ended: set[Any] | None = None  # the indexes of the choices finished (n > 1)
        self._said = False  # a read gave chunks (noted per read, not per chunk)
        self._deferred: GatewayError | None = None

    def feed(self, data: bytes) -> list[JSON]:
        # The events' data as the read holds them (SSEParser.feed_data): an event object and a
        # decoded text per event cost more than the JSON parse of a small chunk.
        out = self._chunks(self._parser.feed_data(data))
        if out:
            self._said = True
        elif self._done and not (self._said or self._finished):
            raise self._empty()
        return out

    def _empty(self) -> UpstreamBadGateway:
        """The error for a stream that ended with [DONE] having sent no chunk at all (a server or
        proxy that gave up before answering): never passed off as an empty answer. Without [DONE]
        such a stream is a cut one (close)."""
        return UpstreamBadGateway(f"provider '{self._target.provider}' ended the stream without sending "
                                  "any of the answer")

    def close(self) -> list[JSON]:
        out = self._chunks([event.data.encode() for event in self._parser.flush()])
        if self._done and not (out or self._said or self._finished):
            raise self._empty()
        if not (self._done or self._finished):
            # Neither [DONE] nor a finish_reason: the answer was cut short; never pass it off as whole.
            where = f"provider '{self._target.provider}'"
            raise UpstreamBadGateway(f"{where} ended the stream before it was complete")
        return out

    def _chunks(self, events: list[bytes]) -> list[JSON]:
        if self._deferred is not None:
            raise self._taken()
        out: list[JSON] = []
        for data in events:
            if self._done:
                break
            # _chunk inlined for the usual chunk (a JSON object with no error): a call per
            # event costs about as much as the rest of this loop's work on it.
            if data == b"[DONE]":
                self._done = True
                break
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError:
                obj = None
            if obj.__class__ is not dict or "error" in obj:
                if obj is None and empty_data(data):
                    continue  # dispatched, but carries nothing (providers/sse.py)
                try:
                    obj = self._chunk(data)
                except GatewayError as err:
                    if not out:
                        raise
                    self._defer(err)
                    break
            elif self._open and isinstance(choices := obj.get("choices"), list):
                for choice in choices:
                    if isinstance(choice, dict) and (reason := choice.get("finish_reason")):
                        self._ends(choice)
                        if reason in CUT_BY_SERVER:  # the chunk is not sent
                            if not out:
                                raise server_cut(reason, self._target)
                            self._defer(server_cut(reason, self._target))
                            return out
            if obj is not None:
                out.append(obj)
        return out

    def _chunk(self, data: bytes) -> JSON | None:
        """An event that is not the usual chunk: an error, or not a JSON object."""
        try:
            # Read as text, invalid UTF-8 replaced (as the event was before it was left in bytes).
            obj = orjson.loads(data.decode("utf-8", "replace"))
        except orjson.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            raise invalid_body(self._target, "stream event")
        error = obj.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else str(error)
            raise UpstreamBadGateway(f"provider '{self._target.provider}' failed mid-stream: {message}")
        if self._open and isinstance(choices := obj.get("choices"), list):
            for choice in choices:
                if isinstance(choice, dict) and (reason := choice.get("finish_reason")):
                    self._ends(choice)
                    if reason in CUT_BY_SERVER:
                        raise server_cut(reason, self._target)
        return obj

    def _ends(self, choice: JSON) -> None:
        """Notes a choice's finish; the last of the n closes the reading of finish reasons."""
        self._finished = True
        if self._n > 1:
            self._ended = self._ended or set()
            self._ended.add(choice.get("index"))
            self._open = len(self._ended) < self._n
        else:
            self._open = False


def _dump(body: Mapping[str, Any]) -> bytes:
    return orjson.dumps(body)


class OpenAIAdapter(ProviderAdapter):
    type = "openai"
    # Paths appended to api_base; subclasses for OpenAI-shaped hosts change these.
    chat_path = "/chat/completions"
    embeddings_path = "/embeddings"
    completions_path = "/completions"
    # Ask for usage on every stream so the gateway can always account for it.
    stream_usage = True

    def _post(self, path: str, body: JSON, target: Target, stream: bool) -> UpstreamRequest:
        # The body is passed through: a field that makes the provider read a store with its own
        # identity is refused here, for every OpenAI-shaped type (Azure hosts may sit behind each),
        # and so are fields naming objects stored in the shared account (audio replies, tools'
        # vector stores and containers).
        account.check_data_sources(body, target)
        account.check_chat(body, target)
        body["model"] = target.model
        body.pop("drop_params", None)
        body.pop(THOUGHTS, None)
        headers = dict(_SSE_HEADERS) if stream else {}
        return UpstreamRequest("POST", target.api_base + path, _dump(body), headers, stream)

    def _with_stream_usage(self, request: JSON) -> JSON:
        body = dict(request)
        if body.get("stream") and self.stream_usage:
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return body

    def chat_request(self, request: JSON, target: Target) -> UpstreamRequest:
        # The body is passed through; only the canonical extensions are turned into OpenAI's fields.
        body = self._with_stream_usage(to_openai(capabilities.check(request, target)))
        return self._post(self.chat_path, body, target, bool(body.get("stream")))

    def chat_response(self, body: bytes, target: Target) -> JSON:
        obj = loads_object(body)
        if obj is None or not isinstance(obj.get("choices"), list):
            raise invalid_body(target)
        check_finish(obj["choices"], target)
        return obj

    def chat_stream(self, request: JSON, target: Target) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder(target, request.get("n", 1))

    def embeddings_request(self, request: JSON, target: Target) -> UpstreamRequest:
        # The retrieval hints (task_type, title) are Google's: OpenAI-shaped APIs have none and
        # OpenAI refuses unknown fields, so they are not sent (providers/embedding_task.py).
        return self._post(self.embeddings_path, dict(without_hints(request)), target, False)

    def embeddings_response(self, body: bytes, target: Target) -> JSON:
        obj = loads_object(body)
        if obj is None or not isinstance(obj.get("data"), list):
            raise invalid_body(target)
        return obj

    def completions_request(self, request: JSON, target: Target) -> UpstreamRequest:
        body = self._with_stream_usage(request)
        return self._post(self.completions_path, body, target, bool(body.get("stream")))

    def completions_response(self, body: bytes, target: Target) -> JSON:
        obj = loads_object(body)
        if obj is None or not isinstance(obj.get("choices"), list):
            raise invalid_body(target)
        check_finish(obj["choices"], target)
        return obj

    def completions_stream(self, request: JSON, target: Target) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder(target, request.get("n", 1))

    # media: moderations, images, audio (providers/openai_media.py); OpenAI has no rerank
    media_operations = frozenset(openai_media.PATHS) - {"rerank"}

    def media_url(self, path: str, target: Target) -> str:
        return target.api_base + path

    def media_request(self, operation: str, request: JSON, target: Target) -> UpstreamRequest:
        if operation not in self.media_operations:
            return super().media_request(operation, request, target)
        url = self.media_url(openai_media.PATHS[operation], target)
        return openai_media.build(operation, request, target, url)

    def media_response(
        self, operation: str, body: bytes, headers: Mapping[str, str], request: JSON, target: Target
    ) -> MediaReply:
        if operation not in self.media_operations:
            return super().media_response(operation, body, headers, request, target)
        return openai_media.parse(operation, body, headers, request, target)

    def media_stream(self, operation: str, request: JSON, target: Target) -> MediaStreamUsage:
        if operation not in openai_media.STREAMS or operation not in self.media_operations:
            return super().media_stream(operation, request, target)
        return openai_media.StreamUsage(request, target)

    def error(self, status: int, headers: Mapping[str, str], body: bytes, target: Target) -> GatewayError:
        obj = loads_object(body)
        if obj is None:  # a proxy's or load balancer's page in front of the API: its text
            return upstream_error(status, headers, target, text_message(body))
        err = obj.get("error")
        if isinstance(err, dict):
            message = _str(err.get("message"))
            return upstream_error(
                status,
                headers,
                target,
                message,
                type=_str(err.get("type")),
                code=_str(err.get("code")),
                param=openai_param(_str(err.get("param")), message),
            )
        return upstream_error(status, headers, target, _str(err) or _str(obj.get("message")))


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def auth_headers(api_key: str | None, options: OpenAIOptions) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    if options.organization:
        headers["OpenAI-Organization"] = options.organization
    if options.project:
        headers["OpenAI-Project"] = options.project
    return headers


def _auth(config: ProviderConfig, options: BaseModel) -> UpstreamAuth:
    assert isinstance(options, OpenAIOptions)
    key = config.api_key.get_secret_value() if config.api_key else None
    return StaticHeaderAuth(auth_headers(key, options))


SPEC = ProviderSpec(
    type="openai",
    adapter=OpenAIAdapter(),
    options=OpenAIOptions,
    default_api_base="https://api.openai.com/v1",
    make_auth=_auth,
)
