"""The alerts at run time: the rules evaluated, incidents opened and resolved, events sent.

- ``error_rate`` and ``latency``: every ``evaluate_seconds`` each instance measures the attempts
  it served per deployment (``signals.Windows``) over each rule's window. Firing (at least
  ``min_requests`` and at or past the threshold): open the incident, or tell the store it still
  holds (``last_seen_at``). Clear: resolved by any instance that sees at least ``min_requests``
  below the threshold (evidence, not silence) once no instance has seen it hold for two
  evaluations; or, when no instance has seen it hold for two windows, or two evaluations when
  longer (the deployment went quiet), by whichever instance notices first.
- ``breaker``: routing/health.py tells of a deployment's cooldown opening (the incident opens)
  and of its recovery, the half-open probe answering (resolved, unless the deployment is out
  again by then: a recovery heard late never resolves a later trip's incident). With Redis every
  instance hears both; the store lets one open and one resolve. The recovery notice never comes when the
  cooldown was lost (a restart, the deployment removed): each evaluation also resolves an open
  breaker incident, settled for two evaluations, whose deployment is no longer out
  (``tripped``). A trip whose incident is open already keeps that one (moving its last_seen_at);
  one open of the rule's former kind (its kind changed under its name) is resolved and replaced.
  A trip whose incident the store did not take is written again as a budget's is (below), while
  the deployment is still out: no second notice of that trip comes. A recovery's is not (the
  sweep above resolves what it left open).
- ``budget``: the budget book tells of a threshold's first crossing in a period at the budget's
  amount (claimed once across instances already); its incident is written only while the budget
  is still set as it crossed (deleted or changed since the claim: none), and one the store did
  not take (a database outage) is written again in the background until it does, as the claim is
  not made twice. The incident is resolved when the period ends, when the admin API deletes the budget
  (or the tenant, or revokes the key it is on), changes its amount or drops the incident's
  threshold (``budget_ended``, ``budgets_deleted``), and, for a key's budget, by the evaluation
  that finds no key of its rotation chain left to spend it (revoked or expired: ``key_live``).
  The budgets of a chain whose keys all expired are ended by the budgets' own sweep
  (spend/budgets/chains.py), alert rules or not, which resolves their incidents too.

Only the caller that opened (or resolved) an incident in the store sends its event, to the
rule's webhooks: one ``alert.firing`` and one ``alert.resolved`` per incident however many
instances watch. A store that fails is logged; the evaluation goes on at the next tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from switchboard.background import Retries, stop_task
from switchboard.config.schema import AlertsConfig
from switchboard.observability.alerts.incidents import event
from switchboard.observability.alerts.rules import Rule, by_kind, compile_rules
from switchboard.observability.alerts.signals import AttemptObserver, Windows
from switchboard.observability.webhooks import WebhookSender
from switchboard.stores.protocols import Incident, IncidentStore

log = logging.getLogger("switchboard.alerts")

MAX_TASKS = 1000  # breaker and budget notices under way at once; beyond, dropped and logged
# Breaker and budget incidents the store did not take, written again until it does
# (background.Retries): at most this many of each kind, so a flood of trips during an outage
# never pushes out a budget's crossing, which nothing would bring again.
PENDING_MAX = 10_000
PENDING_MAX_AGE = 86_400.0

# Whether a deployment (group, deployment) is in the model table and out of traffic (cooling
# down or half-open, on any instance): routing/router.py.
Tripped = Callable[[str, str], Awaitable[bool]]
# Whether a key of the rotation chain (tenant, lineage) may still spend (KeyStore.lineage_live).
KeyLive = Callable[[str, str], Awaitable[bool]]
# Whether the budget of a threshold event (its fields) is still set as it crossed that percent
# (BudgetBook.alerts_at).
BudgetAlerting = Callable[[Mapping[str, Any], int], Awaitable[bool]]


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _same(shown: Any, amount: Decimal) -> bool:
    """Whether a budget event's ``max_amount`` (USD as a string, tokens as a number) is ``amount``."""
    try:
        return Decimal(str(shown)) == amount
    except ArithmeticError:
        return False


