"""The request fields of the installed SDKs against what the gateway knows, so an SDK upgrade that
brings a new field fails here instead of the field being left out on a translated route.

A field the gateway does not know is passed through by OpenAI-shaped providers but silently not
sent by the translating adapters (docs/providers.md, "Fields the gateway does not know"): each
new one needs a decision (a capability matrix row, a translation, or a refusal) before it is
listed, in the gateway's own lists or in the commented exceptions below.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import typing_extensions
from anthropic.types.assistant_message_param import AssistantMessageParam
from anthropic.types.message_create_params import MessageCreateParamsBase
from anthropic.types.tool_result_block_param import ToolResultBlockParam
from anthropic.types.user_message_param import UserMessageParam
from google.genai import types as genai
from openai.types.chat.completion_create_params import CompletionCreateParamsBase
from openai.types.responses.input_token_count_params import InputTokenCountParams
from openai.types.responses.response_create_params import ResponseCreateParamsBase

from switchboard.errors import InvalidRequest, UnsupportedParameter
from switchboard.http.anthropic.content import BLOCK_KEYS, messages
from switchboard.http.anthropic.request import ACCEPTED, REFUSED, messages_request
from switchboard.http.gemini import content as gemini_content
from switchboard.http.gemini import request as gemini_request
from switchboard.http.gemini.fields import camel
from switchboard.http.responses.request import COUNT_FIELDS, KNOWN_FIELDS, check_fields, without_unsupported
from switchboard.http.responses.request import translate as responses_translate
from switchboard.providers.capabilities.rows import REQUEST_ROWS
from switchboard.providers.params import CHAT_PARAMS

# Chat Completions fields deliberately not in CHAT_PARAMS: none today.
CHAT_EXCEPTIONS: dict[str, str] = {}

# Responses fields not in http/responses/request.py's fields: refused as unknown parameters (400
# naming them) on every deployment, native ones too.
RESPONSES_EXCEPTIONS: dict[str, str] = {
    # The access programs of the organisation whose key the gateway holds: every caller's.
    "access_programs": "organisation access shared by every caller",
    # Options of background mode, which the gateway refuses on every deployment.
    "background_options": "background mode is refused",
}

# Anthropic Messages fields the SDK sends as request headers, not in the body.
ANTHROPIC_HEADERS: dict[str, str] = {
    "workspace_id": "anthropic-workspace-id: the provider entry's key decides the workspace",
    "user_profile_id": "anthropic-user-profile-id",
}


def fields(params: type) -> set[str]:
    return set(typing.get_type_hints(params))


def test_every_chat_completions_field_is_known() -> None:
    missing = fields(CompletionCreateParamsBase) - CHAT_PARAMS - set(CHAT_EXCEPTIONS)
    assert not missing, f"add to providers/params.py CHAT_PARAMS and the capability matrix: {sorted(missing)}"


def test_every_known_chat_field_has_a_capability_row() -> None:
    rows = {row.param for row in REQUEST_ROWS}
    assert CHAT_PARAMS - {"model", "messages", "stream"} <= rows


def test_every_responses_field_is_known() -> None:
    missing = fields(ResponseCreateParamsBase) - KNOWN_FIELDS - set(RESPONSES_EXCEPTIONS)
    assert not missing, f"decide in http/responses/request.py: {sorted(missing)}"


def test_every_input_token_count_field_is_decided() -> None:
    # POST /v1/responses/input_tokens: a new field is counted, refused by name or unknown, never
    # dropped in silence (request.translate_count).
    assert fields(InputTokenCountParams) == COUNT_FIELDS


@pytest.mark.parametrize("name", sorted(RESPONSES_EXCEPTIONS))
def test_the_responses_exceptions_are_refused_by_name(name: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_fields({"model": "m", "input": "hi", name: {}})
    assert refused.value.param == name


def test_every_anthropic_messages_field_is_decided() -> None:
    missing = fields(MessageCreateParamsBase) - ACCEPTED - set(REFUSED) - set(ANTHROPIC_HEADERS)
    assert not missing, f"decide in http/anthropic/request.py: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_the_refused_anthropic_fields_are_refused_by_name(name: str) -> None:
    body = b'{"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}], "%s": {}}'
    with pytest.raises(InvalidRequest) as refused:
        messages_request(body % name.encode())
    assert refused.value.param == name and REFUSED[name] in refused.value.message


# -- Anthropic content blocks ---------------------------------------------------------------------


def typed_dicts(annotation: object) -> list[type]:
    """The TypedDicts a type annotation names, through Union, Iterable, Optional and Required."""
    if typing_extensions.is_typeddict(annotation):
        return [typing.cast(type, annotation)]
    found: list[type] = []
    for arg in typing.get_args(annotation):
        found += [t for t in typed_dicts(arg) if t not in found]
    return found


def literal_type(block: type) -> str:
    """The ``type`` Literal of a block param (``Required[Literal["text"]]``)."""
    hint = typing.get_type_hints(block)["type"]
    while typing.get_origin(hint) is not typing.Literal:
        (hint,) = typing.get_args(hint)
    (kind,) = typing.get_args(hint)
    return str(kind)


MESSAGE_BLOCKS = {literal_type(b): b for m in (UserMessageParam, AssistantMessageParam)
                  for b in typed_dicts(typing.get_type_hints(m)["content"])}
RESULT_BLOCKS = {literal_type(b): b
                 for b in typed_dicts(typing.get_type_hints(ToolResultBlockParam)["content"])}


@pytest.mark.parametrize("kind", sorted(set(MESSAGE_BLOCKS) & set(BLOCK_KEYS)))
def test_every_key_of_a_decoded_block_is_decided(kind: str) -> None:
    missing = fields(MESSAGE_BLOCKS[kind]) - BLOCK_KEYS[kind]
    assert not missing, f"decide in http/anthropic/content.py ({kind} blocks): {sorted(missing)}"


@pytest.mark.parametrize("kind", sorted(set(MESSAGE_BLOCKS) - set(BLOCK_KEYS)))
@pytest.mark.parametrize("role", ["user", "assistant"])
def test_every_other_message_block_type_is_refused_by_name(kind: str, role: str) -> None:
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": kind}]}]
    if role == "user":
        conversation = [{"role": "user", "content": [{"type": kind}]}]
    with pytest.raises(InvalidRequest) as refused:
        messages(conversation, [])
    assert refused.value.param == f"messages.{len(conversation) - 1}.content.0.type"


@pytest.mark.parametrize("kind", sorted(RESULT_BLOCKS))
def test_every_tool_result_block_type_is_decided(kind: str) -> None:
    if kind in BLOCK_KEYS:
        assert fields(RESULT_BLOCKS[kind]) <= BLOCK_KEYS[kind]
        return
    conversation = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user",
         "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": kind}]}]},
    ]
    with pytest.raises(InvalidRequest) as refused:
        messages(conversation, [])
    assert refused.value.param == "messages.2.content.0.content.0.type"


# -- Chat Completions: the keys inside messages, content parts, tools and formats ------------------

# The top-level fields whose inner keys are looked at here. The others (audio, prediction,
# web_search_options, functions, function_call, moderation, prompt_cache_options) have a row of
# their own that decides the whole value: passed by OpenAI-shaped providers, refused elsewhere.
NESTED_CHAT_FIELDS = ("messages", "tools", "tool_choice", "response_format", "stream_options")

_CONTENT = "validated (http/validate.py); text, or parts each translated or refused by type"
_ROLE = "validated; each adapter maps the role or refuses it (function: refused, use tool messages)"
_TYPE = "the part, call, tool or format type: each adapter translates the types it has, refuses the rest"
_CUSTOM = "custom (free-form) tools: refused as a tools[i].type by every translating adapter"

# ``TypedDict.key`` -> "row:<capability row>" or why the key is decided without a row of its own.
CHAT_NESTED: dict[str, str] = {
    # Messages.
    "ChatCompletionDeveloperMessageParam.content": _CONTENT,
    "ChatCompletionDeveloperMessageParam.name": "row:messages.name",
    "ChatCompletionDeveloperMessageParam.role": _ROLE,
    "ChatCompletionSystemMessageParam.content": _CONTENT,
    "ChatCompletionSystemMessageParam.name": "row:messages.name",
    "ChatCompletionSystemMessageParam.role": _ROLE,
    "ChatCompletionUserMessageParam.content": _CONTENT,
    "ChatCompletionUserMessageParam.name": "row:messages.name",
    "ChatCompletionUserMessageParam.role": _ROLE,
    "ChatCompletionAssistantMessageParam.audio": "row:messages.audio",
    "ChatCompletionAssistantMessageParam.content": _CONTENT,
    "ChatCompletionAssistantMessageParam.function_call": "row:messages.function_call",
    "ChatCompletionAssistantMessageParam.name": "row:messages.name",
    # An earlier reply's refusal: translated types send it as the turn's text (providers/turns.py).
    "ChatCompletionAssistantMessageParam.refusal": "translated: the assistant turn's text",
    "ChatCompletionAssistantMessageParam.role": _ROLE,
    "ChatCompletionAssistantMessageParam.tool_calls": "validated; translated to each provider's calls",
    "ChatCompletionToolMessageParam.content": _CONTENT,
    "ChatCompletionToolMessageParam.role": _ROLE,
    "ChatCompletionToolMessageParam.tool_call_id": "validated; pairs the result with its call",
    "ChatCompletionFunctionMessageParam.content": "role function: refused by translating adapters",
    "ChatCompletionFunctionMessageParam.name": "role function: refused by translating adapters",
    "ChatCompletionFunctionMessageParam.role": _ROLE,
    "Audio.id": "row:messages.audio",
    "FunctionCall.arguments": "row:messages.function_call",
    "FunctionCall.name": "row:messages.function_call",
    # Tool calls (Function: also tool_choice's {name}).
    "ChatCompletionMessageFunctionToolCallParam.function": "validated; translated",
    "ChatCompletionMessageFunctionToolCallParam.id": "validated; translated (the call id)",
    "ChatCompletionMessageFunctionToolCallParam.type": _TYPE,
    "Function.arguments": "validated (a JSON string); translated to the provider's arguments",
    "Function.name": "validated; translated",
    "ChatCompletionMessageCustomToolCallParam.custom": "row:messages.tool_calls:custom",
    "ChatCompletionMessageCustomToolCallParam.id": "row:messages.tool_calls:custom",
    "ChatCompletionMessageCustomToolCallParam.type": "row:messages.tool_calls:custom",
    "Custom.input": "row:messages.tool_calls:custom",
    # Custom: a custom call's {name, input}, a custom tool's {name, description, format} and a
    # custom tool choice's {name} (one TypedDict name): all refused with their custom type.
    "Custom.name": "row:messages.tool_calls:custom",
    # Content parts.
    "ChatCompletionContentPartTextParam.text": "validated; translated",
    "ChatCompletionContentPartTextParam.type": _TYPE,
    "ChatCompletionContentPartTextParam.prompt_cache_breakpoint": "row:prompt_cache_breakpoint",
    "ChatCompletionContentPartImageParam.image_url": "validated; translated or refused by each adapter",
    "ChatCompletionContentPartImageParam.type": _TYPE,
    "ChatCompletionContentPartImageParam.prompt_cache_breakpoint": "row:prompt_cache_breakpoint",
    "ImageURL.url": "validated; a data URL as bytes, an http(s) URL fetched or passed per adapter",
    "ImageURL.detail": "row:image_url.detail:low",  # "high" and "auto" ask for nothing
    "ChatCompletionContentPartInputAudioParam.input_audio": "translated by Gemini, refused by type elsewhere",
    "ChatCompletionContentPartInputAudioParam.type": _TYPE,
    "ChatCompletionContentPartInputAudioParam.prompt_cache_breakpoint": "row:prompt_cache_breakpoint",
    "InputAudio.data": "translated by Gemini (inlineData.data)",
    "InputAudio.format": "translated by Gemini (inlineData.mimeType)",
    "File.file": "translated (Anthropic: document; Gemini: inlineData) or refused by type",
    "File.type": _TYPE,
    "File.prompt_cache_breakpoint": "row:prompt_cache_breakpoint",
    "FileFile.file_data": "translated where file parts are (a data URL)",
    "FileFile.file_id": "an OpenAI Files API id: refused by every translating adapter",
    "FileFile.filename": "translated: Anthropic document title, Gemini inlineData.displayName",
    "PromptCacheBreakpoint.mode": "row:prompt_cache_breakpoint",
    "PromptCacheBreakpoint.ttl": "row:prompt_cache_breakpoint",
    "FilePromptCacheBreakpoint.mode": "row:prompt_cache_breakpoint",
    "FilePromptCacheBreakpoint.ttl": "row:prompt_cache_breakpoint",
    "ChatCompletionContentPartRefusalParam.refusal": "translated: text of the assistant turn",
    "ChatCompletionContentPartRefusalParam.type": _TYPE,
    # Tools.
    "ChatCompletionFunctionToolParam.function": "row:tools",
    "ChatCompletionFunctionToolParam.type": _TYPE,
    "FunctionDefinition.name": "row:tools",
    "FunctionDefinition.description": "row:tools",
    "FunctionDefinition.parameters": "row:tools",
    "FunctionDefinition.strict": "row:tools.strict",
    "ChatCompletionCustomToolParam.custom": _CUSTOM,
    "ChatCompletionCustomToolParam.type": _CUSTOM,
    "Custom.description": _CUSTOM,
    "Custom.format": _CUSTOM,
    "CustomFormatText.type": _CUSTOM,
    "CustomFormatGrammar.grammar": _CUSTOM,
    "CustomFormatGrammar.type": _CUSTOM,
    "CustomFormatGrammarGrammar.definition": _CUSTOM,
    "CustomFormatGrammarGrammar.syntax": _CUSTOM,
    # Tool choice.
    "ChatCompletionAllowedToolChoiceParam.allowed_tools": "row:tool_choice",
    "ChatCompletionAllowedToolChoiceParam.type": "row:tool_choice",
    "ChatCompletionAllowedToolsParam.mode": "row:tool_choice",
    "ChatCompletionAllowedToolsParam.tools": "row:tool_choice",
    "ChatCompletionNamedToolChoiceParam.function": "row:tool_choice",
    "ChatCompletionNamedToolChoiceParam.type": "row:tool_choice",
    "ChatCompletionNamedToolChoiceCustomParam.custom": _CUSTOM,
    "ChatCompletionNamedToolChoiceCustomParam.type": _CUSTOM,
    # Response formats.
    "ResponseFormatText.type": "row:response_format",
    "ResponseFormatJSONObject.type": "row:response_format",
    "ResponseFormatJSONSchema.type": "row:response_format",
    "ResponseFormatJSONSchema.json_schema": "row:response_format",
    "JSONSchema.schema": "row:response_format",
    "JSONSchema.strict": "translated per adapter (docs/providers.md, response_format: json_schema): "
                         "Anthropic's native mode, Gemini's strict schema check; Bedrock's and Cohere's "
                         "structured output always follows the schema",
    "JSONSchema.description": "row:response_format.json_schema.description",
    # A label naming the format: the answer does not depend on it (Bedrock sends it, others have none).
    "JSONSchema.name": "validated (required); meaning-free where the provider has no name for it",
    # Stream options.
    "ChatCompletionStreamOptionsParam.include_usage": "row:stream_options",
    # Random padding OpenAI adds to stream events against length side channels: the streams of
    # the translated types never carry it, so asking for none (false) is what they give.
    "ChatCompletionStreamOptionsParam.include_obfuscation": "meaning-free on translated streams",
}


def nested_keys(annotation: object, found: set[str]) -> None:
    """``TypedDict.key`` for every key of every TypedDict ``annotation`` reaches."""
    for td in typed_dicts(annotation):
        keys = {f"{td.__name__}.{key}" for key in typing.get_type_hints(td)}
        if keys <= found:
            continue
        found |= keys
        for hint in typing.get_type_hints(td).values():
            nested_keys(hint, found)


def chat_nested_keys() -> set[str]:
    found: set[str] = set()
    hints = typing.get_type_hints(CompletionCreateParamsBase)
    for name in NESTED_CHAT_FIELDS:
        nested_keys(hints[name], found)
    return found


def test_every_nested_chat_key_is_decided() -> None:
    found = chat_nested_keys()
    missing = found - set(CHAT_NESTED)
    assert not missing, f"decide (a capability row, a translation or a refusal): {sorted(missing)}"
    assert not set(CHAT_NESTED) - found, "keys the installed SDK no longer has"


def test_the_rows_the_nested_chat_keys_name_exist() -> None:
    rows = {row.name for row in REQUEST_ROWS}
    named = {reason[4:] for reason in CHAT_NESTED.values() if reason.startswith("row:")}
    assert named <= rows, sorted(named - rows)


# -- the Gemini inbound API (google-genai's pydantic models) ---------------------------------------

_UNKNOWN = "not known: refused as an unknown name (400 naming it), as Google answers"
_CLIENT = "an option of the SDK itself, never sent"

# The request-meaningful models of the SDK: their fields (lowerCamelCase, as the wire spells them)
# against the names the decoder knows. Each known name is translated, refused by name, or checked
# and not sent for a reason (http/gemini/request.py NOT_SENT).
GEMINI_MODELS: dict[str, tuple[type, frozenset[str]]] = {
    "GenerationConfig": (genai.GenerationConfig, gemini_request._GENERATION),
    "ThinkingConfig": (genai.ThinkingConfig, gemini_request._THINKING),
    "Tool": (genai.Tool, gemini_request._TOOL),
    "FunctionDeclaration": (genai.FunctionDeclaration, gemini_request._DECLARATION),
    "ToolConfig": (genai.ToolConfig, gemini_request._TOOL_CONFIG),
    "FunctionCallingConfig": (genai.FunctionCallingConfig, gemini_request._CALLING),
    "SafetySetting": (genai.SafetySetting, gemini_request._SAFETY),
    "Content": (genai.Content, gemini_content._CONTENT),
    "Part": (genai.Part, gemini_content._PART),
    "Blob": (genai.Blob, gemini_content._BLOB),
    "FileData": (genai.FileData, gemini_content._FILE),
    "FunctionCall": (genai.FunctionCall, gemini_content._CALL),
    "FunctionResponse": (genai.FunctionResponse, gemini_content._RESPONSE),
    "PartMediaResolution": (genai.PartMediaResolution, gemini_content._MEDIA_RESOLUTION),
    # The SDK's one config object: generationConfig's fields and the request's own (tools,
    # systemInstruction, safetySettings, cachedContent, labels, ...).
    "GenerateContentConfig": (genai.GenerateContentConfig,
                              gemini_request._GENERATION | gemini_request._REQUEST),
}

GEMINI_EXCEPTIONS: dict[str, dict[str, str]] = {
    "GenerationConfig": dict.fromkeys(
        ["audioTranscriptionConfig", "enableAffectiveDialog", "modelSelectionConfig", "responseFormat",
         "routingConfig", "translationConfig"], _UNKNOWN),
    "Tool": dict.fromkeys(["exaAiSearch", "mcpServers"], _UNKNOWN),
    "Part": dict.fromkeys(["audioMetadata", "audioTranscription", "documentMetadata", "mediaProcessing",
                           "speechMetadata", "spreadsheetMetadata"], _UNKNOWN),
    "GenerateContentConfig": {
        **dict.fromkeys(["httpOptions", "automaticFunctionCalling", "automaticContinuation",
                         "shouldReturnHttpResponse"], _CLIENT),
        **dict.fromkeys(["audioTranscriptionConfig", "generationOutputConfig", "modelArmorConfig",
                         "modelSelectionConfig", "routingConfig"], _UNKNOWN),
    },
}
# Where a field of each model goes in a request body, to probe a refusal.
_PLACES: dict[str, Callable[[str], dict[str, Any]]] = {
    "GenerationConfig": lambda name: {"generationConfig": {name: {}}},
    "Tool": lambda name: {"tools": [{name: {}}]},
    "Part": lambda name: {"contents": [{"role": "user", "parts": [{"text": "hi", name: {}}]}]},
    "GenerateContentConfig": lambda name: {name: {}},
}


@pytest.mark.parametrize("model", sorted(GEMINI_MODELS))
def test_every_gemini_field_is_decided(model: str) -> None:
    cls, known = GEMINI_MODELS[model]
    given = {camel(name) for name in typing.cast(Any, cls).model_fields}
    missing = given - known - set(GEMINI_EXCEPTIONS.get(model, {}))
    assert not missing, f"decide in http/gemini/ (translate, refuse by name, or NOT_SENT): {sorted(missing)}"


@pytest.mark.parametrize(("model", "name"), [(m, n) for m, names in sorted(GEMINI_EXCEPTIONS.items())
                                             for n, why in sorted(names.items()) if why == _UNKNOWN])
def test_the_unknown_gemini_fields_are_refused_by_name(model: str, name: str) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], **_PLACES[model](name)}
    with pytest.raises(InvalidRequest) as refused:
        gemini_request.generate_request(orjson.dumps(body), "gemini", stream=False)
    assert refused.value.param is not None and refused.value.param.endswith(name)


@pytest.mark.parametrize("where", ["generationConfig", "part"])
def test_a_low_gemini_media_resolution_is_a_low_image_detail(where: str) -> None:
    image = {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    body: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": "what is it?"}, image]}]}
    if where == "part":
        image["mediaResolution"] = {"level": "MEDIA_RESOLUTION_LOW"}
    else:
        body["generationConfig"] = {"mediaResolution": "MEDIA_RESOLUTION_LOW"}
    request = gemini_request.generate_request(orjson.dumps(body), "gemini", stream=False).request
    assert request["messages"][0]["content"][1]["image_url"]["detail"] == "low"


def test_every_gemini_field_not_sent_is_a_known_one() -> None:
    known = set().union(*(names for _, names in GEMINI_MODELS.values()))
    named = {path.rsplit(".", 1)[-1] for path in gemini_request.NOT_SENT}
    assert named <= known, sorted(named - known)


# -- the Responses API's nested input (openai.types.responses) -------------------------------------


def literal_types(td: type) -> set[str]:
    """Every value of a TypedDict's ``type`` Literal, through Required / Optional / Union."""
    found: set[str] = set()

    def walk(hint: object) -> None:
        if typing.get_origin(hint) is typing.Literal:
            found.update(str(v) for v in typing.get_args(hint))
        for arg in () if typing.get_origin(hint) is typing.Literal else typing.get_args(hint):
            walk(arg)

    walk(typing.get_type_hints(td)["type"])
    return found


