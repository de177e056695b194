"""Caller credentials: a caller authenticated by its Switchboard key sends its own provider
credential (an OpenAI key, an Anthropic API key or Claude OAuth token, ...) in one designated
header, and the provider is called with it instead of the stored one.

Off by default: ``auth.caller_credentials.enabled`` turns it on for the deployment and each
provider entry opts in with ``allow_caller_credentials``. A credential sent where it is not
accepted is refused (400), never silently ignored: the caller would otherwise be billed on the
deployment's account without knowing. The header is taken out of the request here, so nothing
later (logs, the admin bridge, the upstream request) ever sees it; the provider gets the
credential in its own auth header only, and error bodies are scrubbed of it
(``upstream/client.py``). Limits, budgets and logging apply as for any other call.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from switchboard.config.schema import CallerCredentialsConfig
from switchboard.context import RequestContext, Result
from switchboard.errors import AuthenticationFailed, InvalidRequest, UpstreamAuthFailed
from switchboard.pipeline.chain import Handler
from switchboard.upstream.request import UpstreamRequest

# Claude subscription (Claude Code) OAuth access tokens; API keys are sk-ant-api…
ANTHROPIC_OAUTH_PREFIX = "sk-ant-oat"
ANTHROPIC_OAUTH_BETA = "oauth-2025-04-20"

_SCHEME = re.compile(r"^bearer\s+", re.I)
_CREDENTIAL = re.compile(r"^[\x21-\x7e]{8,4096}$")  # visible ASCII, no spaces


def _bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def _anthropic(credential: str) -> dict[str, str]:
    if credential.startswith(ANTHROPIC_OAUTH_PREFIX):
        return {"Authorization": f"Bearer {credential}", "anthropic-beta": ANTHROPIC_OAUTH_BETA}
    return {"x-api-key": credential}


# Provider type -> the headers that carry a caller's credential. Types not listed (AWS SigV4,
# Google service accounts) sign or exchange credentials and cannot take one from a header.
FORMS: dict[str, Callable[[str], dict[str, str]]] = {
    "openai": _bearer,
    "openai_compatible": _bearer,
    "mistral": _bearer,
    "cohere": _bearer,
    "azure": lambda credential: {"api-key": credential},
    "gemini": lambda credential: {"x-goog-api-key": credential},
    "anthropic": _anthropic,
}

# Headers whose values are lists: the caller's value is added to the adapter's, not put in place.
_LIST_HEADERS = frozenset({"anthropic-beta"})


def apply(upstream: UpstreamRequest, credentials: dict[str, str]) -> None:
    """Make ``upstream`` carry the caller's credential headers instead of the stored credential."""
    merged = dict(credentials)
    for name in _LIST_HEADERS & merged.keys():
        present = upstream.headers.get(name)
        if present:
            values = [v.strip() for v in present.split(",") if v.strip()]
            if merged[name] not in values:
                values.append(merged[name])
            merged[name] = ",".join(values)
    upstream.credentials = merged


def blamed(ctx: RequestContext, error: Exception) -> Exception:
    """The error for the caller: when the provider refused the credential the caller sent, that
    is the caller's to fix (401 ``caller_credentials_rejected``), not the gateway's (502)."""
    if ctx.upstream_credentials is not None and isinstance(error, UpstreamAuthFailed):
        route = ctx.route
        provider = route.target.provider if route is not None else "the provider"
        return AuthenticationFailed(
            f"provider '{provider}' rejected the credential sent in the caller's header",
            code="caller_credentials_rejected",
        )
    return error


class CallerCredentialsStage:
    name = "caller_credentials"

    def __init__(self, config: CallerCredentialsConfig) -> None:
        self._enabled = config.enabled
        self._header = config.header  # lower case, as the edge's header names are

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        value = ctx.headers.pop(self._header, None)
        if value is None:
            return await call_next(ctx)
        if not self._enabled:
            raise InvalidRequest(
                f"this gateway does not accept provider credentials from callers (header {self._header})",
                code="caller_credentials_disabled",
            )
        route = ctx.route
        assert route is not None, "the route stage runs first"
        target = route.target
        form = FORMS.get(target.provider_type)
        if form is None:
            raise InvalidRequest(
                f"the model '{target.name}' is served by a {target.provider_type} provider, which cannot "
                "use a credential sent by the caller",
                code="caller_credentials_unsupported",
            )
        if not target.allow_caller_credentials:
            raise InvalidRequest(
                f"the provider of the model '{target.name}' does not accept credentials from callers",
                code="caller_credentials_disabled",
            )
        credential = _SCHEME.sub("", value.strip())
        if not _CREDENTIAL.match(credential):
            raise InvalidRequest(
                f"header {self._header}: not a credential (8 to 4096 visible ASCII characters, "
                "optionally after 'Bearer ')",
                code="invalid_caller_credentials",
            )
        ctx.upstream_credentials = form(credential)
        return await call_next(ctx)
