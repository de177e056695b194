"""Gemini ``contents`` -> canonical (OpenAI Chat Completions) messages.

Reference: https://ai.google.dev/api/caching#Content and #Part.

    role user (or omitted)            -> user message (a lone text part becomes a string)
    role model                        -> assistant message
    text                              -> text part
    inlineData image/*                -> image_url part with a data: URL
    inlineData audio/wav, audio/mp3   -> input_audio part
    inlineData application/pdf        -> file part (file_data data: URL)
    inlineData text/*                 -> text part (the bytes decoded as UTF-8)
    fileData http(s) URL of an image  -> image_url part with that URL (mimeType as image_url.format)
    fileData http(s) URL, other types -> file part, the URL as file_data, the type as file.format
    functionCall (model)              -> assistant tool_calls; its id, else call_<content>_<part>;
                                         a thoughtSignature rides in extra_content.google
    functionResponse (user)           -> a role tool message each, placed before the rest of that
                                         user turn; paired with its call by id, else by name
    thought parts                     -> dropped: no upstream can continue another model's thinking;
                                         a content of only thoughts is no turn (none at all: 400)
Everything else (code execution, Files API and gs:// URIs, inline video) is a 400 naming the part.
"""

from __future__ import annotations

import base64
import mimetypes
from typing import Any
from urllib.parse import urlsplit

import orjson

from switchboard import media_urls
from switchboard.errors import InvalidRequest
from switchboard.http.gemini.enums import PART_MEDIA_RESOLUTIONS
from switchboard.http.gemini.fields import (
    JSON,
    array,
    boolean,
    enum,
    fail,
    fields,
    integer,
    string,
    unsupported,
)
from switchboard.http.sources import Source
from switchboard.providers.google.request import MEDIA_TYPE

_CONTENT = frozenset({"role", "parts"})
_PART = frozenset({
    "text", "inlineData", "fileData", "functionCall", "functionResponse", "thought", "thoughtSignature",
    "executableCode", "codeExecutionResult", "videoMetadata", "partMetadata", "mediaResolution",
    "toolCall", "toolResponse",
})
_DATA_KINDS = ("text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
               "codeExecutionResult", "toolCall", "toolResponse")
_BLOB = frozenset({"mimeType", "data", "displayName"})
_FILE = frozenset({"mimeType", "fileUri", "displayName"})
_CALL = frozenset({"id", "name", "args", "partialArgs", "willContinue"})
_RESPONSE = frozenset({"id", "name", "response", "parts", "willContinue", "scheduling"})
_AUDIO = {
    "audio/wav": "wav", "audio/x-wav": "wav", "audio/wave": "wav", "audio/mp3": "mp3", "audio/mpeg": "mp3",
}
_GOOGLE_FILES = ("generativelanguage.googleapis.com",)
_MEDIA_RESOLUTION = frozenset({"level", "numTokens"})
_LOW = "MEDIA_RESOLUTION_LOW"


def _media_resolution(value: Any, path: str) -> str | None:
    """A part's ``mediaResolution`` (Gemini 3), checked: its level (numTokens, a budget of Google's
    tokenizer, is checked and not sent)."""
    setting = fields(value, path, _MEDIA_RESOLUTION, "PartMediaResolution")
    level = None
    if setting.get("level") is not None:
        level = enum(setting["level"], f"{path}.level", PART_MEDIA_RESOLUTIONS)
    if setting.get("numTokens") is not None:
        integer(setting["numTokens"], f"{path}.numTokens", 1)
    return level


def low_detail(part: JSON) -> JSON:
    """An image part asked for at low resolution: OpenAI's ``detail: "low"`` (capability row
    ``image_url.detail:low``: Gemini's mediaResolution LOW again, refused where a provider has no
    such control), so it is neither dropped nor sent at full resolution. Other parts unchanged."""
    if part.get("type") == "image_url" and "detail" not in part["image_url"]:
        part["image_url"]["detail"] = "low"
    return part