_RESPONSES_HINTS = typing.get_type_hints(ResponseCreateParamsBase)
# The input item types a translated deployment takes (http/responses/request.py input_messages).
TRANSLATED_ITEMS = frozenset({"message", "function_call", "function_call_output", "reasoning", "mcp_call",
                              "mcp_list_tools"})
# type -> its TypedDicts (three for "message": the easy form, the input form, an earlier output).
RESPONSES_ITEMS: dict[str, list[type]] = {}
for _item in typed_dicts(_RESPONSES_HINTS["input"]):
    for _kind in literal_types(_item):
        RESPONSES_ITEMS.setdefault(_kind, []).append(_item)
RESPONSES_TOOLS = {kind: td for td in typed_dicts(_RESPONSES_HINTS["tools"]) for kind in literal_types(td)}
RESPONSES_TOOL_CHOICES = {kind for td in typed_dicts(_RESPONSES_HINTS["tool_choice"])
                          for kind in literal_types(td)}

_SENT = "translated"
_ITEM_TYPE = "the item, part, tool or format type: the translated types are read, the others refused by type"
_NOT_SENT = "set when an item comes back from the API: describes the item, not the request; not sent"
_PHASE = ("a label OpenAI's own models read on their earlier assistant turns (commentary or final "
          "answer); the text is sent, the label has no chat counterpart: not sent")
