"""One OpenAPI 3.1 document for a tenant's whole catalog (``GET /admin/v1/catalog/openapi.json``):
each published prompt API as ``POST /apis/{name}`` and ``/apis/{name}/v{version}`` (the
operations apis/openapi.py generates: its variables and output as schemas, examples), each REST
service under ``/services/{name}/{path}`` with the methods it takes, and the
models as the ``model`` of ``POST /v1/chat/completions``. A published API's own document, with
examples, is ``GET /apis/{name}/openapi.json`` (linked from each operation)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from switchboard.apis.openapi import ApiOperations, unique_operation_ids
from switchboard.config.services import METHODS
from switchboard.portal.sources import Entry

# The path items of a published API and the component schemas they refer to (its generated
# operations, apis/openapi.py), or None when the version it serves is not found: then a generic
# operation stands for it.
ApiPaths = Callable[[Entry], Awaitable[ApiOperations | None]]

SESSION_PARAMETER = {
    "name": "x-switchboard-session", "in": "header", "required": False,
    "description": "A session id: the API keeps this caller's conversation under it (docs/portal.md).",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"},
}
_ERROR = {"$ref": "#/components/schemas/Error"}
_ERRORS = {
    str(status): {"description": why, "content": {"application/json": {"schema": _ERROR}}}
    for status, why in ((400, "Invalid input"), (401, "No valid key"),
                        (403, "Not allowed (e.g. subscription_pending)"), (404, "Not found"))
}


def _api_operation(entry: Entry, team: str | None) -> dict[str, Any]:
    fields = entry.fields
    description = entry.description or ""
    deprecation = fields.get("deprecation")
    operation: dict[str, Any] = {
        "operationId": f"call_{entry.name}".replace("-", "_").replace(".", "_"),
        "summary": f"Call the prompt API '{entry.name}'",
        "description": description,
        "tags": ["apis"],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"type": "object"}}}},
        "responses": {
            "200": {"description": "The model's output",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiResult"}}}},
            **_ERRORS,
            "410": {"description": "Retired", "content": {"application/json": {"schema": _ERROR}}},
        },
        "externalDocs": {"url": str(fields.get("openapi")), "description": "This API's own OpenAPI document"},
        "x-switchboard-approval-required": entry.needs_approval(team),
        "x-switchboard-owner": entry.owner,
        "x-switchboard-versions": list(fields.get("versions") or []),
    }
    if isinstance(deprecation, Mapping) and deprecation.get("deprecated"):
        operation["deprecated"] = True
    if fields.get("sessions"):
        operation["parameters"] = [SESSION_PARAMETER]
    return operation


# An OpenAPI path parameter holds no '/', so generated clients send a multi-segment path with
# its slashes encoded: the gateway takes %2F as '/' (services/target.py), which this says.
SERVICE_PATH_PARAMETER = {
    "name": "path", "in": "path", "required": True,
    "description": ("The path below the service's base URL, one or more segments (`v2/orders/42`). "
                    "Its slashes may be sent encoded (`v2%2Forders%2F42`, as generated clients do): "
                    "the gateway forwards them as slashes (docs/services.md)."),
    "schema": {"type": "string"},
    "examples": {"segments": {"value": "v2/orders/42"}},
}


def _service_path(entry: Entry) -> dict[str, Any]:
    """The service's path item: one operation per method it takes (another is 405), HEAD and
    OPTIONS included when it takes them."""
    operation = {
        "summary": f"The REST service '{entry.name}'",
        "description": entry.description or "",
        "tags": ["services"],
        "parameters": [SERVICE_PATH_PARAMETER],
        "responses": {"default": {"description": "The service's answer"}, **_ERRORS},
        "x-switchboard-approval-required": entry.approval_required,
        "x-switchboard-owner": entry.owner,
    }
    methods = [m.lower() for m in METHODS if m in (entry.fields.get("methods") or METHODS)]
    return {method: {**operation, "operationId": f"{method}_{entry.name}_service".replace("-", "_")
                     .replace(".", "_")} for method in methods}


async def document(tenant: str, entries: Sequence[Entry], api_paths: ApiPaths,
                   version: str, team: str | None = None) -> dict[str, Any]:
    """The document as a caller of ``team`` reads it (whether each operation needs its team's
    approval: not its own team's APIs)."""
    paths: dict[str, Any] = {}
    carried: dict[str, Any] = {}  # the APIs' schemas with references (api.<name>.variables)
    models: list[str] = []
    for entry in entries:
        if entry.kind == "api":
            generated = await api_paths(entry)
            if generated is None:
                paths[f"/apis/{entry.name}"] = {"post": _api_operation(entry, team)}
                continue
            carried.update(generated.schemas)
            for path, item in generated.paths.items():
                for operation in item.values():
                    operation["x-switchboard-approval-required"] = entry.needs_approval(team)
                    operation["x-switchboard-owner"] = entry.owner
                    if entry.fields.get("sessions"):
                        operation["parameters"] = [*operation.get("parameters", []), SESSION_PARAMETER]
                paths[path] = dict(item)
        elif entry.kind == "service":
            paths[f"/services/{entry.name}/{{path}}"] = _service_path(entry)
        elif entry.kind == "model":
            models.append(entry.name)
    if models:
        paths["/v1/chat/completions"] = {"post": {
            "operationId": "chat_completions",
            "summary": "A chat completion from one of the catalog's models (OpenAI's API)",
            "tags": ["models"],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["model", "messages"],
                "properties": {"model": {"type": "string", "enum": models},
                               "messages": {"type": "array", "items": {"type": "object"}}},
            }}}},
            "responses": {"200": {"description": "The completion"}, **_ERRORS},
        }}
    unique_operation_ids(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": f"Switchboard catalog of tenant '{tenant}'", "version": version},
        # Relative to where the document is served (/admin/v1/catalog/openapi.json): the gateway's
        # root, under whatever path prefix a proxy serves it (an absolute "/" leaves the prefix).
        "servers": [{"url": "../../.."}],
        "security": [{"bearer": []}],
        "tags": [{"name": "apis"}, {"name": "services"}, {"name": "models"}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "ApiResult": {"type": "object", "required": ["output", "version", "usage"], "properties": {
                    "output": {}, "version": {"type": "integer"}, "usage": {"type": "object"}}},
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "message": {"type": "string"}, "type": {"type": "string"},
                    "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}},
                **carried,
            },
        },
    }
