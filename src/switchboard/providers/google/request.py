"""Canonical (OpenAI Chat Completions) request -> Gemini ``GenerateContentRequest``.

Reference: https://ai.google.dev/api/generate-content#request-body (contents, systemInstruction,
tools, toolConfig, generationConfig), https://ai.google.dev/gemini-api/docs/function-calling and
https://ai.google.dev/gemini-api/docs/thought-signatures. Vertex AI takes the same body:
https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/inference.

Canonical ``document`` parts: text documents become text parts (title first), base64 ones
``inlineData`` with their media type (PDF: ``application/pdf``). A tool message with
``is_error: true`` (Gemini has no error flag) gets its text prefixed "Error: " in the
``functionResponse``. The canonical ``safety_settings`` go as ``safetySettings``, as written.
An inline image goes with the type its bytes show (providers/image_types.py), not its label.
"""

from __future__ import annotations

import mimetypes
import re
from typing import Any
from urllib.parse import unquote

import orjson

from switchboard import media_urls
from switchboard.errors import InvalidRequest, UnsupportedParameter
from switchboard.providers import account, allowed_tools, capabilities, documents, tool_names
from switchboard.providers.google.schema import clean_schema, has_properties
from switchboard.providers.google.thinking import budget_model, thinking_config
from switchboard.providers.image_types import sniffed
from switchboard.providers.params import drop_advice, drops
from switchboard.providers.response_format import described_schema
from switchboard.providers.target import Target
from switchboard.providers.tool_calls import object_arguments
from switchboard.providers.turns import EMPTY_TURN, SYSTEM_MARK, assistant_content

JSON = dict[str, Any]

# Gemini 3+ refuses a replayed function call without its thought signature; for histories that
# never had one (another model wrote them, or the client dropped the field) Google documents this
# value as the way to skip the check.
SKIP_SIGNATURE = "skip_thought_signature_validator"
_FILE_SCHEMES = frozenset({"http", "https", "gs"})
# The Gemini API's host: its Files API URIs (``https://generativelanguage.googleapis.com/v1beta/
# files/...``) name files of the account the key opens.
_GEMINI_API_HOST = "generativelanguage.googleapis.com"
# Cloud Storage's own http(s) hosts (path style, virtual-hosted ``<bucket>.storage...``, the
# console's authenticated download host): Google may read such a URL as the object it names, with
# the caller's identity (the service account), as it reads gs:// (_account_uri).
_STORAGE_HOSTS = ("storage.googleapis.com", "storage.cloud.google.com")
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
# A media type without parameters; \Z, not $, which would let a trailing line break through.
MEDIA_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+\Z")


def generate_content_body(request: JSON, target: Target) -> JSON:
    # The table of the provider type: gemini and vertex differ (labels).
    request = capabilities.check(request, target)
    system, contents = convert_messages(request["messages"], target)
    if not contents:
        raise InvalidRequest(
            f"provider type '{target.provider_type}' needs at least one user or assistant message",
            param="messages",
        )
    body: JSON = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    tool_names.check(request.get("tools"), _name_rule(target), target)
    strict = strict_tools(request, target)
    allowed = allowed_names(request)
    tools = convert_tools(request.get("tools") or [], allowed, strict)
    if tools:
        body["tools"] = tools
    tool_config = convert_tool_choice(request.get("tool_choice"), strict, allowed)
    if tool_config:
        body["toolConfig"] = tool_config
    if request.get("safety_settings"):
        body["safetySettings"] = safety_settings(request["safety_settings"], request, target)
    config = generation_config(request, target)
    if config:
        body["generationConfig"] = config
    return body


def safety_settings(value: Any, request: JSON, target: Target) -> list[JSON]:
    """The canonical ``safety_settings`` as Gemini's ``safetySettings`` (the same list): each entry
    an object with string ``category`` and ``threshold`` (and ``method``), checked here since
    ``/v1/chat/completions`` callers send the extension unchecked. ``method`` exists on Vertex AI
    only: for ``gemini`` it is refused, or removed under ``drop_params``."""
    if not isinstance(value, list):
        raise InvalidRequest("safety_settings must be a list of {category, threshold} objects",
                             param="safety_settings")
    for i, item in enumerate(value):
        if (not isinstance(item, dict) or set(item) - {"category", "threshold", "method"}
                or not all(isinstance(item.get(k), str) and item[k] for k in ("category", "threshold"))
                or not isinstance(item.get("method", ""), str)):
            raise InvalidRequest(f"safety_settings[{i}] must be an object with string category and "
                                 "threshold (and method)", param=f"safety_settings[{i}]")
    if target.provider_type == "vertex" or not any("method" in item for item in value):
        return value
    if not drops(request, target):
        i = next(i for i, item in enumerate(value) if "method" in item)
        raise UnsupportedParameter(
            f"safety_settings[{i}].method is not supported by provider type '{target.provider_type}' "
            f"(model '{target.name}'): the Gemini API has no harm block method (Vertex AI has); "
            + drop_advice(),
            param=f"safety_settings[{i}].method",
        )
    return [{k: v for k, v in item.items() if k != "method"} for item in value]