_BREAKPOINT = "translated: the chat part's prompt_cache_breakpoint (row:prompt_cache_breakpoint)"
_FILE = "input_file parts: refused by type (input[i].content[j].type)"
_OUTPUT_PART = "a function_call_output part other than text or an image: refused (input[i].output[j])"
_CALLER = "refused unless {type: direct} (input[i].caller): programmatic tool calls"
_REFUSED_KEY = "refused on translated deployments, by its path, unless at its default; native: sent"
_REASONING_ITEM = "reasoning items are dropped whole: a model's own reasoning is not sent to another"
_MCP_LISTING = "mcp_list_tools items (the tool loop's output, replayed) are accepted whole, not sent"
_ANNOTATION = "an earlier answer's citations (output_text.annotations): not sent, the text is"
_LOGPROB = "an earlier answer's logprobs (output_text.logprobs): not sent, the text is"

# ``TypedDict.key`` -> how a translated deployment decides it. Keys below one decided whole
# (RESPONSES_WHOLE) are not walked into.
RESPONSES_NESTED: dict[str, str] = {
    # Messages: the SDK's easy form, the input form and an earlier output (all type "message").
    "EasyInputMessageParam.content": "translated: text, or parts each translated or refused by type",
    "EasyInputMessageParam.phase": _PHASE,
    "EasyInputMessageParam.role": "translated (developer -> system)",
    "EasyInputMessageParam.type": _ITEM_TYPE,
    "Message.content": "translated: parts each translated or refused by type",
    "Message.role": "translated (developer -> system)",
    "Message.status": _NOT_SENT,
    "Message.type": _ITEM_TYPE,
    "ResponseOutputMessageParam.content": "translated: output_text and refusal parts, as text",
    "ResponseOutputMessageParam.id": "checked (unique, as OpenAI); an item label: not sent",
    "ResponseOutputMessageParam.phase": _PHASE,
    "ResponseOutputMessageParam.role": "translated (assistant)",
    "ResponseOutputMessageParam.status": _NOT_SENT,
    "ResponseOutputMessageParam.type": _ITEM_TYPE,
    # Parts.
    "ResponseInputTextParam.text": _SENT,
    "ResponseInputTextParam.type": _ITEM_TYPE,
    "ResponseInputTextParam.prompt_cache_breakpoint": _BREAKPOINT,
    "PromptCacheBreakpoint.mode": _BREAKPOINT,
    "PromptCacheBreakpoint.ttl": _BREAKPOINT,
    "ResponseInputImageParam.detail": "translated: image_url.detail (row:image_url.detail:low)",
    "ResponseInputImageParam.file_id": "refused (input[i].content[j].file_id): an OpenAI Files API id",
    "ResponseInputImageParam.image_url": "translated: image_url.url",
    "ResponseInputImageParam.prompt_cache_breakpoint": _BREAKPOINT,
    "ResponseInputImageParam.type": _ITEM_TYPE,
    **{f"ResponseInputFileParam.{key}": _FILE for key in (
        "detail", "file_data", "file_id", "file_url", "filename", "prompt_cache_breakpoint", "type")},
    "ResponseOutputTextParam.annotations": _ANNOTATION,
    "ResponseOutputTextParam.logprobs": _LOGPROB,
    "ResponseOutputTextParam.text": _SENT,
    "ResponseOutputTextParam.type": _ITEM_TYPE,
    "ResponseOutputRefusalParam.refusal": "translated: the assistant turn's text",
    "ResponseOutputRefusalParam.type": _ITEM_TYPE,
    # Function calls and their outputs.
    "ResponseFunctionToolCallParam.arguments": "translated: the tool call's arguments",
    "ResponseFunctionToolCallParam.async": _REFUSED_KEY,
    "ResponseFunctionToolCallParam.call_id": "translated: the tool call's id",
    "ResponseFunctionToolCallParam.caller": _CALLER,
    "ResponseFunctionToolCallParam.id": _NOT_SENT,
    "ResponseFunctionToolCallParam.name": "translated: the tool call's function name",
    "ResponseFunctionToolCallParam.namespace": _REFUSED_KEY,
    "ResponseFunctionToolCallParam.status": _NOT_SENT,
    "ResponseFunctionToolCallParam.type": _ITEM_TYPE,
    "CallerDirect.type": _CALLER,
    "CallerProgram.caller_id": _CALLER,
    "CallerProgram.type": _CALLER,
    "FunctionCallOutput.call_id": "translated: the tool message's tool_call_id",
    "FunctionCallOutput.caller": _CALLER,
    "FunctionCallOutput.id": _NOT_SENT,
    # The call it answers (call_id) names the function already.
    "FunctionCallOutput.name": "not sent: the call with this call_id names the function",
    "FunctionCallOutput.namespace": _REFUSED_KEY,
    "FunctionCallOutput.output": "translated: the tool message's content (text parts)",
    "FunctionCallOutput.status": _NOT_SENT,
    "FunctionCallOutput.type": _ITEM_TYPE,
    "FunctionCallOutputCallerDirect.type": _CALLER,
    "FunctionCallOutputCallerProgram.caller_id": _CALLER,
    "FunctionCallOutputCallerProgram.type": _CALLER,
    "ResponseInputTextContentParam.prompt_cache_breakpoint": _BREAKPOINT,
    "ResponseInputTextContentParam.text": "translated: the tool message's text",
    "ResponseInputTextContentParam.type": _ITEM_TYPE,
    # An image of a function_call_output: an image_url part of the user message after the tool
    # messages (a tool message carries text only).
    "ResponseInputImageContentParam.detail": "translated: image_url.detail (row:image_url.detail:low)",
    "ResponseInputImageContentParam.file_id": "refused (input[i].output[j].file_id): an OpenAI Files API id",
    "ResponseInputImageContentParam.image_url": "translated: image_url.url",
    "ResponseInputImageContentParam.prompt_cache_breakpoint": _BREAKPOINT,
    "ResponseInputImageContentParam.type": _ITEM_TYPE,
    **{f"ResponseInputFileContentParam.{key}": _OUTPUT_PART for key in (
        "detail", "file_data", "file_id", "file_url", "filename", "prompt_cache_breakpoint", "type")},
    # Reasoning items.
    **{f"ResponseReasoningItemParam.{key}": _REASONING_ITEM for key in (
        "content", "encrypted_content", "id", "status", "summary", "type")},
    # The gateway's tool loop's items, replayed (mcp/offer.py replayed()).
    **{f"McpListTools.{key}": _MCP_LISTING for key in ("error", "id", "server_label", "tools", "type")},
    "McpCall.id": "translated: the assistant tool call's id and the tool message's tool_call_id",
    "McpCall.server_label": "translated: the tool call's function name <server_label>__<name>",
    "McpCall.name": "translated: the tool call's function name <server_label>__<name>",
    "McpCall.arguments": "translated: the tool call's arguments",
    "McpCall.output": "translated: the tool message's content",
    "McpCall.error": "translated whole: the tool message's content ('Error: ...')",
    "McpCall.approval_request_id": _NOT_SENT,
    "McpCall.status": _NOT_SENT,
    "McpCall.type": _ITEM_TYPE,
    # Function tools (the other tool types are refused by type).
    "FunctionToolParam.allowed_callers": _REFUSED_KEY + " (['direct'])",
    "FunctionToolParam.async": _REFUSED_KEY,
    "FunctionToolParam.defer_loading": _REFUSED_KEY + ": tool search is not translated",
    "FunctionToolParam.description": "translated",
    "FunctionToolParam.name": "translated",
    "FunctionToolParam.output_schema": _REFUSED_KEY,
    "FunctionToolParam.parameters": "translated",
    "FunctionToolParam.strict": "translated as sent (docs/api-responses.md, function tools' strict)",
    "FunctionToolParam.type": _ITEM_TYPE,
    # text and reasoning.
    "ResponseTextConfigParam.format": "translated: response_format",
    "ResponseTextConfigParam.verbosity": "translated: verbosity, a hint left out where refused "
    "(docs/api-responses.md)",
    "ResponseFormatText.type": _ITEM_TYPE,
    "ResponseFormatJSONObject.type": _ITEM_TYPE,
    "ResponseFormatTextJSONSchemaConfigParam.description": "translated: json_schema.description",
    "ResponseFormatTextJSONSchemaConfigParam.name": "translated: json_schema.name",
    "ResponseFormatTextJSONSchemaConfigParam.schema": "translated: json_schema.schema",
    "ResponseFormatTextJSONSchemaConfigParam.strict": "translated: json_schema.strict",
    "ResponseFormatTextJSONSchemaConfigParam.type": _ITEM_TYPE,
    "Reasoning.context": _REFUSED_KEY + ": which earlier reasoning the model sees",
    "Reasoning.effort": "translated: reasoning_effort (row:reasoning_effort)",
    "Reasoning.generate_summary": "accepted, not sent (as summary)",
    "Reasoning.mode": _REFUSED_KEY + ": OpenAI's execution mode",
    "Reasoning.summary": "accepted, not sent (docs/api-responses.md): translated answers have no summary",
}
# Keys decided with their whole value: the TypedDicts inside them are not walked.
RESPONSES_WHOLE = {"ResponseOutputTextParam.annotations", "ResponseOutputTextParam.logprobs",
                   "McpCall.error",
                   *(key for key, why in RESPONSES_NESTED.items() if why in (_REASONING_ITEM, _MCP_LISTING))}


