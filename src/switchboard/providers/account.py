"""Objects of the provider account named in a translated request (docs/access.md, "Objects of the
provider account").

The gateway calls a provider with its own stored credential: one account, or one cloud identity,
shared by every caller. A request field that names something living there (a file uploaded to
Gemini's Files API or Anthropic's, an Azure search index read with the resource's managed identity,
an OpenAI audio reply, vector store or container) or a storage URI that identity can read
(``gs://`` or a Cloud Storage https URL on Vertex AI) would make the provider read it on
the gateway's authority: another tenant's data, or the operator's own storage. So such a field is
accepted only when the attempt carries the caller's own provider credential
(``Target.own_account``, set by the invoke terminal), whose account is the caller's, or when the
operator opted the provider entry in (``allow_account_objects``: every caller may read all the
account holds); otherwise the adapter refuses it with :func:`refusal` before anything is sent.
The Responses API's own check of its fields is ``http/responses/request.py`` (``account_object``,
applied in ``http/responses/state.py`` and to batch lines in ``http/files/batch_access.py``);
the Anthropic pass-through's, of the Files API sources its decoder noted, is ``pipeline/native.py``.
The opt-in lifts all of them alike.
"""

from __future__ import annotations

from typing import Any

from switchboard.errors import UnsupportedParameter
from switchboard.providers.target import Target

# Azure OpenAI "On your data": search indexes, Cosmos DB, ... read with credentials the caller
# chooses, among them the resource's managed identity (the gateway's Azure identity).
DATA_SOURCES = "data_sources"
# A tool's container: a ``code_interpreter``'s ``container``, a ``shell`` tool's ``environment``.
_CONTAINER_KEYS = ("container", "environment")
# The container objects that name no object of the account: a new container (code interpreter:
# ``auto``; shell: ``container_auto``) or the caller's own machine (shell: ``local``). Any other
# type (``container_reference``, or one newer than this list) may name one, so it is refused
# rather than passed on unchecked.
_NEW_CONTAINERS = frozenset({"auto", "container_auto", "local"})
# Chat tool types that name nothing of the account: OpenAI's Chat Completions takes only these.
_PLAIN_TOOLS = frozenset({"function", "custom"})


def refusal(
    param: str, what: str, target: Target, instead: str = "send the data inline instead"
) -> UnsupportedParameter:
    """The 400 for ``param`` naming ``what`` of the provider account, saying why and what would
    make it acceptable on this deployment."""
    if target.allow_caller_credentials:
        remedy = "it is accepted only with your own provider credential (caller credentials)"
    else:
        remedy = (f"model '{target.name}' does not take callers' own provider credentials, so it is "
                  "not accepted here")
    return UnsupportedParameter(
        f"'{param}' names {what}, which provider type '{target.provider_type}' would read with the "
        f"gateway's credential, in the provider account it shares among all its callers: {remedy}; "
        f"{instead}",
        param=param,
    )


def check(target: Target, param: str, what: str) -> None:
    """Refuse ``param`` unless the attempt carries the caller's own credential."""
    if not target.own_account:
        raise refusal(param, what, target)


def check_data_sources(body: dict[str, Any], target: Target) -> None:
    """Azure OpenAI's ``data_sources`` ("On your data") in an OpenAI-shaped body: whatever their
    authentication, an endpoint and index of the caller's choice are queried by the provider
    resource, which may use its own identity (``system_assigned_managed_identity``, ...)."""
    if DATA_SOURCES in body and not target.own_account:
        what = 'data sources (Azure "On your data")'
        raise refusal(DATA_SOURCES, what, target, "send the request without it")


def tool_object(tool: dict[str, Any], where: str) -> tuple[str, str] | None:
    """What a tool names of the account, as (param, what), or None: vector stores
    (``file_search``), an existing container (a ``code_interpreter``'s ``container`` id; a
    ``shell`` tool's ``container_reference``), a container of a type not known to be new, or a
    skill by id (``skill_reference``, in a new container's ``skills``). Whatever the tool's type,
    so a tool type newer than this code is refused for the same fields. The file ids of a new
    container are not looked at here: the Responses API checks them against the caller's own files
    (http/files/named.py); Chat Completions refuses them (:func:`check_chat`)."""
    if tool.get("vector_store_ids") is not None:
        return f"{where}.vector_store_ids", "vector stores"
    for key in _CONTAINER_KEYS:
        container = tool.get(key)
        if container is None:
            continue
        if not isinstance(container, dict):
            if key == "container":  # an id
                return f"{where}.{key}", "a container"
            continue  # a computer tool's environment is the name of its system ("browser", ...)
        if container.get("container_id") is not None:
            return f"{where}.{key}.container_id", "a container"
        kind = container.get("type")
        if not isinstance(kind, str) or kind not in _NEW_CONTAINERS:
            return f"{where}.{key}", f"a container of unknown type '{str(kind)[:64]}' (it may be an object)"
        skills = container.get("skills")
        for j, skill in enumerate(skills if isinstance(skills, list) else ()):
            # Inline skills carry their files; a local environment's skills are paths on the
            # caller's machine (no type). Any other names a skill uploaded to the account.
            if isinstance(skill, dict) and (skill.get("skill_id") is not None
                                            or skill.get("type") not in (None, "inline")):
                return f"{where}.{key}.skills[{j}]", "a skill"
    return None


def check_chat(body: dict[str, Any], target: Target) -> None:
    """An OpenAI-shaped chat body, passed through as written: refuse what names objects of the
    account. An assistant message's ``audio.id`` is an earlier audio reply kept upstream (the
    gateway does not know whose). A tool other than a function (or custom) tool naming vector
    stores, a container, skills or files (``file_ids`` of a new container: on this path no
    ownership check of the gateway's files sees them). Requests with neither (nearly all) cost a
    look at each message's keys and each tool's type."""
    if target.own_account:
        return
    messages = body.get("messages")
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        if not isinstance(message, dict) or message.get("audio") is None:
            continue
        if message.get("role") == "assistant":
            raise refusal(f"messages[{i}].audio", "an audio reply stored upstream", target,
                          "send the reply's transcript as the message content instead")
    tools = body.get("tools")
    for i, tool in enumerate(tools if isinstance(tools, list) else ()):
        if not isinstance(tool, dict) or tool.get("type") in _PLAIN_TOOLS:
            continue
        found = tool_object(tool, f"tools[{i}]") or _tool_files(tool, f"tools[{i}]")
        if found is not None:
            raise refusal(*found, target, "send the request without it")


def _tool_files(tool: dict[str, Any], where: str) -> tuple[str, str] | None:
    for key in _CONTAINER_KEYS:
        container = tool.get(key)
        if isinstance(container, dict) and container.get("file_ids"):
            return f"{where}.{key}.file_ids", "files"
    if tool.get("file_ids"):
        return f"{where}.file_ids", "files"
    return None
