"""The running budgets: which are in force, reservations and their settlement, thresholds.

- The budgets set through the admin API are cached per tenant (``stores/feedcache.py``: change
  feed plus TTL), so the request path reads no database.
- ``reserve`` puts a request's estimated maximum cost on every budget in force at once, or on
  none (``BudgetCounters``: in this process, or one Lua script in Redis). A counter that is not
  loaded (a new period, a restarted Redis) is first rebuilt from the usage ledger, the source of
  truth, once per counter however many requests ask.
- ``settle`` replaces the reservation with what the call actually cost. A settlement that
  leaves a budget at or past one of its thresholds not alerted yet claims that threshold for the
  period and the budget's amount in the database (exactly once across instances) and sends the
  signed webhook, off the request path; thresholds this process alerted (or saw claimed) are
  remembered, so the settlements after them do not ask the database again. A budget raised or
  lowered mid-period thus alerts at its thresholds of the new amount, and a change that leaves
  the spend past one alerts at once (``status_of``, when the admin API sets the budget). A change
  forgets the claims at other amounts and at thresholds no longer listed (``forget_alerts``; other
  instances when they load the change), so a budget set back alerts again.
  ``settle_surely`` is the one a finished call uses: a settlement the counters cannot take now
  (Redis down) waits in this process and is tried again until they answer (bounded: see
  ``PENDING_MAX``), counted at most once (``Again``), so a counter does not stay below the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from switchboard.background import Retries
from switchboard.config.schema import BudgetsConfig
from switchboard.context import Principal, Spent
from switchboard.spend.budgets.periods import counter_key, counter_ttl, key_start, window
from switchboard.spend.budgets.plan import (
    KEY_BUDGET_PREFIX,
    Budget,
    Stored,
    in_force,
    nano,
    of_record,
    usd_of,
)
from switchboard.spend.budgets.webhooks import WebhookSender
from switchboard.spend.ledger import LedgerWriter
from switchboard.stores.feedcache import STORE_READ_SECONDS, FeedCache
from switchboard.stores.protocols import (
    EVERYTHING,
    Again,
    BudgetCounters,
    BudgetRecord,
    BudgetStore,
    ChangeFeed,
    Charge,
    Reserved,
    Subscription,
    UsageLedger,
)

log = logging.getLogger("switchboard.budgets")

TOPIC = "budgets"
# Budget ids whose threshold claims were released (``release_alerts``): every instance forgets
# its memory of them.
CLAIMS_TOPIC = "budget_claims"
_LOAD_ATTEMPTS = 3
_IN_FORCE_MAX = 10_000  # callers whose budgets are kept; cleared when full
_NONE: Stored = {}
_MISSING: Any = object()
_LEDGER_READY_WAIT = 10.0  # seconds a first load waits for the spool's replay at start-up
# Beyond the ledger writers' flush interval, how long a batch of records takes to be stored: a
# counter rebuilt after Redis lost its data waits that long after the loss was first noticed.
_STORE_SECONDS = 1.0
# How long the admin API's status waits for a counter read: a hung Redis (connections accepted,
# never answered) would otherwise hold the answer for redis-py's 10 s socket timeout.
STATUS_READ_SECONDS = 1.0
# Settlements the counters could not take, waiting to be tried again: at most this many, for at
# most this long (a counter outlives its period by two days; a day of outage is past repair).
PENDING_MAX = 50_000
PENDING_MAX_AGE = 86_400.0
# Seconds between two warnings about settlements that failed: when Redis dies under load every
# call in flight fails to settle at once, and one line says so rather than one per call.
SETTLE_WARN_SECONDS = 10.0


class BudgetBook:
    def __init__(
        self,
        config: BudgetsConfig,
        store: BudgetStore,
        counters: BudgetCounters,
        ledger: UsageLedger,
        feed: ChangeFeed,
        webhooks: WebhookSender,
        *,
        ledger_ready: asyncio.Event | None = None,
        writer: LedgerWriter | None = None,
        clock: Callable[[], float] = time.time,
        cache_seconds: float = 10.0,
        stale_if_error: float = 0.0,
    ) -> None:
        self.config = config
        self._store = store
        self._counters = counters
        # The counters' plain forms (process memory; None in Redis): ``try_reserve`` and
        # ``settle_surely`` without a coroutine, for the request path.
        self.reserve_now = counters.reserve_now
        self._settle_now = counters.settle_now
        self.settles_now = self._settle_now is not None
        self._ledger = ledger
        self.webhooks = webhooks  # read by the metrics too
        self._ledger_ready = ledger_ready
        self._writer = writer
        self._clock = clock
        self._feed = feed
        self._released: Subscription | None = None
        self._cache: FeedCache[str, Stored] = FeedCache(
            TOPIC, self._load_tenant, feed, encode=str, decode=str, ttl=cache_seconds,
            stale_if_error=stale_if_error, read_timeout=STORE_READ_SECONDS)
        self._loading: dict[str, asyncio.Task[None]] = {}
        self._in_force: dict[str, tuple[Principal, Stored, list[Budget]]] = {}
        # (budget, period, zone) -> (its counter's key, the period's start and end as timestamps,
        # when the counter may expire)
        self._periods: dict[tuple[str, str, str], tuple[str, float, float, float]] = {}
        self._alerts: set[asyncio.Task[None]] = set()
        # (counter key: budget and period, the budget's amount, percent) of the thresholds this
        # process claimed or tried to: a settlement past them asks the database nothing.
        self._claimed: set[tuple[str, int, int]] = set()
        # Budget id -> (amount, thresholds) last loaded: a change made elsewhere is told apart.
        self._alerting: dict[str, tuple[int, tuple[int, ...]]] = {}
        self.pending = Retries("budget settlements", PENDING_MAX, PENDING_MAX_AGE)
        self._settle_warned = -math.inf
        # Told of every threshold event this instance fires (the alerts' budget rules), with
        # the event as the webhook gets it. Must be quick and must not raise.
        self.listeners: list[Callable[[dict[str, Any]], None]] = []

    async def start(self) -> None:
        await self._cache.start()
        self._released = await self._feed.subscribe(CLAIMS_TOPIC, self._on_released)
        await self.webhooks.start()

    async def close(self, *, webhooks: bool = True) -> None:
        """``webhooks``: close the webhook sender too; False when the caller closes it along
        with others (the alerts'), so that receivers that hang hold the exit once."""
        await self.pending.close()  # one last try for the settlements still waiting (bounded)
        if self._alerts:
            await asyncio.wait(list(self._alerts), timeout=5.0)
        for task in [*self._alerts, *self._loading.values()]:
            task.cancel()
        await self._cache.close()
        if self._released is not None:
            await self._released.close()
            self._released = None
        if webhooks:
            await self.webhooks.close()

    # -- what applies ---------------------------------------------------------------------

    async def _load_tenant(self, tenant_id: str) -> Stored:
        stored: dict[tuple[str, str], list[Budget]] = {}
        for record in await self._store.list_budgets(tenant_id):
            budget = of_record(record, self.config)
            stored.setdefault((record.scope, record.subject), []).append(budget)
            # Changed on another instance: the claims it forgot are forgotten here too.
            alerting = (budget.limit, budget.thresholds)
            if self._alerting.setdefault(budget.id, alerting) != alerting:
                self._alerting[budget.id] = alerting
                self._forget_claims(budget)
        if len(self._alerting) >= _IN_FORCE_MAX:
            self._alerting.clear()
        return stored

    def _forget_claims(self, budget: Budget) -> None:
        """Drop this process's memory of ``budget``'s claims at another amount or threshold."""
        prefix = budget.id + ":"
        self._claimed = {c for c in self._claimed if not c[0].startswith(prefix)
                         or (c[1] == budget.limit and c[2] in budget.thresholds)}

    async def forget_alerts(self, record: BudgetRecord) -> None:
        """The budget's amount or thresholds changed: its claims at another amount or at a
        threshold no longer listed are forgotten (their incidents were resolved), so setting it
        back alerts again once its spend is past a threshold."""
        budget = of_record(record, self.config)
        self._alerting[budget.id] = (budget.limit, budget.thresholds)
        self._forget_claims(budget)
        await self._store.forget_alerts(budget.id, budget.limit, budget.thresholds)

    async def release_alerts(self, budget_id: str) -> None:
        """Every claim of the budget is forgotten, in the database and by every instance: a key
        chain's own budget, when the chain comes back after no key of it could spend (an expired
        key's ``expires_at`` pushed back), so it alerts again as it spends."""
        released = await self._store.release_alerts(budget_id)
        await self._on_released(CLAIMS_TOPIC, budget_id)  # here at once, before the feed's echo
        if released:  # none stored (most revokes): no instance holds one to forget
            await self._feed.publish(CLAIMS_TOPIC, budget_id)

    async def _on_released(self, _topic: str, budget_id: str) -> None:
        if budget_id == EVERYTHING:  # the feed may have lost messages: ask the database again
            self._claimed.clear()
            return
        prefix = budget_id + ":"
        self._claimed = {c for c in self._claimed if not c[0].startswith(prefix)}

    async def alerts_at(self, fields: Mapping[str, Any], percent: int) -> bool:
        """Whether the budget a threshold event names (``budget_fields``) is still stored at the
        amount and in the unit it crossed ``percent`` at, with that threshold: False once it
        was deleted (with its tenant or key chain too) or changed, which resolved its incidents.
        A key's own budget ends with its key chain, which the alerts' sweep watches: True."""
        budget_id, tenant = fields.get("id"), fields.get("tenant")
        if not isinstance(budget_id, str) or budget_id.startswith(KEY_BUDGET_PREFIX):
            return True
        record = await self._store.get(str(tenant), budget_id)
        if record is None:
            return False
        budget = of_record(record, self.config)
        shown = budget_fields(budget)
        return ((shown["unit"], shown["max_amount"]) == (fields.get("unit"), fields.get("max_amount"))
                and percent in budget.thresholds)

    async def in_force(self, principal: Principal) -> list[Budget]:
        """The budgets in force for ``principal``; kept while its record and its tenant's stored
        budgets are the same objects (both caches hand out the same ones until a change)."""
        if principal.tenant_id is None:
            return []
        return self._of(principal, await self._cache.get(principal.tenant_id) or _NONE)

    def in_force_now(self, principal: Principal) -> list[Budget] | None:
        """``in_force`` when the tenant's budgets are cached (no waiting); None when they are not."""
        if principal.tenant_id is None:
            return []
        stored = self._cache.peek(principal.tenant_id, _MISSING)
        if stored is _MISSING:
            return None
        if not stored:
            stored = _NONE
        entry = self._in_force.get(principal.id)
        if entry is not None and entry[0] is principal and entry[1] is stored:
            return entry[2]
        return self._of(principal, stored)

    def _of(self, principal: Principal, stored: Stored) -> list[Budget]:
        entry = self._in_force.get(principal.id)
        if entry is not None and entry[0] is principal and entry[1] is stored:
            return entry[2]
        budgets = in_force(principal, stored, self.config)
        if len(self._in_force) >= _IN_FORCE_MAX:
            self._in_force.clear()
        self._in_force[principal.id] = (principal, stored, budgets)
        return budgets

    async def changed(self, tenant_id: str) -> None:
        await self._cache.changed(tenant_id)

    # -- reservations ---------------------------------------------------------------------

    def charges(self, budgets: Sequence[Budget], amounts: Sequence[int], started_ago: float = 0.0
                ) -> list[Charge]:
        """A charge of ``amounts`` to each budget, in the period the request started in
        (``started_ago`` seconds before now): the period its ledger record falls in (the record
        is dated at the request's start), so a counter rebuilt from the ledger holds what the
        live counter took, also for a request that reaches this stage just after a boundary."""
        now = self._clock()
        at = now - started_ago
        periods = self._periods
        out = []
        # No zips on the request path (one amount, charge, total per budget, by construction): the
        # parallel list is read by position, cheaper than a zip's object, iterators and tuples.
        i = 0
        for budget in budgets:
            amount = amounts[i]
            i += 1  # noqa: SIM113 (no enumerate: an object per call, see above)
            cached = periods.get(budget.period_key)
            if cached is not None and cached[1] <= at < cached[2]:
                key, ttl = cached[0], cached[3] - now
            else:
                key, ttl = self._period(budget, at, now)
            out.append(tuple.__new__(Charge, (key, budget.limit, amount, ttl)))
        return out

    def _period(self, budget: Budget, at: float, now: float) -> tuple[str, float]:
        """The counter key of ``budget``'s period containing ``at`` and the counter's TTL; the
        calendar work is done once per (budget, period, zone) until the period ends, not per
        request. The period of a request that started before the boundary is not kept: the
        cache holds the latest period, which every later request is charged in."""
        key = budget.period_key
        cached = self._periods.get(key)
        if cached is None or not cached[1] <= at < cached[2]:
            when = datetime.fromtimestamp(at, UTC)
            start, end = window(budget.period, budget.zone, when)
            ends = end.timestamp() if end is not None else math.inf
            found = (counter_key(budget.id, start), start.timestamp(), ends, counter_ttl(end, when) + at)
            if cached is not None and ends <= cached[1]:  # an earlier period than the one kept
                return found[0], found[3] - now
            if len(self._periods) >= _IN_FORCE_MAX:
                self._periods.clear()
            cached = self._periods[key] = found
        counter, _, _, expires = cached
        return counter, expires - now

    def try_reserve(self, reservation: str, charges: Sequence[Charge], hold: float) -> Awaitable[Reserved]:
        """``reserve``'s first try, which loads no counter (``missing`` then says which to load:
        call ``reserve``). The counters' own coroutine, not one of this book's around it: the
        request path awaits one coroutine less when the counters are loaded, as they almost
        always are."""
        return self._counters.reserve(reservation, charges, hold)

    async def reserve(
        self, reservation: str, budgets: Sequence[Budget], charges: Sequence[Charge], hold: float
    ) -> Reserved:
        for _ in range(_LOAD_ATTEMPTS):
            reserved = await self._counters.reserve(reservation, charges, hold)
            if not reserved.missing:
                return reserved
            await asyncio.gather(*(self._load(budgets[i], charges[i]) for i in reserved.missing))
        raise RuntimeError("budget counters could not be loaded")

    async def _load(self, budget: Budget, charge: Charge) -> None:
        """Rebuild one counter from the ledger; one query per counter at a time."""
        task = self._loading.get(charge.key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._rebuild(budget, charge))
            self._loading[charge.key] = task
            task.add_done_callback(lambda _: self._loading.pop(charge.key, None))
        await asyncio.shield(task)

    async def _rebuild(self, budget: Budget, charge: Charge) -> None:
        if self._ledger_ready is not None and not self._ledger_ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ledger_ready.wait(), _LEDGER_READY_WAIT)
        await self._others_stored()
        # The charge's period, not the current one: a counter asked for just before a boundary
        # and rebuilt after it (the waits above take seconds) holds the ended period's spend.
        start = key_start(charge.key)
        # This instance's calls whose records are still in its writer (the last flush interval's;
        # all of them after the database was down) are stored first, so the read holds them.
        if self._writer is not None and not await self._writer.store_all():
            # The database is down (the read below fails too), or refuses the spooled records:
            # the counter is then rebuilt from what it holds, as the ledger's own readers see it.
            log.warning("budget %s: its counter is rebuilt while usage records wait in this instance's "
                        "spool; it misses those calls", budget.id)
        total = await self._ledger.total(budget.tenant_id, budget.scope, budget.subject, start, budget.unit)
        spent = nano(total) if budget.unit == "usd" else int(total)
        await self._counters.load(charge, spent)

    async def _others_stored(self) -> None:
        """After the counters lost their data (Redis restarted empty), wait until the other
        instances' ledger writers have stored the calls that ended before the loss was noticed
        (one flush interval, plus the time to store): their settlements went to the lost counter,
        or wait to be tried again and then leave a counter rebuilt since alone (``Again``), so
        the ledger is what counts them. Only the first rebuilds after a loss wait."""
        if self._writer is None:
            return
        ago = await self._counters.lost_ago()
        wait = self._writer.flush_seconds + _STORE_SECONDS
        if ago is not None and ago < wait:
            await asyncio.sleep(wait - ago)

    async def settle(
        self, reservation: str, budgets: Sequence[Budget], charges: Sequence[Charge], spent: Spent | None,
        again: Again | None = None,
    ) -> None:
        """Replace the reservation with what was spent (nothing when the call cost nothing), in
        one try: a store error is raised. ``again``: a try after one that failed."""
        pairs = _settled(budgets, charges, spent)
        self._crossed(budgets, charges, pairs, await self._counters.settle(reservation, pairs, again))

    def _crossed(self, budgets: Sequence[Budget], charges: Sequence[Charge], pairs: Sequence[tuple[str, int]],
                 totals: Sequence[int]) -> None:
        """Alert on each threshold a settlement left its budget's total at or past."""
        i = -1  # by position, as in ``charges``
        for budget in budgets:
            i += 1
            total = totals[i]
            if total < 0 or pairs[i][1] <= 0 or total * 100 < budget.lowest_mark:
                continue  # nothing settled, or still below the lowest threshold
            self._due(budget, charges[i].key, total)

    def _due(self, budget: Budget, key: str, total: int) -> None:
        """Alert on each threshold of ``budget`` as it is now that ``total`` is at or past and
        that was not alerted for this period and amount. At or past, not only crossed: a budget
        lowered below its spend has no settlement cross its thresholds of the new amount."""
        for percent in budget.thresholds:
            if budget.limit * percent <= total * 100:
                claim = (key, budget.limit, percent)
                if claim not in self._claimed:
                    if len(self._claimed) >= _IN_FORCE_MAX:
                        self._claimed.clear()  # at worst a claim asked again, which the database refuses
                    self._claimed.add(claim)
                    self._alert(budget, key, percent, total)

    async def settle_surely(
        self, reservation: str, budgets: Sequence[Budget], charges: Sequence[Charge], spent: Spent | None,
        reserved_at: float, hold: float,
    ) -> None:
        """``settle``, and when the counters cannot be reached, again in the background until
        they answer (never raises). ``reserved_at``: ``time.monotonic()`` just before the
        reservation was made; ``hold``: its hold, seconds. The tries after a failed one say so
        (``Again``): the failed one may have been made, and the call must count once."""
        pairs = _settled(budgets, charges, spent)
        try:
            # ``settle``'s first try, inline: one coroutine less on every request.
            totals = await self._counters.settle(reservation, pairs)
        except Exception as exc:
            self._settle_later(exc, reservation, budgets, charges, spent, reserved_at, hold)
        else:
            self._crossed(budgets, charges, pairs, totals)

    def settle_surely_now(
        self, reservation: str, budgets: Sequence[Budget], charges: Sequence[Charge], spent: Spent | None,
        reserved_at: float, hold: float,
    ) -> None:
        """``settle_surely`` without a coroutine, for counters that never wait (``settles_now``:
        process memory)."""
        settle = self._settle_now
        assert settle is not None, "counters that wait: settle_surely"
        pairs = _settled(budgets, charges, spent)
        try:
            totals = settle(reservation, pairs)
        except Exception as exc:
            self._settle_later(exc, reservation, budgets, charges, spent, reserved_at, hold)
        else:
            self._crossed(budgets, charges, pairs, totals)

    def _settle_later(
        self, failed: Exception, reservation: str, budgets: Sequence[Budget], charges: Sequence[Charge],
        spent: Spent | None, reserved_at: float, hold: float,
    ) -> None:
        """``settle_surely``'s tries after a failed one (``failed``), in the background. A method
        of its own: the closure's variables, in ``settle_surely``, were cells made on every request."""
        now = time.monotonic()
        if now - self._settle_warned >= SETTLE_WARN_SECONDS:
            self._settle_warned = now
            log.warning("request %s: settling its budget reservation failed (%s); it and the others "
                        "failing meanwhile are tried again until the counters answer", reservation,
                        type(failed).__name__)

        async def again() -> None:
            age = time.monotonic() - reserved_at
            await self.settle(reservation, budgets, charges, spent, Again(age, hold))

        self.pending.add(again, f"request {reservation}: its budget settlement")

    # -- costs known only later (a batch's) ------------------------------------------------

    async def exhausted(self, budgets: Sequence[Budget]) -> tuple[int, int] | None:
        """(index, spent and reserved) of the first of ``budgets`` with nothing left in its
        current period; None when each has room. Nothing is reserved: for a request whose cost
        is unknown until long after it (a batch's creation, a file's upload)."""
        charges = self.charges(budgets, [0] * len(budgets))
        for i, (budget, charge) in enumerate(zip(budgets, charges, strict=True)):
            usage = await self._counters.usage(charge.key)
            if usage is None:
                await self._load(budget, charge)
                usage = await self._counters.usage(charge.key) or (0, 0)
            used = usage[0] + usage[1]
            if used >= budget.limit:
                return i, used
        return None

    async def add(self, principal: Principal, record_id: str, at: datetime, spent: Spent) -> None:
        """Count a cost recorded in the ledger without a reservation (a finished batch's) in the
        budgets in force for ``principal`` whose current period holds ``at``. Call it once, by
        whoever wrote the ledger row; a counter not loaded yet is skipped (its load reads the
        row from the ledger)."""
        budgets = await self.in_force(principal)
        now = datetime.fromtimestamp(self._clock(), UTC)
        current = [b for b in budgets if window(b.period, b.zone, now)[0] <= at]
        if current:
            await self.settle_surely(record_id, current, self.charges(current, [0] * len(current)), spent,
                                     time.monotonic(), 0.0)

    # -- thresholds -----------------------------------------------------------------------

    def _alert(self, budget: Budget, key: str, percent: int, total: int) -> None:
        fire = self._fire(budget, key, percent, total)
        task = asyncio.get_running_loop().create_task(fire)
        self._alerts.add(task)
        task.add_done_callback(self._alerts.discard)

    async def _fire(self, budget: Budget, key: str, percent: int, total: int) -> None:
        """Alert once for ``percent`` of the budget's amount in the period of counter ``key``:
        the period the settlement counted in (a call that began before a boundary settles after
        it), so the next period's own crossing of the threshold is not taken as already alerted."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        start, end = window(budget.period, budget.zone, key_start(key))
        try:
            if not await self._store.claim_alert(budget.id, start, percent, budget.limit):
                return  # another instance (or an earlier settlement) fired it this period
        except Exception as exc:
            self._claimed.discard((key, budget.limit, percent))  # a later settlement tries again
            log.warning("budget %s: recording the %d %% alert failed (%s)", budget.id, percent,
                        type(exc).__name__)
            return
        log.info("budget %s (%s %s) crossed %d %%", budget.id, budget.scope, budget.subject, percent)
        event = {
            "id": f"evt_{uuid.uuid4().hex}",
            "type": "budget.threshold",
            # Milliseconds always, as the alert events' times: isoformat() drops a zero fraction.
            "created_at": now.isoformat(timespec="milliseconds"),
            "data": {
                "budget": budget_fields(budget),
                "threshold_percent": percent,
                "spent": _amount(budget, total),
                "period_start": start.isoformat(),
                "period_end": end.isoformat() if end is not None else None,
            },
        }
        self.webhooks.send(event)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("budget %s: a threshold listener failed", budget.id)

    # -- status ---------------------------------------------------------------------------

    async def status(self, record: BudgetRecord, *, alert: bool = False) -> dict[str, Any]:
        return await self.status_of(of_record(record, self.config), alert=alert)

    async def status_of(self, budget: Budget, *, alert: bool = False) -> dict[str, Any]:
        """The budget's current period; ``alert``: also alert on the thresholds its spend is at
        or past that were not alerted for its amount (the budget was just set: lowered below
        its spend, no settlement would find them, as every request is refused)."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        start, end = window(budget.period, budget.zone, now)
        charge = Charge(counter_key(budget.id, start), budget.limit, 0, counter_ttl(end, now))
        usage = await self._usage_now(charge.key)
        if usage is None:
            # The rebuild from the ledger is not bounded here: it runs shielded, so a status
            # given up on still leaves the counter rebuilt for the next read.
            await self._load(budget, charge)
            usage = await self._usage_now(charge.key) or (0, 0)
        spent, reserved = usage
        if alert and spent * 100 >= budget.lowest_mark:
            self._due(budget, charge.key, spent)
        return {
            "period_start": start.isoformat(),
            "period_end": end.isoformat() if end is not None else None,
            "spent": _amount(budget, spent),
            "reserved": _amount(budget, reserved),
            "remaining": _amount(budget, max(0, budget.limit - spent - reserved)),
            "percent_used": round(spent * 100 / budget.limit, 2) if budget.limit else 100.0,
        }


    async def _usage_now(self, key: str) -> tuple[int, int] | None:
        """A counter's usage, or TimeoutError after ``STATUS_READ_SECONDS``. The timeout cancels
        the command; redis-py then drops that connection, so no reply is left pending on one."""
        async with asyncio.timeout(STATUS_READ_SECONDS):
            return await self._counters.usage(key)


def _amount(budget: Budget, units: int) -> str | int:
    """USD as a decimal string (exact), tokens as a number."""
    return f"{usd_of(units):f}" if budget.unit == "usd" else units


def budget_fields(budget: Budget) -> dict[str, Any]:
    return {
        "id": budget.id, "tenant": budget.tenant_id, "scope": budget.scope, "subject": budget.subject,
        "unit": budget.unit, "max_amount": _amount(budget, budget.limit), "period": budget.period,
        "timezone": budget.zone.key,
    }


def _settled(budgets: Sequence[Budget], charges: Sequence[Charge], spent: Spent | None
             ) -> list[tuple[str, int]]:
    """Each charge's counter and what the call spent in its budget's unit (0: it cost nothing)."""
    out = []
    i = 0  # by position (see charges)
    for budget in budgets:
        amount = 0 if spent is None else spent.nano_usd if budget.unit == "usd" else spent.tokens
        out.append((charges[i].key, amount))
        i += 1  # noqa: SIM113 (as in charges)
    return out
