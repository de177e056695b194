"""The request fields of the installed SDKs against what the gateway knows, so an SDK upgrade that
brings a new field fails here instead of the field being left out on a translated route.

A field the gateway does not know is passed through by OpenAI-shaped providers but silently not
sent by the translating adapters (docs/providers.md, "Fields the gateway does not know"): each
new one needs a decision (a capability matrix row, a translation, or a refusal) before it is
listed, in the gateway's own lists or in the commented exceptions below.
"""

from __future__ import annotations

import typing

import pytest
import typing_extensions
from anthropic.types.assistant_message_param import AssistantMessageParam
from anthropic.types.message_create_params import MessageCreateParamsBase
from anthropic.types.tool_result_block_param import ToolResultBlockParam
from anthropic.types.user_message_param import UserMessageParam
from openai.types.chat.completion_create_params import CompletionCreateParamsBase
from openai.types.responses.response_create_params import ResponseCreateParamsBase

from switchboard.errors import InvalidRequest
from switchboard.http.anthropic.content import BLOCK_KEYS, messages
from switchboard.http.anthropic.request import ACCEPTED, REFUSED, messages_request
from switchboard.http.responses.request import KNOWN_FIELDS, check_fields
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
