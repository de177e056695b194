"""Same dialect in, same dialect out: the exchanges that pass a request through untranslated.

When the inbound API's wire format is the upstream's (Anthropic Messages to an ``anthropic``
deployment), the attempt sends the client's body as it came (``model`` rewritten, gateway
fields removed, the caller's ``anthropic-version`` and ``anthropic-beta`` forwarded) and relays
the reply as it comes, marked ``native`` so the encoder writes it as it is. Usage is read from
the reply into ``ctx.usage`` in the canonical shape, so accounting is unchanged; the stages
before the terminal still see the canonical request the inbound API decoded.

The Responses API's ``responses: native`` deployments (openai, azure) are the second pair: the
client's Responses request, continuing its stored conversation, goes as it is.

The choice is made per attempt (pipeline/invoke.py asks :func:`exchange_for` for the route of
the attempt under way): a fallback to a deployment of another provider type is translated as
any request is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from switchboard.context import RequestContext
from switchboard.providers import account, openai_responses
from switchboard.providers.anthropic.native import NativeStream, native_message, native_request
from switchboard.providers.base import JSON, StreamDecoder
from switchboard.spend.cost import tier_of
from switchboard.upstream.request import UpstreamRequest

if TYPE_CHECKING:
    from switchboard.routing.table import Route


class AnthropicMessages:
    """``/v1/messages`` to an ``anthropic`` deployment (providers/anthropic/native.py)."""

    native = True

    def applies(self, route: Route) -> bool:
        return True

    def request(self, ctx: RequestContext, route: Route) -> UpstreamRequest:
        if ctx.account_object is not None and ctx.caller_credential is None:
            # A Files API source, sent as written: only on the caller's own account, or on one
            # whose provider entry allows account objects (providers/account.py).
            account.check(route.target, ctx.account_object, "a file of the Anthropic Files API")
        return native_request(ctx.body, ctx.headers, route.target)

    def reply(
        self, ctx: RequestContext, route: Route, body: bytes, headers: Mapping[str, str]
    ) -> tuple[JSON, JSON | None]:
        return native_message(body, route.target)

    def decoder(self, ctx: RequestContext, route: Route) -> StreamDecoder | None:
        return NativeStream(route.target)


class ResponsesNative:
    """``/v1/responses`` to a deployment marked ``responses: native`` (openai or azure;
    providers/openai_responses.py). The Responses API prepares the body (``ctx.native_body``:
    the client's request continuing its stored conversation)."""

    native = True

    def applies(self, route: Route) -> bool:
        return route.entry is not None and route.entry.responses == "native"

    def request(self, ctx: RequestContext, route: Route) -> UpstreamRequest:
        given, history = ctx.native_body or ({}, [])
        return openai_responses.upstream_request(given, history, route.target, ctx.stream)

    def reply(
        self, ctx: RequestContext, route: Route, body: bytes, headers: Mapping[str, str]
    ) -> tuple[JSON, JSON | None]:
        reply, usage = openai_responses.native_reply(body, route.target, _scrubber(ctx, route))
        ctx.service_tier = tier_of(reply["native"])
        return reply, usage

    def decoder(self, ctx: RequestContext, route: Route) -> StreamDecoder | None:
        return openai_responses.NativeDecoder(route.target, _scrubber(ctx, route))


def _scrubber(ctx: RequestContext, route: Route) -> Callable[[str], str]:
    """Error text a reply carries with the attempt's credentials (stored and the caller's) taken
    out, as for an error answer (upstream/client.py)."""
    client, credentials = route.client, ctx.upstream_credentials

    def scrub(text: str) -> str:
        return client.scrub(text.encode(), credentials).decode("utf-8", "replace")

    return scrub


Exchange = AnthropicMessages | ResponsesNative

# (operation, the inbound API's dialect, the deployment's provider type) -> its exchange, used
# when it ``applies`` to the attempt's route. OpenAI Chat to OpenAI-type providers needs no entry:
# its canonical form is already that wire format.
_RESPONSES = ResponsesNative()
EXCHANGES: dict[tuple[str, str, str], Exchange] = {
    ("chat", "anthropic", "anthropic"): AnthropicMessages(),
    ("chat", "openai-responses", "openai"): _RESPONSES,
    ("chat", "openai-responses", "azure"): _RESPONSES,
}


def exchange_for(ctx: RequestContext, route: Route) -> Exchange | None:
    """The pass-through exchange for this attempt, or None when it must be translated."""
    exchange = EXCHANGES.get((ctx.operation, ctx.inbound.dialect, route.target.provider_type))
    return exchange if exchange is not None and exchange.applies(route) else None
