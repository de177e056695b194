"""Budgets: reserve a request's most it can cost on every budget in force, settle it after.

Runs after the usage stage and the rate limits. Before the upstream call, the estimated
maximum cost (prompt tokens at the input price plus the most output the call can produce —
``max_tokens``, else the model's output limit — at the output price) is reserved against every
budget that applies (tenant, team, user, key) at once, or against none: concurrent requests
cannot overshoot a budget. A refusal is 429 ``budget_exceeded`` (400 ``request_exceeds_budget``
when the request alone is larger than the budget). Once the response is out (a stream: once it
has ended), the reservation is settled to the cost the usage stage recorded (``ctx.spent``);
a call that failed or never started settles to what it cost, often nothing. Past a budget's
``downgrade_at`` percent, the request goes to its cheaper ``downgrade_model`` and the response
says so in ``x-switchboard-budget-downgrade``: the reservation is given back and ``Rerouted``
raised, so that the rate-limit stage around this one takes the cheaper model's limits instead
of the requested one's and runs this stage again, which then reserves for the cheaper model
(one downgrade per request). In cluster mode the reservation is made in the rate-limit stage's
Redis script when it can be (``ride``: one round trip before the upstream call, not two); this
stage then reads its answer and goes on as after its own. See docs/budgets.md.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from switchboard import tokens
from switchboard.access.rules import model_allowed
from switchboard.access.subscriptions import SubscriptionCache
from switchboard.catalog import ModelInfo
from switchboard.config.schema import BudgetsConfig
from switchboard.context import RequestContext, Result
from switchboard.errors import SHOULD_RETRY, GatewayError, InvalidRequest, PermissionDenied
from switchboard.pipeline import caller_credentials
from switchboard.pipeline.chain import Handler
from switchboard.pipeline.limits import Rerouted
from switchboard.pipeline.media import serves
from switchboard.pipeline.settle import Settlement
from switchboard.pipeline.subscription import require_approved
from switchboard.providers.counts import TOKENS_MAX
from switchboard.routing.router import ANYWHERE, Router, Table
from switchboard.spend.budgets.book import BudgetBook
from switchboard.spend.budgets.periods import key_start, window
from switchboard.spend.budgets.plan import Budget
from switchboard.spend.cost import Prices, Tokens, cost, long_context, tiered
from switchboard.spend.units import estimate_nano_usd as units_estimate
from switchboard.stores.protocols import Acquired, Admission, Bucket, Charge, Reserved

if TYPE_CHECKING:
    from switchboard.routing.groups import Group
    from switchboard.routing.table import Route

log = logging.getLogger("switchboard.budgets")

DOWNGRADE_HEADER = "x-switchboard-budget-downgrade"
SCOPE_HEADER = "x-switchboard-budget-scope"
# The output reserved per choice for a call that neither the request nor the catalog bounds.
UNBOUNDED_OUTPUT_TOKENS = 4096
_HOLD_UNBOUNDED = 3600.0
_WARN_EVERY = 10.0


_QUOTES_MAX = 4096
# A catalog record, its input and output prices per token in units of 10**-exponent USD, and how
# a number of units becomes nano-USD (times the first, or divided by the second, rounded up),
# and whether it prices a media unit (most records price none: their media estimate is 0).
# Then what counting reads of it (its model and output bound) as plain attributes. Last, the
# prompt size past which its long-context prices apply, and those input and output prices.
_Quote = tuple[ModelInfo, int, int, int, int, bool, "_Counted", int, int, int]


@dataclass(slots=True, frozen=True)
class _Counted:
    """A catalog record's model and output bound (``tokens.ModelInfoLike``), copied once per
    record: a pydantic model's fields are read through its slow attribute path (its class
    defines ``__getattr__``, so the interpreter never specialises the read)."""

    model: str
    max_output_tokens: int | None


# One prompt token, each way it can be billed (the dearest is reserved).
_PROMPT_TOKEN = (Tokens(input=1), Tokens(cache_write_5m=1), Tokens(cache_write_1h=1))

class _Ride:
    """The budget stage's reservation made with the rate limits (``pipeline.limits.Rider``):
    ``reserved`` is the counters' answer, None while not made (the limits refused, or the call
    failed: the stage then reserves in its own turn)."""

    __slots__ = ("admission", "book", "budgets", "charges", "hold", "reservation", "reserved", "reserved_at")

    def __init__(self, admission: Admission, book: BudgetBook, reservation: str, budgets: Sequence[Budget],
                 charges: list[Charge], hold: float) -> None:
        self.admission = admission
        self.book = book
        self.reservation = reservation
        self.budgets = budgets
        self.charges = charges
        self.hold = hold
        self.reserved_at = time.monotonic()  # as the budgets are reserved
        self.reserved: Reserved | None = None

    async def acquire(self, buckets: list[Bucket]) -> Acquired:
        answer = await self.admission.acquire_reserve(buckets, self.reservation, self.charges, self.hold)
        self.reserved = answer[1]
        return answer[0]


class BudgetExceeded(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "budget_exceeded"
    spares_limits = True


class BudgetUnavailable(GatewayError):
    status = 503
    type = "api_error"
    code = "budget_unavailable"
    spares_limits = True


class BudgetStage:
    name = "budgets"

    def __init__(
        self, config: BudgetsConfig, book: Callable[[], BudgetBook | None], prices: Prices, table: Table,
        admission: Callable[[], Admission | None] = lambda: None, router: Router | None = None,
        refused: Callable[[Route], bool] | None = None,
        subscriptions: Callable[[], SubscriptionCache | None] = lambda: None,
    ) -> None:
        """``admission``: the store that takes a request's limits and budgets in one call
        (Redis), for ``ride``; None: this stage reserves in its own turn. ``router``: plans a
        downgrade's cheaper model as the route stage plans the requested one (the caller's
        regions, cooldowns, its group's strategy); None: its first deployment. ``refused``:
        whether a deployment is never sent to (no price, with ``spend.refuse_unpriced``:
        ``UsageStage.refused``), so no downgrade goes to it; None: none is. ``subscriptions``:
        the teams' approvals, for a cheaper model that needs one (None: not open yet)."""
        self._config = config
        # Seconds a reservation outlives the last attempt it may be waiting for.
        self._hold_margin = config.hold_margin_seconds
        self._subscriptions = subscriptions
        self._router = router
        self._refused = refused
        self._skipped: set[str] = set()  # downgrade models skipped for their lack of a price, logged once
        self._book = book
        self._admission = admission
        self._prices = prices
        self._table = table
        self._warned = -math.inf
        # By catalog record (its identity; the entry keeps it alive): prices per token.
        self._quotes: dict[int, _Quote] = {}
        # _uniform, by group: the group, its answer, and its deployments' identities.
        self._uniform_groups: dict[int, tuple[Group, float | None, frozenset[int]]] = {}

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        ride = ctx.ahead
        if ride is not None:
            ctx.ahead = None
        if ride is not None and ride.reserved is not None:
            # Reserved with the rate limits, in their store call (``ride``): what follows is the
            # same as after this stage's own ``try_reserve``.
            book, budgets, charges = ride.book, ride.budgets, ride.charges
            reserved_at, hold, reserved = ride.reserved_at, ride.hold, ride.reserved
        else:
            book = self._book()
            principal = ctx.principal
            if book is None or principal is None or principal.tenant_id is None:
                return await call_next(ctx)
            try:
                budgets = book.in_force_now(principal)
                if budgets is None:
                    budgets = await book.in_force(principal)
            except GatewayError:
                raise
            except Exception as exc:
                return await self._unavailable(ctx, call_next, exc)
            if not budgets:
                return await call_next(ctx)
            route = ctx.route
            assert route is not None, "the route stage runs first"
            info = self._prices.of_route(route)
            if ctx.prompt_tokens is None and ctx.large():
                await ctx.count_prompt_tokens(info)  # counted in a thread, then kept on the context
            charges, hold = self._charges(ctx, book, info, budgets)
            reserved_at = time.monotonic()
            reserved = None
        try:
            if reserved is None:
                reserve_now = book.reserve_now  # counters in process: no coroutine
                reserved = (reserve_now(ctx.reservation_id(), charges, hold) if reserve_now is not None
                            else await book.try_reserve(ctx.reservation_id(), charges, hold))
            if reserved.missing:  # a counter not loaded yet (a new period, a restart): load it
                reserved = await book.reserve(ctx.reservation_id(), budgets, charges, hold)
            # Refused or not: past a budget's threshold the request goes to the cheaper model,
            # where it may fit when its most possible cost on the model it names does not.
            for budget in budgets:
                if budget.downgrade_model is not None:
                    await self._maybe_downgrade(ctx, book, budgets, charges, reserved)
                    break
        except (Rerouted, GatewayError):
            raise
        except Exception as exc:
            return await self._unavailable(ctx, call_next, exc)
        if (i := reserved.refused) is not None:
            raise _refusal(budgets[i], charges[i], reserved.used[i])
        ctx.budgets_held = (book, budgets, hold)
        try:
            return await call_next(ctx)
        finally:
            # Registered now, after the usage stage's own callback: it runs once the cost is known;
            # the rate-limit stage adds its own part to it (pipeline/settle.py). Made by its
            # class's call, not ``of_budgets``: one call less on every request.
            ctx.after(Settlement(book, budgets, charges, reserved_at, hold))

    async def reserve_again(self, ctx: RequestContext) -> None:
        """Before another upstream call within this request (a prompt API's repair try, sent
        with the answer and its errors: http/apis/), reserve that call's most possible cost
        too, estimated as the first call's was from the request as it now is, under an id of
        its own: the request's reservation covers one call, and its tries together could
        otherwise spend past a budget. Refused as a request is (429 ``budget_exceeded``), but
        the limits keep what the calls before took: they were sent. Nothing when no budget
        applies."""
        held = ctx.budgets_held
        if held is None:
            return
        book, budgets, hold = held
        route = ctx.route
        assert route is not None, "the route stage runs first"
        info = self._prices.of_route(route)
        ctx.prompt_tokens = None  # the request grew (the repair's messages): counted again
        await ctx.count_prompt_tokens(info)
        more = ctx.budgets_more
        if more is None:
            more = ctx.budgets_more = []
        reservation = f"{ctx.reservation_id()}+{len(more) + 1}"
        try:
            charges, _ = self._charges(ctx, book, info, budgets)
            reserved = await book.reserve(reservation, budgets, charges, hold)
        except GatewayError as exc:
            exc.spares_limits = False
            raise
        except Exception as exc:
            if self._store_error(exc):
                raise _sent(BudgetUnavailable(_UNAVAILABLE)) from None
            return  # admitted without a budget check, as the request would be
        if (i := reserved.refused) is not None:
            raise _sent(_refusal(budgets[i], charges[i], reserved.used[i]))
        more.append((reservation, charges))

    def ride(self, ctx: RequestContext) -> _Ride | None:
        """This stage's reservation, to be made with the rate limits in their store call
        (``pipeline.limits.Rider``), when the counters share the limiter's store (Redis) and
        the reservation is ready without waiting: the caller's budgets cached, the prompt
        counted. None otherwise, and on anything out of the ordinary (this stage then does its
        own work, in its own turn, as without a rider: its errors are raised there)."""
        admission = self._admission()
        if admission is None:  # the embedded default: nothing to save, nothing ever set ahead
            return None
        ctx.ahead = None
        book = self._book()
        principal = ctx.principal
        route = ctx.route
        if (book is None or principal is None or principal.tenant_id is None or route is None
                or (ctx.prompt_tokens is None and ctx.large())):
            return None
        try:
            budgets = book.in_force_now(principal)
            if not budgets:  # none in force, or not cached yet (read in this stage's turn)
                return None
            charges, hold = self._charges(ctx, book, self._prices.of_route(route), budgets)
        except Exception:  # raised again in this stage's turn (a refusal, a store error)
            return None
        ride = ctx.ahead = _Ride(admission, book, ctx.reservation_id(), budgets, charges, hold)
        return ride

    def _charges(self, ctx: RequestContext, book: BudgetBook, info: ModelInfo | None,
                 budgets: Sequence[Budget]) -> tuple[list[Charge], float]:
        """The request's charge on each budget and how long its reservation holds."""
        # Charged in the period the request started in, as its ledger record is dated.
        clock = time.perf_counter()
        # Asked for OpenAI's priority tier: the most it can cost is at the tier's (dearer) prices,
        # which the answer's tier then settles to (spend/cost.py).
        priority = ctx.request.get("service_tier") == "priority"
        if priority and info is not None:
            info = tiered(info, "priority")
        route, group = ctx.route, ctx.group
        amounts = self._amounts(ctx, info, budgets, route)
        uniform = self._uniform(group, route) if group is not None else None
        if uniform is not None:  # every deployment it may reach costs it the same: nothing to add
            longest = uniform
        else:
            amounts, longest = self._dearest(ctx, info, budgets, amounts, priority)
        charges = book.charges(budgets, amounts, clock - ctx.started)
        # Held while the request may still be answered: an attempt starts before the deadline
        # and runs for up to its deployment's total timeout (a stream included), then a margin.
        remaining = ctx.deadline - clock
        if math.isinf(remaining):
            hold = max(_HOLD_UNBOUNDED, longest + self._hold_margin)
        else:
            hold = max(0.0, remaining) + longest + self._hold_margin
        return charges, hold

    def _dearest(self, ctx: RequestContext, info: ModelInfo | None, budgets: Sequence[Budget],
                 amounts: list[int], priority: bool) -> tuple[list[int], float]:
        """``_charges``'s amounts raised to the dearest deployment the request may be sent to
        instead of its route (retries, fallbacks), and the longest total timeout among them.
        A method of its own: its generator's variables would be made cells on every request."""
        route = ctx.route
        longest = route.target.timeouts.total if route is not None else 0.0
        priced = [(info, route)]
        for other in self._elsewhere(ctx):  # deployments it may be sent to instead: the dearest
            longest = max(longest, other.target.timeouts.total)
            dearer = self._prices.of_route(other)
            if priority and dearer is not None:
                dearer = tiered(dearer, "priority")
            if all(dearer is not seen or via is None or not _same_bound(via, other)
                   for seen, via in priced):
                priced.append((dearer, other))
                if route is not None and _same_bound(route, other) and self._same_terms(info, dearer):
                    continue
                more = self._amounts(ctx, dearer, budgets, other, False)
                amounts = [max(a, b) for a, b in zip(amounts, more, strict=True)]
        return amounts, longest

    def _uniform(self, group: Group, route: Route | None) -> float | None:
        """For a group whose deployments, and its fallbacks' (whatever a key may use of them),
        all cost a request the same (the usual group of one model's deployments): the longest
        total timeout among them; None otherwise, or when ``route`` is not one of the group's
        deployments. Worked out once per group object (a new routing table, a change of models
        or prices, makes new ones)."""
        known = self._uniform_groups.get(id(group))
        if known is None or known[0] is not group:
            known = self._uniform_of(group)
        # The route is one of the group's own objects: found by identity, where ``in`` on the
        # tuple compared it field by field (the dataclasses' ``__eq__``) with each before it.
        if id(route) in known[2] or route in group.deployments:
            return known[1]
        return None

    def _uniform_of(self, group: Group) -> tuple[Group, float | None, frozenset[int]]:
        """``_uniform``'s entry for ``group``, worked out and kept."""
        groups = self._table.current.groups
        routes = list(group.deployments)
        for name in (*group.fallbacks, *group.context_window_fallbacks):
            fallback = groups.get(name)
            if fallback is not None and fallback is not group:
                routes.extend(fallback.deployments)
        first = self._prices.of_route(routes[0]) if routes else None
        # The same terms through the same adapter and options (which may bound the output: _amounts).
        same = all(_same_bound(routes[0], r) and self._same_terms(first, self._prices.of_route(r))
                   for r in routes[1:])
        longest = max((r.target.timeouts.total for r in routes), default=0.0) if same and routes else None
        if len(self._uniform_groups) >= _QUOTES_MAX:
            self._uniform_groups.clear()
        # The group (kept in the entry) keeps its routes alive: their ids are not reused.
        known = self._uniform_groups[id(group)] = (group, longest, frozenset(map(id, group.deployments)))
        return known

    def _elsewhere(self, ctx: RequestContext) -> list[Route]:
        """The deployments, other than the route's, the attempts stage may send this request
        to: the other candidates (retries) and the deployments of the group's fallbacks the
        caller's key may use. Most requests have none: no work."""
        group, candidates = ctx.group, ctx.candidates
        if (group is None or not (group.fallbacks or group.context_window_fallbacks)) and (
                candidates is None or len(candidates) < 2):
            return []
        routes = [r for r in candidates or () if r is not ctx.route]
        if group is not None:
            groups = self._table.current.groups
            allowed = ctx.principal.allowed_models if ctx.principal is not None else None
            for name in (*group.fallbacks, *group.context_window_fallbacks):
                fallback = groups.get(name)
                if fallback is not None and fallback is not group and model_allowed(name, allowed):
                    routes.extend(fallback.deployments)
        return routes

    def _amounts(self, ctx: RequestContext, info: ModelInfo | None, budgets: Sequence[Budget],
                 route: Route | None, check: bool = True) -> list[int]:
        """The most this request can cost on ``route`` (with ``info``, its catalog record), per
        budget: nano-USD or tokens. Refuses a request asking for more output than the model can
        give (``check``: the route's model, not a fallback's), before anything is reserved."""
        quote = counted = None
        if info is not None:
            quote = self._quoted(info)
            counted = quote[6]
        prompt = ctx.prompt_tokens_estimate(counted)
        output = tokens.max_completion_tokens(ctx.request, ctx.operation, counted)
        # A request with no bound of its own that the adapter bounds (Anthropic needs max_tokens:
        # its default, with a thinking budget): no more can come, whatever the model's own limit.
        asked = route.adapter.output_bound(ctx.request, route.target) if route is not None else None
        if asked is not None:
            output = asked if output is None else min(output, asked)
        if output is None:  # per choice, as a bound the request or the catalog gives
            n = ctx.request.get("n")
            output = UNBOUNDED_OUTPUT_TOKENS * (n if n.__class__ is int and n > 1 else 1)
        elif (check and counted is not None and (limit := counted.max_output_tokens) is not None
              and output > limit):
            _check_output(ctx, limit)
        usd = 0
        if quote is not None:
            _, per_input, per_output, times, over, unit_priced, _, threshold, long_in, long_out = quote
            if prompt > threshold:  # priced, all its tokens, at the long-context prices (spend/cost.py)
                per_input, per_output = long_in, long_out
            units = prompt * per_input + output * per_output
            usd = units * times if over == 1 else -(-units // over)  # rounded up
            if unit_priced:  # media units (spend/units.py); asked only of a record that prices some
                usd += units_estimate(ctx.operation, ctx.request, info)
        if len(budgets) == 1:
            return [usd if budgets[0].unit == "usd" else prompt + output]
        return _per_budget(budgets, usd, prompt + output)

    def _quoted(self, info: ModelInfo) -> _Quote:
        quote = self._quotes.get(id(info))
        return quote if quote is not None and quote[0] is info else self._quote(info)

    def _same_terms(self, info: ModelInfo | None, other: ModelInfo | None) -> bool:
        """Whether a request costs the same on ``other``'s record as on ``info``'s: the same
        prices per token, model (its tokenizer) and output bound, and no media units (each
        record is its own catalog copy, so identity says nothing)."""
        if info is None or other is None:
            return info is other
        mine, theirs = self._quoted(info), self._quoted(other)
        return not mine[5] and mine[1:] == theirs[1:]

    def _quote(self, info: ModelInfo) -> _Quote:
        """The catalog record's input and output prices per token, from ``spend.cost`` (a cost
        is linear in the tokens), and how its units become nano-USD: worked out once per record.
        A prompt token is priced at the dearest way it can be billed: written to a cache costs
        more than plain input (1.25x for five minutes, 2x for an hour on Claude), and whether the
        provider writes the prompt to a cache is known only from the answer. The same at the
        long-context prices, at one scale, for a prompt over the long-context threshold."""
        threshold = info.long_context_threshold()
        long = long_context(info)  # info itself without long-context prices
        # per input, per output token at the standard prices, then at the long-context ones
        costs = [c for priced in (info, long) for c in (
            max((cost(priced, tokens) for tokens in _PROMPT_TOKEN), key=lambda c: c.units),
            cost(priced, Tokens(output=1)))]
        scale = max(c.exponent for c in costs)
        per_input, per_output, long_in, long_out = (c.units * 10 ** (scale - c.exponent) for c in costs)
        shift = scale - 9
        quote = (info, per_input, per_output, 10 ** max(0, -shift), 10 ** max(0, shift),
                 info.unit_priced, _Counted(info.model, info.max_output_tokens),
                 threshold if threshold is not None else TOKENS_MAX, long_in, long_out)
        if len(self._quotes) >= _QUOTES_MAX:
            self._quotes.clear()
        self._quotes[id(info)] = quote
        return quote

    async def _maybe_downgrade(
        self, ctx: RequestContext, book: BudgetBook, budgets: Sequence[Budget], charges: list[Charge],
        reserved: Reserved,
    ) -> None:
        """Past a budget's ``downgrade_at``, give the reservation back (if it was made: a request
        refused on the model it names may fit on the cheaper one), swap to its cheaper model and
        raise ``Rerouted``: the limits and this stage run again for that model. ``reserved.used``
        holds every budget's spent and reserved, refused or not."""
        route = ctx.route
        assert route is not None
        if DOWNGRADE_HEADER in ctx.response_headers:  # this is the rerouted request's second pass
            return
        for budget, used in zip(budgets, reserved.used, strict=True):
            if budget.downgrade_model is None or budget.downgrade_at is None:
                continue
            if used * 100 < budget.limit * budget.downgrade_at:
                continue
            cheaper = self._table.current.routes.get(budget.downgrade_model)
            group = self._table.current.groups.get(budget.downgrade_model)
            if cheaper is None or group is None or cheaper is route or group is ctx.group:
                continue
            if self._refused is not None and self._refused(cheaper):
                # Never sent to (no price, spend.refuse_unpriced): no downgrade, as when none is
                # set; the budget's maximum still applies to the requested model.
                self._skip(budget.downgrade_model)
                continue
            if not serves(ctx.operation, self._prices.of_route(cheaper)):
                continue  # a request it cannot serve (embeddings, for a chat model) stays where it is
            if reserved.refused is None:  # released: reserved again for the cheaper model
                await book.settle(ctx.reservation_id(), budgets, charges, None)
            # Planned as if the caller had asked for it: never outside its regions, nor to a
            # deployment cooling down (an empty plan: the group's fallbacks, else its refusal).
            # The cheaper model only: no retry may go back.
            plan = ([cheaper] if self._router is None
                    else caller_credentials.usable(ctx, self._router.plan(group, ctx.needs or ANYWHERE)))
            ctx.route = plan[0] if plan else cheaper
            ctx.candidates = plan
            ctx.group = group
            ctx.prompt_tokens = None  # counted again for the cheaper model's tokenizer
            ctx.response_headers[DOWNGRADE_HEADER] = f"{route.target.name} -> {cheaper.target.name}"
            if group.require_approval and (cache := self._subscriptions()) is not None:
                # The subscription stage ran for the model asked for: a team not approved for the
                # cheaper one is refused as a request naming it is (403), never served by it.
                try:
                    await require_approved(cache, ctx.principal, group.name, f"the model '{group.name}'")
                except PermissionDenied as refusal:
                    refusal.spares_limits = True  # nothing went upstream: the limits are given back
                    raise
            raise Rerouted(budget.downgrade_model)

    def _skip(self, model: str) -> None:
        """Say once per model that a downgrade to it is not made: it has no price."""
        if model not in self._skipped:
            self._skipped.add(model)
            log.warning("budget downgrade to model %r skipped: it has no price and spend.refuse_unpriced "
                        "refuses its calls; requests stay on the model they name", model)

    async def _unavailable(self, ctx: RequestContext, call_next: Handler, exc: Exception) -> Result:
        """A store error (the gateway's own errors are raised where they are caught: raised from
        here, the error's traceback would hold this frame, which holds it, a reference cycle)."""
        if self._store_error(exc):
            raise BudgetUnavailable(_UNAVAILABLE)
        return await call_next(ctx)

    def _store_error(self, exc: Exception) -> bool:
        """Say (at most every _WARN_EVERY seconds) that the budgets' store failed; True when the
        policy (``on_store_error: closed``) refuses the request."""
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY:
            self._warned = now
            log.warning("budgets unavailable (%s: %s): requests are %s", type(exc).__name__, exc,
                        "admitted" if self._config.on_store_error == "open" else "refused")
        return self._config.on_store_error == "closed"


_UNAVAILABLE = "budgets cannot be checked right now; try again shortly"


def _sent(refused: GatewayError) -> GatewayError:
    """A refusal of a further call within a request whose calls before were sent: the rate
    limits keep what they took (``spares_limits`` would give it back)."""
    refused.spares_limits = False
    return refused


def _per_budget(budgets: Sequence[Budget], usd: int, tokens: int) -> list[int]:
    """Each budget's amount, nano-USD or tokens. Out of ``_amounts``: a comprehension there
    would make its variables cells on every request, for the few with several budgets."""
    return [usd if b.unit == "usd" else tokens for b in budgets]


def _same_bound(route: Route, other: Route) -> bool:
    """Whether a request's output is bounded alike on both routes (``ProviderAdapter.output_bound``):
    the same adapter with the same provider options (two Anthropic accounts of one model may send
    different ``default_max_tokens``)."""
    return route.adapter is other.adapter and route.target.options == other.target.options


def _check_output(ctx: RequestContext, limit: int) -> None:
    """A request asking for more output than the model can give: refused before reserving."""
    asked = ctx.request.get("max_completion_tokens")
    if not isinstance(asked, int):
        asked = ctx.request.get("max_tokens")
    if isinstance(asked, int) and asked > limit:
        raise _too_large(asked, limit)


def _too_large(asked: int, limit: int) -> InvalidRequest:
    # Made here and raised by the caller: a local naming the error in the frame that raises it
    # is a reference cycle (its traceback holds that frame).
    refused = InvalidRequest(
        f"max_tokens is {asked}, more than the model's output limit of {limit} tokens",
        param="max_tokens", code="max_tokens_too_large",
    )
    refused.spares_limits = True
    return refused


def _refusal(budget: Budget, charge: Charge, used: int) -> GatewayError:
    where = f"the {budget.scope} budget ({budget.id}, {budget.shown(budget.limit)} {budget.period})"
    headers = {SCOPE_HEADER: budget.scope}
    if charge.amount > budget.limit and used < budget.limit:  # spent already: that is the news
        refused = InvalidRequest(
            f"this request may cost up to {budget.shown(charge.amount)}, more than {where} allows; "
            "lower max_tokens", code="request_exceeds_budget", headers=headers,
        )
        refused.spares_limits = True
        return refused
    # The charge's period (the request's start's), which may have ended since: then at once.
    _, end = window(budget.period, budget.zone, key_start(charge.key))
    if end is not None:
        headers["retry-after"] = str(max(1, math.ceil((end - datetime.now(UTC)).total_seconds())))
    else:  # a total budget never comes back: an SDK's retry cannot pass (see errors.retry_hint)
        headers[SHOULD_RETRY] = "false"
    return BudgetExceeded(
        f"{where} is exhausted: {budget.shown(used)} spent or reserved, this request may cost up to "
        f"{budget.shown(charge.amount)}", headers=headers,
    )
