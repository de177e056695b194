"""Provider type 'bedrock': AWS Bedrock Runtime, through the Converse / ConverseStream APIs.

Reference: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_Operations_Amazon_Bedrock_Runtime.html
``api_base`` is the runtime endpoint, ``https://bedrock-runtime.{aws_region}.amazonaws.com`` by
default; the adapter appends ``/model/{url-encoded model id}/converse`` (``/converse-stream``,
``/invoke`` for embeddings). Requests are signed with SigV4 (service ``bedrock``) from
``aws_access_key_id`` / ``aws_secret_access_key`` (+ ``aws_session_token``); without them, the
provider's ``api_key`` is sent as a Bedrock API key (``Authorization: Bearer``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated
from urllib.parse import quote

import orjson
from pydantic import BaseModel, Field, SecretStr, model_validator

from switchboard.config.schema import ProviderConfig
from switchboard.errors import GatewayError
from switchboard.providers.base import JSON, ProviderAdapter
from switchboard.providers.bedrock.embeddings import embeddings_list, invoke_body
from switchboard.providers.bedrock.errors import http_error
from switchboard.providers.bedrock.reasoning import reasoning_fields
from switchboard.providers.bedrock.request import converse_body
from switchboard.providers.bedrock.response import chat_completion
from switchboard.providers.bedrock.stream import ConverseStreamDecoder
from switchboard.providers.spec import ProviderOptions, ProviderSpec
from switchboard.providers.target import Target
from switchboard.upstream.auth import StaticHeaderAuth, UpstreamAuth
from switchboard.upstream.request import UpstreamRequest
from switchboard.upstream.sigv4 import Credentials, SigV4Auth

SERVICE = "bedrock"  # the SigV4 signing name of bedrock-runtime
_JSON = {"Content-Type": "application/json", "Accept": "application/json"}
_STREAM = {"Content-Type": "application/json", "Accept": "application/vnd.amazon.eventstream"}


class BedrockOptions(ProviderOptions):
    aws_region: Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")]
    aws_access_key_id: Annotated[str, Field(min_length=1)] | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None

    @model_validator(mode="after")
    def _pair(self) -> BedrockOptions:
        if (self.aws_access_key_id is None) != (self.aws_secret_access_key is None):
            raise ValueError("aws_access_key_id and aws_secret_access_key must be given together")
        if self.aws_session_token is not None and self.aws_access_key_id is None:
            raise ValueError("aws_session_token needs aws_access_key_id and aws_secret_access_key")
        return self


def model_path(model: str, action: str) -> str:
    # Model ids and ARNs hold ':' and '/', which must be percent-encoded as one path segment.
    return f"/model/{quote(model, safe='')}/{action}"


class BedrockAdapter(ProviderAdapter):
    type = "bedrock"
    inline_images = True  # Converse takes image bytes only

    def _post(self, target: Target, action: str, body: JSON, stream: bool = False) -> UpstreamRequest:
        url = target.api_base + model_path(target.model, action)
        return UpstreamRequest("POST", url, orjson.dumps(body), dict(_STREAM if stream else _JSON), stream)

    def chat_request(self, request: JSON, target: Target) -> UpstreamRequest:
        stream = bool(request.get("stream"))
        action = "converse-stream" if stream else "converse"
        return self._post(target, action, converse_body(request, target), stream)

    def chat_response(self, body: bytes, target: Target) -> JSON:
        return chat_completion(body, target)

    def chat_stream(self, request: JSON, target: Target) -> ConverseStreamDecoder:
        return ConverseStreamDecoder(target)

    def output_bound(self, request: JSON, target: Target) -> int | None:
        # The maxTokens converse_body sends when the caller gave none: only Claude's thinking
        # sets one (its budget plus room for the answer; off for a tool loop only lowers it).
        if request.get("max_completion_tokens") or request.get("max_tokens"):
            return None
        try:
            return reasoning_fields(request, target, None)[1]
        except GatewayError:  # refused when the call is made
            return None

    def embeddings_request(self, request: JSON, target: Target) -> UpstreamRequest:
        return self._post(target, "invoke", invoke_body(request, target))

    def embeddings_response(self, body: bytes, target: Target) -> JSON:
        return embeddings_list(body, target)

    def embeddings_reply(self, body: bytes, headers: Mapping[str, str], target: Target) -> JSON:
        return embeddings_list(body, target, headers)

    def error(self, status: int, headers: Mapping[str, str], body: bytes, target: Target) -> GatewayError:
        return http_error(status, headers, body, target)


def _auth(config: ProviderConfig, options: BaseModel) -> UpstreamAuth:
    assert isinstance(options, BedrockOptions)
    if options.aws_access_key_id and options.aws_secret_access_key:
        token = options.aws_session_token.get_secret_value() if options.aws_session_token else None
        secret = options.aws_secret_access_key.get_secret_value()
        credentials = Credentials(options.aws_access_key_id, secret, token)
        return SigV4Auth(credentials, options.aws_region, SERVICE)
    return StaticHeaderAuth.bearer(config.api_key.get_secret_value() if config.api_key else None)


def _api_base(config: ProviderConfig, options: BaseModel) -> str | None:
    assert isinstance(options, BedrockOptions)
    return config.api_base or f"https://bedrock-runtime.{options.aws_region}.amazonaws.com"


SPEC = ProviderSpec(
    type="bedrock",
    adapter=BedrockAdapter(),
    options=BedrockOptions,
    default_api_base=None,
    make_auth=_auth,
    resolve_api_base=_api_base,
)
