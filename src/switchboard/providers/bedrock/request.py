"""Canonical (OpenAI) chat request -> Bedrock Converse request body.

Reference: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
(Message, ContentBlock, ImageBlock, ToolResultBlock, InferenceConfiguration, ToolConfiguration,
ToolChoice, OutputConfig). Converse wants strictly alternating user/assistant turns starting with a
user turn, so consecutive same-role messages are merged and tool results travel in a user turn.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from switchboard.errors import InvalidRequest, UnsupportedParameter
from switchboard.providers.base import JSON
from switchboard.providers.params import check_supported, drops
from switchboard.providers.target import Target

SUPPORTED_PARAMS = frozenset({
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature",
    "top_p", "stop", "tools", "tool_choice", "parallel_tool_calls", "response_format", "user",
})
# Image media types Converse accepts, by the ImageBlock "format" value.
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                 "image/webp": "webp"}


def converse_body(request: JSON, target: Target) -> JSON:
    request = check_supported(request, SUPPORTED_PARAMS, target)
    system, messages = _conversation(request["messages"])
    body: JSON = {"messages": messages}
    if system:
        body["system"] = system
    if inference := _inference_config(request):
        body["inferenceConfig"] = inference
    if tool_config := _tool_config(request, messages, target):
        body["toolConfig"] = tool_config
    if output := _output_config(request, target):
        body["outputConfig"] = output
    # Sampling parameters Converse has no field for go to the model as-is.
    if request.get("top_k") is not None:
        body["additionalModelRequestFields"] = {"top_k": request["top_k"]}
    return body


# ---- messages ----

def _conversation(messages: list[JSON]) -> tuple[list[JSON], list[JSON]]:
    system: list[JSON] = []
    turns: list[JSON] = []
    for i, msg in enumerate(messages):
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend({"text": t} for t in _texts(msg.get("content"), i) if t)
            continue
        if role == "user":
            blocks, turn_role = _user_blocks(msg.get("content"), i), "user"
        elif role == "assistant":
            blocks, turn_role = _assistant_blocks(msg, i), "assistant"
        elif role == "tool":
            blocks, turn_role = [_tool_result(msg, i)], "user"
        else:
            raise InvalidRequest(
                f"messages[{i}].role '{role}' is not supported by provider type 'bedrock'; use tools and "
                "'tool' messages", param=f"messages[{i}].role")
        if not blocks:  # e.g. an assistant turn with neither text nor tool calls
            continue
        if turns and turns[-1]["role"] == turn_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": turn_role, "content": blocks})
    return system, turns


def _texts(content: Any, i: int) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    out = []
    for j, part in enumerate(content):
        if part.get("type") != "text":
            raise InvalidRequest(f"messages[{i}].content[{j}] must be text", param=f"messages[{i}].content")
        out.append(part["text"])
    return out


def _user_blocks(content: Any, i: int) -> list[JSON]:
    if isinstance(content, str):
        return [{"text": content}]
    blocks: list[JSON] = []
    for j, part in enumerate(content or ()):
        kind = part.get("type")
        if kind == "text":
            blocks.append({"text": part["text"]})
        elif kind == "image_url":
            blocks.append(image_block(part["image_url"]["url"], f"messages[{i}].content[{j}]"))
        else:
            raise InvalidRequest(
                f"content part type '{kind}' is not supported by provider type 'bedrock'",
                param=f"messages[{i}].content[{j}].type",
            )
    return blocks


def image_block(url: str, where: str) -> JSON:
    """A ``data:`` URL -> ImageBlock with the bytes inline (JSON blobs are base64 strings)."""
    param = f"{where}.image_url.url"
    if not url.startswith("data:"):
        # The gateway inlines http(s) images before the adapter runs (inline_images); anything
        # else reaching here cannot be sent.
        raise InvalidRequest("provider type 'bedrock' accepts images only as data: URLs", param=param)
    header, sep, data = url[5:].partition(",")
    media, _, encoding = header.partition(";")
    fmt = IMAGE_FORMATS.get(media.lower())
    if not sep or encoding != "base64" or fmt is None:
        raise InvalidRequest(
            "image data URLs must be base64 'data:image/(png|jpeg|gif|webp);base64,...'", param=param
        )
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("image data URL is not valid base64", param=param) from None
    return {"image": {"format": fmt, "source": {"bytes": data}}}


def _assistant_blocks(msg: JSON, i: int) -> list[JSON]:
    # Converse rejects blank text blocks, which clients send next to tool calls.
    blocks: list[JSON] = [{"text": t} for t in _texts(_text_only(msg.get("content")), i) if t.strip()]
    for j, call in enumerate(msg.get("tool_calls") or ()):
        fn = call.get("function") or {}
        blocks.append({"toolUse": {
            "toolUseId": call.get("id") or f"call_{i}_{j}",
            "name": fn.get("name"),
            "input": _arguments(fn.get("arguments"), f"messages[{i}].tool_calls[{j}].function.arguments"),
        }})
    return blocks


def _text_only(content: Any) -> Any:
    # Assistant content may hold refusal parts; only text is replayed.
    if isinstance(content, list):
        return [p for p in content if p.get("type") == "text"]
    return content


def _arguments(arguments: Any, param: str) -> Any:
    if arguments in (None, ""):
        return {}
    try:
        return orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise InvalidRequest(f"'{param}' must be valid JSON", param=param) from None


def _tool_result(msg: JSON, i: int) -> JSON:
    content = msg.get("content")
    if isinstance(content, str) or content is None:
        parts: list[JSON] = [{"text": content or ""}]
    else:
        parts = []
        for j, part in enumerate(content):
            if part.get("type") == "image_url":
                parts.append(image_block(part["image_url"]["url"], f"messages[{i}].content[{j}]"))
            else:
                parts.append({"text": part.get("text", "")})
    return {"toolResult": {"toolUseId": msg["tool_call_id"], "content": parts}}


# ---- parameters ----

def _inference_config(request: JSON) -> JSON:
    config: JSON = {}
    max_tokens = request.get("max_completion_tokens") or request.get("max_tokens")
    if max_tokens is not None:
        config["maxTokens"] = max_tokens
    if request.get("temperature") is not None:
        config["temperature"] = request["temperature"]
    if request.get("top_p") is not None:
        config["topP"] = request["top_p"]
    stop = request.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    return config


def _has_tool_blocks(messages: list[JSON]) -> bool:
    return any("toolUse" in b or "toolResult" in b for m in messages for b in m["content"])


def _tool_config(request: JSON, messages: list[JSON], target: Target) -> JSON | None:
    tools = request.get("tools") or []
    choice = request.get("tool_choice")
    if not tools:
        return _history_tools(messages)
    if choice == "none" and not _has_tool_blocks(messages):
        # Converse has no "none" choice; not offering the tools has the same effect. (With tool
        # blocks in the history Converse requires toolConfig, so the tools stay, without a choice.)
        return None
    config: JSON = {"tools": [_tool_spec(t, i, target) for i, t in enumerate(tools)]}
    if choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if choice.get("type") != "function" or not isinstance(name, str):
            raise InvalidRequest("tool_choice must name a function", param="tool_choice")
        config["toolChoice"] = {"tool": {"name": name}}
    return config


def _history_tools(messages: list[JSON]) -> JSON | None:
    """Converse refuses tool blocks without a toolConfig, and clients often drop ``tools`` on the
    turn after a tool result; declare the tools the history used, with an open schema."""
    names = dict.fromkeys(b["toolUse"]["name"] for m in messages for b in m["content"] if "toolUse" in b)
    if not names:
        return None
    return {"tools": [{"toolSpec": {"name": n, "inputSchema": {"json": {"type": "object"}}}} for n in names]}


def _tool_spec(tool: JSON, i: int, target: Target) -> JSON:
    if tool.get("type") != "function":
        raise UnsupportedParameter(
            f"tool type '{tool.get('type')}' is not supported by provider type 'bedrock' "
            f"(model '{target.name}')",
            param=f"tools[{i}].type",
        )
    fn = tool["function"]
    spec: JSON = {
        "name": fn["name"],
        "inputSchema": {"json": fn.get("parameters") or {"type": "object", "properties": {}}},
    }
    if fn.get("description"):
        spec["description"] = fn["description"]
    if fn.get("strict") is True:
        spec["strict"] = True
    return {"toolSpec": spec}


def _output_config(request: JSON, target: Target) -> JSON | None:
    fmt = request.get("response_format") or {}
    kind = fmt.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_schema":
        schema = fmt["json_schema"]
        definition: JSON = {
            # Converse takes the schema as a JSON string, not an object.
            "schema": orjson.dumps(schema.get("schema") or {"type": "object"}).decode(),
            "name": schema["name"],
        }
        if schema.get("description"):
            definition["description"] = schema["description"]
        return {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": definition}}}
    if drops(request, target):
        return None
    raise UnsupportedParameter(
        f"response_format type '{kind}' is not supported by provider type 'bedrock' (model '{target.name}'); "
        "use 'json_schema' with a schema, or set drop_params: true to drop it",
        param="response_format",
    )
