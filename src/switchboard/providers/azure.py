"""Azure OpenAI: OpenAI's wire format on a per-deployment path with an ``api-version`` query.

References: https://learn.microsoft.com/azure/ai-services/openai/reference (inference REST API,
stable 2024-10-21) and
https://learn.microsoft.com/azure/ai-services/openai/api-version-deprecation (what each version
added: stream_options/include_usage, max_completion_tokens and parallel_tool_calls from
2024-09-01-preview; GA in 2024-10-21). For an older ``api_version`` the adapter sends
``max_completion_tokens`` as ``max_tokens`` and leaves ``parallel_tool_calls`` out (``false``
is then enforced by the gateway, which keeps the first tool call of each reply).

- ``api_base`` is ``https://<resource>.openai.azure.com``; when omitted it is built from the
  ``azure_resource`` option. The adapter adds ``/openai/deployments/<model>/<operation>``, the
  model entry's ``model`` being the deployment name.
- Auth: ``api-key: <api_key>``, or ``Authorization: Bearer <azure_ad_token>`` when that option
  is set (a Microsoft Entra ID token).
- Streams begin with a chunk holding only ``prompt_filter_results`` (no choices): dropped.
  ``finish_reason: content_filter`` passes through unchanged.
- Errors are ``{"error": {"code", "message", "param", "innererror"}}``; ``code`` is sometimes
  the HTTP status as a string ("429"), which is not an OpenAI code and is left out. A prompt
  rejected by content filtering is a 400 with code ``content_filter``; 429s carry
  ``retry-after`` and ``retry-after-ms``.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from pydantic import BaseModel, Field, SecretStr

from switchboard.config.schema import ProviderConfig
from switchboard.providers import capabilities
from switchboard.providers.base import JSON
from switchboard.providers.openai_compatible import NormalisingAdapter
from switchboard.providers.openai_extensions import to_openai
from switchboard.providers.spec import ProviderOptions, ProviderSpec
from switchboard.providers.target import Target
from switchboard.upstream.auth import StaticHeaderAuth, UpstreamAuth
from switchboard.upstream.request import UpstreamRequest

DEFAULT_API_VERSION = "2024-10-21"
# The first API version that accepts stream_options and max_completion_tokens (older ones
# answer 400 "Unrecognized request argument supplied: ...").
_STREAM_USAGE_SINCE = "2024-09-01"


class Options(ProviderOptions):
    api_version: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}(-preview)?$")] = DEFAULT_API_VERSION
    # Builds api_base (https://<azure_resource>.openai.azure.com) when api_base is not given.
    azure_resource: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")] | None = None
    # A Microsoft Entra ID token, sent as a bearer token instead of the api-key header.
    azure_ad_token: SecretStr | None = None


def _options(target: Target) -> Options:
    return target.options if isinstance(target.options, Options) else Options()


def deployment_url(target: Target, path: str) -> str:
    deployment = quote(target.model, safe="")
    version = quote(_options(target).api_version, safe="")
    return f"{target.api_base}/openai/deployments/{deployment}{path}?api-version={version}"


def _older_names(body: JSON, target: Target) -> JSON:
    """``max_completion_tokens`` as ``max_tokens`` for an API version that predates it; and
    ``parallel_tool_calls`` left out there (such a version refuses it): ``false`` is still kept,
    the gateway keeping the first call of each reply (providers/tool_calls.py)."""
    if _options(target).api_version >= _STREAM_USAGE_SINCE:
        return body
    body.pop("parallel_tool_calls", None)
    if "max_completion_tokens" in body:
        limit = body.pop("max_completion_tokens")
        if body.get("max_tokens") is None:
            body["max_tokens"] = limit
    return body


def _stream_usage(body: JSON, target: Target) -> JSON:
    if not body.get("stream"):
        return body
    if _options(target).api_version >= _STREAM_USAGE_SINCE:
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    else:
        body.pop("stream_options", None)  # the version rejects it; the stream then has no usage
    return body


class Adapter(NormalisingAdapter):
    type = "azure"
    # Azure OpenAI serves no image variations (dall-e-2's): refused before anything is sent.
    media_operations = NormalisingAdapter.media_operations - {"image_variations"}

    def _post(self, path: str, body: JSON, target: Target, stream: bool) -> UpstreamRequest:
        request = super()._post(path, body, target, stream)
        request.url = deployment_url(target, path)
        return request

    def chat_request(self, request: JSON, target: Target) -> UpstreamRequest:
        # A copy: _stream_usage and _post write into it, and to_openai may return the request itself.
        body = _stream_usage(dict(to_openai(capabilities.check(request, target), "azure")), target)
        _older_names(body, target)
        return self._post(self.chat_path, body, target, bool(body.get("stream")))

    def completions_request(self, request: JSON, target: Target) -> UpstreamRequest:
        body = _stream_usage(dict(request), target)
        return self._post(self.completions_path, body, target, bool(body.get("stream")))

    def media_url(self, path: str, target: Target) -> str:  # moderations, images, audio
        return deployment_url(target, path)


def _auth(config: ProviderConfig, options: BaseModel) -> UpstreamAuth:
    if isinstance(options, Options) and options.azure_ad_token is not None:
        return StaticHeaderAuth.bearer(options.azure_ad_token.get_secret_value())
    return StaticHeaderAuth.header("api-key", config.api_key.get_secret_value() if config.api_key else None)


def _api_base(config: ProviderConfig, options: BaseModel) -> str | None:
    # No default resource exists: without api_base or azure_resource the config check reports
    # "api_base: required for this provider type".
    if config.api_base or not isinstance(options, Options) or not options.azure_resource:
        return None
    return f"https://{options.azure_resource}.openai.azure.com"


SPEC = ProviderSpec(
    type="azure",
    adapter=Adapter(),
    options=Options,
    default_api_base=None,
    make_auth=_auth,
    resolve_api_base=_api_base,
)
