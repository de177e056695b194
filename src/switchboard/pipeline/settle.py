"""One post-response settlement for a request's rate limits and budgets together.

The rate-limit stage reserved the request's estimated tokens in its token buckets; the budget
stage reserved its most possible cost on every budget in force. Once the response is out (a
stream: once it has ended; also on errors and client disconnects), both are settled to what
the call really used, by one callback rather than one per stage:

- the token buckets are corrected by the difference between the usage the provider reported
  and the estimate (a stream cut before its final usage, a chat or completions answer that
  reported no usage, or an embeddings answer that reported no input tokens: the tokens the usage
  stage estimated for it, as its budgets are; a failed call with no usage gives its tokens back;
  another call that succeeded without reporting usage keeps the estimate);
- the budget reservation is replaced by the cost the usage stage recorded (``ctx.spent``); the
  reservations of further calls made within the request (``BudgetStage.reserve_again``: a prompt
  API's repair tries, whose cost is summed into the request's) are given back.

An attempt sent to a deployment other than the rate-limit stage's pick took that deployment's
limits before it went (``RateLimitStage.take``); a failed one gave its tokens back at once, and
the one that answered has its token buckets here too (``extra``), corrected the same way in the
same limiter call.

The budget stage registers the settlement after its ``call_next`` (so it runs after the usage
stage's own callback, once the cost is known); the rate-limit stage, around it, then adds its
part to that same settlement (the last callback registered) rather than registering a second
callback, or registers one of its own when no budget applies. Each part fails on its
own: a store error is logged and the other part still settles. Neither is lost to a store that
does not answer for a while (Redis down as the call ends): the budget settlement waits in the
budget book and the token correction in the limiter, each tried again until Redis answers.
The correction is asked for before the budget settlement and awaited after it: in Redis both
scripts leave in the same pipeline, one round trip after the response rather than two. On the
embedded default, whose limiter and counters never wait, the settlement is a plain call (the edge
awaits what a callback returns only when it returns something): no coroutine of its own, nor of
the book's or the stores', on every request.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence

from switchboard.context import RequestContext
from switchboard.limits.estimate import used_tokens
from switchboard.spend.budgets.book import BudgetBook
from switchboard.spend.budgets.plan import Budget
from switchboard.stores.protocols import Bucket, BucketState, Charge, RateLimiter

log = logging.getLogger("switchboard.settle")

# Tokens taken for one deployment: its buckets, the limiter's answer, which of them count tokens,
# and the tokens taken from each of those.
Reservation = tuple[Sequence[Bucket], Sequence[BucketState], Sequence[int], int]


class Settlement:
    """What one request settles after its response; called once, as a post-response callback."""

    __slots__ = (
        "book",
        "buckets",
        "budgets",
        "charges",
        "extra",
        "hold",
        "indexes",
        "limiter",
        "reserved",
        "reserved_at",
        "states",
    )

    def __init__(self, book: BudgetBook | None = None, budgets: Sequence[Budget] = (),
                 charges: Sequence[Charge] = (), reserved_at: float = 0.0, hold: float = 0.0) -> None:
        """``book`` and the rest: a budget reservation's settlement (the budget stage's; the
        rate-limit stage may add its part); none: the rate-limit stage's alone."""
        self.limiter: RateLimiter | None = None
        self.buckets: Sequence[Bucket] = ()  # what the request took from the limiter
        self.states: Sequence[BucketState] = ()  # and what the limiter answered
        self.indexes: Sequence[int] = ()  # which of them are token buckets, to correct
        self.reserved = 0  # tokens taken from each token bucket
        # The answering attempt's own token reservation on a deployment the rate-limit stage did
        # not pick: (buckets, states, token indexes, tokens taken from each). None: none.
        self.extra: Reservation | None = None
        self.book = book
        self.budgets = budgets
        self.charges = charges
        self.reserved_at = reserved_at  # time.monotonic() as the budgets were reserved
        self.hold = hold  # the seconds that reservation holds

    @classmethod
    def of_budgets(cls, book: BudgetBook, budgets: Sequence[Budget], charges: Sequence[Charge],
                   reserved_at: float, hold: float) -> Settlement:
        """The settlement of a budget reservation (the rate-limit stage may add its part)."""
        return cls(book, budgets, charges, reserved_at, hold)

    def __call__(self, ctx: RequestContext) -> Awaitable[None] | None:
        limiter = self.limiter
        corrected: list[Bucket] = []
        slots: list[int] = []
        if limiter is not None:
            spent = ctx.spent
            reported = used_tokens(ctx.usage)
            if spent is not None and spent.estimated:
                # What the usage record estimated: a stream cut short (what it produced), or an
                # embeddings answer whose provider reported no input tokens (its input).
                used = spent.tokens
            elif reported is not None:
                used = reported
            else:
                # No usage reported: a failed call gives its reservation back; otherwise it stands.
                status = ctx.outcome.status
                used = self.reserved if 0 < status < 400 else 0
            delta = used - self.reserved
            # One loop, not two comprehensions (each a function call of its own).
            if delta:
                buckets, states = self.buckets, self.states
                for i in self.indexes:
                    key, capacity, window, _ = buckets[i]
                    corrected.append(tuple.__new__(Bucket, (key, capacity, window, delta)))
                    slots.append(states[i].slot)
            if self.extra is not None:
                buckets, states, indexes, reserved = self.extra
                estimated = spent is not None and spent.estimated
                if reported is None and not estimated and 0 < ctx.outcome.status < 400:
                    used = reserved  # answered without usage: the estimate stands here too
                if delta := used - reserved:
                    for i in indexes:
                        key, capacity, window, _ = buckets[i]
                        corrected.append(tuple.__new__(Bucket, (key, capacity, window, delta)))
                        slots.append(states[i].slot)
        book = self.book
        adjust_now = limiter.adjust_now if limiter is not None else None
        if (book is None or book.settles_now) and (limiter is None or adjust_now is not None):
            # Every store in this process (the embedded default): settled here, in ``_settle``'s
            # order, with no coroutine made (the edge awaits none: nothing here waits).
            if book is not None:
                book.settle_surely_now(ctx.reservation_id(), self.budgets, self.charges, ctx.spent,
                                       self.reserved_at, self.hold)
                for reservation, charges in ctx.budgets_more or ():
                    book.settle_surely_now(reservation, self.budgets, charges, None, self.reserved_at,
                                           self.hold)
            if corrected and adjust_now is not None:
                try:
                    adjust_now(corrected, slots)
                except Exception as exc:
                    log.warning("rate limiter: correcting a token reservation failed (%s)",
                                type(exc).__name__)
            return None
        return self._settle(ctx, book, limiter, corrected, slots)

    async def _settle(self, ctx: RequestContext, book: BudgetBook | None, limiter: RateLimiter | None,
                      corrected: list[Bucket], slots: list[int]) -> None:
        """The settlement, on stores that wait (Redis)."""
        correcting: Awaitable[None] | None = None
        if corrected:
            assert limiter is not None
            # Asked now, awaited after the budget settlement is asked for: in Redis both
            # scripts leave in one pipeline, one round trip (each still fails on its own).
            correcting = limiter.adjust(corrected, slots)
        try:
            if book is not None:  # tried again in the background if Redis does not answer
                await book.settle_surely(ctx.reservation_id(), self.budgets, self.charges, ctx.spent,
                                         self.reserved_at, self.hold)
                # Further calls' reservations (a prompt API's repair tries): their cost is in the
                # request's, settled above; they are given back.
                for reservation, charges in ctx.budgets_more or ():
                    await book.settle_surely(reservation, self.budgets, charges, None,
                                             self.reserved_at, self.hold)
        finally:
            if correcting is not None:
                try:
                    await correcting
                except Exception as exc:
                    log.warning("rate limiter: correcting a token reservation failed (%s)",
                                type(exc).__name__)