def _base64(value: Any, path: str) -> str:
    """Standard base64 (proto JSON also takes the URL-safe alphabet and missing padding), held to
    the rule every provider's media is (media_urls.is_base64), so what passes here is not refused
    downstream under a path the caller never wrote; checked without decoding it."""
    data = string(value, path, non_empty=True)
    data = data.replace("-", "+").replace("_", "/").strip()
    data += "=" * (-len(data) % 4)
    if not media_urls.is_base64(data):
        raise fail(path, "is not valid base64")
    return data


def _media_type(value: Any, path: str) -> str:
    """A part's mimeType, lower-cased: a media type (``type/subtype``, no parameters), else a 400
    naming it here; it becomes part of a data URL or a URL's format, which would otherwise be
    refused downstream under a name the caller never wrote."""
    mime = string(value, path, non_empty=True).lower()
    if MEDIA_TYPE.match(mime) is None:
        raise fail(path, f"'{mime[:60]}' is not a media type such as 'image/png'")
    return mime


def _inline(value: Any, path: str) -> JSON:
    blob = fields(value, path, _BLOB, "Blob")
    mime = _media_type(blob.get("mimeType"), f"{path}.mimeType")
    data = _base64(blob.get("data"), f"{path}.data")
    if mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}
    if mime in _AUDIO:
        return {"type": "input_audio", "input_audio": {"data": data, "format": _AUDIO[mime]}}
    if mime == "application/pdf":
        name = blob.get("displayName")
        filename = string(name, f"{path}.displayName") if name is not None else "document.pdf"
        return {"type": "file", "file": {"filename": filename, "file_data": f"data:{mime};base64,{data}"}}
    if mime.startswith("text/"):
        try:
            return {"type": "text", "text": base64.b64decode(data).decode("utf-8")}
        except UnicodeDecodeError:
            raise fail(f"{path}.data", f"is not UTF-8 text, as mimeType '{mime}' says") from None
    raise unsupported(f"{path}.mimeType", f"inline data of type '{mime[:60]}' has no equivalent across "
                      "providers (images, wav/mp3 audio, PDF and text are translated)")


def _file(value: Any, path: str) -> JSON:
    ref = fields(value, path, _FILE, "FileData")
    uri = string(ref.get("fileUri"), f"{path}.fileUri", non_empty=True)
    parts = urlsplit(uri)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise unsupported(f"{path}.fileUri", "only http(s) URLs are translated (gs:// and other URIs are "
                          "Google's own); send the bytes as inlineData")
    if parts.hostname in _GOOGLE_FILES:
        raise unsupported(f"{path}.fileUri", "files uploaded to Google's Files API belong to a Google "
                          "account; send the bytes as inlineData")
    given = ref.get("mimeType")
    mime = _media_type(given, f"{path}.mimeType") if given is not None else None
    kind = mime or mimetypes.guess_type(parts.path)[0]
    if kind is None:
        raise fail(f"{path}.mimeType", "is required when the fileUri's extension does not tell the type")
    # The caller's mimeType rides as the part's ``format`` (the canonical media type of a URL):
    # a Gemini upstream sends it back as fileData.mimeType; a guess from the extension is made
    # again there, so it is not added.
    if kind.startswith("image/"):
        image: JSON = {"url": uri, "format": mime} if mime else {"url": uri}
        return {"type": "image_url", "image_url": image}
    return {"type": "file", "file": {"file_data": uri, "format": kind}}


def _arguments(value: Any, path: str) -> str:
    if value is None:
        return "{}"
    if not isinstance(value, dict):
        raise fail(path, "expected an object (google.protobuf.Struct)")
    return orjson.dumps(value).decode()