def responses_keys(annotation: object, found: set[str]) -> None:
    """``TypedDict.key`` of every TypedDict ``annotation`` reaches, not below RESPONSES_WHOLE."""
    for td in typed_dicts(annotation):
        hints = typing.get_type_hints(td)
        keys = {f"{td.__name__}.{key}" for key in hints}
        if keys <= found:
            continue
        found |= keys
        for key, hint in hints.items():
            if f"{td.__name__}.{key}" not in RESPONSES_WHOLE:
                responses_keys(hint, found)


def responses_nested_keys() -> set[str]:
    found: set[str] = set()
    for kind in TRANSLATED_ITEMS:
        for td in RESPONSES_ITEMS[kind]:
            responses_keys(td, found)
    for name in ("text", "reasoning"):
        responses_keys(_RESPONSES_HINTS[name], found)
    responses_keys(RESPONSES_TOOLS["function"], found)
    return found


def test_every_nested_responses_key_is_decided() -> None:
    found = responses_nested_keys()
    missing = found - set(RESPONSES_NESTED)
    assert not missing, f"decide in http/responses/request.py (translate or refuse): {sorted(missing)}"
    assert not set(RESPONSES_NESTED) - found, "keys the installed SDK no longer has"


def _responses(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "input": "hi", **fields}


