"""Semantic routing: the route whose example utterances are most similar to the request.

The examples are embedded once, on first use, by the configured embedding model (a group this
gateway serves, called through its own router); each request's last user message is embedded
and compared by cosine similarity with every example. The best route wins if its similarity
reaches the threshold. Embedding failures never fail the request: it goes to the default.
"""

from __future__ import annotations

import asyncio
import logging
import math
import operator
from collections.abc import Awaitable, Callable, Sequence

from switchboard.config.schema import SemanticRouter

log = logging.getLogger("switchboard.routing")

# (model, texts, dimensions or None, regions or None) -> one vector per text. ``regions``: the
# caller's allowed regions (data residency) when the texts are the caller's own; None: anywhere.
Embed = Callable[[str, list[str], int | None, frozenset[str] | None], Awaitable[list[list[float]]]]


def unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else list(vector)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Of two unit vectors (see :func:`unit`)."""
    return sum(map(operator.mul, a, b))


class SemanticChooser:
    def __init__(self, config: SemanticRouter, embed: Embed) -> None:
        self.config = config
        self._embed = embed
        # (route's group, unit vector) per example, once embedded.
        self._examples: list[tuple[str, list[float]]] | None = None
        self._lock = asyncio.Lock()

    async def choose(self, text: str, regions: frozenset[str] | None = None,
                     ) -> tuple[str | None, float | None]:
        """The group to send ``text`` to and its similarity; (default, None) when no route
        reaches the threshold or the embeddings cannot be had. ``text`` is embedded only by a
        deployment inside ``regions`` (the caller's)."""
        fallback = self.config.default
        if not text:
            return fallback, None
        try:
            examples = await self._ensure_examples()
            async with asyncio.timeout(self.config.timeout_seconds):
                (vector,) = await self._embed(self.config.embedding_model, [text[: self.config.max_chars]],
                                              self.config.dimensions, regions)
        except Exception as exc:  # semantic routing is best effort: any failure -> the default
            log.warning("semantic routing for %r fell back to its default: %s", self.config.model, exc)
            return fallback, None
        query = unit(vector)
        best, score = fallback, -2.0
        for group, example in examples:
            if len(example) != len(query):
                continue
            similarity = cosine(query, example)
            if similarity > score:
                best, score = group, similarity
        if score < self.config.threshold:
            return fallback, None
        return best, score

    async def _ensure_examples(self) -> list[tuple[str, list[float]]]:
        if self._examples is not None:
            return self._examples
        async with self._lock:  # one embedding call for the examples, not one per request
            if self._examples is None:
                labels = [(route.to, text) for route in self.config.routes for text in route.examples]
                async with asyncio.timeout(self.config.timeout_seconds):
                    vectors = await self._embed(self.config.embedding_model, [t for _, t in labels],
                                                self.config.dimensions, None)
                if len(vectors) != len(labels):
                    raise ValueError("the embedding model answered with the wrong number of vectors")
                self._examples = [(group, unit(v)) for (group, _), v in zip(labels, vectors, strict=True)]
            return self._examples