class Contents:
    """The conversion of one ``contents`` list, at ``path`` in the caller's body; calls are paired
    with their responses. Where each message and tool call came from is added to ``sources`` when
    given (sources.py)."""

    def __init__(self, sources: list[Source] | None = None, path: str = "contents") -> None:
        self._path = path
        self.messages: list[JSON] = []
        self._pending: list[tuple[str, str]] = []  # (id, name) of the last model turn's open calls
        self._sources = sources

    def _note(self, made: JSON, path: str, given: Any = None, parts: tuple[str, ...] | None = None) -> None:
        if self._sources is not None:
            self._sources.append((made, path, given, parts))

    def add(self, value: Any, i: int) -> None:
        path = f"{self._path}[{i}]"
        content = fields(value, path, _CONTENT, "Content")
        role = content.get("role")
        if role is not None:
            role = string(role, f"{path}.role")
        if role not in (None, "", "user", "model", "function"):
            raise fail(f"{path}.role", f"Please use a valid role: user, model (got '{str(role)[:40]}')")
        parts = array(content.get("parts") if content.get("parts") is not None else [], f"{path}.parts")
        if not parts:
            raise fail(f"{path}.parts", "must contain at least one part")
        if role == "model":
            self._model(parts, i, path)
        else:
            self._user(parts, path)

    def _part(self, value: Any, path: str) -> tuple[str, JSON]:
        part = fields(value, path, _PART, "Part")
        kinds = [k for k in _DATA_KINDS if part.get(k) is not None]
        if len(kinds) != 1:
            problem = "must hold exactly one of text, inlineData, fileData, functionCall, functionResponse"
            raise fail(path, problem if kinds else "is empty; " + problem)
        kind = kinds[0]
        if kind in ("executableCode", "codeExecutionResult", "toolCall", "toolResponse"):
            raise unsupported(f"{path}.{kind}", "code execution and server-side tools run on Google's side")
        if part.get("videoMetadata") is not None:
            raise unsupported(f"{path}.videoMetadata", "video input is not translated")
        if part.get("thought") is not None:
            boolean(part["thought"], f"{path}.thought")
        if part.get("thoughtSignature") is not None:
            string(part["thoughtSignature"], f"{path}.thoughtSignature")
        if part.get("mediaResolution") is not None:
            part["mediaResolution"] = _media_resolution(part["mediaResolution"], f"{path}.mediaResolution")
        return kind, part

    def _user(self, parts: list[Any], where: str) -> None:
        tools: list[JSON] = []
        out: list[JSON] = []
        paths: list[str] = []  # the data field each part of out came from (sources.py)
        thoughts = 0
        for j, value in enumerate(parts):
            path = f"{where}.parts[{j}]"
            kind, part = self._part(value, path)
            thoughts += bool(part.get("thought"))
            if kind == "text":
                text = string(part["text"], f"{path}.text")
                if text and not part.get("thought"):
                    out.append({"type": "text", "text": text})
                    paths.append(f"{path}.text")
            elif kind in ("inlineData", "fileData"):
                media = (_inline if kind == "inlineData" else _file)(part[kind], f"{path}.{kind}")
                out.append(low_detail(media) if part.get("mediaResolution") == _LOW else media)
                paths.append(f"{path}.{kind}")
            elif kind == "functionResponse":
                tools.append(self._response(part["functionResponse"], f"{path}.functionResponse"))
            else:
                raise fail(f"{path}.functionCall", "functionCall parts belong in contents with role 'model'")
        self.messages.extend(tools)
        if out:
            content: Any = out[0]["text"] if len(out) == 1 and out[0]["type"] == "text" else out
            self.messages.append({"role": "user", "content": content})
        elif not tools and thoughts < len(parts):
            self.messages.append({"role": "user", "content": ""})
        else:
            return
        self._note(self.messages[-1], where, None, tuple(paths))
        # Only thoughts: no turn to send, as for a model content of only thoughts (an empty user
        # message would be refused by some upstreams, or read as a turn the caller never wrote).

    def _response(self, value: Any, path: str) -> JSON:
        response = fields(value, path, _RESPONSE, "FunctionResponse")
        name = string(response.get("name"), f"{path}.name", non_empty=True)
        if response.get("parts") is not None:
            raise unsupported(f"{path}.parts", "multimodal function responses are not translated")
        body = response.get("response")
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise fail(f"{path}.response", "expected an object (google.protobuf.Struct)")
        given = response.get("id")
        call_id = None
        if given is not None:
            given = string(given, f"{path}.id")
            call_id = next((c for c, _ in self._pending if c == given), None)
        if call_id is None:
            call_id = next((c for c, n in self._pending if n == name), None)
        if call_id is None:
            raise fail(path, f"this functionResponse ('{name[:64]}') answers no functionCall of the "
                       "preceding model content")
        self._pending = [p for p in self._pending if p[0] != call_id]
        message = {"role": "tool", "tool_call_id": call_id, "content": orjson.dumps(body).decode()}
        self._note(message, path, response)
        return message

    def _model(self, parts: list[Any], i: int, where: str) -> None:
        texts: list[str] = []
        paths: list[str] = []  # the text parts joined into the content (sources.py)
        calls: list[JSON] = []
        for j, value in enumerate(parts):
            path = f"{where}.parts[{j}]"
            kind, part = self._part(value, path)
            if kind == "text":
                text = string(part["text"], f"{path}.text")
                if not part.get("thought"):
                    texts.append(text)
                    paths.append(f"{path}.text")
            elif kind == "functionCall":
                calls.append(self._call(part, f"{path}.functionCall", i, j))
            else:
                raise unsupported(f"{path}.{kind}", f"{kind} parts are only translated in user contents")
        self._pending = [(c["id"], c["function"]["name"]) for c in calls]
        text = "".join(texts)
        if not text and not calls:
            return  # only thoughts (or nothing): no turn to replay
        message: JSON = {"role": "assistant", "content": text or None}
        if calls:
            message["tool_calls"] = calls
        self.messages.append(message)
        self._note(message, where, None, tuple(paths))

    def _call(self, part: JSON, path: str, i: int, j: int) -> JSON:
        call = fields(part["functionCall"], path, _CALL, "FunctionCall")
        if call.get("partialArgs") is not None or call.get("willContinue"):
            raise unsupported(f"{path}.partialArgs", "streamed function call arguments are not translated")
        name = string(call.get("name"), f"{path}.name", non_empty=True)
        given = call.get("id")
        call_id = string(given, f"{path}.id", non_empty=True) if given is not None else f"call_{i}_{j}"
        out: JSON = {"id": call_id, "type": "function",
                     "function": {"name": name, "arguments": _arguments(call.get("args"), f"{path}.args")}}
        signature = part.get("thoughtSignature")
        if isinstance(signature, str) and signature:
            out["extra_content"] = {"google": {"thought_signature": signature}}
        self._note(out, path, call)
        return out


