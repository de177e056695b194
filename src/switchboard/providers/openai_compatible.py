"""Provider type 'openai-compatible': servers that speak OpenAI's Chat Completions dialect with quirks.

The ``preset`` option names the server; :data:`PRESETS` (one table, mirrored in
docs/providers/openai-compatible.md) gives its default ``api_base`` and what must change on the
way: renamed parameters, whether ``stream_options.include_usage`` may be sent, and
response-format dialects. Sources, read for each preset:

- ollama:     https://docs.ollama.com/api/openai-compatibility (and ollama/ollama openai/openai.go:
              http image URLs rejected, unknown fields such as ``max_completion_tokens`` ignored)
- vllm:       https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html
- tgi:        huggingface/text-generation-inference router/src/lib.rs ``ChatRequest`` (``stop`` must
              be a list, ``response_format`` is ``{"type": "json"|"json_schema", "value": ...}``,
              ``n`` and ``logit_bias`` maps are not honoured)
- groq:       https://console.groq.com/docs/openai (logprobs, logit_bias, top_logprobs,
              messages[].name and n != 1 are a 400; stream usage arrives in ``x_groq.usage``)
- together:   https://docs.together.ai/reference/chat-completions (integer ``logprobs``)
- deepseek:   https://api-docs.deepseek.com/api/create-chat-completion (no n/seed/logit_bias,
              json_object only; cache hits in ``usage.prompt_cache_hit_tokens``)
- openrouter: https://openrouter.ai/docs/api-reference/overview (usage always streamed)
- lmstudio:   https://lmstudio.ai/docs/app/api/endpoints/openai (structured output via json_schema)

The parameters each server rejects or silently ignores (a 400 naming them, or dropped with
``drop_params``) are in its capability table, ``capabilities/openai_compatible.py``.

The module also holds the pieces every OpenAI-shaped adapter shares (azure and mistral import
them): usage normalisation, a stream decoder that tolerates the hosts' variations, and error-body
parsing with context-length detection.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import BaseModel

from switchboard.config.schema import ProviderConfig
from switchboard.errors import GatewayError, UnsupportedParameter, UpstreamBadGateway
from switchboard.providers import capabilities, openai_media
from switchboard.providers.base import JSON
from switchboard.providers.counts import count, position
from switchboard.providers.errors import (
    invalid_body,
    loads_object,
    openai_param,
    text_message,
    upstream_error,
)
from switchboard.providers.openai import CUT_BY_SERVER, OpenAIAdapter, OpenAIStreamDecoder, server_cut
from switchboard.providers.openai_extensions import documents_and_errors, with_effort, without_safety_settings
from switchboard.providers.params import drop_advice, drops
from switchboard.providers.response_format import described_schema
from switchboard.providers.spec import ProviderOptions, ProviderSpec
from switchboard.providers.sse import SSEEvent, empty_data
from switchboard.providers.target import Target
from switchboard.providers.tool_calls import new_call_id
from switchboard.upstream.auth import StaticHeaderAuth, UpstreamAuth
from switchboard.upstream.request import UpstreamRequest

# --------------------------------------------------------------------------- shared helpers


_int = count  # a count as reported (providers/counts.py: whole, not negative, bounded)


def _cached_tokens(usage: Mapping[str, Any]) -> int:
    for key in ("prompt_tokens_details", "prompt_token_details"):  # Mistral has sent both spellings
        details = usage.get(key)
        if isinstance(details, dict) and _int(details.get("cached_tokens")):
            return _int(details.get("cached_tokens"))
    # DeepSeek reports cache hits separately; Mistral also as num_cached_tokens.
    return _int(usage.get("prompt_cache_hit_tokens")) or _int(usage.get("num_cached_tokens"))


def _media_tokens(usage: Mapping[str, Any], details: JSON) -> None:
    """Image and audio units of the prompt, as OpenAI reports them (``audio_tokens``, and
    ``image_tokens`` where a host sends it), into the canonical details."""
    for key in ("prompt_tokens_details", "prompt_token_details"):
        found = usage.get(key)
        if isinstance(found, dict):
            for unit in ("image_tokens", "audio_tokens"):
                if count := _int(found.get(unit)):
                    details[unit] = count
            return


def normalise_usage(usage: Any) -> JSON | None:
    """Usage in the canonical shape: prompt, completion, total and cached prompt tokens, image
    and audio units where reported."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
    details: JSON = {"cached_tokens": _cached_tokens(usage)}
    _media_tokens(usage, details)
    out: JSON = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": _int(usage.get("total_tokens")) or prompt + completion,
        "prompt_tokens_details": details,
    }
    if isinstance(usage.get("completion_tokens_details"), dict):
        out["completion_tokens_details"] = usage["completion_tokens_details"]
    return out


