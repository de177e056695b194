"""The provider adapter protocol.

An adapter translates between the canonical (OpenAI-shaped) form and one provider's wire
format. It is pure: no I/O, no settings, no globals. The upstream client applies credentials,
sends, and hands bytes back to the adapter. Operations a provider lacks raise
:class:`UnsupportedOperation` (HTTP 400) through the defaults below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from switchboard.errors import GatewayError, InvalidRequest, unraised
from switchboard.providers.errors import error_object, error_status
from switchboard.providers.media import OPERATION_NAMES, MediaReply, MediaStreamUsage
from switchboard.providers.target import Target
from switchboard.upstream.request import UpstreamRequest

JSON = dict[str, Any]

# In a same-dialect stream (StreamReply.native), the key of a chunk holding one upstream event's
# bytes, to be written to the client as they are.
WIRE = "wire"
# In a stream's chunk: its ``usage`` is the usage so far (Anthropic's message_start: the prompt
# and one output token), not the call's. The usage stage counts it only for a stream cut before
# its final usage (pipeline/invoke.py keeps it apart from ``ctx.usage``).
PARTIAL = "partial"
# In a same-dialect stream's chunk: the output its event carries (a text, thinking or tool-input
# delta), kept by the usage stage to estimate a stream cut before its final usage. A ``str`` is
# the text itself (a decoder that parsed the event anyway); ``bytes`` is an event that was
# relayed unparsed (Anthropic's), read only if such an estimate is needed, by the adapter of the
# route that streamed it (``ProviderAdapter.output_text``).
OUTPUT = "output"


class UnsupportedOperation(InvalidRequest):
    code = "unsupported_operation"


class StreamDecoder(Protocol):
    """Fed upstream bytes as they arrive; returns the canonical chunks completed so far.

    When an error event follows good events in one read, return the good chunks first and raise
    the error on the next call (``feed`` or ``close``), so nothing the provider sent is lost.

    A pass-through decoder, whose chunks carry the upstream's own events rather than canonical
    chunks, also has ``says_nothing(chunk) -> bool``: whether the event only opens the stream (the
    terminal holds such events until one says something, so a stream that fails before any
    content can be retried; pipeline/invoke.py). Translated decoders have none: their canonical
    chunks are judged by the terminal itself.
    """

    def feed(self, data: bytes) -> list[JSON]: ...

    def close(self) -> list[JSON]:
        """Called once the upstream stream ends; raises if it ended in the middle of an event."""
        ...


class DeferredError:
    """The error a stream decoder raises on its next call, and on every call after it (see
    StreamDecoder). What is kept is a copy that was never raised, and each call raises a copy of
    it: a raised error's traceback holds the frames that raised it, which hold the decoder, so
    keeping a raised one would leave a reference cycle per failed stream for the cyclic garbage
    collector (whose passes stall the event loop). Raised as ``raise self._taken()``: a local
    naming the error in the raising frame would be such a cycle too."""

    __slots__ = ("_deferred",)
    _deferred: GatewayError | None

    def _defer(self, error: GatewayError) -> None:
        self._deferred = unraised(error)  # without its traceback, cause and context

    def _taken(self) -> GatewayError:
        assert self._deferred is not None
        return unraised(self._deferred)


class ProviderAdapter:
    """Base class: every operation unsupported until a provider overrides it."""

    type: str = ""
    # True when the provider accepts only inline image bytes: the gateway then replaces http(s)
    # image URLs with data URLs before the adapter sees the request (pipeline/images.py).
    inline_images: bool = False

    def needs_inline_images(self, target: Target) -> bool:
        """Whether http(s) images must be inlined for this target (presets may differ by host)."""
        return self.inline_images

    def _unsupported(self, what: str, target: Target) -> UnsupportedOperation:
        return UnsupportedOperation(
            f"{what} is not supported by provider type '{target.provider_type}' (model '{target.name}')",
            param="model",
        )

    # chat
    def chat_request(self, request: JSON, target: Target) -> UpstreamRequest:
        raise self._unsupported("chat completions", target)

    def chat_response(self, body: bytes, target: Target) -> JSON:
        raise self._unsupported("chat completions", target)

    def chat_stream(self, request: JSON, target: Target) -> StreamDecoder:
        raise self._unsupported("streaming chat completions", target)

    # embeddings
    def embeddings_request(self, request: JSON, target: Target) -> UpstreamRequest:
        raise self._unsupported("embeddings", target)

    def embeddings_response(self, body: bytes, target: Target) -> JSON:
        raise self._unsupported("embeddings", target)

    def embeddings_reply(self, body: bytes, headers: Mapping[str, str], target: Target) -> JSON:
        """An embeddings answer read with its response headers, for a provider that reports its
        usage there (Cohere's models on Bedrock); by default the body says it all."""
        return self.embeddings_response(body, target)

    # legacy completions
    def completions_request(self, request: JSON, target: Target) -> UpstreamRequest:
        raise self._unsupported("legacy completions", target)

    def completions_response(self, body: bytes, target: Target) -> JSON:
        raise self._unsupported("legacy completions", target)

    def completions_stream(self, request: JSON, target: Target) -> StreamDecoder:
        raise self._unsupported("streaming legacy completions", target)

    # media: rerank, moderations, images, audio (providers/media.py, docs/api-media.md)
    def media_request(self, operation: str, request: JSON, target: Target) -> UpstreamRequest:
        raise self._unsupported(OPERATION_NAMES.get(operation, operation), target)

    def media_response(
        self, operation: str, body: bytes, headers: Mapping[str, str], request: JSON, target: Target
    ) -> MediaReply:
        raise self._unsupported(OPERATION_NAMES.get(operation, operation), target)

    def media_stream(self, operation: str, request: JSON, target: Target) -> MediaStreamUsage:
        """What watches a streamed media answer (``stream: true``) relayed as it is."""
        raise self._unsupported("streaming " + OPERATION_NAMES.get(operation, operation), target)

    def output_bound(self, request: JSON, target: Target) -> int | None:
        """The output tokens this adapter asks the provider for on a chat request that sets no
        bound of its own (``max_tokens``, ``max_completion_tokens``): the most the call can
        produce, which the budgets reserve (pipeline/budgets.py). None: it asks for none (the
        model's own limit applies, from the catalog)."""
        return None

    # streams relayed as they are (pipeline/native.py)
    def output_text(self, mark: bytes) -> str:
        """The output an event of a same-dialect stream carries, which its decoder marked with
        ``OUTPUT`` as the event's unparsed bytes: read only to estimate a stream cut before its
        final usage (pipeline/usage.py), so the relay never parses such events. An adapter whose
        pass-through decoder marks bytes overrides this; the default counts the bytes as text
        (an estimate too high rather than none)."""
        return mark.decode("utf-8", "replace")

    # errors
    def error(self, status: int, headers: Mapping[str, str], body: bytes, target: Target) -> GatewayError:
        raise NotImplementedError

    def answer_error(self, headers: Mapping[str, str], body: bytes, target: Target) -> GatewayError | None:
        """The error a JSON body answered with status 200 reports (a stream request answered
        with JSON instead of events), as :meth:`error` maps that body at the status its type or
        code stands for; None when the body is no error object."""
        err = error_object(body)
        if err is None:
            return None
        return self.error(error_status(err), headers, body, target)