# -- messages ------------------------------------------------------------------------------


def convert_messages(messages: list[JSON], target: Target) -> tuple[list[JSON], list[JSON]]:
    """(systemInstruction parts, contents). Consecutive turns of one role are merged.

    System messages before the first turn form systemInstruction; a later one stays in place as a
    user turn's text, marked ``System:``, so what it says applies from there on. An assistant
    message with nothing in it keeps its turn with the text ``(no content)`` (Gemini refuses
    empty parts), so the user turns around it stay apart; a trailing one is left out
    (providers/turns.py)."""
    system: list[JSON] = []
    contents: list[JSON] = []
    names: dict[str, str] = {}  # tool_call_id -> function name, for functionResponse parts
    signatures = not budget_model(target.model)
    for i, msg in enumerate(messages):
        role = msg.get("role")
        if role in ("system", "developer") and not contents:
            system.extend(_text_parts(msg.get("content"), f"messages[{i}].content"))
        elif role in ("system", "developer"):
            _append(contents, "user", _marked(_text_parts(msg.get("content"), f"messages[{i}].content")))
        elif role == "user":
            _append(contents, "user", user_parts(msg.get("content"), i, target))
        elif role == "assistant":
            parts = assistant_parts(msg, i, names, signatures)
            last = i == len(messages) - 1
            _append(contents, "model", parts or ([] if last else [{"text": EMPTY_TURN}]))
        elif role == "tool":
            _append(contents, "user", [function_response(msg, i, names)])
        else:
            raise InvalidRequest(
                f"messages[{i}].role '{role}' is not supported by provider type '{target.provider_type}'",
                param=f"messages[{i}].role",
            )
    return system, contents


def _append(contents: list[JSON], role: str, parts: list[JSON]) -> None:
    if not parts:
        return
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def _marked(parts: list[JSON]) -> list[JSON]:
    if not parts:
        return parts
    return [{"text": SYSTEM_MARK + parts[0]["text"]}, *parts[1:]]


def _text_parts(content: Any, where: str) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if isinstance(text, str) and text:
                parts.append({"text": text})
        else:
            raise InvalidRequest(f"{where}[{j}]: content part type '{kind}' is not allowed here", param=where)
    return parts


def user_parts(content: Any, i: int, target: Target) -> list[JSON]:
    if content is None or isinstance(content, str):
        return _text_parts(content, f"messages[{i}].content")
    parts = []
    for j, part in enumerate(content):
        converted = _user_part(part, f"messages[{i}].content[{j}]", target)
        if converted is not None:
            parts.append(converted)
    return parts


def _user_part(part: JSON, where: str, target: Target) -> JSON | None:
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        return {"text": text} if isinstance(text, str) and text else None
    if kind == "image_url":
        image = part.get("image_url")
        if not isinstance(image, dict):
            return media_part(image, where, target, "image_url.url")
        return media_part(image.get("url"), where, target, "image_url.url", image.get("format"))
    if kind == "document":
        return _document_part(part, where)
    if kind == "input_audio":
        data, given = media_urls.input_audio(part.get("input_audio"), where)
        return {"inlineData": {"mimeType": f"audio/{given}", "data": data}}
    if kind == "file":
        return _file_part(part.get("file") or {}, where, target)
    raise InvalidRequest(f"{where}: content part type '{kind}' is not supported here", param=where)


def _file_part(file: JSON, where: str, target: Target) -> JSON:
    """An inline file as inlineData; on Vertex AI its ``filename`` as the blob's displayName (the
    Gemini-format inbound API maps it the other way). The Gemini API's Blob has no such field and
    refuses the request naming it ("Unknown name displayName"): there the name is not sent."""
    data = file.get("file_data")
    if not isinstance(data, str):
        raise InvalidRequest(f"{where}: only inline files (file_data data URLs) work", param=where)
    part = media_part(data, where, target, "file.file_data", file.get("format"))
    filename = file.get("filename")
    if target.provider_type == "vertex" and isinstance(filename, str) and filename and "inlineData" in part:
        part["inlineData"]["displayName"] = filename
    return part