def canonical_reasoning(message: Any) -> None:
    """Reasoning text under the canonical name: OpenRouter and Ollama call it ``reasoning``, vLLM
    and DeepSeek ``reasoning_content`` (the canonical one)."""
    if isinstance(message, dict) and isinstance(message.get("reasoning"), str):
        reasoning = message.pop("reasoning")
        if reasoning and not message.get("reasoning_content"):
            message["reasoning_content"] = reasoning


def string_arguments(calls: Any) -> None:
    """Tool call arguments as OpenAI's JSON text: TGI before 2.2 (and servers built on Ollama's
    native API) give them as a JSON object, which clients would fail to parse as text; null is
    read as absent ("")."""
    for call in calls if isinstance(calls, list) else ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict) and "arguments" in fn and not isinstance(fn["arguments"], str):
            fn["arguments"] = "" if fn["arguments"] is None else orjson.dumps(fn["arguments"]).decode()


def _bare_index(call_id: str) -> bool:
    """Whether a tool call's id is a bare index, none a client can pair results with. TGI names
    every call "0" (router/src/chat.rs), other servers number their calls "0", "1", ...: parallel
    calls may share one, and the same ids come again on every turn, so an Anthropic client sees
    tool_use "0" again and again. Such an id, or none, is replaced by one of the gateway's own
    (``call_…``, OpenAI's form), which the client sends back with the results and the server
    takes as any other; a real id is kept."""
    return call_id.isascii() and call_id.isdigit()


def unique_call_ids(calls: Any, used: set[str]) -> None:
    """Gives each call in ``calls`` a generated id when it has none, a bare index, or one already in
    ``used`` (the ids seen so far in the reply), and adds the ids to ``used``."""
    for call in calls if isinstance(calls, list) else ():
        if isinstance(call, dict):
            call_id = call.get("id")
            if not isinstance(call_id, str) or not call_id or _bare_index(call_id) or call_id in used:
                call["id"] = call_id = new_call_id()
            used.add(call_id)


# Servers' own finish reasons that are OpenAI's "stop" (True: a stop sequence's, which says so on
# the choice), as no OpenAI client knows them. TGI's (router/src/lib.rs ``FinishReason``): its
# Messages API reports a stop sequence as "stop_sequence" (and, before 2.0, the end-of-sequence
# token as "eos_token"). vLLM's "repetition" (vllm/v1/core/sched/utils.py ``check_stop``): the
# caller's ``repetition_detection`` found the output repeating a pattern and the server stopped
# there, as it stops at a stop condition the caller set; not "length", which would have clients
# ask for more of the same loop. vLLM's ``stop_reason: "repetition_detected"`` stays on the choice.
_STOPS = {"eos_token": False, "stop_sequence": True, "repetition": False}


def canonical_finish(choice: JSON, target: Target) -> None:
    """``choice``'s finish_reason in OpenAI's words, with ``stop_sequence`` marked on the choice
    (null: TGI does not say which; the request's only one names it, providers/stop_sequences.py);
    raises for an answer the server cut (CUT_BY_SERVER)."""
    reason = choice.get("finish_reason")
    if reason.__class__ is not str:
        return
    at_sequence = _STOPS.get(reason)
    if at_sequence is not None:
        choice["finish_reason"] = "stop"
        if at_sequence:
            choice["stop_sequence"] = None
    elif reason in CUT_BY_SERVER:
        raise server_cut(reason, target)


