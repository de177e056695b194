"""Where message batches go: an ``anthropic`` provider entry of the configuration (never a URL
from the caller), as an :class:`Upstream` whose calls carry the provider's ``anthropic-version``
(and ``anthropic-beta``); its credential is the client's own auth (``x-api-key``)."""

from __future__ import annotations

from switchboard.http.files.upstream import Upstream
from switchboard.providers.anthropic.options import AnthropicOptions
from switchboard.providers.anthropic.request import request_headers
from switchboard.routing.live import LiveRouting

ANTHROPIC = "anthropic"
BATCHES_PATH = "/v1/messages/batches"


def resolve_anthropic(routing: LiveRouting, provider: str) -> Upstream | None:
    """The provider entry ``provider`` if it is an Anthropic one that is usable now."""
    resolved = routing.resolved(provider)
    if resolved is None or resolved.config.type != ANTHROPIC:
        return None
    client = routing.static_client(provider) or routing.stored_client(provider)
    if client is None:
        return None
    options = resolved.options if isinstance(resolved.options, AnthropicOptions) else AnthropicOptions()
    return Upstream(provider, ANTHROPIC, resolved.api_base, None, client, resolved.config.timeouts,
                    request_headers(options, False), resolved.config.allow_account_objects)