_CALL = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
_RESULT = {"type": "function_call_output", "call_id": "c1", "output": "ok"}
_FUNCTION = {"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": None}
# Each key refused on translated deployments: (a request with it, the param named, its default).
RESPONSES_REFUSED_KEYS: dict[str, tuple[dict[str, Any], str, dict[str, Any]]] = {
    "ResponseFunctionToolCallParam.namespace": (
        _responses(input=[{**_CALL, "namespace": "crm"}, _RESULT]), "input[0].namespace",
        _responses(input=[{**_CALL, "namespace": None}, _RESULT])),
    "ResponseFunctionToolCallParam.caller": (
        _responses(input=[{**_CALL, "caller": {"type": "program", "caller_id": "p1"}}, _RESULT]),
        "input[0].caller", _responses(input=[{**_CALL, "caller": {"type": "direct"}}, _RESULT])),
    "ResponseFunctionToolCallParam.async": (
        _responses(input=[{**_CALL, "async": True}, _RESULT]), "input[0].async",
        _responses(input=[{**_CALL, "async": False}, _RESULT])),
    "FunctionCallOutput.namespace": (
        _responses(input=[_CALL, {**_RESULT, "namespace": "crm"}]), "input[1].namespace",
        _responses(input=[_CALL, {**_RESULT, "namespace": None}])),
    "FunctionCallOutput.caller": (
        _responses(input=[_CALL, {**_RESULT, "caller": {"type": "program", "caller_id": "p1"}}]),
        "input[1].caller", _responses(input=[_CALL, {**_RESULT, "caller": {"type": "direct"}}])),
    "FunctionToolParam.allowed_callers": (
        _responses(tools=[{**_FUNCTION, "allowed_callers": ["programmatic"]}]), "tools[0].allowed_callers",
        _responses(tools=[{**_FUNCTION, "allowed_callers": ["direct"]}])),
    "FunctionToolParam.async": (
        _responses(tools=[{**_FUNCTION, "async": True}]), "tools[0].async",
        _responses(tools=[{**_FUNCTION, "async": False}])),
    "FunctionToolParam.defer_loading": (
        _responses(tools=[{**_FUNCTION, "defer_loading": True}]), "tools[0].defer_loading",
        _responses(tools=[{**_FUNCTION, "defer_loading": False}])),
    "FunctionToolParam.output_schema": (
        _responses(tools=[{**_FUNCTION, "output_schema": {"type": "object"}}]), "tools[0].output_schema",
        _responses(tools=[{**_FUNCTION, "output_schema": None}])),
    "Reasoning.context": (
        _responses(reasoning={"context": "all_turns"}), "reasoning.context",
        _responses(reasoning={"context": None})),
    "Reasoning.mode": (_responses(reasoning={"mode": "pro"}), "reasoning.mode", _responses(reasoning={})),
}


