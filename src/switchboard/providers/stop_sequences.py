"""Stop sequences: which of the caller's are sent (``to_send``), and the one that ended a reply,
named where the provider does not name it.

A canonical choice says that a stop sequence ended it with ``stop_sequence``: the matched
string, or null when the provider reports only that one matched (Cohere's finish_reason
``STOP_SEQUENCE``, Bedrock Converse's stopReason ``stop_sequence`` for models other than Claude).
When the caller sent exactly one stop sequence, that one is the match: filled in here from the
request (which the adapters' reply decoders do not see), for a whole reply and for a stream's
finish chunk alike.
"""

from __future__ import annotations

from typing import Any

from switchboard.errors import UnsupportedParameter
from switchboard.providers.base import JSON, StreamDecoder
from switchboard.providers.params import drop_advice, drops
from switchboard.providers.target import Target


def _given(request: JSON) -> list[str]:
    """The caller's stop sequences but the empty ones, which ask for nothing: never sent."""
    stop = request.get("stop")
    return [s for s in ([stop] if isinstance(stop, str) else stop or ()) if isinstance(s, str) and s]


def to_send(request: JSON, target: Target, provider_type: str, blank_refused: bool) -> list[str]:
    """``stop`` as a list to send. An empty sequence asks for nothing and is left out (Anthropic
    and Bedrock Converse refuse it). Claude also refuses one of whitespace only ("each stop
    sequence must contain non-whitespace"), which OpenAI takes ("\\n"): where ``blank_refused``,
    such a one is a 400 naming ``stop`` (Claude's would name a field the caller never sent), or
    left out under ``drop_params``."""
    stops = _given(request)
    if not blank_refused or all(s.strip() for s in stops):
        return stops
    if drops(request, target):
        return [s for s in stops if s.strip()]
    raise UnsupportedParameter(
        f"stop sequences of whitespace only are not supported by provider type '{provider_type}' (model "
        f"'{target.name}'); {drop_advice('drop them instead')}", param="stop")


def only_stop(request: JSON) -> str | None:
    """The one stop sequence sent, else None (none, or several: which matched is unknown). Empty
    ones are not sent, so ``["", "END"]`` has only ``"END"`` to match. (Blank ones left out under
    ``drop_params`` count here, but only Claude refuses them, and Claude names its match.)"""
    stops = _given(request)
    return stops[0] if len(stops) == 1 else None


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