def normalise_completion(obj: JSON, target: Target) -> JSON:
    """A non-stream chat or text completion with canonical usage; raises on an invalid body."""
    if not isinstance(obj.get("choices"), list):
        raise invalid_body(target)
    call_ids: set[str] = set()
    for choice in obj["choices"]:
        if isinstance(choice, dict):
            canonical_reasoning(message := choice.get("message"))
            canonical_finish(choice, target)
            if isinstance(message, dict):
                string_arguments(message.get("tool_calls"))
                unique_call_ids(message.get("tool_calls"), call_ids)
    usage = normalise_usage(obj.get("usage"))
    if usage is not None:
        obj["usage"] = usage
    return obj


_CONTEXT_LENGTH = re.compile(
    r"context (length|window)|too large for model|prompt is too long|maximum (context|input) length"
    r"|tokens \+ `max_new_tokens` must be"
    # Azure OpenAI (GPT-5 family), with no code: "Input tokens exceed the configured limit of
    # 272000 tokens"; llama.cpp's server: "the request exceeds the available context size".
    r"|input tokens exceed the configured limit|exceeds the available context size",
    re.IGNORECASE,
)
# Error types that mean "the request is too long", whatever the status: llama.cpp's server
# answered this one with HTTP 500 before ggml-org/llama.cpp#16486, which would otherwise be a
# server error, retried and never sent to the context-window fallbacks.
_CONTEXT_LENGTH_TYPES = frozenset({"exceed_context_size_error"})


def is_context_length(message: str | None) -> bool:
    return bool(message and _CONTEXT_LENGTH.search(message))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _code(value: object) -> str | None:
    # Some hosts (Azure, Mistral) put the HTTP status or an internal number in ``code``: not an
    # OpenAI error code, so it is left out rather than shown to clients as one.
    if isinstance(value, str) and value and not value.isdigit():
        return value
    return None


