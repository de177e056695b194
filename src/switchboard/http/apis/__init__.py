"""Prompts published as REST APIs (docs/prompt-apis.md): ``POST /apis/{name}`` and
``/apis/{name}/v{N}`` through the chat chain (stages.py, call.py), and their generated OpenAPI
documents (docs.py). Routed by prefix (app.py)."""

from __future__ import annotations

from switchboard.http.apis.call import ApiCalls, ApiInbound
from switchboard.http.apis.docs import ApiDocs, is_docs_path
from switchboard.http.apis.stages import PREFIX, ApiStage, OutputStage, call_path
from switchboard.http.endpoint import Endpoint

__all__ = ["PREFIX", "ApiCalls", "ApiDocs", "ApiInbound", "ApiRoutes", "ApiStage", "OutputStage"]


class ApiRoutes:
    """Dispatches ``/apis/...``: GET (or HEAD, its headers only) of a document, POST of a call;
    None for anything else (the app's 404)."""

    def __init__(self, call: Endpoint, docs: Endpoint) -> None:
        self.call = call
        self.docs = docs

    def route(self, method: str, path: str) -> Endpoint | None:
        if method in ("GET", "HEAD") and is_docs_path(path):
            return self.docs
        if method == "POST" and call_path(path) is not None:
            return self.call
        return None
