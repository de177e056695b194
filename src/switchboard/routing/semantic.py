"""Semantic routing: the route whose example utterances are most similar to the request.

The examples are embedded once, on first use, by the configured embedding model (a group this
gateway serves, called through its own router); each request's last user message is embedded
and compared by cosine similarity with every example. The best route wins if its similarity
reaches the threshold. Embedding failures never fail the request: it goes to the default.

The examples' embedding is one call shared by every request waiting for it, and a failed one is
not tried again for ``RETRY_SECONDS``: an embedding model that is down or hanging costs each
request at most ``timeout_seconds`` (the whole decision's bound) and the model one call, not one
per request queued behind the last.
"""

from __future__ import annotations

import asyncio
import logging
import math
import operator
import time
from collections.abc import Awaitable, Callable, Sequence

from switchboard.config.schema import SemanticRouter

log = logging.getLogger("switchboard.routing")

# (model, texts, dimensions or None, regions or None) -> one vector per text. ``regions``: the
# caller's allowed regions (data residency) when the texts are the caller's own; None: anywhere.
Embed = Callable[[str, list[str], int | None, frozenset[str] | None], Awaitable[list[list[float]]]]


# A failed embedding of the examples is tried again after this many seconds, not sooner.
RETRY_SECONDS = 10.0
# Falling back is logged at most once this often per router (with how many were not): an
# embedding model that is down would otherwise write a warning per request.
WARN_SECONDS = 60.0


def unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else list(vector)


def checked(vector: object) -> list[float]:
    """``vector`` as a unit vector, if it is a non-empty list of finite numbers (an upstream's
    answer: anything else is a ValueError, so the request goes to the default, not to a 500)."""
    if not isinstance(vector, list) or not vector or not all(
            type(x) in (float, int) and math.isfinite(x) for x in vector):
        raise ValueError("the embedding model answered with something other than a list of numbers")
    return unit(vector)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Of two unit vectors (see :func:`unit`)."""
    return sum(map(operator.mul, a, b))


class SemanticChooser:
    def __init__(self, config: SemanticRouter, embed: Embed) -> None:
        self.config = config
        self._embed = embed
        # (route's group, unit vector) per example, once embedded.
        self._examples: list[tuple[str, list[float]]] | None = None
        self._pending: asyncio.Task[None] | None = None  # the examples' embedding, under way
        self._failed: tuple[float, str] | None = None  # (monotonic time, why) of the last failure
        self.retry_seconds = RETRY_SECONDS
        self._warned_at: float | None = None
        self._unwarned = 0  # fallbacks since the last warning, not logged

    async def choose(self, text: str, regions: frozenset[str] | None = None,
                     ) -> tuple[str | None, float | None]:
        """The group to send ``text`` to and its similarity; (default, None) when no route
        reaches the threshold or the embeddings cannot be had within ``timeout_seconds``.
        ``text`` is embedded only by a deployment inside ``regions`` (the caller's)."""
        fallback = self.config.default
        if not text:
            return fallback, None
        try:
            async with asyncio.timeout(self.config.timeout_seconds):
                examples = await self._ensure_examples()
                (vector,) = await self._embed(self.config.embedding_model, [text[: self.config.max_chars]],
                                              self.config.dimensions, regions)
            query = checked(vector)
        except Exception as exc:  # semantic routing is best effort: any failure -> the default
            self._warn(exc)
            return fallback, None
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

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if self._warned_at is not None and now - self._warned_at < WARN_SECONDS:
            self._unwarned += 1
            return
        more = f" ({self._unwarned} more since the last warning)" if self._unwarned else ""
        self._warned_at, self._unwarned = now, 0
        log.warning("semantic routing for %r fell back to its default: %s%s", self.config.model,
                    str(exc) or type(exc).__name__, more)  # a timeout's text is empty

    async def _ensure_examples(self) -> list[tuple[str, list[float]]]:
        if self._examples is not None:
            return self._examples
        failed = self._failed
        if failed is not None and time.monotonic() - failed[0] < self.retry_seconds:
            raise LookupError(f"the route examples could not be embedded: {failed[1]}")
        if self._pending is None:  # one embedding call for the examples, not one per request
            self._pending = asyncio.create_task(self._embed_examples())
        # Shielded: a request giving up (its deadline, its caller gone) leaves the call to the others.
        await asyncio.shield(self._pending)
        if self._examples is None:
            raise LookupError(f"the route examples could not be embedded: {self._failed and self._failed[1]}")
        return self._examples

    async def _embed_examples(self) -> None:
        """Embed the examples, bounded by ``timeout_seconds``; a failure is kept, not raised (the
        task may have no one left waiting for it)."""
        labels = [(route.to, text) for route in self.config.routes for text in route.examples]
        try:
            async with asyncio.timeout(self.config.timeout_seconds):
                vectors = await self._embed(self.config.embedding_model, [t for _, t in labels],
                                            self.config.dimensions, None)
            if len(vectors) != len(labels):
                raise ValueError("the embedding model answered with the wrong number of vectors")
            self._examples = [(group, checked(v)) for (group, _), v in zip(labels, vectors, strict=True)]
            self._failed = None
        except Exception as exc:
            self._failed = (time.monotonic(), str(exc) or type(exc).__name__)
        finally:
            self._pending = None