def test_every_refused_responses_key_has_a_probe() -> None:
    refused = {key for key, why in RESPONSES_NESTED.items() if why.startswith(_REFUSED_KEY)}
    refused |= {key for key, why in RESPONSES_NESTED.items() if why == _CALLER and key.endswith(".caller")}
    assert refused == set(RESPONSES_REFUSED_KEYS)


@pytest.mark.parametrize("key", sorted(RESPONSES_REFUSED_KEYS))
def test_a_refused_responses_key_is_named_and_its_default_is_taken(key: str) -> None:
    body, param, default = RESPONSES_REFUSED_KEYS[key]
    with pytest.raises(UnsupportedParameter) as refused:
        responses_translate(body)
    assert refused.value.param == param
    responses_translate(default)
    # A native deployment gets it as sent; the canonical request is the rest (api.py).
    responses_translate(without_unsupported(body))


@pytest.mark.parametrize("kind", sorted(set(RESPONSES_ITEMS) - TRANSLATED_ITEMS))
def test_every_other_responses_item_type_is_refused_by_type(kind: str) -> None:
    with pytest.raises(UnsupportedParameter) as refused:
        responses_translate(_responses(input=[{"type": "message", "role": "user", "content": "hi"},
                                              {"type": kind}]))
    assert refused.value.param == "input[1].type" and kind in refused.value.message


