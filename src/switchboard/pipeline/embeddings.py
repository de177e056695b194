"""The terminal of the embeddings operation (``/v1/embeddings``, the Gemini API's embedContent and
batchEmbedContents): the shared ``invoke``, once the attempt's model is known to embed.

A model whose catalog record has another mode (a chat model) would be sent an embeddings call
its provider refuses, or worse answers: it is refused with ``400 model_mode_mismatch`` before
anything is sent, as the media operations refuse theirs (pipeline/media.py). A model unknown to
the catalog, or whose configured ``info`` sets no mode, is tried. Per attempt: each deployment
of a group has its own record. The record is memoised per deployment (``Prices.of_route``), so
this is a dictionary look-up per call. A provider type with no embeddings at all (anthropic)
keeps its own refusal, which says that no model of it embeds.
"""

from __future__ import annotations

from switchboard.context import RequestContext, Result
from switchboard.pipeline.invoke import invoke
from switchboard.pipeline.media import require_mode
from switchboard.providers.base import ProviderAdapter
from switchboard.spend.cost import Prices


class EmbeddingsTerminal:
    def __init__(self, prices: Prices) -> None:
        self._prices = prices

    async def __call__(self, ctx: RequestContext) -> Result:
        route = ctx.route
        assert route is not None, "the route stage runs first"
        if _embeds(route.adapter):
            require_mode(self._prices.of_route(route), route.target.name, "embedding", "embeddings")
        return await invoke(ctx)


def _embeds(adapter: ProviderAdapter) -> bool:
    """Whether the adapter has embeddings (the base class only refuses them)."""
    return type(adapter).embeddings_request is not ProviderAdapter.embeddings_request
