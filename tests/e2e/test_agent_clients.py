"""Coding agents' requests, replayed as they send them through the gateway onto every provider
type their docs say works for them, against the mock upstreams.

Claude Code (docs/api-anthropic.md#claude-code): the beta messages client (``?beta=true``), a
bearer key, its anthropic-beta list, system blocks and tools with cache_control, zod-made tool
schemas, ``metadata.user_id`` as JSON text, streaming, thinking and the context edit it sends
with it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.e2e.test_gemini_fidelity import EMAIL, write_service_account
from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, start_gateway

KINDS = ["openai", "gemini", "vertex", "bedrock", "anthropic"]


@pytest.fixture(scope="module")
def gw(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("agents")
    key_file: Path = folder / "sa.json"
    write_service_account(key_file, mock_upstream, EMAIL, publish=True)
    key = "${UPSTREAM_KEY}"
    config = {
        "providers": [
            {"name": "up-openai", "type": "openai", "api_base": f"{mock_upstream.url}/v1", "api_key": key},
            {"name": "up-gemini", "type": "gemini", "api_base": mock_upstream.url, "api_key": key},
            {"name": "up-vertex", "type": "vertex", "api_base": mock_upstream.url,
             "vertex_project": "mock-project", "credentials_file": str(key_file)},
            {"name": "up-bedrock", "type": "bedrock", "api_base": mock_upstream.url,
             "aws_access_key_id": "AKIDTEST", "aws_secret_access_key": key, "aws_region": "us-east-1"},
            {"name": "up-anthropic", "type": "anthropic", "api_base": mock_upstream.url, "api_key": key},
        ],
        "models": [
            {"name": "via-openai", "provider": "up-openai", "model": "gpt-5"},
            {"name": "via-gemini", "provider": "up-gemini", "model": "gemini-2.5-pro"},
            {"name": "via-vertex", "provider": "up-vertex", "model": "gemini-2.5-pro"},
            {"name": "via-bedrock", "provider": "up-bedrock",
             "model": "us.anthropic.claude-sonnet-4-5-20250929-v1:0"},
            {"name": "via-anthropic", "provider": "up-anthropic", "model": "claude-sonnet-4-5"},
        ],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
    }
    gateway = start_gateway(config, folder)
    yield gateway
    gateway.process.stop()


# -- Claude Code ---------------------------------------------------------------------------------

BETAS = ["claude-code-20250219", "interleaved-thinking-2025-05-14", "fine-grained-tool-streaming-2025-05-14",
         "context-management-2025-06-27"]
CC_HEADERS = {
    "anthropic-version": "2023-06-01",
    "anthropic-beta": ",".join(BETAS),
    "x-app": "cli",
    "user-agent": "claude-cli/2.1.78 (external, cli)",
    "authorization": f"Bearer {MASTER_KEY}",
}
SCHEMA = "http://json-schema.org/draft-07/schema#"


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """A tool's input_schema as Claude Code's zod schemas come out."""
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": False, "$schema": SCHEMA}


TODO = {"type": "object", "properties": {
    "content": {"type": "string", "minLength": 1},
    "status": {"type": "string", "enum": ["pending", "in_progress", "completed"]},
    "activeForm": {"type": "string", "minLength": 1},
}, "required": ["content", "status", "activeForm"], "additionalProperties": False}
CC_TOOLS = [
    {"name": "Bash", "description": "Run a shell command", "input_schema": _schema(
        {"command": {"type": "string", "description": "the command"}, "timeout": {"type": "number"}},
        ["command"])},
    {"name": "Edit", "description": "Edit a file", "input_schema": _schema(
        {"file_path": {"type": "string"}, "old_string": {"type": "string"}, "new_string": {"type": "string"},
         "replace_all": {"type": "boolean", "default": False}},
        ["file_path", "old_string", "new_string"])},
    {"name": "TodoWrite", "description": "Update the todo list",
     "input_schema": _schema({"todos": {"type": "array", "items": TODO}}, ["todos"]),
     "cache_control": {"type": "ephemeral"}},
]
USER_ID = json.dumps({"device_id": "a" * 64, "account_uuid": "",
                      "session_id": "5f0c3c58-1d1b-4c5e-9b8e-3a2f1c0d9e8f"})
CONTEXT_MANAGEMENT = {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}
THINKING = {"type": "enabled", "budget_tokens": 31999}


def cc_body(model: str, marker: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": model, "max_tokens": 32000,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.78; cc_entrypoint=cli;"},
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>context</system-reminder>"},
            {"type": "text", "text": f"fix it mock:capture={marker}", "cache_control": {"type": "ephemeral"}},
        ]}],
        "tools": CC_TOOLS, "metadata": {"user_id": USER_ID},
        **extra,
    }


def claude_code(gw: Gateway) -> anthropic.Anthropic:
    """The client as Claude Code builds it: a bearer key (ANTHROPIC_AUTH_TOKEN), its own headers;
    it calls the beta messages resource (``?beta=true``) with its anthropic-beta list."""
    headers = {"x-app": "cli", "user-agent": "claude-cli/2.1.78 (external, cli)"}
    return anthropic.Anthropic(base_url=gw.url, auth_token=MASTER_KEY, api_key=None, max_retries=0,
                               timeout=30, default_headers=headers)


@pytest.mark.parametrize("kind", KINDS)
def test_claude_code_with_thinking_on_is_served_on_every_provider(
    gw: Gateway, mock_upstream: Mock, kind: str
) -> None:
    # Claude Code sends context_management (keep every thinking block) whenever thinking is on.
    client, marker = claude_code(gw), new_marker()
    body = cc_body(f"via-{kind}", marker, thinking=THINKING, context_management=CONTEXT_MANAGEMENT)
    with client.beta.messages.stream(**body, betas=BETAS) as stream:
        final = stream.get_final_message()
    # the mock calls a tool when offered some: streamed as Claude Code parses it
    assert final.stop_reason == "tool_use" and final.usage.output_tokens > 0
    call = next(block for block in final.content if block.type == "tool_use")
    assert call.name in {tool["name"] for tool in CC_TOOLS} and isinstance(call.input, dict)
    sent = captured(mock_upstream, marker)[-1]["body"]
    if kind == "anthropic":  # the pass-through: the body as Claude Code sent it
        assert sent["context_management"] == CONTEXT_MANAGEMENT
    else:
        assert "context_management" not in json.dumps(sent)
    count = client.beta.messages.count_tokens(
        model=body["model"], messages=body["messages"], system=body["system"], tools=body["tools"],
        thinking=THINKING, context_management=CONTEXT_MANAGEMENT, betas=BETAS)  # type: ignore[arg-type]
    assert count.input_tokens > 0


@pytest.mark.parametrize("kind", KINDS)
def test_claude_code_with_adaptive_thinking_and_an_effort_is_served_on_every_provider(
    gw: Gateway, mock_upstream: Mock, kind: str
) -> None:
    # Newer Claude models get adaptive thinking with output_config.effort: the effort says how much
    # on the providers without adaptive thinking (Gemini's thinking level or budget, OpenAI's
    # reasoning_effort), Claude takes both as sent.
    client, marker = claude_code(gw), new_marker()
    body = cc_body(f"via-{kind}", marker, thinking={"type": "adaptive"}, output_config={"effort": "low"},
                   context_management=CONTEXT_MANAGEMENT)
    with client.beta.messages.stream(**body, betas=BETAS) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use" and final.usage.output_tokens > 0
    sent = captured(mock_upstream, marker)[-1]["body"]
    if kind == "openai":
        assert sent["reasoning_effort"] == "low" and "thinking" not in sent
    elif kind in ("gemini", "vertex"):
        thinking = sent["generationConfig"]["thinkingConfig"]
        assert thinking == {"thinkingBudget": 1024, "includeThoughts": True}
    elif kind == "anthropic":
        assert sent["thinking"] == {"type": "adaptive"} and sent["output_config"]["effort"] == "low"


CLEAR_TOOL_USES = {"type": "clear_tool_uses_20250919", "trigger": {"type": "input_tokens", "value": 30000}}
CLEAR_OLD_THINKING = {"type": "clear_thinking_20251015", "keep": {"type": "thinking_turns", "value": 1}}


EDITS = "context_management.edits"


@pytest.mark.parametrize(("extra", "param"), [
    # edits that clear context change what the model sees: not done for other providers
    ({"thinking": THINKING, "context_management": {"edits": [CLEAR_TOOL_USES]}}, f"{EDITS}.0"),
    ({"thinking": THINKING, "context_management": {"edits": [CLEAR_OLD_THINKING]}}, f"{EDITS}.0"),
    # as Anthropic answers it: the edit needs thinking on
    ({"context_management": CONTEXT_MANAGEMENT}, f"{EDITS}.0"),
    ({"thinking": THINKING, "context_management": {**CONTEXT_MANAGEMENT, "mode": "x"}},
     "context_management.mode"),
    ({"thinking": THINKING, "context_management": {"edits": "all"}}, EDITS),
])
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_context_edits_the_gateway_cannot_honour_are_refused_by_path(
    gw: Gateway, kind: str, extra: dict[str, Any], param: str
) -> None:
    body = cc_body(f"via-{kind}", new_marker(), **extra)
    r = httpx.post(f"{gw.url}/v1/messages?beta=true", json=body, headers=CC_HEADERS, timeout=30)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"].startswith(f"{param}: ")


# -- Codex CLI -----------------------------------------------------------------------------------

PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
VIEW_IMAGE = {"type": "function", "name": "view_image", "description": "View a local image", "strict": False,
              "parameters": {"type": "object", "properties": {"path": {"type": "string"}},
                             "required": ["path"], "additionalProperties": False}}


@pytest.mark.parametrize("kind", KINDS)
def test_codex_view_image_output_reaches_every_provider(
    gw: Gateway, mock_upstream: Mock, kind: str
) -> None:
    # Codex's view_image tool (and an MCP tool returning an image) answers its call with content
    # items: text and an input_image. A tool message carries text only: the image follows it.
    marker = new_marker()
    body = {
        "model": f"via-{kind}", "instructions": "You are Codex.", "store": False, "stream": True,
        "include": ["reasoning.encrypted_content"], "prompt_cache_key": "session-1",
        "tools": [VIEW_IMAGE], "tool_choice": "auto", "parallel_tool_calls": False,
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "look at a.png"}]},
            {"type": "function_call", "call_id": "call_1", "name": "view_image",
             "arguments": '{"path":"a.png"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": [
                {"type": "input_text", "text": "the image follows"},
                {"type": "input_image", "image_url": f"data:image/png;base64,{PIXEL}"}]},
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": f"mock:capture={marker}"}]},
        ],
    }
    r = httpx.post(f"{gw.url}/v1/responses", json=body, headers={"authorization": f"Bearer {MASTER_KEY}"},
                   timeout=30)
    assert r.status_code == 200, r.text
    assert "event: response.completed" in r.text
    sent = json.dumps(captured(mock_upstream, marker)[-1]["body"])
    assert PIXEL in sent and sent.index("the image follows") < sent.index(PIXEL) < sent.index(marker)