def error_from_fields(
    status: int,
    headers: Mapping[str, str],
    target: Target,
    message: str | None,
    *,
    type: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> GatewayError:
    """:func:`upstream_error`, with context-length errors given OpenAI's status, type and code
    whatever the host said (the router's ``context_window`` class, and so the context-window
    fallbacks, go by that code)."""
    if code != "context_length_exceeded" and (
        (type in _CONTEXT_LENGTH_TYPES and 400 <= status < 600)
        or (status in (400, 413, 422) and is_context_length(message))
    ):
        code, status, type = "context_length_exceeded", 400, "invalid_request_error"
    return upstream_error(status, headers, target, message, type=type, code=code, param=param)


def openai_shaped_error(status: int, headers: Mapping[str, str], body: bytes, target: Target) -> GatewayError:
    """``{"error": {...}}`` (OpenAI, Azure, vLLM), ``{"error": "..."}`` (TGI), ``{"message": ...}``,
    or plain text (TGI's and Ollama's routers, a proxy's page), which is the message itself."""
    found = loads_object(body)
    text = text_message(body) if found is None else None
    obj = found or {}
    err = obj.get("error")
    if isinstance(err, dict):
        message = _text(err.get("message"))
        return error_from_fields(
            status,
            headers,
            target,
            message,
            type=_text(err.get("type")),
            code=_code(err.get("code")),
            param=openai_param(_text(err.get("param")), message),
        )
    message = text or _text(err) or _text(obj.get("message")) or _text(obj.get("detail"))
    if status == 424:
        # TGI's generation error (Failed Dependency: a model shard failed, out of memory, ...) is
        # the server's failure, not the caller's: retried and fallen back from as any other.
        where = f"provider '{target.provider}'"
        return UpstreamBadGateway(f"{where} failed with HTTP 424: {message or 'generation failed'}")
    return error_from_fields(
        status, headers, target, message, type=_text(obj.get("type")), code=_code(obj.get("code"))
    )


class NormalisingStreamDecoder(OpenAIStreamDecoder):
    """OpenAI-shaped SSE from hosts that vary in the details, turned into canonical chunks.

    - usage may ride on a chunk that also carries choices (Mistral, Together), in
      ``x_groq.usage`` (Groq) or in a chunk of its own: it is always re-emitted as one final
      ``"choices": []`` chunk, normalised, just before the end;
    - chunks with no choices and no usage (Azure's prompt-filter results) are dropped;
    - an error object in the stream raises (after the chunks that preceded it in the same read
      were returned: the error is raised by the next call); a stream that ends with neither
      ``[DONE]`` nor a finish_reason raises, so a truncated answer is never passed off as complete,
      and so does one that ends with ``[DONE]`` having given no chunk (an empty answer);
    - tool call deltas get OpenAI's indices (0, 1, ... per choice, in order of their ids): Ollama
      numbers every parallel call 0, and older servers leave ``index`` out, which would merge the
      calls (and their arguments) into one in every client (:class:`ToolCallIndices`); and unique
      ids: TGI names every call "0", which would merge its parallel calls the same way.

    Subclasses translate choices in :meth:`translate`. (It derives from the OpenAI decoder only
    because OpenAIAdapter's stream methods are annotated with that type; it shares no behaviour.)
    """

    def __init__(self, target: Target, object_name: str = "chat.completion.chunk") -> None:
        super().__init__(target)
        self._object = object_name
        self._finished = False
        self._usage: JSON | None = None
        self._meta: JSON = {"id": "", "created": 0, "model": target.model}
        self._indices: ToolCallIndices | None = None  # made at the first tool call delta

    def feed(self, data: bytes) -> list[JSON]:
        out = self._events(self._parser.feed(data))
        if out:
            self._said = True
        elif self._done and not (self._said or self._finished):
            raise self._empty()
        return out

    def close(self) -> list[JSON]:
        if self._deferred is not None:
            raise self._taken()
        events = self._parser.flush()  # a last event without its blank line, or half of one
        partial = any(e.data != "[DONE]" and loads_object(e.data.encode()) is None and not empty_data(e.data)
                      for e in events)
        if partial and not self._finished:
            raise self._truncated()
        out = self._events(events, defer=False)  # no later call would raise a deferred error
        if self._done:
            if not (out or self._said or self._finished):
                raise self._empty()
            return out
        if not self._finished:
            raise self._truncated()
        return out + self._final()

    def _truncated(self) -> UpstreamBadGateway:
        where = f"provider '{self._target.provider}'"
        return UpstreamBadGateway(f"{where} ended the stream before it was complete")

    def _events(self, events: list[SSEEvent], defer: bool = True) -> list[JSON]:
        if self._deferred is not None:
            raise self._taken()
        out: list[JSON] = []
        for event in events:
            try:
                out.extend(self._event(event.data))
            except GatewayError as err:
                if not out or not defer:
                    raise
                self._defer(err)  # raised by the next call, after these chunks went out
                break
        return out

    def _event(self, data: str) -> list[JSON]:
        if self._done:
            return []
        if data == "[DONE]":
            self._done = True
            return self._final()
        obj = loads_object(data.encode())
        if obj is None:
            if empty_data(data):
                return []  # dispatched, but carries nothing (providers/sse.py)
            raise invalid_body(self._target, "stream event")
        message = self.stream_error(obj)
        if message is not None:
            raise UpstreamBadGateway(f"provider '{self._target.provider}' failed mid-stream: {message}")
        usage = normalise_usage(self._take_usage(obj))
        if usage is not None:
            self._usage = usage
        if not isinstance(obj.get("choices"), list) or not obj["choices"]:
            return []
        return [self.translate(self._with_meta(obj))]  # which notes a finish_reason (_finished)

    @staticmethod
    def _take_usage(obj: JSON) -> Any:
        usage = obj.pop("usage", None)
        extra = obj.pop("x_groq", None)  # Groq's request metadata; usage is all it carries for us
        if usage is None and isinstance(extra, dict):
            usage = extra.get("usage")
        return usage

    def _with_meta(self, obj: JSON) -> JSON:
        for key in ("id", "created", "model"):
            if obj.get(key):
                self._meta[key] = obj[key]
            else:
                obj[key] = self._meta[key]
        if not obj.get("object"):
            obj["object"] = self._object
        return obj

    def _final(self) -> list[JSON]:
        if self._usage is None:
            return []
        usage, self._usage = self._usage, None
        return [{**self._meta, "object": self._object, "choices": [], "usage": usage}]

    def stream_error(self, obj: JSON) -> str | None:
        """The error message when ``obj`` is an error event rather than a chunk."""
        err = obj.get("error")
        if err:
            return str(err.get("message") or err) if isinstance(err, dict) else str(err)
        extra = obj.get("x_groq")
        if isinstance(extra, dict) and extra.get("error"):
            return str(extra["error"])
        return None

    def translate(self, chunk: JSON) -> JSON:
        """``chunk`` in canonical form; a finish_reason in it marks the stream finished."""
        for choice in chunk["choices"]:
            if isinstance(choice, dict):
                if (reason := choice.get("finish_reason")) is not None:
                    if reason.__class__ is not str:  # of the wrong JSON type: read as absent
                        choice["finish_reason"] = None
                    elif reason:
                        self._finished = True
                        canonical_finish(choice, self._target)
                delta = choice.get("delta")
                canonical_reasoning(delta)
                if isinstance(delta, dict) and isinstance(delta.get("tool_calls"), list):
                    self._indices = self._indices or ToolCallIndices()
                    self._indices.renumber(choice.get("index", 0), delta["tool_calls"])
                    string_arguments(delta["tool_calls"])
        return chunk


class ToolCallIndices:
    """OpenAI's ``index`` on streamed tool call deltas, whatever the server wrote there.

    A delta with an id not seen before in its choice starts the next call; one with a known id
    continues that call; one without an id (an arguments fragment) continues the call last started
    under the server's own index, or, with no index, the last call started. Servers that number
    correctly keep their numbers (calls start in order); Ollama's all-0 parallel calls and index-less
    deltas get 0, 1, ... by id.

    Ids are made unique first (as :func:`unique_call_ids` does for a whole reply): a bare index
    (TGI's "0"), and an id another server index already started, become a generated id, the same
    one for every delta of that call (by the server's index); a call whose first delta has no id
    gets one there. A bare index says nothing about which call a delta belongs to (TGI writes "0"
    on every delta of every call), so there a delta that names a function starts the next call,
    as only a call's first delta does in OpenAI's stream."""

    __slots__ = ("_choices",)

    def __init__(self) -> None:
        self._choices: dict[int | str | None, _ChoiceCalls] = {}

    def renumber(self, choice: Any, calls: list[Any]) -> None:
        state = self._choices.setdefault(_key(choice), _ChoiceCalls())
        ids, by_server = state.ids, state.by_server
        for call in calls:
            if not isinstance(call, dict):
                continue
            server = _key(call.get("index"))
            call_id = call.get("id")
            if isinstance(call_id, str) and call_id:
                call["id"] = call_id = state.unique(server, call_id, _names_function(call))
                index = ids.setdefault(call_id, len(ids))
            elif server in by_server:
                index = by_server[server]
            elif server is None and ids:
                index = len(ids) - 1
            else:  # a server that sends no ids at all: its own numbering, and an id of ours
                index = server if server.__class__ is int else 0
                call["id"] = new_call_id()
            by_server[server] = index
            call["index"] = index


class _ChoiceCalls:
    """One choice's tool calls so far, for :class:`ToolCallIndices`."""

    __slots__ = ("by_server", "ids", "owners", "renamed")

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}  # id -> our index
        self.by_server: dict[int | str | None, int] = {}  # the server's index -> our index of its last call
        self.owners: dict[str, int | str | None] = {}  # id -> the server's index that started it
        self.renamed: dict[tuple[int | str | None, str], str] = {}  # (server's index, id) -> generated id

    def unique(self, server: int | str | None, call_id: str, named: bool) -> str:
        """The id to send for a delta under the server's index ``server`` carrying ``call_id``;
        ``named``: the delta names its function (a bare index with a name starts a new call)."""
        key = (server, call_id)
        if key in self.renamed and not (named and _bare_index(call_id)):
            return self.renamed[key]
        started = self.owners.setdefault(call_id, server)
        if _bare_index(call_id) or started != server:
            self.renamed[key] = new_id = new_call_id()
            return new_id
        return call_id


