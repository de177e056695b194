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

The decision is per deployment: a request with a caller credential is planned only on
deployments whose provider opted in and can take one (the group's own candidates here, each
fallback group's plan in the attempt stage), so a retry or fallback never sends it elsewhere.
Each attempt formats it for its own provider type (``attach``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from switchboard.config.schema import CallerCredentialsConfig
from switchboard.context import RequestContext, Result
from switchboard.errors import AuthenticationFailed, InvalidRequest, UpstreamAuthFailed
from switchboard.pipeline.chain import Handler
from switchboard.providers.target import Target
from switchboard.routing.pinning import PIN_DEPLOYMENT
from switchboard.upstream.request import UpstreamRequest

if TYPE_CHECKING:
    from switchboard.routing.table import Route

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


def accepts(target: Target) -> bool:
    """May a deployment of ``target`` be sent a caller's credential?"""
    return target.allow_caller_credentials and target.provider_type in FORMS


def usable(ctx: RequestContext, plan: list[Route]) -> list[Route]:
    """``plan`` without the deployments that may not be sent the request's caller credential
    (all of it when the request carries none)."""
    if ctx.caller_credential is None:
        return plan
    return [route for route in plan if accepts(route.target)]


def attach(ctx: RequestContext, route: Route, upstream: UpstreamRequest) -> None:
    """Make this attempt's ``upstream`` request carry the caller's credential in the form of
    ``route``'s provider type. The plan holds only deployments that accept it; the check here
    keeps a credential from ever leaving for one that does not, whatever planned the attempt."""
    credential = ctx.caller_credential
    assert credential is not None
    target = route.target
    if not accepts(target):
        raise _refusal(target)
    ctx.upstream_credentials = FORMS[target.provider_type](credential)
    apply(upstream, ctx.upstream_credentials)


def _refusal(target: Target, deployment: str | None = None) -> InvalidRequest:
    """``deployment``: the one a pin named, when only it is refused."""
    what = f"the model '{target.name}'" if deployment is None else \
        f"the deployment '{deployment}' of the model '{target.name}'"
    if target.provider_type not in FORMS:
        return InvalidRequest(
            f"{what} is served by a {target.provider_type} provider, which cannot "
            "use a credential sent by the caller",
            code="caller_credentials_unsupported",
        )
    return InvalidRequest(
        f"the provider of {what} does not accept credentials from callers",
        code="caller_credentials_disabled",
    )


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
        group = ctx.group
        fit = [r for r in (group.deployments if group is not None else (route,)) if accepts(r.target)]
        if not fit:
            raise _refusal(route.target)
        # A pinned deployment that may never take it refuses the request at once, as a pin its
        # deployment may never serve does (routing/pinning.py), not as if it were cooling down.
        pin = ctx.headers.get(PIN_DEPLOYMENT)
        pinned = group.deployment(pin) if group is not None and pin is not None else None
        if pinned is not None and not accepts(pinned.target):
            raise _refusal(pinned.target, pinned.deployment)
        credential = _SCHEME.sub("", value.strip())
        if not _CREDENTIAL.match(credential):
            raise InvalidRequest(
                f"header {self._header}: not a credential (8 to 4096 visible ASCII characters, "
                "optionally after 'Bearer ')",
                code="invalid_caller_credentials",
            )
        ctx.caller_credential = credential
        # Only the group's deployments that accept it are tried (pipeline/attempts.py).
        if ctx.candidates is not None:
            ctx.candidates = usable(ctx, ctx.candidates)
        if not accepts(route.target):
            ctx.route = ctx.candidates[0] if ctx.candidates else fit[0]
        return await call_next(ctx)