@pytest.mark.parametrize("kind", sorted(set(RESPONSES_TOOLS) - {"function", "mcp"}))
def test_every_other_responses_tool_type_is_refused_by_type(kind: str) -> None:
    # mcp: run by the gateway's tool loop against its registered servers (mcp/tool_spec.py).
    with pytest.raises(UnsupportedParameter) as refused:
        responses_translate(_responses(tools=[{"type": kind}]))
    assert refused.value.param == "tools[0].type" and kind in refused.value.message


@pytest.mark.parametrize("kind", sorted(RESPONSES_TOOL_CHOICES - {"function", "allowed_tools"}))
def test_every_other_responses_tool_choice_is_refused_by_type(kind: str) -> None:
    with pytest.raises(UnsupportedParameter) as refused:
        responses_translate(_responses(tools=[_FUNCTION], tool_choice={"type": kind}))
    assert refused.value.param == "tool_choice.type"


_MCP_CALL = {"id": "mcp_1", "type": "mcp_call", "server_label": "notes", "name": "read note",
             "arguments": '{"id": 1}', "output": "text", "error": None, "status": "completed",
             "approval_request_id": None}


@pytest.mark.parametrize(("error", "fed_back"), [
    (None, "text"),
    ({"type": "mcp_tool_execution_error", "content": []}, "Error: text"),
    ({"type": "mcp_protocol_error", "code": -32602, "message": "bad arguments"}, "Error: bad arguments"),
    ({"type": "http_error", "code": 503, "message": "down"}, "Error: down"),
])
def test_a_replayed_mcp_call_is_the_loops_call_and_result(error: Any, fed_back: str) -> None:
    listing = {"id": "mcpl_1", "type": "mcp_list_tools", "server_label": "notes", "tools": [], "error": None}
    request = responses_translate(_responses(input=[
        {"role": "user", "content": "hi"}, listing, {**_MCP_CALL, "error": error}])).request
    assert request["messages"][1:] == [
        # The function name the loop offered (mcp/offer.py: <server>__<tool>, made safe).
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "mcp_1", "type": "function",
             "function": {"name": "notes__read_note", "arguments": '{"id": 1}'}}]},
        {"role": "tool", "tool_call_id": "mcp_1", "content": fed_back},
    ]