def _names_function(call: JSON) -> bool:
    function = call.get("function")
    return isinstance(function, dict) and isinstance(function.get("name"), str) and bool(function["name"])


def _key(index: Any) -> int | str | None:
    """A server's index as a key: a whole number (1.0, from a server writing its numbers as
    floats, is 1), or text, which names its call as well as a number does ("0"); one of any
    other type (a list is no key, a bool no number) is read as absent."""
    found = position(index)
    if found is None and index.__class__ is str:
        return index
    return found


# --------------------------------------------------------------------------- presets

FormatStyle = Literal["openai", "tgi", "json_schema"]
_ALL_FORMATS = frozenset({"text", "json_object", "json_schema"})


@dataclass(frozen=True, slots=True)
class Preset:
    api_base: str | None
    # Send stream_options.include_usage (some servers reject the field; usage is then whatever
    # the server streams on its own, or none).
    stream_usage: bool = True
    renames: Mapping[str, str] = field(default_factory=dict)
    # Accepted string tool_choice values and whether a named function may be forced; None: all.
    tool_choices: frozenset[str] | None = None
    named_tool_choice: bool = True
    response_formats: frozenset[str] = _ALL_FORMATS
    format_style: FormatStyle = "openai"
    stop_list: bool = False  # ``stop`` only as an array
    strip_message_names: bool = False
    inline_images: bool = False  # the server cannot fetch http(s) image URLs
    embeddings: bool = True
    completions: bool = True