def _document_part(part: JSON, where: str) -> JSON | None:
    doc = documents.read(part, where, "gemini")
    if doc.text is None:
        return {"inlineData": {"mimeType": doc.media_type, "data": doc.data}}
    text = documents.as_text(doc)
    return {"text": text} if text else None


def media_part(url: Any, where: str, target: Target, field: str = "image_url.url", given: Any = None) -> JSON:
    """A data URL -> inlineData; an http(s) or gs:// URL -> fileData (the provider fetches it).
    Any other scheme (file:, gopher:, ...) is refused; schemes are case-insensitive. A URI of the
    provider account (a gs:// object, a file of Gemini's Files API) is read with the gateway's
    credential: refused unless the caller's own is used (providers/account.py). ``given`` is the
    part's ``format`` (LiteLLM's field for the media type of a URL), the fileData's type."""
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"{where}: an image URL is required", param=where)
    scheme = media_urls.scheme(url)
    if scheme == "data":
        inline = media_urls.data_url(url, f"{where}.{field}")
        mime = inline.media_type
        if mime.startswith("image/"):  # Google refuses image bytes of another type than the label
            mime = sniffed(inline.data) or mime
        return {"inlineData": {"mimeType": mime, "data": inline.data}}
    url = media_urls.lowered(url)
    if scheme not in _FILE_SCHEMES:
        what = f"URL scheme '{scheme[:20]}:'" if scheme else "a URL without a scheme"
        raise InvalidRequest(
            f"{where}: {what} is not supported; send http(s), gs:// or data: URLs", param=where
        )
    if not target.own_account:
        _account_uri(url, scheme, f"{where}.{field}", target)
    typed = _url_type(url, given, where, field)
    return {"fileData": {"mimeType": typed, "fileUri": url} if typed else {"fileUri": url}}


def _url_type(url: str, given: Any, where: str, field: str) -> str | None:
    """The media type of a fileData URL: the part's ``format``, else its path's extension. Google
    needs one (Vertex AI refuses fileData without it) and does not sniff: a guess (image/jpeg for a
    PDF behind ``/report?id=3``) would misread the file, so with neither it is a 400. A file of
    the Gemini Files API (only here with the caller's own key) has the type it was uploaded with:
    None, sent without one (the Gemini API's mimeType is optional)."""
    owner = field.rpartition(".")[0]  # image_url or file
    if given is not None:
        if not isinstance(given, str) or MEDIA_TYPE.match(given) is None:
            raise InvalidRequest(f"{where}.{owner}.format must be a media type such as 'image/png'",
                                 param=f"{where}.{owner}.format")
        return media_urls.media_type(given)  # Google refuses "image/jpg": "Unsupported MIME type"
    guessed = mimetypes.guess_type(url.split("?", 1)[0].split("#", 1)[0])[0]
    if guessed is None and _GEMINI_API_HOST in url.lower():
        return None
    if guessed is None:
        raise InvalidRequest(
            f"{where}.{field}: the media type of this URL cannot be told from its extension; send a "
            f"data URL, a URL with a known extension (.png, .pdf, ...), or the type as {owner}.format",
            param=f"{where}.{field}",
        )
    return guessed


def _account_uri(url: str, scheme: str, where: str, target: Target) -> None:
    """Refuse a URI only the gateway's credential can read: a Cloud Storage object, as gs:// or
    by its https URL (Vertex AI reads it with the service account; the Gemini API with the key's
    project) or anything on the Gemini API's own host (its Files API: the files uploaded with the
    shared key). Other public http(s) URLs are fetched by Google as anyone would and stay
    accepted."""
    if scheme == "gs":
        raise account.refusal(where, "a Cloud Storage object (gs://)", target)
    # Anywhere before the query, decoded, in lower case, not only where urlsplit reads the host:
    # Google's URL parser may read a mangled URL ("https:host/...", "host.\\@x", "%2E") as its
    # own host. A public URL naming such a host in its path is refused too (rare, and harmless).
    before_query = unquote(url.split("?", 1)[0].split("#", 1)[0]).lower()
    if _GEMINI_API_HOST in before_query:
        raise account.refusal(where, "a file of the Gemini Files API", target)
    if any(host in before_query for host in _STORAGE_HOSTS):
        raise account.refusal(where, "a Cloud Storage object (its https URL)", target)


