"""Where message batches go: an ``anthropic`` provider entry of the configuration (never a URL
from the caller), as an :class:`Upstream` whose calls carry, as the /v1/messages pass-through's
do (providers/anthropic/native.py), the caller's ``anthropic-version`` (the provider's when it
sent none, and on the poller's calls) and the provider's ``anthropic-beta`` with the caller's
added; its credential is the client's own auth (``x-api-key``)."""

from __future__ import annotations

from collections.abc import Mapping

from switchboard.http.files.upstream import Upstream
from switchboard.providers.anthropic.native import BETA_HEADER, VERSION_HEADER, merged_betas
from switchboard.providers.anthropic.options import AnthropicOptions
from switchboard.providers.anthropic.request import request_headers
from switchboard.routing.live import LiveRouting
from switchboard.upstream.request import header_text

ANTHROPIC = "anthropic"
BATCHES_PATH = "/v1/messages/batches"


def resolve_anthropic(routing: LiveRouting, provider: str,
                      caller: Mapping[str, str] | None = None) -> Upstream | None:
    """The provider entry ``provider`` if it is an Anthropic one that is usable now; ``caller``:
    the request's headers, whose ``anthropic-version`` and ``anthropic-beta`` go along (none for
    the poller's calls)."""
    resolved = routing.resolved(provider)
    if resolved is None or resolved.config.type != ANTHROPIC:
        return None
    client = routing.static_client(provider) or routing.stored_client(provider)
    if client is None:
        return None
    options = resolved.options if isinstance(resolved.options, AnthropicOptions) else AnthropicOptions()
    headers = request_headers(options, False)
    if caller is not None and (version := header_text(caller.get(VERSION_HEADER) or "")):
        headers[VERSION_HEADER] = version  # the wire format the caller's SDK reads
    if caller is not None and BETA_HEADER in caller:
        headers[BETA_HEADER] = merged_betas(options.anthropic_beta, caller)
    return Upstream(provider, ANTHROPIC, resolved.api_base, None, client, resolved.config.timeouts,
                    headers, resolved.config.allow_account_objects)