_MAX_TOKENS = {"max_completion_tokens": "max_tokens"}

PRESETS: dict[str, Preset] = {
    # Any OpenAI-compatible server; the default base is the usual local one (vLLM, SGLang, llama.cpp's).
    "custom": Preset(api_base="http://localhost:8000/v1"),
    "ollama": Preset(
        api_base="http://localhost:11434/v1",
        renames=_MAX_TOKENS,
        tool_choices=frozenset({"auto"}),
        named_tool_choice=False,
        inline_images=True,
    ),
    "vllm": Preset(api_base="http://localhost:8000/v1"),
    "tgi": Preset(
        api_base="http://localhost:8080/v1",
        renames=_MAX_TOKENS,
        format_style="tgi",
        stop_list=True,
        embeddings=False,
    ),
    "groq": Preset(
        api_base="https://api.groq.com/openai/v1",
        stream_usage=False,
        strip_message_names=True,
        embeddings=False,
        completions=False,
    ),
    "together": Preset(
        api_base="https://api.together.xyz/v1",
        stream_usage=False,
    ),
    "deepseek": Preset(
        api_base="https://api.deepseek.com/v1",
        renames=_MAX_TOKENS,
        response_formats=frozenset({"text", "json_object"}),
        embeddings=False,
        completions=False,
    ),
    "openrouter": Preset(api_base="https://openrouter.ai/api/v1"),
    "lmstudio": Preset(
        api_base="http://localhost:1234/v1",
        stream_usage=False,
        renames=_MAX_TOKENS,
        format_style="json_schema",
        inline_images=True,
    ),
}
PRESETS["none"] = PRESETS["custom"]

PresetName = Literal[
    "custom", "none", "ollama", "vllm", "tgi", "groq", "together", "deepseek", "openrouter", "lmstudio"
]


class Options(ProviderOptions):
    preset: PresetName = "custom"
    # Overrides the preset: fetch http(s) image URLs in the gateway and send data URLs instead.
    inline_images: bool | None = None
    # Overrides the preset: ask for usage in streams with stream_options.include_usage.
    stream_usage: bool | None = None


def preset_of(target: Target) -> Preset:
    options = target.options
    return PRESETS[options.preset] if isinstance(options, Options) else PRESETS["custom"]


def _unsupported(name: str, detail: str, target: Target) -> UnsupportedParameter:
    preset = getattr(target.options, "preset", "custom")
    return UnsupportedParameter(
        f"{detail} is not supported by provider type '{target.provider_type}' with preset '{preset}' "
        f"(model '{target.name}'); {drop_advice()}",
        param=name,
    )