@pytest.mark.parametrize(("item", "param"), [
    ({**_MCP_CALL, "server_label": None}, "input[0].server_label"),
    ({**_MCP_CALL, "arguments": {"id": 1}}, "input[0].arguments"),
    ({**_MCP_CALL, "output": 3}, "input[0].output"),
    ({**_MCP_CALL, "error": "boom"}, "input[0].error"),
    ({"type": "mcp_list_tools", "tools": []}, "input[0].server_label"),
])
def test_a_bad_replayed_mcp_item_is_named(item: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        responses_translate(_responses(input=[item]))
    assert refused.value.param == param


def test_responses_allowed_tools_is_the_chat_form() -> None:
    choice = {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "f"}]}
    request = responses_translate(_responses(tools=[_FUNCTION], tool_choice=choice)).request
    assert request["tool_choice"] == {"type": "allowed_tools", "allowed_tools": {
        "mode": "auto", "tools": [{"type": "function", "function": {"name": "f"}}]}}


@pytest.mark.parametrize("effort", ["none", "minimal", "low", "medium", "high", "xhigh", "max"])
def test_every_sdk_reasoning_effort_is_carried(effort: str) -> None:
    request = responses_translate(_responses(reasoning={"effort": effort})).request
    assert request["reasoning_effort"] == effort


def test_a_responses_prompt_cache_breakpoint_is_the_chat_parts() -> None:
    mark = {"mode": "explicit", "ttl": "30m"}
    request = responses_translate(_responses(input=[
        {"role": "developer",
         "content": [{"type": "input_text", "text": "rules", "prompt_cache_breakpoint": mark}]},
        {"role": "user", "content": [{"type": "input_image", "image_url": "https://x.test/a.png",
                                      "detail": "original", "prompt_cache_breakpoint": mark}]},
        _CALL,
        {**_RESULT, "output": [{"type": "input_text", "text": "ok", "prompt_cache_breakpoint": mark}]},
    ])).request
    system, user, _, tool = request["messages"]
    assert system["content"] == [{"type": "text", "text": "rules", "prompt_cache_breakpoint": mark}]
    assert user["content"] == [{"type": "image_url", "prompt_cache_breakpoint": mark,
                                "image_url": {"url": "https://x.test/a.png", "detail": "original"}}]
    assert tool["content"] == [{"type": "text", "text": "ok", "prompt_cache_breakpoint": mark}]


@pytest.mark.parametrize("field", ["response", "responseJsonSchema"])
def test_a_gemini_function_return_schema_is_checked_and_not_sent(field: str) -> None:
    declaration = {"name": "f", field: {"type": "object"}}
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "tools": [{"functionDeclarations": [declaration]}]}
    request = gemini_request.generate_request(orjson.dumps(body), "gemini", stream=False).request
    assert request["tools"] == [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "properties": {}}}}]
    declaration[field] = ["object"] if field == "responseJsonSchema" else {"type": "RECORD"}  # no schema
    with pytest.raises(InvalidRequest) as refused:
        gemini_request.generate_request(orjson.dumps(body), "gemini", stream=False)
    assert refused.value.param is not None and refused.value.param.startswith(
        f"tools[0].functionDeclarations[0].{field}")


@pytest.mark.parametrize("enabled", [True, False])
def test_gemini_enhanced_civic_answers_are_the_canonical_extension(enabled: bool) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "generationConfig": {"enableEnhancedCivicAnswers": enabled}}
    request = gemini_request.generate_request(orjson.dumps(body), "gemini", stream=False).request
    assert request.get("enable_enhanced_civic_answers") is (True if enabled else None)