def contents(value: Any, path: str = "contents", sources: list[Source] | None = None) -> list[JSON]:
    """The canonical messages of ``contents``; where each came from is added to ``sources``
    (sources.py) when given."""
    if value is None:
        raise InvalidRequest("* GenerateContentRequest.contents: contents is not specified", param=path)
    items = array(value, path)
    if not items:
        raise InvalidRequest("* GenerateContentRequest.contents: contents is not specified", param=path)
    converter = Contents(sources, path)
    for i, item in enumerate(items):
        converter.add(item, i)
    if not converter.messages:  # every content held only thought parts, which are not sent
        raise fail(path, "holds only thought parts, which are not sent: give at least one content "
                   "with another part")
    return converter.messages


def system_text(value: Any, path: str = "systemInstruction") -> str:
    """``systemInstruction`` (a Content of text parts, or a plain string) -> the system prompt."""
    if isinstance(value, str):
        return value
    content = fields(value, path, _CONTENT, "Content")
    texts = []
    for j, item in enumerate(array(content.get("parts") or [], f"{path}.parts")):
        part = fields(item, f"{path}.parts[{j}]", _PART, "Part")
        if set(part) - {"text", "thought", "thoughtSignature"} or part.get("text") is None:
            raise unsupported(f"{path}.parts[{j}]", "only text parts are translated in a system instruction")
        texts.append(string(part["text"], f"{path}.parts[{j}].text"))
    return "\n".join(t for t in texts if t)