def _check_value(body: JSON, name: str, ok: bool, detail: str, target: Target) -> None:
    if ok:
        return
    if not drops(body, target):
        raise _unsupported(name, detail, target)
    body.pop(name, None)


def _tool_choice(body: JSON, preset: Preset, target: Target) -> None:
    choice = body.get("tool_choice")
    if choice is None or preset.tool_choices is None:
        return
    if isinstance(choice, str):
        _check_value(body, "tool_choice", choice in preset.tool_choices, f"tool_choice '{choice}'", target)
    else:
        named = preset.named_tool_choice
        _check_value(body, "tool_choice", named, "forcing a named tool with tool_choice", target)
    if body.get("tool_choice") == "auto":
        body.pop("tool_choice")  # the server's default; it does not know the field


def _response_format(body: JSON, preset: Preset, target: Target) -> None:
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return
    kind = fmt.get("type")
    known = kind in preset.response_formats
    _check_value(body, "response_format", known, f"response_format '{kind}'", target)
    if "response_format" in body:
        converted = _converted_format(fmt, preset.format_style)
        if converted is None:
            body.pop("response_format")
        else:
            body["response_format"] = converted


def _converted_format(fmt: JSON, style: FormatStyle) -> JSON | None:
    kind = fmt.get("type")
    spec = fmt.get("json_schema")
    schema_spec: JSON = spec if isinstance(spec, dict) else {}
    if style == "openai":
        return fmt
    if kind == "text":
        return None
    if style == "tgi":  # serde adjacently tagged: {"type": ..., "value": ...}
        if kind == "json_schema":
            # TGI's value has no description: the format's goes into the schema's own.
            value = {"name": schema_spec.get("name"), "schema": described_schema(schema_spec)}
            return {"type": "json_schema", "value": value}
        return {"type": "json", "value": {"type": "object"}}
    if kind == "json_object":  # json_schema-only servers: any JSON object
        return {"type": "json_schema", "json_schema": {"name": "json_object", "schema": {"type": "object"}}}
    return fmt


def _renamed(body: JSON, renames: Mapping[str, str]) -> None:
    for old, new in renames.items():
        if old in body:
            value = body.pop(old)
            if value is not None:
                body[new] = value  # the newer name wins when a client sends both


def _without_names(messages: Any) -> Any:
    if not isinstance(messages, list):
        return messages
    return [{k: v for k, v in m.items() if k != "name"} if isinstance(m, dict) else m for m in messages]


def capability_key(target: Target) -> str:
    """The capability table of the target's preset (``"none"`` is ``"custom"``)."""
    preset = getattr(target.options, "preset", "custom")
    return f"{target.provider_type}:{'custom' if preset == 'none' else preset}"


def prepare_chat(request: JSON, preset: Preset, target: Target) -> JSON:
    """The request body for a preset's server (without model and stream_options, set by the adapter)."""
    if preset.tool_choices is not None and request.get("tool_choice") == "auto":
        request = {k: v for k, v in request.items() if k != "tool_choice"}  # the default; the server lacks it
    body = with_effort(capabilities.check(dict(request), target, capability_key(target)))
    body = without_safety_settings(documents_and_errors(body, target.provider_type))
    _tool_choice(body, preset, target)
    _response_format(body, preset, target)
    _renamed(body, preset.renames)
    if preset.stop_list and isinstance(body.get("stop"), str):
        body["stop"] = [body["stop"]]
    if preset.strip_message_names:
        body["messages"] = _without_names(body.get("messages"))
    return body


# Parameters a legacy completions request shares with chat, with the same meaning: a preset's
# server that ignores them in chat (TGI's, Ollama's and LM Studio's n; their logit_bias) ignores
# them here too, so its chat table's refusal holds (the other chat rows are chat's alone:
# Together's integer logprobs, refused in chat, is what legacy completions take).
_SHARED_WITH_CHAT = ("n", "logit_bias")