def assistant_parts(msg: JSON, i: int, names: dict[str, str], signatures: bool) -> list[JSON]:
    parts = _text_parts(assistant_content(msg), f"messages[{i}].content")
    for j, call in enumerate(msg.get("tool_calls") or []):
        function = call.get("function") or {}
        name = str(function.get("name") or "")
        names[str(call.get("id"))] = name
        part: JSON = {"functionCall": {"name": name, "args": object_arguments(
            function.get("arguments"), f"messages[{i}].tool_calls[{j}].function.arguments")}}
        signature = ((call.get("extra_content") or {}).get("google") or {}).get("thought_signature")
        if isinstance(signature, str) and signature:
            part["thoughtSignature"] = signature
        elif signatures and j == 0:
            # Only the first call of a step carries a signature (parallel calls share it).
            part["thoughtSignature"] = SKIP_SIGNATURE
        parts.append(part)
    return parts


def function_response(msg: JSON, i: int, names: dict[str, str]) -> JSON:
    call_id = msg.get("tool_call_id")
    name = names.get(str(call_id))
    if not name:
        where = f"messages[{i}].tool_call_id"
        raise InvalidRequest(
            f"{where} '{call_id}' does not match a tool call of an earlier assistant message "
            "(Gemini needs the function name of every tool result)",
            param=where,
        )
    text = _tool_text(msg.get("content"), f"messages[{i}].content")
    if msg.get("is_error") is True:  # Gemini has no error flag on a function response
        return {"functionResponse": {"name": name, "response": {"result": f"Error: {text}"}}}
    return {"functionResponse": {"name": name, "response": _response_object(text)}}


def _tool_text(content: Any, where: str) -> str:
    """A tool result's text; its plain-text documents included (title first)."""
    if not isinstance(content, list):
        return "".join(p["text"] for p in _text_parts(content, where))
    texts = []
    for j, part in enumerate(content):
        if documents.is_document(part):
            texts.append(documents.text_of(part, f"{where}[{j}]", "gemini"))
        elif isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            kind = part.get("type") if isinstance(part, dict) else None
            raise InvalidRequest(f"{where}[{j}]: content part type '{kind}' is not allowed in a tool result",
                                 param=f"{where}[{j}]")
    return "".join(texts)


