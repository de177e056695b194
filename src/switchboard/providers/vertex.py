"""Provider type ``vertex``: Gemini models on Google Cloud Vertex AI, with service-account auth.

Keys: ``vertex_project`` (defaults to the key file's ``project_id``), ``vertex_location``
(default ``us-central1``; ``global`` is allowed) and ``credentials_file`` (a service-account JSON
key, read once at start-up). ``api_base`` defaults to ``https://<location>-aiplatform.googleapis.com``
(``https://aiplatform.googleapis.com`` for ``global``); the adapter appends
``/v1/projects/<project>/locations/<location>/publishers/google/models/<model>:generateContent``
(``:streamGenerateContent?alt=sse`` when streaming, ``:predict`` for embeddings models such as
``text-embedding-005``/``gemini-embedding-001``). The body is the Gemini one (``providers/google``).

Reference: https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/inference
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from switchboard.config.schema import ProviderConfig
from switchboard.providers.base import JSON
from switchboard.providers.errors import loads_object
from switchboard.providers.google import GoogleAdapter
from switchboard.providers.google.embeddings import from_predict, model_id, predict_body
from switchboard.providers.google.labels import labels
from switchboard.providers.spec import ProviderOptions, ProviderSpec
from switchboard.providers.target import Target
from switchboard.upstream.auth import UpstreamAuth
from switchboard.upstream.google_auth import ServiceAccountAuth, load_service_account
from switchboard.upstream.request import UpstreamRequest


class VertexOptions(ProviderOptions):
    credentials_file: str
    # Validated even when omitted: it then comes from the key file's project_id.
    vertex_project: Annotated[str | None, Field(pattern=r"^[A-Za-z0-9.:_-]+$", validate_default=True)] = None
    vertex_location: Annotated[str, Field(pattern=r"^[a-z0-9-]+$")] = "us-central1"

    @field_validator("credentials_file")
    @classmethod
    def _readable_key(cls, path: str) -> str:
        load_service_account(path)  # a clear ValueError now rather than failed requests later
        return path

    @field_validator("vertex_project")
    @classmethod
    def _project_known(cls, project: str | None, info: ValidationInfo) -> str | None:
        path = info.data.get("credentials_file")
        if project is not None or path is None:  # None: credentials_file already failed
            return project
        project = load_service_account(path).project_id
        if project is None:
            raise ValueError("required (the credentials file names no project_id)")
        return project

    @property
    def project(self) -> str:
        assert self.vertex_project is not None  # filled in by the validator
        return self.vertex_project


def default_api_base(location: str) -> str:
    if location == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


class VertexAdapter(GoogleAdapter):
    type = "vertex"

    def model_url(self, target: Target, method: str) -> str:
        options: VertexOptions = target.options
        model = quote(model_id(target.model), safe=".-_@")
        return (
            f"{target.api_base}/v1/projects/{options.project}/locations/{options.vertex_location}"
            f"/publishers/google/models/{model}:{method}"
        )

    def chat_body(self, request: JSON, target: Target) -> JSON:
        body = super().chat_body(request, target)
        # Vertex AI alone takes custom metadata labels (metadata, user).
        if found := labels(request, target):
            body["labels"] = found
        return body

    def embeddings_request(self, request: JSON, target: Target) -> UpstreamRequest:
        return self.post(self.model_url(target, "predict"), predict_body(request, target))

    def embeddings_response(self, body: bytes, target: Target) -> JSON:
        return from_predict(loads_object(body), target)


def _api_base(config: ProviderConfig, options: BaseModel) -> str | None:
    assert isinstance(options, VertexOptions)
    return config.api_base or default_api_base(options.vertex_location)


def _auth(config: ProviderConfig, options: BaseModel) -> UpstreamAuth:
    assert isinstance(options, VertexOptions)
    account = load_service_account(options.credentials_file)
    return ServiceAccountAuth(account, provider=config.name, timeout=min(30.0, config.timeouts.total))


SPEC = ProviderSpec(
    type="vertex",
    adapter=VertexAdapter(),
    options=VertexOptions,
    default_api_base="https://us-central1-aiplatform.googleapis.com",
    make_auth=_auth,
    resolve_api_base=_api_base,
)
