"""Mock of Google's Gemini API, on AI Studio paths and on Vertex AI paths, plus a token endpoint.

Paths:
    POST /v1beta/models/<model>:generateContent | :streamGenerateContent[?alt=sse] | :batchEmbedContents
    POST /v1/projects/<p>/locations/<l>/publishers/google/models/<model>:generateContent | ... | :predict
    POST /vertex/token   the OAuth token endpoint of a service account (JWT bearer grant)
    POST /vertex/keys    test hook: publish a service account's public key, as Google publishes
                         its certificates; assertions signed by unknown keys are refused
    GET  /vertex/stats   how many access tokens each service account was issued

Strict like the real API (https://ai.google.dev/api/generate-content): unknown field names,
role "assistant", missing ``contents``, empty parts, functionResponse without name, schema keys
outside Gemini's subset, allowedFunctionNames outside mode ANY or VALIDATED, a thinkingConfig with
both a budget and a level, a thinkingLevel the model does not take (3 Pro: low and high only), an
inline image whose bytes are another image type than its mimeType,
an unknown mediaResolution, Gemini 3 function calls without thought
signature, replayed function calls whose signature is not the one this mock gave and ``labels``
on AI Studio paths (only Vertex AI has them) are refused with Google's error body. Thinking is on
for Gemini 3 models and when thinkingConfig asks for a budget or a level: function calls then
carry a ``thoughtSignature``, and ``includeThoughts`` adds a thought part (``thought: true``)
before the answer. AI Studio paths check the
``x-goog-api-key`` header (a wrong key is 400 API_KEY_INVALID, as Google answers); Vertex paths
need a token this mock issued. Directives of ``mock/controls.py`` work, plus ``mock:safety=1``
(a candidate stopped with SAFETY), ``mock:malformed_call=1`` (a candidate stopped with
MALFORMED_FUNCTION_CALL, nothing in it), ``mock:finish_reason=NAME`` (a candidate stopped with
that finishReason, nothing in it), ``mock:text_finish_reason=NAME`` (the usual text, then that
finishReason), ``mock:block_prompt=1`` (promptFeedback.blockReason),
``mock:error_shape=list|bare`` (an injected error as a one-element array, or as a bare
``google.rpc.Status`` without the ``error`` member), ``mock:cached_tokens=N`` and
``mock:thoughts_tokens=N`` (usage fields), ``mock:image_tokens=N``,
``mock:audio_tokens=N`` (image and audio units added to the prompt, listed by modality in
``promptTokensDetails``), ``mock:image_output_tokens=N`` and ``mock:audio_output_tokens=N`` (added
to the candidates, listed in ``candidatesTokensDetails``).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchboard.mock import text as T
from switchboard.mock.common import (
    before_answer,
    in_parallel,
    json_response,
    new_id,
    read_json,
    request_controls,
    stream_response,
)
from switchboard.mock.controls import Controls, text_of

JSON = dict[str, Any]
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
# google.rpc.Code numbers, which a bare google.rpc.Status carries in place of the HTTP status.
_GRPC_CODE = {400: 3, 401: 16, 403: 7, 404: 5, 429: 8, 500: 13, 503: 14, 504: 4}
_TOP = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings",
        "cachedContent"}
_VERTEX_TOP = _TOP | {"labels"}  # custom metadata labels exist on Vertex AI only
_GENERATION = {"temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences", "seed",
               "presencePenalty", "frequencyPenalty", "responseMimeType", "responseSchema",
               "responseJsonSchema", "responseLogprobs", "logprobs", "thinkingConfig", "responseModalities",
               "mediaResolution", "enableEnhancedCivicAnswers"}
_SCHEMA = {"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties",
           "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example",
           "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum"}
_TYPES = {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}
_PART_DATA = {"text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
              "codeExecutionResult"}
_IMAGE_TYPES = {"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"}
_PART_META = {"thought", "thoughtSignature", "videoMetadata"}
_DECLARATION = {"name", "description", "parameters", "parametersJsonSchema", "response", "behavior"}
_FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")
_EXTRA = re.compile(r"mock:(safety|malformed_call|block_prompt|cached_tokens|thoughts_tokens|image_tokens"
                    r"|audio_tokens|image_output_tokens|audio_output_tokens)=(\d+)")
_FINISH = re.compile(r"mock:finish_reason=([A-Z_]+)")
_TEXT_FINISH = re.compile(r"mock:text_finish_reason=([A-Z_]+)")
SKIP_SIGNATURE = "skip_thought_signature_validator"
_THINKING = {"thinkingBudget", "thinkingLevel", "includeThoughts"}
_RESOLUTIONS = {"MEDIA_RESOLUTION_UNSPECIFIED", "MEDIA_RESOLUTION_LOW", "MEDIA_RESOLUTION_MEDIUM",
                "MEDIA_RESOLUTION_HIGH"}
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class Invalid(Exception):
    """A request the real API refuses: 400 INVALID_ARGUMENT with this message."""


# -- errors ------------------------------------------------------------------------------------


def error(status: int, message: str, details: list[JSON] | None = None, shape: str = "") -> Response:
    """Google's error body; ``shape`` ``list`` wraps it in a one-element array (the JSON-array
    stream without ``alt=sse``), ``bare`` is the ``google.rpc.Status`` itself with its gRPC code
    number and no ``error`` member (as Google's API proxies, ESP and API Gateway, answer)."""
    err: JSON = {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}
    if details:
        err["details"] = details
    if shape == "bare":
        bare: JSON = {"code": _GRPC_CODE.get(status, 2), "message": message}
        return json_response({**bare, "details": details} if details else bare, status)
    return json_response([{"error": err}] if shape == "list" else {"error": err}, status)


def injected(c: Controls) -> Response | None:
    if not c.status:
        return None
    if c.status == 429:
        delay = f"{c.retry_after or '1'}s"
        retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}
        limited = error(429, "Resource has been exhausted (e.g. check quota).", [retry], c.error_shape)
        if c.retry_header:
            limited.headers["retry-after"] = c.retry_header
        return limited
    if c.error_code == "context_length_exceeded":
        return error(400, "The input token count (1234567) exceeds the maximum number of tokens allowed "
                          "(1048576).", shape=c.error_shape)
    if c.status == 503:
        return error(503, "The model is overloaded. Please try again later.", shape=c.error_shape)
    return error(c.status, f"mock: injected error {c.status}", shape=c.error_shape)


