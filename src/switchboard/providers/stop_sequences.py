"""The stop sequence that ended a reply, named where the provider does not name it.

A canonical choice says that a stop sequence ended it with ``stop_sequence``: the matched
string, or null when the provider reports only that one matched (Cohere's finish_reason
``STOP_SEQUENCE``, Bedrock Converse's stopReason ``stop_sequence`` for models other than Claude).
When the caller sent exactly one stop sequence, that one is the match: filled in here from the
request (which the adapters' reply decoders do not see), for a whole reply and for a stream's
finish chunk alike.
"""

from __future__ import annotations

from typing import Any

from switchboard.providers.base import JSON, StreamDecoder


def only_stop(request: JSON) -> str | None:
    """The caller's one stop sequence, else None (none, or several: which matched is unknown)."""
    stop = request.get("stop")
    if isinstance(stop, list) and len(stop) == 1:
        stop = stop[0]
    return stop if isinstance(stop, str) and stop else None


def _name(choices: Any, stop: str) -> None:
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict) and "stop_sequence" in choice and choice["stop_sequence"] is None:
            choice["stop_sequence"] = stop


def name_in_reply(request: JSON, reply: JSON) -> JSON:
    """``reply`` (canonical, non-stream) with an unnamed matched stop sequence named."""
    if (stop := only_stop(request)) is not None:
        _name(reply.get("choices"), stop)
    return reply


def naming_decoder(request: JSON, decoder: StreamDecoder) -> StreamDecoder:
    """``decoder`` itself, or wrapped to name an unnamed matched stop sequence on its chunks."""
    stop = only_stop(request)
    return decoder if stop is None else _Naming(decoder, stop)


class _Naming:
    __slots__ = ("_inner", "_stop")

    def __init__(self, inner: StreamDecoder, stop: str) -> None:
        self._inner = inner
        self._stop = stop

    def feed(self, data: bytes) -> list[JSON]:
        return self._named(self._inner.feed(data))

    def close(self) -> list[JSON]:
        return self._named(self._inner.close())

    def _named(self, chunks: list[JSON]) -> list[JSON]:
        for chunk in chunks:
            _name(chunk.get("choices"), self._stop)
        return chunks
