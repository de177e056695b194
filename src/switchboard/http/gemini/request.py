"""Gemini ``GenerateContentRequest`` and ``CountTokensRequest`` -> the canonical chat request.

Reference: https://ai.google.dev/api/generate-content#request-body and
https://ai.google.dev/api/tokens#method:-models.counttokens.

    (path) models/{model}               -> model
    contents                            -> messages (see content.py)
    systemInstruction                   -> first message, role system
    tools[].functionDeclarations        -> tools (parameters converted from Gemini's Schema;
                                           parametersJsonSchema passed as written)
    toolConfig.functionCallingConfig    -> tool_choice: AUTO/VALIDATED "auto", ANY "required"
                                           (one allowed name: that function; several: tools
                                           narrowed to them; VALIDATED: tools narrowed to
                                           them), NONE "none"
    generationConfig.temperature, topP, topK, maxOutputTokens, stopSequences, candidateCount,
        presencePenalty, frequencyPenalty, seed -> temperature, top_p, top_k, max_completion_tokens, stop, n,
        presence_penalty, frequency_penalty, seed
    responseMimeType application/json   -> response_format json_object, or json_schema with
                                           responseSchema (converted) / responseJsonSchema
    thinkingConfig.thinkingBudget       -> thinking {enabled, budget_tokens} (0: disabled;
                                           -1, dynamic: left to the model)
    thinkingConfig.thinkingLevel        -> reasoning_effort (minimal, low, medium, high)
    thinkingConfig.includeThoughts      -> whether reasoning comes back as thought parts; sent to
                                           gemini and vertex upstreams as given (params.THOUGHTS)
    safetySettings                      -> safety_settings (the same list; sent to gemini and
                                           vertex upstreams, not sent elsewhere)
    mediaResolution LOW (also a part's) -> image_url.detail "low" on the images
    enableEnhancedCivicAnswers true     -> enable_enhanced_civic_answers (sent to gemini upstreams,
                                           refused by the others: capability matrix)
    labels, serviceTier, store, other mediaResolution levels,
        toolConfig.retrievalConfig      -> checked, then not sent (NOT_SENT says why)
Built-in Google tools, cachedContent, logprobs and non-text output modalities are a 400 naming
the field (a function's response / responseJsonSchema is checked, not sent: NOT_SENT); any
other field is the 400 Google answers for an unknown name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from switchboard.errors import InvalidRequest
from switchboard.http.gemini.content import contents, low_detail, system_text
from switchboard.http.gemini.enums import (
    HARM_BLOCK_METHODS,
    HARM_BLOCK_THRESHOLDS,
    HARM_CATEGORIES,
    MEDIA_RESOLUTIONS,
    SERVICE_TIERS,
)
from switchboard.http.gemini.fields import (
    JSON,
    array,
    boolean,
    enum,
    fail,
    fields,
    integer,
    join,
    number,
    string,
    unsupported,
    wrong_type,
)
from switchboard.http.gemini.schema import json_schema, plain_json_schema
from switchboard.http.gemini.sources import SYSTEM
from switchboard.http.openai_api import parse_object
from switchboard.http.sources import Source
from switchboard.providers.params import THOUGHTS

_REQUEST = frozenset({
    "model", "contents", "systemInstruction", "tools", "toolConfig", "safetySettings", "generationConfig",
    "cachedContent", "labels", "serviceTier", "store", "continuationToken",
})
_COUNT = frozenset({"contents", "generateContentRequest"})
_TOOL = frozenset({
    "functionDeclarations", "googleSearch", "googleSearchRetrieval", "codeExecution", "urlContext",
    "fileSearch", "computerUse", "googleMaps", "retrieval", "enterpriseWebSearch", "parallelAiSearch",
})
_DECLARATION = frozenset({
    "name", "description", "parameters", "parametersJsonSchema", "response", "responseJsonSchema", "behavior",
})
_TOOL_CONFIG = frozenset({"functionCallingConfig", "retrievalConfig", "includeServerSideToolInvocations"})
_CALLING = frozenset({"mode", "allowedFunctionNames", "streamFunctionCallArguments"})
_MODES = frozenset({"MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"})
_GENERATION = frozenset({
    "stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema", "responseModalities",
    "candidateCount", "maxOutputTokens", "temperature", "topP", "topK", "seed", "presencePenalty",
    "frequencyPenalty", "responseLogprobs", "logprobs", "enableEnhancedCivicAnswers", "speechConfig",
    "thinkingConfig", "imageConfig", "mediaResolution", "audioTimestamp",
})
_THINKING = frozenset({"includeThoughts", "thinkingBudget", "thinkingLevel"})
# thinkingLevel -> reasoning_effort; also how a refused level is told (providers/effort.py).
EFFORT_LEVELS = {"MINIMAL": "minimal", "LOW": "low", "MEDIUM": "medium", "HIGH": "high"}
_SAFETY = frozenset({"category", "threshold", "method"})
# Gemini's own rule for function names.
_FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$")
MAX_STOP_SEQUENCES = 5


# The fields accepted and not sent on, each with why nothing is lost (docs/api-gemini.md; the
# drift test tests/unit/test_sdk_params.py holds the installed google-genai SDK's fields against
# the known ones and these).
NOT_SENT: dict[str, str] = {
    "labels": "billing labels of the caller's Google project, not the gateway's",
    "serviceTier": "a price and latency tier (flex, priority) of Google's own capacity: the same answer",
    "store": "whether Google keeps the request: the gateway does not send it to Google's store",
    "generationConfig.mediaResolution": "LOW is translated; the others are Google's token budgets per image, "
                                        "which other providers set themselves",
    "toolConfig.retrievalConfig": "the location for Google's built-in search tools, which are refused",
    "tools[].functionDeclarations[].behavior": "blocking or not: a Live API notion, without effect here",
    "tools[].functionDeclarations[].response": "the function's return type: no provider but Google's has "
                                               "one; the result itself reaches the model in the "
                                               "functionResponse",
    "tools[].functionDeclarations[].responseJsonSchema": "as tools[].functionDeclarations[].response",
    "contents[].parts[].mediaResolution": "LOW is translated; numTokens and the other levels as for "
                                          "generationConfig.mediaResolution",
    "contents[].parts[].thought": "thought parts of earlier turns are not sent: no upstream can continue "
                                  "another model's thinking",
    "contents[].parts[].partMetadata": "the client's own metadata on a part",
    "contents[].parts[].inlineData.displayName": "a label Gemini reads only with its server-side tools; a "
                                                 "PDF's is its file name",
    "contents[].parts[].fileData.displayName": "a label Gemini reads only with its server-side tools",
    "contents[].parts[].functionResponse.willContinue": "more responses to come: a Live API notion",
    "contents[].parts[].functionResponse.scheduling": "when a Live API session reads the response",
}


@dataclass(slots=True)
class Decoded:
    request: JSON  # the canonical chat request
    include_thoughts: bool  # thinkingConfig.includeThoughts: reasoning is returned as thought parts
    # Where each message came from, read only to name a refusal of one (sources.py).
    sources: list[Source]


# -- tools ---------------------------------------------------------------------------------


def _declaration(value: Any, path: str) -> JSON:
    decl = fields(value, path, _DECLARATION, "FunctionDeclaration")
    name = string(decl.get("name"), join(path, "name"), non_empty=True)
    if not _FUNCTION_NAME.match(name):
        raise fail(join(path, "name"), "must start with a letter or an underscore and hold only a-z, A-Z, "
                   "0-9, underscores, dots, colons and dashes, at most 128 characters")
    if decl.get("parameters") is not None and decl.get("parametersJsonSchema") is not None:
        raise fail(path, "give parameters or parametersJsonSchema, not both")
    if decl.get("parameters") is not None:
        parameters = json_schema(decl["parameters"], join(path, "parameters"))
    elif decl.get("parametersJsonSchema") is not None:
        parameters = plain_json_schema(decl["parametersJsonSchema"], join(path, "parametersJsonSchema"))
    else:
        parameters = {"type": "object", "properties": {}}
    # The function's return type (NOT_SENT says why it is not sent): checked. The google-genai SDK
    # fills responseJsonSchema from a Python function's return annotation for the Gemini API too,
    # so refusing it would refuse every annotated function the SDK calls automatically.
    if decl.get("response") is not None and decl.get("responseJsonSchema") is not None:
        raise fail(path, "give response or responseJsonSchema, not both")
    if decl.get("response") is not None:
        json_schema(decl["response"], join(path, "response"))
    elif decl.get("responseJsonSchema") is not None:
        plain_json_schema(decl["responseJsonSchema"], join(path, "responseJsonSchema"))
    if decl.get("behavior") is not None:
        string(decl["behavior"], join(path, "behavior"))
    function: JSON = {"name": name, "parameters": parameters}
    if decl.get("description") is not None:
        function["description"] = string(decl["description"], join(path, "description"))
    return {"type": "function", "function": function}


def _tools(value: Any, base: str) -> list[JSON]:
    out: list[JSON] = []
    for i, item in enumerate(array(value, base)):
        path = f"{base}[{i}]"
        tool = fields(item, path, _TOOL, "Tool")
        for key in tool:
            if key != "functionDeclarations" and tool[key] is not None:
                raise unsupported(f"{path}.{key}", "Google's built-in tools run on Google's side; only "
                                  "functionDeclarations are translated")
        declarations = tool.get("functionDeclarations")
        if declarations is not None:
            where = f"{path}.functionDeclarations"
            out.extend(_declaration(d, f"{where}[{j}]") for j, d in enumerate(array(declarations, where)))
    names = [t["function"]["name"] for t in out]
    if len(set(names)) != len(names):
        raise fail(base, "function names must be unique")
    return out


def _tool_config(value: Any, tools: list[JSON], out: JSON, base: str) -> None:
    config = fields(value, base, _TOOL_CONFIG, "ToolConfig")
    if config.get("includeServerSideToolInvocations"):
        raise unsupported(f"{base}.includeServerSideToolInvocations",
                          "server-side tools are not translated")
    calling = config.get("functionCallingConfig")
    if calling is None:
        return
    path = f"{base}.functionCallingConfig"
    calling = fields(calling, path, _CALLING, "FunctionCallingConfig")
    if calling.get("streamFunctionCallArguments"):
        raise unsupported(f"{path}.streamFunctionCallArguments", "function call arguments come whole")
    mode = enum(calling.get("mode", "AUTO"), f"{path}.mode", _MODES)
    names: list[str] = []
    if calling.get("allowedFunctionNames") is not None:
        where = f"{path}.allowedFunctionNames"
        given = array(calling["allowedFunctionNames"], where)
        names = [string(n, f"{where}[{i}]") for i, n in enumerate(given)]
    if names and mode not in ("ANY", "VALIDATED"):  # as Google's FunctionCallingConfig says
        raise fail(f"{path}.allowedFunctionNames", "may only be set when mode is ANY or VALIDATED")
    known = {t["function"]["name"] for t in tools}
    for name in names:
        if name not in known:
            raise fail(f"{path}.allowedFunctionNames",
                       f"no function named '{name[:64]}' is declared in tools")
    if not tools:
        if mode == "ANY":
            raise fail(f"{path}.mode", "ANY needs function declarations in tools")
        return
    if mode == "NONE":
        out["tool_choice"] = "none"
    elif mode == "ANY":
        if len(set(names)) == 1:
            out["tool_choice"] = {"type": "function", "function": {"name": names[0]}}
        else:
            if names:
                out["tools"] = [t for t in tools if t["function"]["name"] in names]
            out["tool_choice"] = "required"
    else:  # AUTO, VALIDATED (calls checked against the schema: the providers' own behaviour)
        if names:  # VALIDATED: text, or a call of one of these only
            out["tools"] = [t for t in tools if t["function"]["name"] in names]
        out["tool_choice"] = "auto"


# -- generationConfig ----------------------------------------------------------------------


def _response_format(config: JSON, path: str) -> JSON | None:
    mime = config.get("responseMimeType")
    schema: JSON | None = None
    if config.get("responseSchema") is not None and config.get("responseJsonSchema") is not None:
        raise fail(path, "give responseSchema or responseJsonSchema, not both")
    if config.get("responseSchema") is not None:
        schema = json_schema(config["responseSchema"], f"{path}.responseSchema")
    elif config.get("responseJsonSchema") is not None:
        schema = plain_json_schema(config["responseJsonSchema"], f"{path}.responseJsonSchema")
    if mime is not None:
        mime = string(mime, f"{path}.responseMimeType").lower()
    if mime in (None, "", "text/plain"):
        if schema is not None:
            raise fail(f"{path}.responseMimeType", "a response schema needs responseMimeType "
                       "'application/json'")
        return None
    if mime != "application/json":
        raise unsupported(f"{path}.responseMimeType", f"'{mime[:60]}' (only text/plain and "
                          "application/json are translated)")
    if schema is None:
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema, "strict": False}}


def _thinking(value: Any, out: JSON, path: str) -> bool:
    config = fields(value, path, _THINKING, "ThinkingConfig")
    include = config.get("includeThoughts")
    budget = config.get("thinkingBudget")
    level = config.get("thinkingLevel")
    if budget is not None and level is not None:
        raise fail(path, "thinkingBudget and thinkingLevel cannot both be set")
    if budget is not None:
        tokens = integer(budget, f"{path}.thinkingBudget", -1)
        if tokens == 0:
            out["thinking"] = {"type": "disabled"}
        elif tokens > 0:
            out["thinking"] = {"type": "enabled", "budget_tokens": tokens}
        # -1: dynamic thinking, the model's own default: nothing to ask for.
    if level is not None:
        name = enum(string(level, f"{path}.thinkingLevel").upper(), f"{path}.thinkingLevel",
                    {*EFFORT_LEVELS, "THINKING_LEVEL_UNSPECIFIED"})
        if name in EFFORT_LEVELS:
            out["reasoning_effort"] = EFFORT_LEVELS[name]
    wanted = bool(include is not None and boolean(include, f"{path}.includeThoughts"))
    out[THOUGHTS] = wanted  # Google bills the summaries it writes: asked for only when wanted
    return wanted


def _generation(value: Any, out: JSON, path: str) -> bool:
    """Writes the canonical sampling fields into ``out``; whether thoughts are to be returned."""
    config = fields(value, path, _GENERATION, "GenerationConfig")
    if config.get("temperature") is not None:
        out["temperature"] = number(config["temperature"], f"{path}.temperature", 0, 2)
    if config.get("topP") is not None:
        out["top_p"] = number(config["topP"], f"{path}.topP", 0, 1)
    if config.get("topK") is not None:
        out["top_k"] = integer(config["topK"], f"{path}.topK", 1)
    if config.get("maxOutputTokens") is not None:
        out["max_completion_tokens"] = integer(config["maxOutputTokens"], f"{path}.maxOutputTokens", 1)
    if config.get("candidateCount") is not None:
        n = integer(config["candidateCount"], f"{path}.candidateCount", 1, 8)
        if n > 1:
            out["n"] = n
    if config.get("stopSequences") is not None:
        where = f"{path}.stopSequences"
        given = array(config["stopSequences"], where)
        stops = [string(s, f"{where}[{i}]", non_empty=True) for i, s in enumerate(given)]
        if len(stops) > MAX_STOP_SEQUENCES:
            raise fail(where, f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed")
        if stops:
            out["stop"] = stops
    for theirs, ours in (("presencePenalty", "presence_penalty"), ("frequencyPenalty", "frequency_penalty")):
        if config.get(theirs) is not None:
            out[ours] = number(config[theirs], f"{path}.{theirs}", -2, 2)
    if config.get("seed") is not None:
        out["seed"] = integer(config["seed"], f"{path}.seed")
    fmt = _response_format(config, path)
    if fmt is not None:
        out["response_format"] = fmt
    if config.get("responseLogprobs") or config.get("logprobs") is not None:
        raise unsupported(f"{path}.responseLogprobs", "log probabilities are not returned in Gemini's format")
    modalities = config.get("responseModalities")
    if modalities is not None:
        where = f"{path}.responseModalities"
        for i, m in enumerate(array(modalities, where)):
            if string(m, f"{where}[{i}]").upper() != "TEXT":
                raise unsupported(f"{where}[{i}]", "only TEXT output is translated")
    for key in ("speechConfig", "imageConfig", "audioTimestamp"):
        if config.get(key) is not None and config[key] is not False:
            raise unsupported(f"{path}.{key}", "audio and image output are not translated")
    civic = config.get("enableEnhancedCivicAnswers")
    if civic is not None and boolean(civic, f"{path}.enableEnhancedCivicAnswers"):
        # Gemini's own answers to civic (election) questions: sent to gemini upstreams, refused by
        # the others (capability row enable_enhanced_civic_answers); false asks for nothing.
        out["enable_enhanced_civic_answers"] = True
    if config.get("mediaResolution") is not None:
        resolution = enum(config["mediaResolution"], f"{path}.mediaResolution", MEDIA_RESOLUTIONS)
        if resolution == "MEDIA_RESOLUTION_LOW":  # every image at low resolution (content.low_detail)
            for message in out["messages"]:
                if isinstance(message["content"], list):
                    message["content"] = [low_detail(p) for p in message["content"]]
    if config.get("thinkingConfig") is not None:
        return _thinking(config["thinkingConfig"], out, f"{path}.thinkingConfig")
    return False


def _safety(value: Any, base: str) -> list[JSON]:
    """Safety thresholds of Google's own filters: the canonical ``safety_settings`` (the Gemini and
    Vertex adapters send them; other providers have no such thresholds; docs/api-gemini.md)."""
    out: list[JSON] = []
    for i, item in enumerate(array(value, base)):
        path = f"{base}[{i}]"
        setting = fields(item, path, _SAFETY, "SafetySetting")
        entry: JSON = {
            "category": enum(setting.get("category"), f"{path}.category", HARM_CATEGORIES),
            "threshold": enum(setting.get("threshold"), f"{path}.threshold", HARM_BLOCK_THRESHOLDS),
        }
        if setting.get("method") is not None:
            entry["method"] = enum(setting["method"], f"{path}.method", HARM_BLOCK_METHODS)
        out.append(entry)
    return out


def _labels(value: Any, path: str) -> None:
    """Checked, not sent (NOT_SENT): Google's ``labels`` is a map of strings, so a value of
    another type is the 400 Google answers, not accepted because it goes nowhere."""
    if not isinstance(value, dict):
        raise wrong_type(path, "TYPE_MAP", value)
    for name, label in value.items():
        string(label, f"{path}.{name[:64]}")


# -- the request ---------------------------------------------------------------------------


def _translate(body: Any, model: str, root: str = "") -> Decoded:
    """The canonical request of a GenerateContentRequest; ``root`` is where the caller put it
    (countTokens' ``generateContentRequest``), so a refusal names the path the caller sent."""
    sources: list[Source] = []
    request = fields(body, root, _REQUEST, "GenerateContentRequest")
    if request.get("model") is not None:
        string(request["model"], join(root, "model"))  # the path names the model; the body's is informative
    for key in ("cachedContent", "continuationToken"):
        if request.get(key) is not None:
            raise unsupported(join(root, key), "context caches and continuations are Google's own state")
    messages = contents(request.get("contents"), join(root, "contents"), sources)
    if request.get("systemInstruction") is not None:
        system = system_text(request["systemInstruction"], join(root, SYSTEM))
        if system:  # an empty system prompt is no prompt; some upstreams reject empty ones
            messages.insert(0, {"role": "system", "content": system})
            sources.append((messages[0], join(root, SYSTEM), None, None))
    out: JSON = {"model": model, "messages": messages}
    tools = _tools(request["tools"], join(root, "tools")) if request.get("tools") is not None else []
    if tools:
        out["tools"] = tools
    if request.get("toolConfig") is not None:
        _tool_config(request["toolConfig"], tools, out, join(root, "toolConfig"))
    include = False
    if request.get("generationConfig") is not None:
        include = _generation(request["generationConfig"], out, join(root, "generationConfig"))
    if request.get("safetySettings") is not None:
        settings = _safety(request["safetySettings"], join(root, "safetySettings"))
        if settings:
            out["safety_settings"] = settings
    if request.get("labels") is not None:
        _labels(request["labels"], join(root, "labels"))
    if request.get("serviceTier") is not None:
        # The SDK's enum is case-insensitive and sends lower case; Google's REST reference does
        # not pin the spelling, so any case of a known tier passes (the field is not sent on).
        tier = request["serviceTier"]
        enum(tier.lower() if isinstance(tier, str) else tier, join(root, "serviceTier"), SERVICE_TIERS)
    if request.get("store") is not None:
        boolean(request["store"], join(root, "store"))
    return Decoded(out, include, sources)


def generate_request(raw: bytes, model: str, stream: bool) -> Decoded:
    """The canonical chat request for a ``generateContent`` / ``streamGenerateContent`` body."""
    decoded = _translate(parse_object(raw), model)
    if stream:
        decoded.request["stream"] = True
        decoded.request["stream_options"] = {"include_usage": True}
    return decoded


def count_tokens_request(raw: bytes, model: str) -> Decoded:
    """The canonical chat request whose prompt ``countTokens`` counts: ``contents``, or a whole
    ``generateContentRequest`` (system instruction and tools count too); with where each
    message came from, as ``generateContent`` records it."""
    body = fields(parse_object(raw), "", _COUNT, "CountTokensRequest")
    if body.get("contents") is not None and body.get("generateContentRequest") is not None:
        raise InvalidRequest("contents and generateContentRequest are mutually exclusive", param="contents")
    if body.get("generateContentRequest") is not None:
        inner = body["generateContentRequest"]
        if not isinstance(inner, dict):
            raise fail("generateContentRequest", "expected an object")
        return _translate(inner, model, "generateContentRequest")
    sources: list[Source] = []
    messages = contents(body.get("contents"), sources=sources)
    return Decoded({"model": model, "messages": messages}, False, sources)