def _unknown(obj: JSON, allowed: set[str], where: str) -> None:
    for key in obj:
        camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key)  # proto JSON takes both spellings
        if camel not in allowed:
            raise Invalid(f'Invalid JSON payload received. Unknown name "{key}" at \'{where}\': '
                          "Cannot find field.")


# -- credentials ---------------------------------------------------------------------------------


def check_api_key(request: Request) -> Response | None:
    expected = request.app.state.api_key
    given = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    if not expected:
        return None
    if not given:
        return error(403, "Method doesn't allow unregistered callers (callers without established identity). "
                          "Please use API Key or other form of API consumer identity to call this API.")
    if given != expected:
        info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                "domain": "googleapis.com"}
        return error(400, "API key not valid. Please pass a valid API key.", [info])
    return None


def _state(request: Request, name: str) -> dict[str, Any]:
    value = getattr(request.app.state, name, None)
    if value is None:
        value = {}
        setattr(request.app.state, name, value)
    return value


def check_token(request: Request) -> Response | None:
    if not request.app.state.api_key:
        return None
    auth = request.headers.get("authorization", "")
    expiry = _state(request, "google_tokens").get(auth.removeprefix("Bearer "))
    if not auth.startswith("Bearer ") or expiry is None or expiry < time.time():
        return error(401, "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                          "login cookie or other valid authentication credential.")
    return None


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _oauth_error(code: str, description: str) -> Response:
    return json_response({"error": code, "error_description": description}, 400)


def _check_assertion(request: Request, assertion: str) -> str:
    """The verified client_email of a JWT bearer assertion; ValueError(description) when refused."""
    try:
        head, claims_b64, sig = assertion.split(".")
        header, claims = orjson.loads(_b64url(head)), orjson.loads(_b64url(claims_b64))
    except (ValueError, binascii.Error):
        raise ValueError("Invalid JWT: the assertion is not a JWT") from None
    if header.get("alg") != "RS256" or not header.get("kid"):
        raise ValueError("Invalid JWT header: alg must be RS256 and kid set")
    now = time.time()
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int) or not isinstance(exp, int) or not (exp - 3600 <= iat <= now + 60 < exp + 60):
        raise ValueError("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
                         "timeframe")
    if urlsplit(str(claims.get("aud"))).path != request.url.path:
        raise ValueError("Invalid JWT: aud must be the token endpoint")
    if "https://www.googleapis.com/auth/cloud-platform" not in str(claims.get("scope", "")).split():
        raise ValueError("Invalid OAuth scope or ID token audience provided.")
    published = _state(request, "google_keys").get(header["kid"])
    if published is None or published[0] != claims.get("iss"):
        raise ValueError("Invalid JWT Signature.")
    try:
        signed = f"{head}.{claims_b64}".encode()
        published[1].verify(_b64url(sig), signed, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        raise ValueError("Invalid JWT Signature.") from None
    return str(claims["iss"])


async def token(request: Request) -> Response:
    # ``?mock:status=503`` in a key file's token_uri: the endpoint answers that status (an
    # outage of Google's OAuth service, not a refused key).
    status = request_controls(request, unquote(request.url.query)).status
    if status:
        return json_response({"error": "temporarily_unavailable", "error_description": "mock outage"}, status)
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
    if form.get("grant_type") != JWT_GRANT:
        return _oauth_error("unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type', '')}")
    try:
        email = _check_assertion(request, form.get("assertion", ""))
    except ValueError as exc:
        return _oauth_error("invalid_grant", str(exc))
    access = "ya29.mock-" + secrets.token_urlsafe(24)
    _state(request, "google_tokens")[access] = time.time() + 3600
    issued = _state(request, "google_issued")
    issued[email] = issued.get(email, 0) + 1
    return json_response({"access_token": access, "expires_in": 3599, "token_type": "Bearer"})


async def publish_key(request: Request) -> Response:
    body = await read_json(request)
    try:
        key = serialization.load_pem_public_key(str(body["public_key_pem"]).encode())
        assert isinstance(key, rsa.RSAPublicKey)
        _state(request, "google_keys")[str(body["private_key_id"])] = (str(body["client_email"]), key)
    except (TypeError, KeyError, ValueError, AssertionError):
        return json_response({"error": "expected client_email, private_key_id, RSA public_key_pem"}, 400)
    return Response(status_code=204)


async def stats(request: Request) -> Response:
    return json_response({"issued": _state(request, "google_issued")})


# -- request validation --------------------------------------------------------------------------


def validate_generate(body: Any, model: str, vertex: bool = False) -> None:
    if not isinstance(body, dict):
        raise Invalid("Invalid JSON payload received. Expected an object.")
    _unknown(body, _VERTEX_TOP if vertex else _TOP, "")
    labels = body.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise Invalid("Invalid value at 'labels' (map<string, string>)")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise Invalid("* GenerateContentRequest.contents: contents is not specified\n")
    for i, content in enumerate(contents):
        _content(content, f"contents[{i}]", roles=True, vertex=vertex)
        _signatures(content, i, model)
    if body.get("systemInstruction") is not None:
        _content(body["systemInstruction"], "system_instruction", roles=False, vertex=vertex)
    names = _tools(body.get("tools"))
    _tool_config(body.get("toolConfig"), names)
    _generation(body.get("generationConfig"), model)
    _safety_settings(body.get("safetySettings"), vertex)


# SafetySetting: https://ai.google.dev/api/generate-content#safetysetting (Vertex adds ``method``).
_THRESHOLDS = {"HARM_BLOCK_THRESHOLD_UNSPECIFIED", "BLOCK_LOW_AND_ABOVE", "BLOCK_MEDIUM_AND_ABOVE",
               "BLOCK_ONLY_HIGH", "BLOCK_NONE", "OFF"}


def _safety_settings(settings: Any, vertex: bool) -> None:
    if settings is None:
        return
    if not isinstance(settings, list):
        raise Invalid("Invalid value at 'safety_settings': expected a list")
    for i, setting in enumerate(settings):
        where = f"safety_settings[{i}]"
        if not isinstance(setting, dict):
            raise Invalid(f"Invalid value at '{where}': expected an object")
        _unknown(setting, {"category", "threshold", "method"} if vertex else {"category", "threshold"}, where)
        category = setting.get("category")
        if not isinstance(category, str) or not category.startswith("HARM_CATEGORY_"):
            raise Invalid(f"Invalid value at '{where}.category' (HarmCategory), {category!r}")
        threshold = setting.get("threshold")
        if threshold not in _THRESHOLDS:
            raise Invalid(f"Invalid value at '{where}.threshold' (HarmBlockThreshold), {threshold!r}")


def _content(content: Any, where: str, roles: bool, vertex: bool) -> None:
    if not isinstance(content, dict):
        raise Invalid(f"Invalid value at '{where}': expected an object")
    _unknown(content, {"role", "parts"}, where)
    role = content.get("role")
    if roles and role not in (None, "user", "model"):
        raise Invalid("Please use a valid role: user, model.")
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        raise Invalid(f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.\n")
    for j, part in enumerate(parts):
        _part(part, f"{where}.parts[{j}]", vertex)


def _part(part: Any, where: str, vertex: bool) -> None:
    if not isinstance(part, dict):
        raise Invalid(f"Invalid value at '{where}': expected an object")
    _unknown(part, _PART_DATA | _PART_META, where)
    data = [k for k in part if k in _PART_DATA]
    if len(data) != 1:
        raise Invalid(f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have one "
                      "initialized field\n")
    kind, value = data[0], part[data[0]]
    if kind == "text" and not isinstance(value, str):
        raise Invalid(f"Invalid value at '{where}.text' (TYPE_STRING)")
    if kind == "inlineData":
        _inline(value, where, vertex)
    if kind == "functionCall" and not (isinstance(value, dict) and value.get("name")):
        raise Invalid(f"* GenerateContentRequest.{where}.function_call.name: Name cannot be empty.\n")
    if kind == "functionResponse":
        if not isinstance(value, dict) or not value.get("name"):
            raise Invalid(f"* GenerateContentRequest.{where}.function_response.name: Name cannot be empty.\n")
        if not isinstance(value.get("response"), dict):
            raise Invalid(f"Invalid value at '{where}.function_response.response' (type.googleapis.com/"
                          "google.protobuf.Struct)")


def _inline(value: Any, where: str, vertex: bool) -> None:
    if not isinstance(value, dict) or not value.get("mimeType") or not isinstance(value.get("data"), str):
        raise Invalid(f"* GenerateContentRequest.{where}.inline_data: mime_type and data are required\n")
    # The Gemini API's Blob is mimeType and data; Vertex AI's adds displayName.
    fields = {"mimeType", "data", "displayName"} if vertex else {"mimeType", "data"}
    _unknown(value, fields, f"{where}.inline_data")
    # Google's image types; it refuses others, "image/jpg" (not a registered type) among them.
    mime = value["mimeType"]
    if mime.startswith("image/") and mime not in _IMAGE_TYPES:
        raise Invalid(f"Unsupported MIME type: {mime}")
    try:
        data = base64.b64decode(value["data"], validate=True)
    except binascii.Error:
        raise Invalid(f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding failed"
                      ) from None
    # Google decodes an image as the type it is labelled: bytes of another image type are refused.
    actual = _image_type(data)
    if mime.startswith("image/") and actual is not None and actual != mime:
        raise Invalid("Unable to process input image. Please retry or report in "
                      "https://developers.generativeai.google/guide/troubleshooting")


def _image_type(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    return "image/webp" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else None


def signature(name: str) -> str:
    """The thought signature this mock gives a call of ``name`` (so it can tell one altered)."""
    return base64.b64encode(b"mock-thought-signature:" + name.encode()).decode()


def _signatures(content: Any, i: int, model: str) -> None:
    """Gemini 3 refuses a replayed step whose first function call lost its thought signature, and
    every model one whose signature was altered."""
    calls = [p for p in content["parts"] if "functionCall" in p]
    if "gemini-3" in model and calls and not calls[0].get("thoughtSignature"):
        raise Invalid(f"Function call is missing a thought_signature in functionCall parts. Additional data, "
                      f"function call `{calls[0]['functionCall']['name']}` , position {i + 1}.")
    for call in calls:
        given = call.get("thoughtSignature")
        if given not in (None, SKIP_SIGNATURE, signature(call["functionCall"]["name"])):
            raise Invalid(f"Corrupted thought signature in contents[{i}] "
                          f"(function call `{call['functionCall']['name']}`).")


def _tools(tools: Any) -> list[str]:
    names: list[str] = []
    for k, tool in enumerate(tools or []):
        _unknown(tool, {"functionDeclarations", "googleSearch", "codeExecution", "urlContext"}, f"tools[{k}]")
        for d, decl in enumerate(tool.get("functionDeclarations") or []):
            where = f"tools[{k}].function_declarations[{d}]"
            _unknown(decl, _DECLARATION, where)
            if not _FUNCTION_NAME.match(str(decl.get("name", ""))):
                raise Invalid(f"* GenerateContentRequest.{where}.name: Invalid function name.\n")
            if "parameters" in decl:
                _schema(decl["parameters"], f"{where}.parameters")
            names.append(decl["name"])
    return names


def _schema(schema: Any, where: str) -> None:
    if not isinstance(schema, dict):
        raise Invalid(f"Invalid value at '{where}': expected a Schema object")
    _unknown(schema, _SCHEMA, where)
    if "type" in schema and str(schema["type"]).upper() not in _TYPES:
        raise Invalid(f"Invalid value at '{where}.type' (type.googleapis.com/google.ai.generativelanguage."
                      "v1beta.Type)")
    if "type" not in schema and "anyOf" not in schema:
        raise Invalid(f"* GenerateContentRequest.{where}.type: must be specified when not using one_of, "
                      "any_of or all_of fields\n")
    props = schema.get("properties")
    if props is not None:
        if not props:
            raise Invalid(f"* GenerateContentRequest.{where}.properties: should be non-empty for OBJECT "
                          "type\n")
        for name, sub in props.items():
            _schema(sub, f"{where}.properties[{name}].value")
    if "items" in schema:
        _schema(schema["items"], f"{where}.items")
    for n, sub in enumerate(schema.get("anyOf") or []):
        _schema(sub, f"{where}.any_of[{n}]")


def _tool_config(config: Any, names: list[str]) -> None:
    if config is None:
        return
    _unknown(config, {"functionCallingConfig", "retrievalConfig"}, "tool_config")
    fcc = config.get("functionCallingConfig") or {}
    _unknown(fcc, {"mode", "allowedFunctionNames"}, "tool_config.function_calling_config")
    if fcc.get("mode", "AUTO") not in ("AUTO", "ANY", "NONE", "VALIDATED", "MODE_UNSPECIFIED"):
        raise Invalid("Invalid value at 'tool_config.function_calling_config.mode'")
    allowed = fcc.get("allowedFunctionNames")
    if allowed and fcc.get("mode") not in ("ANY", "VALIDATED"):
        raise Invalid("* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: "
                      "allowed_function_names should only be set when the Function calling mode is ANY.\n")
    for name in allowed or []:
        if name not in names:
            raise Invalid(f"allowed_function_names contains '{name}', which is not a declared function.")


# The thinking levels of the models that do not take all four (Google's thinking guide): Gemini 3
# Pro takes low and high only, 3.1 Pro adds medium (no minimal).
_PRO_LEVELS = (("gemini-3-pro", {"low", "high"}), ("gemini-3.1-pro", {"low", "medium", "high"}))


def _generation(config: Any, model: str) -> None:
    if config is None:
        return
    _unknown(config, _GENERATION, "generation_config")
    if not 1 <= config.get("candidateCount", 1) <= 8:
        raise Invalid("* GenerateContentRequest.generation_config.candidate_count: must be between 1 and 8\n")
    if len(config.get("stopSequences") or []) > 5:
        raise Invalid("* GenerateContentRequest.generation_config.stop_sequences: at most 5 stop sequences\n")
    thinking = config.get("thinkingConfig")
    if thinking is not None:
        _unknown(thinking, _THINKING, "generation_config.thinking_config")
        if "thinkingBudget" in thinking and "thinkingLevel" in thinking:
            raise Invalid("thinking_budget and thinking_level are not supported together.")
        level = str(thinking.get("thinkingLevel", "")).lower()
        levels = next((taken for prefix, taken in _PRO_LEVELS if prefix in model), None)
        if level and levels is not None and level not in levels:
            raise Invalid(f"Thinking level {level.upper()} is not supported for this model.")
    if config.get("mediaResolution", "MEDIA_RESOLUTION_UNSPECIFIED") not in _RESOLUTIONS:
        raise Invalid("Invalid value at 'generation_config.media_resolution' "
                      "(type.googleapis.com/google.ai.generativelanguage.v1beta.MediaResolution)")
    if "responseSchema" in config:
        if config.get("responseMimeType") != "application/json":
            raise Invalid("* GenerateContentRequest.generation_config.response_mime_type: must be "
                          "application/json when response_schema is set\n")
        _schema(config["responseSchema"], "generation_config.response_schema")


# -- answers -------------------------------------------------------------------------------------


def _lower_types(schema: Any) -> Any:
    """Gemini's upper-case schema types, as mock/text.arguments_for expects them."""
    if isinstance(schema, dict):
        return {k: v.lower() if k == "type" and isinstance(v, str) else _lower_types(v)
                for k, v in schema.items()}
    return schema


def _declarations(body: JSON) -> list[JSON]:
    return [d for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []]


def _call(function: JSON) -> JSON:
    return {"functionCall": {"name": function["name"],
                             "args": T.arguments_for(_lower_types(function.get("parameters")))}}


def _function_to_call(body: JSON, c: Controls) -> JSON | None:
    decls = _declarations(body)
    fcc = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    mode = fcc.get("mode", "AUTO")
    last_parts = body["contents"][-1]["parts"]
    answered = any("functionResponse" in p for p in last_parts)
    if not decls or mode == "NONE" or (answered and mode != "ANY" and not c.tool_call):
        return None
    wanted = c.tool_call or (fcc.get("allowedFunctionNames") or [None])[0]
    return next((d for d in decls if d["name"] == wanted), decls[0])


def _reply(body: JSON, c: Controls) -> str:
    last = body["contents"][-1]["parts"]
    results = [p["functionResponse"]["response"] for p in last if "functionResponse" in p]
    if results:
        return c.reply or f"The tool returned: {orjson.dumps(results[0]).decode()[:200]}"
    text = T.reply_text(" ".join(p["text"] for p in last if "text" in p), c.reply)
    media = [p["inlineData"]["mimeType"] for p in last if "inlineData" in p]
    media += [p["fileData"].get("fileUri", "") for p in last if "fileData" in p]
    return f"{text} (attachments: {', '.join(media)})" if media else text


def _thinking_on(body: JSON, model: str) -> bool:
    thinking = (body.get("generationConfig") or {}).get("thinkingConfig") or {}
    return "gemini-3" in model or bool(thinking.get("thinkingBudget")) or "thinkingLevel" in thinking


def _thought(body: JSON, model: str) -> list[JSON]:
    """The thought summary part when thoughts are asked for (includeThoughts), else nothing."""
    thinking = (body.get("generationConfig") or {}).get("thinkingConfig") or {}
    if not (thinking.get("includeThoughts") and _thinking_on(body, model)):
        return []
    return [{"text": "Thinking it over.", "thought": True}]


def _candidates(body: JSON, c: Controls, extra: dict[str, int], model: str) -> tuple[list[JSON], int]:
    config = body.get("generationConfig") or {}
    out, completion = [], 0
    finish = _FINISH.search(text_of(body))
    thought = _thought(body, model)
    for i in range(config.get("candidateCount", 1)):
        if extra.get("safety"):
            out.append({"index": i, "finishReason": "SAFETY", "safetyRatings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]})
            continue
        if extra.get("malformed_call"):  # as Gemini answers a call it could not form: no content
            out.append({"index": i, "finishReason": "MALFORMED_FUNCTION_CALL",
                        "finishMessage": "Malformed function call: print(default_api.get_weather(city=Paris"})
            continue
        if finish is not None:  # any finishReason, nothing in the candidate (UNEXPECTED_TOOL_CALL...)
            out.append({"index": i, "finishReason": finish.group(1)})
            continue
        function = _function_to_call(body, c)
        if function is not None:
            calls = [_call(f) for f in in_parallel(function, _declarations(body), c)]
            if _thinking_on(body, model):  # only the first call of a step is signed
                calls[0]["thoughtSignature"] = signature(function["name"])
            parts = [*thought, *calls]
            out.append({"index": i, "content": {"role": "model", "parts": parts}, "finishReason": "STOP"})
            completion += sum(T.count_tokens(orjson.dumps(p["functionCall"]["args"]).decode()) for p in calls)
            continue
        text = _reply(body, c)
        if "responseSchema" in config:  # an answer the schema accepts, as constrained decoding gives
            text = orjson.dumps(T.sample_for(_lower_types(config["responseSchema"]))).decode()
        elif config.get("responseMimeType") == "application/json":
            text = orjson.dumps({"answer": text}).decode()
        text, cut = T.truncate(text, config.get("maxOutputTokens"))
        candidate = {"index": i, "content": {"role": "model", "parts": [*thought, {"text": text}]},
                     "finishReason": "MAX_TOKENS" if cut else "STOP"}
        if (said_finish := _TEXT_FINISH.search(text_of(body))) is not None:
            candidate["finishReason"] = said_finish.group(1)
        if config.get("responseLogprobs"):
            words = enumerate(T.words(text))
            chosen = [{"token": w, "tokenId": n, "logProbability": -0.01} for n, w in words]
            candidate["logprobsResult"] = {"chosenCandidates": chosen,
                                           "topCandidates": [{"candidates": [t]} for t in chosen]}
        out.append(candidate)
        completion += len(T.words(text))
    return out, completion


def _by_modality(text: int, image: int, audio: int) -> list[JSON]:
    counts = (("TEXT", text), ("IMAGE", image), ("AUDIO", audio))
    return [{"modality": m, "tokenCount": n} for m, n in counts if n or m == "TEXT"]


def _usage(body: JSON, completion: int, extra: dict[str, int]) -> JSON:
    text = T.count_tokens([body.get("systemInstruction"), body["contents"]])
    image, audio = extra.get("image_tokens", 0), extra.get("audio_tokens", 0)
    prompt = text + image + audio
    image_out, audio_out = extra.get("image_output_tokens", 0), extra.get("audio_output_tokens", 0)
    text_out = completion
    completion += image_out + audio_out
    usage: JSON = {"promptTokenCount": prompt, "candidatesTokenCount": completion}
    if extra.get("cached_tokens"):
        usage["cachedContentTokenCount"] = min(prompt, extra["cached_tokens"])
    if extra.get("thoughts_tokens"):
        usage["thoughtsTokenCount"] = extra["thoughts_tokens"]
    usage["totalTokenCount"] = prompt + completion + extra.get("thoughts_tokens", 0)
    if image or audio or image_out or audio_out:
        usage["promptTokensDetails"] = _by_modality(text, image, audio)
        usage["candidatesTokensDetails"] = _by_modality(text_out, image_out, audio_out)
        if cached := usage.get("cachedContentTokenCount", 0):  # the text first, then image, audio
            cached_text = min(cached, text)
            cached_image = min(cached - cached_text, image)
            cached_audio = cached - cached_text - cached_image
            usage["cacheTokensDetails"] = _by_modality(cached_text, cached_image, cached_audio)
    return usage


def _stream_events(response: JSON, prompt_only: JSON) -> list[JSON]:
    """The response split as streamGenerateContent sends it: text word by word, calls whole."""
    envelope = {"modelVersion": response["modelVersion"], "responseId": response["responseId"]}
    if "promptFeedback" in response:
        return [response]
    events: list[JSON] = []
    for cand in response["candidates"]:
        pieces = _stream_pieces((cand.get("content") or {}).get("parts") or [])
        for n, piece in enumerate(pieces):
            event: JSON = {"index": cand["index"]}
            if piece is not None:
                event["content"] = {"role": "model", "parts": [piece]}
            if n == len(pieces) - 1:
                event.update({k: v for k, v in cand.items() if k not in ("content", "index")})
            events.append({"candidates": [event], "usageMetadata": prompt_only, **envelope})
    events[-1]["usageMetadata"] = response["usageMetadata"]
    return events


def _stream_pieces(parts: list[JSON]) -> list[JSON | None]:
    """Answer text word by word; thoughts and function calls whole; None for a candidate without
    parts (it still gets an event, for its finishReason)."""
    pieces: list[JSON | None] = []
    for part in parts:
        if "text" in part and not part.get("thought"):
            pieces += [{"text": word} for word in T.words(part["text"])]
        else:
            pieces.append(part)
    return pieces or [None]


async def _generate(request: Request, model: str, stream: bool, vertex: bool) -> Response:
    body = await read_json(request)
    try:
        validate_generate(body, model, vertex)
    except Invalid as exc:
        return error(400, str(exc))
    c = request_controls(request, body)
    if (fault := injected(c)) is not None:
        return fault
    await before_answer(c)
    extra = {k: int(v) for k, v in _EXTRA.findall(text_of(body))}
    response: JSON = {"modelVersion": model, "responseId": new_id("")}
    if extra.get("block_prompt"):
        response["promptFeedback"] = {"blockReason": "SAFETY"}
        response["usageMetadata"] = _usage(body, 0, extra)
    else:
        response["candidates"], completion = _candidates(body, c, extra, model)
        response["usageMetadata"] = _usage(body, completion, extra)
    if not stream:
        return json_response(response)
    events = _stream_events(response, {"promptTokenCount": response["usageMetadata"]["promptTokenCount"]})
    if request.query_params.get("alt") != "sse":
        return json_response(events)  # without alt=sse Google streams one JSON array

    def fail() -> bytes:
        err = {"error": {"code": 500, "message": "mock: injected mid-stream failure", "status": "INTERNAL"}}
        return b"data: " + orjson.dumps(err) + b"\r\n\r\n"

    return stream_response(c, [b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events], fail)


# -- embeddings ----------------------------------------------------------------------------------

# Inputs per call, as Google enforces them: batchEmbedContents' requests, predict's instances.
GEMINI_MAX_INPUTS = 100
VERTEX_MAX_INPUTS = 250
VERTEX_SINGLE_INPUT = frozenset({"gemini-embedding-001"})  # "supports one instance per request"


def _hinted(text: str, task_type: Any, title: Any) -> str:
    """What a vector is made from: a task type and a title change it, as they change Google's."""
    if task_type is None and title is None:
        return text
    return f"{task_type}\n{title}\n{text}"


async def _batch_embed(request: Request, model: str) -> Response:
    body = await read_json(request)
    reqs = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(reqs, list) or not reqs:
        return error(400, "* BatchEmbedContentsRequest.requests: requests is not specified\n")
    if len(reqs) > GEMINI_MAX_INPUTS:  # as Google answers a longer batch
        where = "BatchEmbedContentsRequest.requests"
        return error(400, f"* {where}: at most {GEMINI_MAX_INPUTS} requests can be in one batch\n")
    vectors = []
    for i, item in enumerate(reqs):
        if not isinstance(item, dict) or item.get("model") != f"models/{model}":
            where = f"BatchEmbedContentsRequest.requests[{i}].model"
            return error(400, f"* {where}: unexpected model name format\n")
        parts = (item.get("content") or {}).get("parts") or []
        if not parts or not all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in parts):
            return error(400, f"* BatchEmbedContentsRequest.requests[{i}].content.parts: must not be empty\n")
        text = "".join(p["text"] for p in parts)
        dims = T.dimensions(item.get("outputDimensionality"))
        if dims is None:
            where = f"BatchEmbedContentsRequest.requests[{i}].output_dimensionality"
            return error(400, f"* {where}: must be an integer from 1 to {T.MAX_DIMENSIONS}\n")
        vectors.append({"values": T.embedding(_hinted(text, item.get("taskType"), item.get("title")), dims)})
    c = request_controls(request, body)
    if (fault := injected(c)) is not None:
        return fault
    return json_response({"embeddings": vectors})


async def _predict(request: Request, model: str) -> Response:
    body = await read_json(request)
    instances = body.get("instances") if isinstance(body, dict) else None
    if not isinstance(instances, list) or not instances:
        return error(400, "instances is required")
    if len(instances) > VERTEX_MAX_INPUTS:
        return error(400, f"at most {VERTEX_MAX_INPUTS} input texts per request, got {len(instances)}")
    if model in VERTEX_SINGLE_INPUT and len(instances) > 1:
        return error(400, "Unable to submit request because it included too many instances. Reduce the "
                     "number of instances and try again: batchSize must be 1 but the entered value was "
                     f"{len(instances)}.")
    dims = T.dimensions((body.get("parameters") or {}).get("outputDimensionality"))
    if dims is None:
        return error(400, f"parameters.outputDimensionality must be an integer from 1 to {T.MAX_DIMENSIONS}")
    predictions = []
    for i, inst in enumerate(instances):
        if not isinstance(inst, dict) or not isinstance(inst.get("content"), str):
            return error(400, f"instances[{i}].content is required")
        stats = {"token_count": T.count_tokens(inst["content"]), "truncated": False}
        values = T.embedding(_hinted(inst["content"], inst.get("task_type"), inst.get("title")), dims)
        predictions.append({"embeddings": {"values": values, "statistics": stats}})
    c = request_controls(request, body)
    if (fault := injected(c)) is not None:
        return fault
    chars = sum(len(i["content"]) for i in instances)
    return json_response({"predictions": predictions, "metadata": {"billableCharacterCount": chars}})


# -- routing -------------------------------------------------------------------------------------


def _split(target: str) -> tuple[str, str]:
    model, _, method = target.rpartition(":")
    return model, method


async def _dispatch(request: Request, model: str, method: str, embed: str) -> Response:
    if method == "predict" and model.lower().startswith("imagen"):  # image generation (mock/media.py)
        from switchboard.mock.media import imagen_predict

        return await imagen_predict(request, model)
    if method in ("generateContent", "streamGenerateContent"):
        return await _generate(request, model, method == "streamGenerateContent", vertex=embed == "predict")
    if method == embed == "batchEmbedContents":
        return await _batch_embed(request, model)
    if method == embed == "predict":
        return await _predict(request, model)
    return error(404, f"Method {method!r} is not found for model {model!r}.")


async def studio(request: Request) -> Response:
    if (problem := check_api_key(request)) is not None:
        return problem
    model, method = _split(request.path_params["target"])
    return await _dispatch(request, model, method, "batchEmbedContents")


async def vertex(request: Request) -> Response:
    if (problem := check_token(request)) is not None:
        return problem
    model, method = _split(request.path_params["target"])
    return await _dispatch(request, model, method, "predict")


def routes() -> list[Route]:
    return [
        Route("/v1beta/models/{target}", studio, methods=["POST"]),
        Route("/v1/projects/{project}/locations/{location}/publishers/google/models/{target}", vertex,
              methods=["POST"]),
        Route("/vertex/token", token, methods=["POST"]),
        Route("/vertex/keys", publish_key, methods=["POST"]),
        Route("/vertex/stats", stats, methods=["GET"]),
    ]