def _completions_checked(body: JSON, target: Target) -> JSON:
    """``body`` with the shared parameters its preset refuses: a 400, or removed (drop_params)."""
    shared = {name: body[name] for name in _SHARED_WITH_CHAT if name in body}
    if not shared:
        return body
    if "drop_params" in body:
        shared["drop_params"] = body["drop_params"]
    kept = capabilities.check(shared, target, capability_key(target))
    return {k: v for k, v in body.items() if k not in _SHARED_WITH_CHAT or k in kept}


def _with_usage_request(body: JSON, wanted: bool) -> JSON:
    if not body.get("stream"):
        return body
    if wanted:
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    else:
        body.pop("stream_options", None)
    return body


class NormalisingAdapter(OpenAIAdapter):
    """OpenAI-shaped hosts whose replies vary in the details: replies, streams and errors are
    normalised into the canonical form (shared by ``openai-compatible`` and ``azure``)."""

    def chat_response(self, body: bytes, target: Target) -> JSON:
        return normalise_completion(loads_object(body) or {}, target)

    def chat_stream(self, request: JSON, target: Target) -> NormalisingStreamDecoder:
        return NormalisingStreamDecoder(target)

    def completions_response(self, body: bytes, target: Target) -> JSON:
        return normalise_completion(loads_object(body) or {}, target)

    def completions_stream(self, request: JSON, target: Target) -> NormalisingStreamDecoder:
        return NormalisingStreamDecoder(target, "text_completion")

    def error(self, status: int, headers: Mapping[str, str], body: bytes, target: Target) -> GatewayError:
        return openai_shaped_error(status, headers, body, target)


class Adapter(NormalisingAdapter):
    type = "openai-compatible"

    def needs_inline_images(self, target: Target) -> bool:
        """Whether the gateway must inline http(s) images for this target (option, else preset)."""
        option = getattr(target.options, "inline_images", None)
        return preset_of(target).inline_images if option is None else bool(option)

    @staticmethod
    def _stream_usage(target: Target) -> bool:
        option = getattr(target.options, "stream_usage", None)
        return preset_of(target).stream_usage if option is None else bool(option)

    def chat_request(self, request: JSON, target: Target) -> UpstreamRequest:
        body = prepare_chat(request, preset_of(target), target)
        body = _with_usage_request(body, self._stream_usage(target))
        return self._post(self.chat_path, body, target, bool(body.get("stream")))

    def embeddings_request(self, request: JSON, target: Target) -> UpstreamRequest:
        if not preset_of(target).embeddings:
            raise self._unsupported("embeddings", target)
        return super().embeddings_request(request, target)

    def completions_request(self, request: JSON, target: Target) -> UpstreamRequest:
        preset = preset_of(target)
        if not preset.completions:
            raise self._unsupported("legacy completions", target)
        body = _completions_checked(dict(request), target)
        if preset.stop_list and isinstance(body.get("stop"), str):
            body["stop"] = [body["stop"]]
        body = _with_usage_request(body, self._stream_usage(target))
        return self._post(self.completions_path, body, target, bool(body.get("stream")))

    # media (providers/openai_media.py): OpenAI's endpoints as the host serves them, and rerank
    # (vLLM / Jina-style /rerank under api_base; TGI's own /rerank at the server's root)
    media_operations = frozenset(openai_media.PATHS)

    def media_request(self, operation: str, request: JSON, target: Target) -> UpstreamRequest:
        if operation == "rerank":
            tgi = isinstance(target.options, Options) and target.options.preset == "tgi"
            return openai_media.compatible_rerank_request(request, target, tgi=tgi)
        return super().media_request(operation, request, target)


def _auth(config: ProviderConfig, options: BaseModel) -> UpstreamAuth:
    # Bearer when a key is configured; local servers (ollama, vllm, ...) usually take none.
    return StaticHeaderAuth.bearer(config.api_key.get_secret_value() if config.api_key else None)


def _api_base(config: ProviderConfig, options: BaseModel) -> str | None:
    if config.api_base or not isinstance(options, Options):
        return None  # the configured api_base wins
    return PRESETS[options.preset].api_base


SPEC = ProviderSpec(
    type="openai-compatible",
    adapter=Adapter(),
    options=Options,
    default_api_base=None,
    make_auth=_auth,
    resolve_api_base=_api_base,
)
