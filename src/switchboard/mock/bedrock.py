"""Mock of AWS Bedrock Runtime: ``POST /model/{modelId}/converse``, ``/converse-stream`` (binary
``application/vnd.amazon.eventstream``) and ``/invoke`` for Titan and Cohere embedding models.

Strict like the real service (https://docs.aws.amazon.com/bedrock/latest/APIReference/):
requests must carry a valid SigV4 signature (service ``bedrock``; the secret is the mock's api key,
any access key id) or a Bedrock API key as ``Authorization: Bearer``; unknown fields, roles other
than user/assistant, a first turn that is not the user's, non-alternating turns, blank text, tool
blocks without ``toolConfig``, tool use ids outside ``[a-zA-Z0-9_-]{1,64}`` and unmatched tool
results are rejected; thinking, prompt caching,
Claude's matched stop sequence and requestMetadata bounds live in ``bedrock_features``. Errors are
``{"message": ...}`` with the exception name in ``x-amzn-ErrorType``; injected faults use the same
shape, and ``fail_after`` sends an exception frame (``error_code`` picks its type, e.g.
``throttlingException``; default ``modelStreamErrorException``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchboard.mock import bedrock_features as F
from switchboard.mock import text as T
from switchboard.mock.bedrock_features import Invalid
from switchboard.mock.common import before_answer, json_response, request_controls, stream_response
from switchboard.mock.controls import Controls
from switchboard.upstream import sigv4
from switchboard.upstream.eventstream import encode_message

_NAMESPACE = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_CONVERSE_KEYS = frozenset({
    "messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig", "additionalModelRequestFields",
    "additionalModelResponseFieldPaths", "promptVariables", "requestMetadata", "performanceConfig",
    "outputConfig", "serviceTier",
})
_BLOCK_KEYS = frozenset({"text", "image", "document", "video", "toolUse", "toolResult", "guardContent",
                         "cachePoint", "reasoningContent", "citationsContent"})
_INFERENCE_KEYS = frozenset({"maxTokens", "temperature", "topP", "stopSequences"})
_TOOL_SPEC_KEYS = frozenset({"name", "description", "inputSchema", "strict"})
_IMAGE_MAGIC = {"png": (b"\x89PNG",), "jpeg": (b"\xff\xd8\xff",), "gif": (b"GIF87a", b"GIF89a"),
                "webp": (b"RIFF",)}
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_TOOL_USE_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_MAX_SKEW_SECONDS = 15 * 60
_FAULTS = {
    400: ("ValidationException", "mock: injected validation error"),
    403: ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    404: ("ResourceNotFoundException", "Could not resolve the foundation model from the model identifier."),
    408: ("ModelTimeoutException", "Model has timed out in processing the request."),
    424: ("ModelErrorException", "The model returned an error."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    503: ("ServiceUnavailableException", "Too many connections, please wait before trying again."),
}


_SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)


def error(kind: str, message: str, status: int, retry_after: str = "") -> Response:
    headers = {"x-amzn-ErrorType": kind + _NAMESPACE, "x-amzn-RequestId": str(uuid.uuid4())}
    if retry_after:
        headers["retry-after"] = retry_after
    return json_response({"message": message}, status, headers)


def _invalid(message: str) -> Response:
    return error("ValidationException", message, 400)


def injected(c: Controls) -> Response | None:
    if not c.status:
        return None
    if c.status == 400 and c.error_code == "context_length_exceeded":
        return _invalid("Input is too long for requested model.")
    kind, message = _FAULTS.get(c.status, ("InternalServerException", "mock: injected internal error"))
    return error(kind, message, c.status, c.retry_after)


# ---- authentication ----

def _denied(kind: str, message: str) -> Response:
    return error(kind, message, 403)


def check_auth(request: Request, body: bytes) -> Response | None:
    key: str | None = request.app.state.api_key
    if not key:
        return None
    auth = request.headers.get("authorization", "")
    if not auth:
        return _denied("MissingAuthenticationTokenException", "Missing Authentication Token")
    if auth.startswith("Bearer "):
        ok = hmac.compare_digest(auth[7:], key)
        return None if ok else _denied("UnrecognizedClientException", "The security token included in the "
                                       "request is invalid.")
    if not auth.startswith(sigv4.ALGORITHM + " "):
        return _denied("IncompleteSignatureException", "Authorization header requires 'Credential', "
                       "'Signature' and 'SignedHeaders' parameters.")
    return _check_signature(request, body, key, auth)


def _check_signature(request: Request, body: bytes, secret: str, auth: str) -> Response | None:
    fields = dict(p.strip().partition("=")[::2] for p in auth[len(sigv4.ALGORITHM) + 1:].split(","))
    scope = fields.get("Credential", "").split("/")
    signed = [h for h in fields.get("SignedHeaders", "").split(";") if h]
    amz_date = request.headers.get("x-amz-date", "")
    if len(scope) != 5 or not fields.get("Signature") or not signed:
        return _denied("IncompleteSignatureException", "Authorization header requires 'Credential', "
                       "'Signature' and 'SignedHeaders' parameters.")
    _, date, region, service, terminal = scope
    if service != "bedrock" or terminal != "aws4_request" or date != amz_date[:8]:
        return _denied("InvalidSignatureException", "Credential should be scoped to correct service: "
                       f"'bedrock'. Got {'/'.join(scope[1:])} for date {amz_date}.")
    if (problem := _date_problem(amz_date)) is not None:
        return _denied("InvalidSignatureException", problem)
    if "host" not in signed or "x-amz-date" not in signed or (
        "x-amz-security-token" in request.headers and "x-amz-security-token" not in signed
    ):
        return _denied("InvalidSignatureException", "'Host', 'X-Amz-Date' and 'X-Amz-Security-Token' "
                       "(when sent) must be signed.")
    headers = {name: request.headers.get(name, "") for name in signed}
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    canonical, _ = sigv4.canonical_request(
        request.method, raw_path.decode("latin-1"), request.scope.get("query_string", b"").decode("latin-1"),
        headers, hashlib.sha256(body).hexdigest(),
    )
    expected = sigv4.signature(secret, amz_date, region, service, canonical)
    if not hmac.compare_digest(expected, fields["Signature"]):
        return _denied("InvalidSignatureException", _SIGNATURE_MISMATCH)
    return None


def _date_problem(amz_date: str) -> str | None:
    try:
        when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "X-Amz-Date must be in the ISO8601 basic format YYYYMMDD'T'HHMMSS'Z'."
    if abs((datetime.now(UTC) - when).total_seconds()) > _MAX_SKEW_SECONDS:
        return f"Signature expired: {amz_date} is now earlier or later than the allowed 15 minute window."
    return None


# ---- Converse validation ----

_START_WITH_USER = ("A conversation must start with a user message. Try again with a conversation that "
                    "starts with a user message.")
_ALTERNATE = ("A conversation must alternate between user and assistant roles. Make sure the conversation "
              "alternates between user and assistant roles and try again.")
_TOOL_CONFIG_NEEDED = "The toolConfig field must be defined when using toolUse and toolResult content blocks."
_MALFORMED = "Malformed input request, please reformat your input and try again."


_require = F.require


def _extraneous(keys: Any, allowed: frozenset[str] | set[str], where: str = "") -> None:
    for key in keys:
        _require(key in allowed, f"Malformed input request: extraneous key [{where}{key}] is not permitted")


def _only_member(value: Any, allowed: frozenset[str] | tuple[str, ...]) -> str | None:
    """The single member name of a union object, or None when it is not exactly one allowed member."""
    if isinstance(value, dict) and len(value) == 1 and (name := next(iter(value))) in allowed:
        return str(name)
    return None


def validate_converse(body: Any, model: str = "") -> None:
    if not isinstance(body, dict):
        raise Invalid(_MALFORMED)
    _extraneous(body, _CONVERSE_KEYS)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Invalid("The messages field is required and must not be empty.")
    for i, msg in enumerate(messages):
        _message(msg, i, model)
    _require(messages[0]["role"] == "user", _START_WITH_USER)
    if F.is_claude(model) and messages[-1]["role"] == "assistant":
        last = [b for b in messages[-1]["content"] if "cachePoint" not in b][-1:]
        text = last[0].get("text") if last else None
        _require(not isinstance(text, str) or text == text.rstrip(),
                 "The model returned the following errors: messages: final assistant content cannot end "
                 "with trailing whitespace")
    for prev, msg in itertools.pairwise(messages):
        _require(prev["role"] != msg["role"], _ALTERNATE)
        _tool_results_match(prev, msg)
    _system(body.get("system"))
    _inference(body.get("inferenceConfig"), model)
    uses_tools = any("toolUse" in b or "toolResult" in b for m in messages for b in m["content"])
    _require(not uses_tools or body.get("toolConfig") is not None, _TOOL_CONFIG_NEEDED)
    _tool_config(body.get("toolConfig"))
    _output_config(body.get("outputConfig"))
    extra = body.get("additionalModelRequestFields")
    _require(extra is None or isinstance(extra, dict), "additionalModelRequestFields must be a JSON object.")
    if F.thinking_asked(model, extra or {}) and "thinking" in (extra or {}):
        F.check_while_thinking(body)
    F.check_budget(extra or {}, body.get("inferenceConfig") or {})
    F.check_tool_choice(extra or {}, body.get("toolConfig"), model)
    F.check_metadata(body.get("requestMetadata"))
    F.check_response_paths(body.get("additionalModelResponseFieldPaths"))


def _message(msg: Any, i: int, model: str) -> None:
    if not isinstance(msg, dict):
        raise Invalid(f"messages.{i} must be an object.")
    role = msg.get("role")
    if role not in ("user", "assistant"):
        raise Invalid(f"1 validation error detected: Value '{role}' at 'messages."
                      f"{i + 1}.member.role' failed to satisfy constraint: Member must satisfy enum value "
                      "set: [user, assistant]")
    content = msg.get("content")
    if not isinstance(content, list) or not content:
        raise Invalid(f"The content field in the Message object at messages.{i} is empty. Add a ContentBlock "
                      "object to the content field and try again.")
    for j, block in enumerate(content):
        _block(block, f"messages.{i}.content.{j}", role, model)


def _block(block: Any, where: str, role: str, model: str = "") -> None:
    kind = _only_member(block, _BLOCK_KEYS)
    if kind is None:
        raise Invalid(f"The ContentBlock object at {where} must set exactly one of its members.")
    value = block[kind]
    if kind == "text":
        _require(isinstance(value, str) and value.strip(), f"The text field in the ContentBlock object at "
                 f"{where} is blank. Add text to the text field, and try again.")
    elif kind == "image":
        _image(value, where)
    elif kind == "toolUse":
        _require(role == "assistant", f"{where}: toolUse blocks are only allowed in assistant messages.")
        _require(isinstance(value, dict) and isinstance(value.get("toolUseId"), str)
                 and isinstance(value.get("name"), str) and "input" in value,
                 f"{where}.toolUse requires toolUseId, name and input.")
        _tool_use_id(value["toolUseId"], f"{where}.toolUse.toolUseId")
    elif kind == "toolResult":
        _tool_result(value, where, role)
    elif kind == "reasoningContent":
        F.check_reasoning(value, where, role, model)
    elif kind == "cachePoint":
        F.check_cache_point(value, where)


def _tool_result(value: Any, where: str, role: str) -> None:
    _require(role == "user", f"{where}: toolResult blocks are only allowed in user messages.")
    if not isinstance(value, dict) or not isinstance(value.get("toolUseId"), str):
        raise Invalid(f"{where}.toolResult requires toolUseId and content.")
    _tool_use_id(value["toolUseId"], f"{where}.toolResult.toolUseId")
    parts = value.get("content")
    if not isinstance(parts, list):
        raise Invalid(f"{where}.toolResult requires toolUseId and content.")
    # Empty content and blank text are refused (by Converse, or by the model: Claude's "text
    # content blocks must contain non-whitespace text").
    _require(parts, f"The content field in the ToolResultBlock object at {where}.toolResult is empty. "
             "Add a ToolResultContentBlock object to the content field and try again.")
    for k, part in enumerate(parts):
        kind = _only_member(part, ("text", "json", "image", "document"))
        _require(kind, f"{where}.toolResult.content.{k} must be one of text, json, image, document.")
        if kind == "image":
            _image(part["image"], f"{where}.toolResult.content.{k}")
        elif kind == "text":
            _require(isinstance(part["text"], str) and part["text"].strip(), "The text field in the "
                     f"ToolResultContentBlock object at {where}.toolResult.content.{k} is blank. Add text to "
                     "the text field, and try again.")


def _tool_use_id(value: str, where: str) -> None:
    # ToolUseBlock / ToolResultBlock: toolUseId is 1-64 characters matching ^[a-zA-Z0-9_-]+$.
    _require(_TOOL_USE_ID.fullmatch(value), f"1 validation error detected: Value '{value}' at '{where}' "
             "failed to satisfy constraint: Member must satisfy regular expression pattern: "
             "^[a-zA-Z0-9_-]+$ and have length between 1 and 64")


def _image(value: Any, where: str) -> None:
    fmt = value.get("format") if isinstance(value, dict) else None
    if not isinstance(fmt, str) or fmt not in _IMAGE_MAGIC:
        raise Invalid(f"{where}.image.format must be one of png, jpeg, gif, webp.")
    data = (value.get("source") or {}).get("bytes")
    try:
        raw = base64.b64decode(data or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise Invalid(f"{where}.image.source.bytes is not valid base64.") from None
    _require(raw.startswith(_IMAGE_MAGIC[fmt]), f"Could not process image at {where}: the bytes are not a "
             f"valid {fmt} image.")


def _tool_results_match(prev: dict[str, Any], msg: dict[str, Any]) -> None:
    uses = {b["toolUse"]["toolUseId"] for b in prev["content"] if "toolUse" in b}
    for block in msg["content"]:
        if "toolResult" in block:
            use_id = block["toolResult"]["toolUseId"]
            _require(use_id in uses, f"The toolResult block with toolUseId {use_id} does not match a toolUse "
                     "block of the previous turn.")


def _system(system: Any) -> None:
    if system is None:
        return
    if not isinstance(system, list):
        raise Invalid("system must be a list of SystemContentBlock objects.")
    for i, block in enumerate(system):
        if isinstance(block, dict) and "cachePoint" in block:
            F.check_cache_point(block["cachePoint"], f"system.{i}")
            continue
        text = block.get("text") if isinstance(block, dict) else None
        _require(isinstance(text, str) and text.strip(),
                 f"The text field in the SystemContentBlock object at system.{i} is blank.")


def _inference(config: Any, model: str) -> None:
    if config is None:
        return
    if not isinstance(config, dict):
        raise Invalid("inferenceConfig must be an object.")
    _extraneous(config, _INFERENCE_KEYS, "inferenceConfig.")
    max_tokens = config.get("maxTokens")
    _require(max_tokens is None or (isinstance(max_tokens, int) and max_tokens >= 1),
             "Value at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value "
             "greater than or equal to 1")
    for key in ("temperature", "topP"):
        value = config.get(key)
        _require(value is None or (isinstance(value, int | float) and 0 <= value <= 1),
                 f"1 validation error detected: Value '{value}' at 'inferenceConfig.{key}' failed to satisfy "
                 "constraint: Member must have value less than or equal to 1")
    stops = config.get("stopSequences")
    _require(stops is None or (isinstance(stops, list) and all(isinstance(s, str) and s for s in stops)),
             "inferenceConfig.stopSequences must be a list of non-empty strings.")
    # Claude's own rule, reported through Converse as the model's error.
    _require(not F.is_claude(model) or all(s.strip() for s in stops or ()),
             "The model returned the following errors: stop_sequences: each stop sequence must contain "
             "non-whitespace")


def _tool_config(config: Any) -> None:
    if config is None:
        return
    tools = config.get("tools") if isinstance(config, dict) else None
    if not isinstance(tools, list) or not tools:
        raise Invalid("The toolConfig.tools field must not be empty.")
    names = {_tool_name(tool, i) for i, tool in enumerate(tools) if "cachePoint" not in tool}
    for i, tool in enumerate(tools):
        if "cachePoint" in tool:
            F.check_cache_point(tool["cachePoint"], f"toolConfig.tools.{i}")
    choice = config.get("toolChoice")
    if choice is None:
        return
    kind = _only_member(choice, ("auto", "any", "tool"))
    _require(kind, "toolConfig.toolChoice must set exactly one of auto, any, tool.")
    if kind == "tool":
        _require((choice["tool"] or {}).get("name") in names,
                 "toolConfig.toolChoice.tool.name must name one of the tools.")


def _tool_name(tool: Any, i: int) -> str:
    spec = tool.get("toolSpec") if isinstance(tool, dict) else None
    if not isinstance(spec, dict):
        raise Invalid(f"toolConfig.tools.{i} must hold a toolSpec.")
    _extraneous(spec, _TOOL_SPEC_KEYS, f"toolConfig.tools.{i}.toolSpec.")
    _require(spec.get("strict") in (None, True, False),
             f"toolConfig.tools.{i}.toolSpec.strict must be a boolean.")
    name = spec.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.match(name):
        raise Invalid(f"Value '{name}' at 'toolConfig.tools.{i + 1}.member.toolSpec.name' failed to satisfy "
                      "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+")
    _require(isinstance((spec.get("inputSchema") or {}).get("json"), dict),
             f"toolConfig.tools.{i}.toolSpec.inputSchema.json must be a JSON schema object.")
    return name


def _output_config(config: Any) -> None:
    if config is None:
        return
    fmt = config.get("textFormat") if isinstance(config, dict) else None
    schema = ((fmt or {}).get("structure") or {}).get("jsonSchema") or {}
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(schema.get("schema"),
                                                                                        str):
        raise Invalid("outputConfig.textFormat must be {type: json_schema, structure: {jsonSchema: "
                      "{schema: <JSON string>}}}.")
    try:
        parsed = orjson.loads(schema["schema"])
    except orjson.JSONDecodeError:
        raise Invalid("outputConfig...jsonSchema.schema is not valid JSON.") from None
    _require(isinstance(parsed, dict), "outputConfig...jsonSchema.schema must be a JSON object.")


# ---- answering ----

def _tool_to_call(body: dict[str, Any], c: Controls) -> dict[str, Any] | None:
    config = body.get("toolConfig")
    if not config:
        return None
    last = body["messages"][-1]
    if any("toolResult" in b for b in last["content"]) and not c.tool_call:
        return None
    wanted = c.tool_call or ((config.get("toolChoice") or {}).get("tool") or {}).get("name")
    specs = [t["toolSpec"] for t in config["tools"] if "toolSpec" in t]
    return next((s for s in specs if s["name"] == wanted), specs[0])


def _reply_text(body: dict[str, Any], c: Controls) -> str:
    output = body.get("outputConfig")
    if output:
        schema = orjson.loads(output["textFormat"]["structure"]["jsonSchema"]["schema"])
        return orjson.dumps(T.arguments_for(schema)).decode()
    last = body["messages"][-1]
    results = [b["toolResult"] for b in last["content"] if "toolResult" in b]
    if results:
        return c.reply or f"The tool returned: {T.text_of(results[-1]['content'])[:200]}"
    return T.reply_text(" ".join(b["text"] for b in last["content"] if "text" in b), c.reply)


def _answer(body: dict[str, Any], c: Controls) -> tuple[str, str, str | None]:
    """(text, stopReason, the matched stop sequence) with stop sequences and maxTokens applied."""
    text = _reply_text(body, c)
    config = body.get("inferenceConfig") or {}
    cuts = [(text.find(s), s) for s in config.get("stopSequences") or () if s in text]
    if cuts:
        at, matched = min(cuts)
        return text[:at], "stop_sequence", matched
    text, cut = T.truncate(text, config.get("maxTokens"))
    return text, "max_tokens" if cut else "end_turn", None


def _usage(body: dict[str, Any], output_tokens: int, model: str) -> dict[str, Any]:
    tools = (body.get("toolConfig") or {}).get("tools")
    prompt = T.count_tokens([tools, body.get("system"), body["messages"]])
    read, written = F.cache_usage(model, body)
    usage: dict[str, Any] = {"inputTokens": prompt - read - written, "outputTokens": output_tokens,
                             "totalTokens": prompt + output_tokens}
    if read or written:
        usage |= {"cacheReadInputTokens": read, "cacheWriteInputTokens": written}
    if written:  # the writes by TTL, as Bedrock breaks them down (here: the last cachePoint's)
        usage["cacheDetails"] = [{"ttl": F.cache_ttl(body), "inputTokens": written}]
    return usage


class _Answer:
    """The content blocks of the reply, its stopReason, output tokens and extra response fields."""

    def __init__(self, body: dict[str, Any], c: Controls, model: str) -> None:
        self.blocks: list[dict[str, Any]] = []
        self.fields: dict[str, Any] = {}
        if F.thinking_asked(model, body.get("additionalModelRequestFields") or {}):
            last = body["messages"][-1]
            self.blocks.append(F.reasoning_block(model, " ".join(b["text"] for b in last["content"]
                                                                 if "text" in b)))
        tool = _tool_to_call(body, c)
        if tool is not None:
            args = T.arguments_for(tool["inputSchema"]["json"])
            use = {"toolUseId": "tooluse_" + uuid.uuid4().hex[:22], "name": tool["name"], "input": args}
            self.blocks.append({"toolUse": use})
            self.stop, self.tokens = "tool_use", T.count_tokens(orjson.dumps(args).decode())
        else:
            text, self.stop, matched = _answer(body, c)
            self.blocks.append({"text": text})
            self.tokens = len(T.words(text))
            paths = body.get("additionalModelResponseFieldPaths") or ()
            if matched is not None and "/stop_sequence" in paths and F.is_claude(model):
                self.fields["stop_sequence"] = matched
        for block in self.blocks[:-1]:
            self.tokens += T.count_tokens(block["reasoningContent"]["reasoningText"]["text"])


async def _checked_body(request: Request) -> tuple[Any, Response | None]:
    raw = await request.body()
    if (denied := check_auth(request, raw)) is not None:
        return None, denied
    try:
        body = orjson.loads(raw)
        validate_converse(body, request.path_params["model_id"])
    except orjson.JSONDecodeError:
        return None, error("SerializationException", "Unable to parse the request body as JSON.", 400)
    except Invalid as exc:
        return None, _invalid(str(exc))
    return body, None


async def converse(request: Request) -> Response:
    body, problem = await _checked_body(request)
    if problem is not None:
        return problem
    c = request_controls(request, body)
    if (fault := injected(c)) is not None:
        return fault
    await before_answer(c)
    model = request.path_params["model_id"]
    answer = _Answer(body, c, model)
    reply: dict[str, Any] = {
        "output": {"message": {"role": "assistant", "content": answer.blocks}},
        "stopReason": answer.stop,
        "usage": _usage(body, answer.tokens, model),
        "metrics": {"latencyMs": 1},
    }
    if answer.fields:
        reply["additionalModelResponseFields"] = answer.fields
    return json_response(reply, headers={"x-amzn-RequestId": str(uuid.uuid4())})


_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _frame(event: str, payload: dict[str, Any]) -> bytes:
    # The real service pads payloads with a "p" member so their length says nothing.
    data = orjson.dumps({**payload, "p": _PADDING[: 1 + len(event)]})
    headers = {":event-type": event, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(dict(headers), data)


def _exception_frame(kind: str, message: str) -> bytes:
    headers = {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}
    return encode_message(dict(headers), orjson.dumps({"message": message}))


def _block_events(block: dict[str, Any], index: int) -> list[bytes]:
    def delta(value: dict[str, Any]) -> bytes:
        return _frame("contentBlockDelta", {"contentBlockIndex": index, "delta": value})

    stop = _frame("contentBlockStop", {"contentBlockIndex": index})
    if "text" in block:
        return [delta({"text": w}) for w in T.words(block["text"])] + [stop]
    if "reasoningContent" in block:
        reasoning = block["reasoningContent"]["reasoningText"]
        events = [delta({"reasoningContent": {"text": w}}) for w in T.words(reasoning["text"])]
        if "signature" in reasoning:  # the signature comes last, once the block is complete
            events.append(delta({"reasoningContent": {"signature": reasoning["signature"]}}))
        return [*events, stop]
    use = block["toolUse"]
    start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
    # A call without arguments gets no input delta at all, as from Converse.
    args = orjson.dumps(use["input"]).decode() if use["input"] else ""
    return [_frame("contentBlockStart", {"contentBlockIndex": index, "start": start})] + [
        delta({"toolUse": {"input": args[k:k + 8]}}) for k in range(0, len(args), 8)
    ] + [stop]


async def converse_stream(request: Request) -> Response:
    body, problem = await _checked_body(request)
    if problem is not None:
        return problem
    c = request_controls(request, body)
    if (fault := injected(c)) is not None:
        return fault
    await before_answer(c)
    model = request.path_params["model_id"]
    answer = _Answer(body, c, model)
    stop: dict[str, Any] = {"stopReason": answer.stop}
    if answer.fields:
        stop["additionalModelResponseFields"] = answer.fields
    events = [
        _frame("messageStart", {"role": "assistant"}),
        *(e for i, block in enumerate(answer.blocks) for e in _block_events(block, i)),
        _frame("messageStop", stop),
        _frame("metadata", {"usage": _usage(body, answer.tokens, model), "metrics": {"latencyMs": 1}}),
    ]
    kind = c.error_code or "modelStreamErrorException"
    return stream_response(c, events, lambda: _exception_frame(kind, "mock: injected mid-stream failure"),
                           media_type="application/vnd.amazon.eventstream")


# ---- InvokeModel: embeddings ----

def _titan(model: str, body: dict[str, Any]) -> dict[str, Any]:
    v2 = "v2" in model
    allowed = {"inputText", "dimensions", "normalize", "embeddingTypes"} if v2 else {"inputText"}
    _extraneous(body, allowed, "#: ")
    text = body.get("inputText")
    if not isinstance(text, str) or not text:
        raise Invalid("Malformed input request: #/inputText: expected minLength: 1")
    dims = body.get("dimensions", 1024 if v2 else 1536)
    if dims not in ((256, 512, 1024) if v2 else (1536,)):
        raise Invalid(f"Malformed input request: #/dimensions: {dims} is not a valid enum value")
    vector = T.embedding(text, dims)
    tokens = T.count_tokens(text)
    return {"embedding": vector, "inputTextTokenCount": tokens, "embeddingsByType": {"float": vector}}


_EMBEDDING_TYPES = ("float", "int8", "uint8", "binary", "ubinary")


def _cohere(model: str, body: dict[str, Any]) -> dict[str, Any]:
    v4 = "embed-v4" in model  # Embed v4 alone takes an output dimension (and max_tokens)
    v4_keys = {"output_dimension", "max_tokens"} if v4 else set()
    _extraneous(body, {"texts", "input_type", "truncate", "embedding_types", *v4_keys}, "#: ")
    dims = body.get("output_dimension", 1536 if v4 else 1024)
    _require(dims in (256, 512, 1024, 1536),
             f"Malformed input request: #/output_dimension: {dims} is not a valid enum value")
    texts = body.get("texts")
    if not isinstance(texts, list) or not 0 < len(texts) <= 96 or not all(isinstance(t, str) for t in texts):
        raise Invalid("Malformed input request: #/texts: expected 1 to 96 strings")
    _require(body.get("input_type") in ("search_document", "search_query", "classification", "clustering"),
             "Malformed input request: #: required key [input_type] not found")
    _require(body.get("truncate", "NONE") in ("NONE", "START", "END", "LEFT", "RIGHT"),
             "Malformed input request: #/truncate: expected NONE, START, END, LEFT or RIGHT")
    types = body.get("embedding_types")
    vectors = [T.embedding(t, dims) for t in texts]
    if types is None:
        return {"id": str(uuid.uuid4()), "texts": texts, "embeddings": vectors,
                "response_type": "embeddings_floats"}
    _require(isinstance(types, list) and bool(types) and all(t in _EMBEDDING_TYPES for t in types),
             "Malformed input request: #/embedding_types: expected float, int8, uint8, binary or ubinary")
    by_type = {t: [T.typed_embedding(v, t) for v in vectors] for t in types}
    return {"id": str(uuid.uuid4()), "texts": texts, "embeddings": by_type,
            "response_type": "embeddings_by_type"}


def _embedding(model: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Invalid(_MALFORMED)
    if "titan-embed" in model:
        return _titan(model, body)
    if "cohere.embed" in model:
        return _cohere(model, body)
    raise Invalid(f"The provided model identifier is invalid or not served by this mock: {model}")


async def invoke(request: Request) -> Response:
    raw = await request.body()
    if (denied := check_auth(request, raw)) is not None:
        return denied
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return error("SerializationException", "Unable to parse the request body as JSON.", 400)
    c = request_controls(request, body)
    if (fault := injected(c)) is not None:
        return fault
    try:
        answer = _embedding(request.path_params["model_id"], body)
    except Invalid as exc:
        return _invalid(str(exc))
    await before_answer(c)
    # InvokeModel reports the input tokens in a header (the only place for Cohere's models).
    texts = body.get("texts") or [body.get("inputText")]
    tokens = sum(T.count_tokens(t) for t in texts)
    return json_response(answer, headers={"x-amzn-RequestId": str(uuid.uuid4()),
                                          "X-Amzn-Bedrock-Input-Token-Count": str(tokens)})


def routes() -> list[Route]:
    return [
        Route("/model/{model_id:path}/converse", converse, methods=["POST"]),
        Route("/model/{model_id:path}/converse-stream", converse_stream, methods=["POST"]),
        Route("/model/{model_id:path}/invoke", invoke, methods=["POST"]),
    ]