def _response_object(text: str) -> JSON:
    """functionResponse.response must be a JSON object: anything else is wrapped."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"result": text}
    return value if isinstance(value, dict) else {"result": value}


# -- tools ---------------------------------------------------------------------------------


def convert_tools(tools: list[JSON], allowed: list[str] | None = None, strict: bool = False) -> list[JSON]:
    """Gemini's functionDeclarations; ``strict`` when the calls will be validated against the
    schemas (mode VALIDATED), which must then be sent whole (schema.py refuses what would drop)."""
    declarations = []
    for k, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise InvalidRequest(f"tools[{k}]: only function tools are supported here", param="tools")
        function = tool.get("function") or {}
        if allowed is not None and function.get("name") not in allowed:
            continue
        declaration: JSON = {"name": function.get("name")}
        if function.get("description"):
            declaration["description"] = function["description"]
        parameters = clean_schema(function.get("parameters"), f"tools[{k}].function.parameters", strict)
        # An object schema without properties is refused: a tool without arguments omits it.
        if has_properties(parameters):
            declaration["parameters"] = parameters
        declarations.append(declaration)
    return [{"functionDeclarations": declarations}] if declarations else []


def _name_rule(target: Target) -> tool_names.NameRule:
    """Vertex AI takes longer function names (128) than the Gemini API (64)."""
    return tool_names.VERTEX if target.provider_type == "vertex" else tool_names.GEMINI


def strict_tools(request: JSON, target: Target) -> bool:
    """Whether every tool asks for a strict schema. Gemini has no per-tool flag, only a mode that
    validates every call (VALIDATED; ANY validates already), so mixed strictness is refused, or
    read as not strict when ``drop_params`` asks for that."""
    flags = [
        (t.get("function") or {}).get("strict") is True
        for t in request.get("tools") or [] if isinstance(t, dict)
    ]
    if all(flags) or not any(flags):
        return bool(flags) and all(flags)
    if drops(request, target):
        return False
    raise UnsupportedParameter(
        f"strict on some tools only is not supported by provider type '{target.provider_type}' "
        f"(model '{target.name}'): Gemini validates all function calls or none; mark every tool "
        f"strict or none, or {drop_advice('send none strict')}",
        param="tools",
    )


def convert_tool_choice(choice: Any, strict: bool = False, allowed: list[str] | None = None) -> JSON | None:
    """``allowed``: the names an ``allowed_tools`` choice permits (:func:`allowed_names`)."""
    config = _tool_choice(choice, allowed)
    if not strict:
        return config
    # Strict tools: the model's calls must match their schemas, which AUTO does not promise.
    calling = (config or {}).get("functionCallingConfig") or {"mode": "AUTO"}
    if calling["mode"] == "AUTO":
        calling = {**calling, "mode": "VALIDATED"}
    return {"functionCallingConfig": calling}


def _tool_choice(choice: Any, allowed: list[str] | None) -> JSON | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        return {"functionCallingConfig": {"mode": _MODES.get(choice, "AUTO")}}
    if not isinstance(choice, dict):
        return None
    if choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if not isinstance(name, str):
            raise InvalidRequest("tool_choice.function.name is required", param="tool_choice.function.name")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    if choice.get("type") == "allowed_tools":
        # allowedFunctionNames is only accepted with mode ANY; in AUTO mode the declarations
        # themselves are narrowed (convert_tools) to the same effect.
        if (choice.get("allowed_tools") or {}).get("mode") == "required":
            return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": allowed or []}}
        return {"functionCallingConfig": {"mode": "AUTO"}}
    # Any other type (a custom tool's {"type": "custom"}, one newer than this code) names nothing
    # Gemini can be told: refused, not left out, or the model would choose freely instead.
    raise InvalidRequest(
        f"tool_choice type '{str(choice.get('type'))[:64]}' is not supported by provider type 'gemini' "
        "(send 'none', 'auto', 'required', a function or allowed_tools)",
        param="tool_choice.type",
    )


def allowed_names(request: JSON) -> list[str] | None:
    """The names an ``allowed_tools`` tool_choice permits (each checked against ``tools``), else
    None (all of them)."""
    picked = allowed_tools.allowed(request)
    return None if picked is None else [tool["function"]["name"] for tool in picked[1]]


# -- generationConfig ----------------------------------------------------------------------

_DIRECT = (
    ("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK"), ("seed", "seed"),
    ("n", "candidateCount"),
    ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty"),
)


def generation_config(request: JSON, target: Target) -> JSON:
    config: JSON = {ours: request[theirs] for theirs, ours in _DIRECT if request.get(theirs) is not None}
    limit = request.get("max_completion_tokens")
    if limit is None:
        limit = request.get("max_tokens")
    if limit is not None:
        config["maxOutputTokens"] = limit
    stop = request.get("stop")
    if stop:
        # An empty sequence stops nothing (clients send [""] for an unset field): left out.
        stops = [s for s in ([stop] if isinstance(stop, str) else stop) if s != ""]
        if stops:
            config["stopSequences"] = stops
    # top_logprobs means nothing without logprobs (OpenAI refuses it alone): it implies them.
    if request.get("logprobs") or request.get("top_logprobs"):
        config["responseLogprobs"] = True
        if request.get("top_logprobs"):
            config["logprobs"] = request["top_logprobs"]
    config.update(_response_format(request.get("response_format")))
    thinking = thinking_config(request, target.model)
    if thinking is not None:
        config["thinkingConfig"] = thinking
    if low_resolution(request, target):
        config["mediaResolution"] = "MEDIA_RESOLUTION_LOW"
    if request.get("enable_enhanced_civic_answers"):  # vertex refuses it (capability table)
        config["enableEnhancedCivicAnswers"] = True
    return config


def low_resolution(request: JSON, target: Target) -> bool:
    """Whether the images ask for low detail. Gemini sets the resolution for the whole request
    (per part only on Gemini 3, in preview), so "low" on some images only is refused, or read as
    the default when ``drop_params`` asks for that."""
    details = [
        (p.get("image_url") or {}).get("detail") if isinstance(p.get("image_url"), dict) else None
        for m in request["messages"] if isinstance(m.get("content"), list)
        for p in m["content"] if isinstance(p, dict) and p.get("type") == "image_url"
    ]
    low = [d == "low" for d in details]
    if all(low) or not any(low):
        return bool(low) and all(low)
    if drops(request, target):
        return False
    raise UnsupportedParameter(
        f"image_url.detail 'low' on some images only is not supported by provider type "
        f"'{target.provider_type}' (model '{target.name}'): Gemini sets one media resolution per "
        f'request; ask "low" for every image or none, or {drop_advice("send the default resolution")}',
        param="messages",
    )


def _response_format(fmt: Any) -> JSON:
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        schema = described_schema(fmt.get("json_schema"))
        out: JSON = {"responseMimeType": "application/json"}
        if isinstance(schema, dict):
            strict = (fmt.get("json_schema") or {}).get("strict") is True
            out["responseSchema"] = clean_schema(schema, "response_format.json_schema.schema", strict)
        return out
    return {}
