"""Canonical (OpenAI) chat request -> Bedrock Converse request body.

Reference: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
(Message, ContentBlock, ImageBlock, ToolResultBlock, CachePointBlock, ReasoningContentBlock,
InferenceConfiguration, ToolConfiguration, ToolChoice, OutputConfig). Which request features are
translated, and which refused, is the capability table ``capabilities/bedrock.py``; messages are
turned into turns by ``messages``, tools by ``tools``, thinking by ``reasoning``.
"""

from __future__ import annotations

import orjson

from switchboard.errors import UnsupportedParameter
from switchboard.providers import allowed_tools, capabilities, stop_sequences
from switchboard.providers.anthropic.thinking import check_tool_choice, fits_tool_loop, sampling_conflicts
from switchboard.providers.base import JSON
from switchboard.providers.bedrock.messages import conversation, tools_as_text, trim_prefill
from switchboard.providers.bedrock.metadata import request_metadata
from switchboard.providers.bedrock.models import is_claude, is_cohere, is_nova, reads_no_top_k
from switchboard.providers.bedrock.reasoning import reasoning_fields
from switchboard.providers.bedrock.tools import serial_tool_choice, tool_config
from switchboard.providers.params import drop_advice, drops
from switchboard.providers.target import Target

# Claude reports the stop sequence it matched only when asked for it by this JSON pointer.
STOP_SEQUENCE_PATH = "/stop_sequence"


def converse_body(request: JSON, target: Target) -> JSON:
    request = allowed_tools.narrowed(capabilities.check(request, target))
    no_tools = request.get("tool_choice") == "none"
    system, turns = conversation(request["messages"], paired=not no_tools)
    if no_tools:
        turns = tools_as_text(turns)
    if is_claude(target.model):
        trim_prefill(turns)
    body: JSON = {"messages": turns}
    if system:
        body["system"] = system
    given = request.get("max_completion_tokens") or request.get("max_tokens")
    extra, max_tokens = reasoning_fields(request, target, given)
    if _thinks(extra) and not fits_tool_loop(turns):
        # Claude refuses thinking on a turn that continues a tool call its assistant turn made
        # without a signed thinking block (another provider's, or a client that kept none): off
        # for this turn, as the anthropic provider type does (an effort level stays).
        extra.pop("thinking")
        max_tokens = given
    # Claude thinking (a budget or adaptive): Anthropic's own rules, checked as the anthropic
    # provider type checks them, so the caller gets our 400 naming the field, not Bedrock's.
    claude_thinks = _thinks(extra)
    if claude_thinks:
        request = sampling_conflicts(request, target)
    # Converse refuses an empty stop sequence; Claude one of whitespace only as well.
    stops = stop_sequences.to_send(request, target, "bedrock", blank_refused=is_claude(target.model))
    if inference := _inference_config(request, max_tokens, stops):
        body["inferenceConfig"] = inference
    config = None if no_tools else tool_config(request, turns, target)
    if config:
        body["toolConfig"] = config
        if claude_thinks:
            check_tool_choice(next(iter(config.get("toolChoice") or {}), None), request, target)
    if serial := serial_tool_choice(request, config, target):
        extra["tool_choice"] = serial
    if request.get("top_k") is not None:
        _add_top_k(extra, request, target)
    if extra:
        body["additionalModelRequestFields"] = extra
    if stops and is_claude(target.model):
        body["additionalModelResponseFieldPaths"] = [STOP_SEQUENCE_PATH]
    if output := _output_config(request, target):
        body["outputConfig"] = output
    if metadata := request_metadata(request):
        body["requestMetadata"] = metadata
    return body


def _add_top_k(extra: JSON, request: JSON, target: Target) -> None:
    """top_k, which Converse has no field for, goes to the model in its own terms: Nova reads topK
    in its native inferenceConfig (AWS documents it there for Converse), Cohere Command R ``k``,
    Claude and Mistral ``top_k``. Families with no top-k control would ignore it (or answer
    Bedrock's 400): refused, as the other parameters a model cannot honour are."""
    model = target.model
    if is_nova(model):
        extra.setdefault("inferenceConfig", {})["topK"] = request["top_k"]
    elif is_cohere(model):
        extra["k"] = request["top_k"]
    elif not reads_no_top_k(model):
        extra["top_k"] = request["top_k"]
    elif not drops(request, target):
        raise UnsupportedParameter(
            f"parameter 'top_k' is not supported by provider type 'bedrock' for model '{target.name}' "
            f"({model}): this model family has no top-k sampling control; "
            + drop_advice(),
            param="top_k",
        )


def _thinks(extra: JSON) -> bool:
    """Whether these additionalModelRequestFields switch Claude's thinking on."""
    return (extra.get("thinking") or {}).get("type") in ("enabled", "adaptive")


def _inference_config(request: JSON, max_tokens: int | None, stops: list[str]) -> JSON:
    config: JSON = {}
    if max_tokens is not None:
        config["maxTokens"] = max_tokens
    if request.get("temperature") is not None:
        config["temperature"] = request["temperature"]
    if request.get("top_p") is not None:
        config["topP"] = request["top_p"]
    if stops:
        config["stopSequences"] = stops
    return config


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