class Alerts:
    def __init__(self, config: AlertsConfig, *, clock: Callable[[], float] = time.time,
                 backoff_base: float = 0.5) -> None:
        self.config = config
        self.rules = compile_rules(config)
        self._by_kind = by_kind(self.rules)
        self._clock = clock
        self.senders = {
            name: WebhookSender(hook, backoff_base=backoff_base, clock=clock, label=f"alert webhook {name}",
                                logger=log)
            for name, hook in config.webhooks.items()
        }
        self.windows = Windows(self.rules, clock)
        rate_rules = self._by_kind.get("error_rate", []) + self._by_kind.get("latency", [])
        # The Observer for Gateway.observers; None when no rule reads the attempts.
        self.observer: AttemptObserver | None = AttemptObserver(self.windows) if rate_rules else None
        self._rate_rules = rate_rules
        self._store: IncidentStore | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # When each kind of warning (its format string: a handful) was last logged.
        self._warned: dict[str, float] = {}
        # Set by the gateway when a breaker rule exists; None: breaker incidents are not swept.
        self.tripped: Tripped | None = None
        # Set by the gateway when a budget rule exists; None: key budget incidents are not swept.
        self.key_live: KeyLive | None = None
        # Set with key_live; None: a budget incident written again is not checked first.
        self.budget_alerting: BudgetAlerting | None = None
        self.pending_trips = Retries("breaker incidents", PENDING_MAX, PENDING_MAX_AGE)
        self.pending_budgets = Retries("budget incidents", PENDING_MAX, PENDING_MAX_AGE)

    @property
    def watches_breakers(self) -> bool:
        return bool(self._by_kind.get("breaker"))

    @property
    def watches_budgets(self) -> bool:
        return bool(self._by_kind.get("budget"))

    async def start(self, store: IncidentStore | None) -> None:
        self._store = store
        for sender in self.senders.values():
            await sender.start()
        if store is None:
            return
        # No rule to evaluate: only the incidents that rules removed since left open are
        # resolved, while there are any (with rules, every evaluation does it).
        work = self._run() if self.rules else self._sweep()
        self._loop_task = asyncio.create_task(work, name="alerts")

    async def close(self, also: Iterable[WebhookSender] = ()) -> None:
        """``also``: other senders (the budget webhook's) closed at once with the alerts'."""
        await stop_task(self._loop_task)
        self._loop_task = None
        # One last try for the incidents still waiting, both kinds at once.
        await asyncio.gather(self.pending_trips.close(), self.pending_budgets.close())
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)
            for task in list(self._tasks):
                task.cancel()
        # Every receiver at once: a close waits up to its grace for the events in flight, so
        # one after another, hanging receivers would hold the shutdown that many times over.
        await asyncio.gather(*(sender.close() for sender in (*self.senders.values(), *also)))
        self._store = None

    # -- notices from routing/health.py and the budget book (sync: spawn and return) ----------

    def breaker(self, group: str, deployment: str, tripped: bool) -> None:
        """A health listener: ``deployment`` of ``group`` cooled down (True) or recovered."""
        for rule in self._by_kind.get("breaker", ()):
            if rule.watches(group, deployment):
                self._spawn(self._breaker(rule, group, deployment, tripped))

    def budget_crossed(self, event: Mapping[str, Any]) -> None:
        """A budget listener: a ``budget.threshold`` event (spend/budgets/book.py), fired once
        per budget, threshold, period and budget amount across instances."""
        try:
            data = event["data"]
            budget = data["budget"]
            scope, percent = str(budget["scope"]), int(data["threshold_percent"])
        except (KeyError, TypeError, ValueError):
            log.warning("ignoring a malformed budget event")
            return
        for rule in self._by_kind.get("budget", ()):
            if rule.watches_budget(scope, percent):
                self._spawn(self._budget(rule, data))

    async def budget_ended(self, budget_id: str, unit: str | None = None, amount: Decimal | None = None,
                           thresholds: Collection[int] | None = None) -> None:
        """The budget was deleted (``amount`` None) or set to ``amount`` of ``unit`` with
        ``thresholds`` (percents; None: unchanged): its open incidents at any other amount, or at
        a threshold no longer listed, are resolved, with ``resolved_value`` null. Neither the end
        of a period (never, for a total budget) nor a crossing would end them any more. Called by
        the admin API after the change; a store that fails is logged, not raised."""
        if amount is None:
            await self.budgets_deleted((budget_id,))
            return
        rules = {r.name: r for r in self._by_kind.get("budget", ())}
        store = self._store
        if store is None or not rules:
            return
        try:
            for rule, incident, budget in self._of_budgets(rules, await store.open_incidents(), {budget_id}):
                if budget.get("unit") == unit and _same(budget.get("max_amount"), amount) \
                        and (thresholds is None or round(incident.threshold or 0) in thresholds):
                    continue  # the amount and threshold in force: its period's end resolves it
                await self._resolve(rule, incident.subject, None, incident)
        except Exception as exc:
            self._complain("alert incidents of budget %s not resolved: %s", budget_id, type(exc).__name__)

    async def budgets_deleted(self, budget_ids: Collection[str]) -> None:
        """The budgets are gone (deleted, with their tenant or their key): their open incidents
        are resolved, with ``resolved_value`` null. Logged, not raised, when the store fails."""
        rules = {r.name: r for r in self._by_kind.get("budget", ())}
        store = self._store
        if store is None or not rules or not budget_ids:
            return
        try:
            for rule, incident, _ in self._of_budgets(rules, await store.open_incidents(), set(budget_ids)):
                await self._resolve(rule, incident.subject, None, incident)
        except Exception as exc:
            self._complain("alert incidents of budget %s not resolved: %s", next(iter(budget_ids)),
                           type(exc).__name__)

    @staticmethod
    def _of_budgets(rules: Mapping[str, Rule], incidents: Iterable[Incident], ids: Collection[str] | None
                    ) -> Iterator[tuple[Rule, Incident, dict[str, Any]]]:
        """The budget incidents among ``incidents`` of a configured rule (and of one of ``ids``,
        unless None), with their rule and budget."""
        for incident in incidents:
            rule = rules.get(incident.rule)
            budget = (incident.details or {}).get("budget")
            if rule is None or incident.kind != "budget" or not isinstance(budget, dict) \
                    or (ids is not None and budget.get("id") not in ids):
                continue
            yield rule, incident, budget

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        if self._store is None or len(self._tasks) >= MAX_TASKS:
            work.close()
            self._complain("alert notice dropped: %s", "not started" if self._store is None else "too many")
            return
        try:
            task = asyncio.get_running_loop().create_task(work)
        except RuntimeError:
            work.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- opening and resolving ----------------------------------------------------------------

    async def _open(self, rule: Rule, subject: str, value: float, *, tenant: str | None = None,
                    details: Mapping[str, Any] | None = None, resolves_at: datetime | None = None,
                    threshold: float | None = None) -> None:
        assert self._store is not None
        now = _utc(self._clock())
        incident = Incident(
            id=f"inc_{uuid.uuid4().hex}", rule=rule.name, kind=rule.kind, subject=subject, value=value,
            threshold=rule.threshold if threshold is None else threshold, started_at=now, tenant_id=tenant,
            details={**rule.public(), **(details or {})}, last_seen_at=now, resolves_at=resolves_at,
        )
        opened = await self._store.open(incident)
        if opened is None and await self._displaced(rule, subject, now):
            opened = await self._store.open(incident)
        if opened is None:
            # Open already (another instance, an earlier tick, a trip before a restart): that
            # incident is the current one, its event sent; the condition was seen holding now.
            log.debug("alert %s for %s: open already, kept", rule.name, subject)
            await self._store.touch(rule.name, subject, now)
            return
        log.warning("alert %s firing for %s: %g (threshold %s)", rule.name, subject, value,
                    "-" if opened.threshold is None else f"{opened.threshold:g}")
        self._send(rule.webhooks, opened)

    async def _resolve(self, rule: Rule, subject: str, value: float | None, incident: Incident | None = None
                       ) -> None:
        """``incident``: the one an evaluation read and judged over; a newer incident of the same
        rule and subject (opened meanwhile, elsewhere) is left open."""
        assert self._store is not None
        resolved = await self._store.resolve(rule.name, subject, _utc(self._clock()), value,
                                             incident_id=None if incident is None else incident.id)
        if resolved is None:
            return
        log.info("alert %s resolved for %s", rule.name, subject)
        self._send(rule.webhooks, resolved)

    async def _orphan(self, incident: Incident, at: datetime) -> bool:
        """Resolve an incident whose rule is no longer configured (removed, renamed, or its kind
        changed under the same name), once no
        instance has seen it hold for two evaluations: an instance still on the old
        configuration (a rolling restart) keeps it open while it sees the condition. Its event
        goes to every alert webhook, the rule's own list being gone with the rule. False: not
        settled yet."""
        if not self._settled(incident, at):
            return False
        await self._retire(incident, at, "the rule is no longer configured")
        return True

    async def _retire(self, incident: Incident, at: datetime, why: str) -> None:
        """Resolve an incident of a rule gone (or of its former kind), ``resolved_value`` null;
        its event to every alert webhook."""
        assert self._store is not None
        resolved = await self._store.resolve(incident.rule, incident.subject, at, None,
                                             incident_id=incident.id)
        if resolved is not None:  # None: resolved elsewhere meanwhile
            log.info("alert %s resolved for %s: %s", incident.rule, incident.subject, why)
            self._send(tuple(self.senders), resolved)

    async def _displaced(self, rule: Rule, subject: str, at: datetime) -> bool:
        """Whether to try opening ``rule``'s incident for ``subject`` again: the one open was of
        another kind (the rule's kind changed under its name) and is resolved now, or none is open
        any more. A breaker trip
        or a budget crossing is told once: it cannot wait for that incident to settle as a
        removed rule's does, and touching it would keep the former kind's incident alive.
        Read only when an open conflicts (rare: a trip heard by several instances)."""
        assert self._store is not None
        for incident in await self._store.open_incidents():
            if incident.rule == rule.name and incident.subject == subject:
                if incident.kind == rule.kind:
                    return False
                await self._retire(incident, at, f"the rule is a {rule.kind} rule now")
                return True
        return True  # resolved meanwhile

    async def _sweep(self) -> None:
        """With no rule configured: the open incidents (all of rules no longer configured)
        resolved as each settles (see ``_orphan``), checked every evaluation until none is left."""
        store = self._store
        assert store is not None
        while True:
            try:
                at = _utc(self._clock())
                left = False  # True again for one not settled yet, or a store that failed
                for incident in await store.open_incidents():
                    left = not await self._orphan(incident, at) or left
            except Exception as exc:
                left = True
                self._complain("alert incidents of removed rules not resolved: %s", type(exc).__name__)
            if not left:
                return
            await asyncio.sleep(self.config.evaluate_seconds)

    def _send(self, webhooks: Iterable[str], incident: Incident) -> None:
        body = event(incident, _utc(self._clock()))
        for name in webhooks:
            sender = self.senders.get(name)
            if sender is not None:
                sender.send(body)

    async def _breaker(self, rule: Rule, group: str, deployment: str, tripped: bool) -> None:
        subject = f"{group}/{deployment}"
        try:
            if tripped:
                await self._trip(rule, subject, group, deployment)
            elif self.tripped is not None and await self.tripped(group, deployment):
                # Out again (this recovery heard late, after a new trip elsewhere): the open
                # incident is that trip's; its own recovery, or the sweep, resolves it.
                log.debug("alert %s for %s: recovery heard while out again, kept open", rule.name, subject)
            else:
                await self._resolve(rule, subject, 0.0)
        except Exception as exc:
            if not tripped:  # a recovery left unwritten: the sweep resolves its incident
                self._complain("alert %s for %s: the incident store failed (%s)", rule.name, subject,
                               type(exc).__name__)
                return
            # The cooldown tells of its trip once: nothing would bring this one again.
            self._complain("alert %s for %s: the incident store failed (%s); the trip tried again",
                           rule.name, subject, type(exc).__name__)
            if self._store is not None:
                self.pending_trips.add(lambda: self._trip_again(rule, subject, group, deployment),
                                       f"alert {rule.name} for {subject}")

    async def _trip(self, rule: Rule, subject: str, group: str, deployment: str) -> None:
        await self._open(rule, subject, 1.0, details={"group": group, "deployment": deployment})

    async def _trip_again(self, rule: Rule, subject: str, group: str, deployment: str) -> None:
        """A trip's incident written again after the store failed: only while the deployment is
        still out. Back in traffic meanwhile, one opened now would page for an outage over
        already (the sweep resolving it two evaluations later). Raising: tried again."""
        if self.tripped is None or await self.tripped(group, deployment):
            await self._trip(rule, subject, group, deployment)
            return
        log.info("alert %s for %s: the deployment is back in traffic; no incident opened", rule.name, subject)

    async def _budget(self, rule: Rule, data: Mapping[str, Any]) -> None:
        budget = data["budget"]
        percent = int(data["threshold_percent"])
        # The amount is part of the subject, as of the threshold's claim (spend/budgets/book.py):
        # a budget raised or lowered mid-period opens an incident of its own at its new amount.
        amount = budget.get("max_amount")
        subject = f"budget {budget['id']} {percent}% of {amount} from {data.get('period_start')}"
        try:
            used = float(data["spent"]) * 100 / float(budget["max_amount"])
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            used = float(percent)
        ends = data.get("period_end")
        try:
            resolves_at = datetime.fromisoformat(ends) if isinstance(ends, str) else None
        except ValueError:
            resolves_at = None
        details = {"budget": dict(budget), "threshold_percent": percent, "spent": data.get("spent"),
                   "period_start": data.get("period_start"), "period_end": ends}

        async def write() -> None:
            await self._open(rule, subject, round(used, 2), tenant=str(budget.get("tenant") or "") or None,
                             details=details, resolves_at=resolves_at, threshold=float(percent))

        async def checked() -> None:
            await self._budget_write(rule, subject, budget, percent, write)

        try:
            await checked()
        except Exception as exc:
            # The threshold is claimed (once across instances): no later settlement would bring
            # this crossing again, so the incident is written again until the store takes it.
            self._complain("alert %s for %s: the incident store failed (%s); tried again", rule.name,
                           subject, type(exc).__name__)
            if self._store is not None:
                self.pending_budgets.add(checked, f"alert {rule.name} for {subject}")

    async def _budget_write(self, rule: Rule, subject: str, budget: Mapping[str, Any], percent: int,
                            write: Callable[[], Awaitable[None]]) -> None:
        """A budget incident written (the first time, or again after the store failed) only
        while the budget is set as it crossed: deleted or changed since its claim (during an
        outage, or in the moment between claim and write), its incidents were resolved then and
        one opened now would stay open for good; a change landing while it is written is seen by
        the check after, which resolves it (raising anywhere: all tried again)."""
        if await self._budget_alerts(budget, percent):
            await write()
            if await self._budget_alerts(budget, percent):
                return
        log.info("alert %s for %s: the budget was deleted or changed meanwhile; no incident left open",
                 rule.name, subject)
        await self._resolve(rule, subject, None)

    async def _budget_alerts(self, budget: Mapping[str, Any], percent: int) -> bool:
        return self.budget_alerting is None or await self.budget_alerting(budget, percent)

    # -- the evaluation loop --------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config.evaluate_seconds)
            try:
                await self.evaluate()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._complain("alerts not evaluated: %s", type(exc).__name__)

    async def evaluate(self) -> None:
        """One tick: the deployment rules measured, incidents opened, touched and resolved."""
        store = self._store
        if store is None:
            return
        now = self._clock()
        at = _utc(now)
        self.windows.prune(now)
        open_now = {(i.rule, i.subject): i for i in await store.open_incidents()}
        holding: set[tuple[str, str]] = set()
        for rule in self._rate_rules:
            since = now - rule.window_seconds
            for key in self.windows:
                if not rule.watches(*key):
                    continue
                subject = f"{key[0]}/{key[1]}"
                seen = self.windows.window(key, since)
                value = rule.measure(seen.requests, seen.failures, seen.ms)
                known = open_now.get((rule.name, subject))
                if known is not None and known.kind != rule.kind:
                    # The rule's kind changed (same name): that incident is the old rule's,
                    # resolved below as a removed rule's; this one's opens once it is gone.
                    continue
                if rule.firing(seen.requests, value):
                    holding.add((rule.name, subject))
                    if known is None:
                        await self._open(rule, subject, round(value, 4), details={
                            "group": key[0], "deployment": key[1], "requests": seen.requests,
                            "failures": seen.failures})
                    else:
                        await store.touch(rule.name, subject, at)
                elif known is not None and rule.clear(seen.requests, value) and self._settled(known, at):
                    await self._resolve(rule, subject, round(value, 4), known)
        rules = {r.name: r for r in self.rules}
        for (name, subject), incident in open_now.items():
            configured = rules.get(name)
            if configured is None or configured.kind != incident.kind:
                # A rule no longer configured, or whose kind changed: none of the checks below
                # would end it (a budget rule's never resolves a deployment's incident).
                await self._orphan(incident, at)
                continue
            if (name, subject) in holding:
                continue
            if incident.resolves_at is not None and incident.resolves_at <= at:
                await self._resolve(configured, subject, None, incident)  # e.g. the budget's period is over
            elif configured.kind in ("error_rate", "latency"):
                # Two windows, or two evaluations when longer: an instance that sees it hold
                # says so once per evaluation, whatever the window.
                quiet = timedelta(seconds=2 * max(configured.window_seconds, self.config.evaluate_seconds))
                if (incident.last_seen_at or incident.started_at) + quiet <= at:
                    await self._resolve(configured, subject, None, incident)  # nobody saw it hold: 2 windows
            elif (configured.kind == "breaker" and self._settled(incident, at)
                  and not await self._out(incident)):
                await self._resolve(configured, subject, 0.0, incident)  # its recovery notice was lost
            elif configured.kind == "budget" and not await self._spendable(incident):
                await self._resolve(configured, subject, None, incident)  # its key expired or is gone

    async def _out(self, incident: Incident) -> bool:
        """Whether a breaker incident's deployment is still out of traffic (True when unknown)."""
        details = incident.details or {}
        group, deployment = details.get("group"), details.get("deployment")
        if self.tripped is None or not isinstance(group, str) or not isinstance(deployment, str):
            return True
        return await self.tripped(group, deployment)

    async def _spendable(self, incident: Incident) -> bool:
        """Whether a key budget incident's key chain may still spend (True for other budgets, and
        when unknown): one indexed lookup per open key budget incident and evaluation."""
        budget = (incident.details or {}).get("budget")
        if self.key_live is None or not isinstance(budget, dict) or budget.get("scope") != "key":
            return True
        tenant, lineage = budget.get("tenant"), budget.get("subject")
        if not isinstance(tenant, str) or not isinstance(lineage, str):
            return True
        return await self.key_live(tenant, lineage)

    def _settled(self, incident: Incident, at: datetime) -> bool:
        """No instance saw the condition hold in its last two evaluations: an instance whose own
        traffic looks fine does not resolve what another one still sees failing."""
        seen = incident.last_seen_at or incident.started_at
        return seen + timedelta(seconds=2 * self.config.evaluate_seconds) <= at

    def _complain(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._warned.get(message, -60.0) >= 60.0:
            self._warned[message] = now
            log.warning(message, *args)
