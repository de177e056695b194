"""BudgetStore contract on SQLite and PostgreSQL: one record per (tenant, scope, subject, unit,
period), replaced in place, tenant-isolated, amounts exact to the nano-USD; a threshold alert is
claimed exactly once across instances; a key's own budget round-trips; revision 0007 downgrades."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic import command

from switchboard.spend.budgets.chains import claims_cutoff
from switchboard.stores.factory import open_database
from switchboard.stores.protocols import AuditEntry, AuditQuery, BudgetRecord, BudgetStore, KeyRecord
from switchboard.stores.sql.budgets import ended_chains_statement, own_kinds, purge_statement
from switchboard.stores.sql.migrate import _config
from tests.stores.conftest import Backend, revoke
from tests.stores.plans import query_plan

pytestmark = pytest.mark.asyncio(loop_scope="session")

MONTH = datetime(2026, 12, 1, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _store(backend: Backend) -> BudgetStore:
    store = backend.stores.budgets
    assert store is not None
    return store


async def test_one_record_per_subject_unit_and_period_replaced_in_place(backend: Backend) -> None:
    store = _store(backend)
    first, before = await store.put(BudgetRecord("bud_1", "t1", "team", "team-a", Decimal("10.5"),
                                                 created_by="admin-1"))
    assert before is None and (first.id, first.max_amount, first.unit, first.period) == (
        "bud_1", Decimal("10.5"), "usd", "monthly")
    again = BudgetRecord("bud_2", "t1", "team", "team-a", Decimal("20"), timezone="Europe/Paris",
                         thresholds=(50, 90), downgrade_model="gpt-4o-mini", downgrade_at=80,
                         created_by="admin-2")
    second, before = await store.put(again)
    assert before is not None and before.max_amount == Decimal("10.5") and before.timezone is None
    # Same (tenant, scope, subject, unit, period): the same record, its id and creation kept.
    assert (second.id, second.created_by, second.created_at) == ("bud_1", "admin-1", first.created_at)
    read = await store.get("t1", "bud_1")
    assert read is not None
    assert (read.max_amount, read.timezone, read.thresholds, read.downgrade_model, read.downgrade_at) == (
        Decimal("20"), "Europe/Paris", (50, 90), "gpt-4o-mini", 80)
    # The same budget again (the amount as stored): nothing written, and the store says so.
    third, before = await store.put(replace(again, id="bud_9", max_amount=Decimal("20.0000000001")))
    assert third is before and before == read
    # Another period, another unit, another tenant: other records.
    await store.put(BudgetRecord("bud_3", "t1", "team", "team-a", Decimal("1"), period="daily"))
    await store.put(BudgetRecord("bud_4", "t1", "team", "team-a", Decimal(5000), unit="tokens"))
    await store.put(BudgetRecord("bud_5", "t2", "team", "team-a", Decimal("1")))
    listed = await store.list_budgets("t1")
    assert [(r.id, r.unit, r.period) for r in listed] == [
        ("bud_4", "tokens", "monthly"), ("bud_3", "usd", "daily"), ("bud_1", "usd", "monthly")]
    assert [r.id for r in await store.list_budgets("t2")] == ["bud_5"]


async def test_tenants_are_apart(backend: Backend) -> None:
    store = _store(backend)
    await store.put(BudgetRecord("bud_a", "t1", "tenant", "t1", Decimal("3")))
    assert await store.get("t2", "bud_a") is None
    found = await store.find("bud_a")
    assert found is not None and found.tenant_id == "t1"
    assert await store.find("bud_nope") is None
    assert not await store.delete("t2", "bud_a")
    assert await store.get("t1", "bud_a") is not None
    assert await store.delete("t1", "bud_a")
    assert not await store.delete("t1", "bud_a")
    assert await store.list_budgets("t1") == []


async def test_amounts_are_exact_to_the_nano_usd_and_tokens_are_whole(backend: Backend) -> None:
    store = _store(backend)
    cases = [
        ("bud_n1", "usd", Decimal("0.000000001"), Decimal("0.000000001")),
        ("bud_n2", "usd", Decimal("0.0000000025"), Decimal("0.000000002")),  # half to even
        ("bud_n3", "usd", Decimal("0.0000000035"), Decimal("0.000000004")),
        ("bud_n4", "usd", Decimal("999999999.999999999"), Decimal("999999999.999999999")),
        ("bud_n5", "tokens", Decimal(10**15), Decimal(10**15)),
    ]
    for i, (ident, unit, given, kept) in enumerate(cases):
        stored, _ = await store.put(BudgetRecord(ident, "t1", "user", f"u{i}", given, unit=unit))
        read = await store.get("t1", ident)
        assert read is not None and read.max_amount == kept == stored.max_amount, ident


async def test_no_thresholds_is_not_the_default_thresholds(backend: Backend) -> None:
    store = _store(backend)
    await store.put(BudgetRecord("bud_t1", "t1", "key", "k1", Decimal(1), thresholds=()))
    await store.put(BudgetRecord("bud_t2", "t1", "key", "k2", Decimal(1)))
    none, default = await store.get("t1", "bud_t1"), await store.get("t1", "bud_t2")
    assert none is not None and none.thresholds == ()
    assert default is not None and default.thresholds is None


async def test_concurrent_puts_of_one_budget_leave_one_record(backend: Backend) -> None:
    store = _store(backend)
    peer = (await backend.peer()).budgets
    assert peer is not None
    records = [BudgetRecord(f"bud_c{i}", "t1", "user", "u-race", Decimal(i + 1)) for i in range(10)]
    results = await asyncio.gather(*((store, peer)[i % 2].put(r) for i, r in enumerate(records)))
    listed = await store.list_budgets("t1")
    assert len(listed) == 1
    assert {stored.id for stored, _ in results} == {listed[0].id}
    assert sum(before is None for _, before in results) == 1


ONE = 10**9  # $1 as the budget counts it (nano-USD)


async def test_an_alert_is_claimed_exactly_once_across_instances(backend: Backend) -> None:
    store = _store(backend)
    peer = (await backend.peer()).budgets
    assert peer is not None
    await store.put(BudgetRecord("bud_w", "t1", "tenant", "t1", Decimal(1)))
    claims = await asyncio.gather(*((store, peer)[i % 2].claim_alert("bud_w", MONTH, 80, ONE)
                                    for i in range(20)))
    assert claims.count(True) == 1
    # Another threshold, another period: claimed on their own, once each.
    assert await store.claim_alert("bud_w", MONTH, 100, ONE)
    assert await peer.claim_alert("bud_w", MONTH.replace(month=11), 80, ONE)
    assert not await store.claim_alert("bud_w", MONTH, 100, ONE)
    # The same instant in another zone is the same period start.
    from zoneinfo import ZoneInfo
    assert not await store.claim_alert("bud_w", MONTH.astimezone(ZoneInfo("Asia/Tokyo")), 80, ONE)
    # The budget's amount changed (raised or lowered): its thresholds are claimed again, once.
    assert await peer.claim_alert("bud_w", MONTH, 80, 2 * ONE)
    assert not await store.claim_alert("bud_w", MONTH, 80, 2 * ONE)


async def test_deleting_a_budget_forgets_its_alerts(backend: Backend) -> None:
    store = _store(backend)
    record = BudgetRecord("bud_d", "t1", "team", "team-d", Decimal(1))
    await store.put(record)
    assert await store.claim_alert("bud_d", MONTH, 50, ONE)
    assert await store.delete("t1", "bud_d")
    await store.put(record)  # set again with the same id: its thresholds fire again
    assert await store.claim_alert("bud_d", MONTH, 50, ONE)


async def test_a_changed_budget_forgets_its_claims_at_other_amounts_and_thresholds(backend: Backend) -> None:
    store = _store(backend)
    await store.put(BudgetRecord("bud_f", "t1", "team", "team-f", Decimal(1)))
    for percent in (50, 80):
        assert await store.claim_alert("bud_f", MONTH, percent, ONE)
        assert await store.claim_alert("bud_f", MONTH, percent, 2 * ONE)
    await store.forget_alerts("bud_f", 2 * ONE, (80, 100))  # now 2 units, alerting at 80 and 100 %
    assert not await store.claim_alert("bud_f", MONTH, 80, 2 * ONE)  # in force: kept
    assert await store.claim_alert("bud_f", MONTH, 50, 2 * ONE)  # a threshold no longer listed
    assert await store.claim_alert("bud_f", MONTH, 80, ONE)  # another amount


async def test_a_tenants_or_a_keys_budgets_are_deleted_at_once_with_their_claims(backend: Backend) -> None:
    store = _store(backend)
    on_key = BudgetRecord("bud_k1", "t9", "key", "key_l1", Decimal(1))
    for record in (on_key, replace(on_key, id="bud_k2", period="daily"),
                   BudgetRecord("bud_k3", "t9", "key", "key_l2", Decimal(1)),
                   BudgetRecord("bud_t9", "t9", "tenant", "t9", Decimal(1)),
                   BudgetRecord("bud_o9", "t8", "key", "key_l1", Decimal(1))):
        await store.put(record)
    assert await store.claim_alert("bud_k1", MONTH, 50, ONE)
    deleted = await store.delete_budgets("t9", "key", "key_l1")
    assert sorted(r.id for r in deleted) == ["bud_k1", "bud_k2"]
    assert sorted(r.id for r in await store.list_budgets("t9")) == ["bud_k3", "bud_t9"]
    await store.put(on_key)  # set again with the same id: its thresholds fire again
    assert await store.claim_alert("bud_k1", MONTH, 50, ONE)
    assert sorted(r.id for r in await store.delete_budgets("t9")) == ["bud_k1", "bud_k3", "bud_t9"]
    assert await store.list_budgets("t9") == [] and await store.delete_budgets("t9") == []
    assert [r.id for r in await store.list_budgets("t8")] == ["bud_o9"]  # another tenant's


async def test_one_budget_is_deleted_by_its_id_with_its_claims_and_audit_entry(backend: Backend) -> None:
    store, log = _store(backend), backend.stores.audit
    for record in (BudgetRecord("bud_i1", "t_id", "team", "team-i", Decimal(1)),
                   BudgetRecord("bud_i2", "t_id", "team", "team-i", Decimal(1), period="daily")):
        await store.put(record)
    assert await store.claim_alert("bud_i1", MONTH, 50, ONE)

    def entry(record: BudgetRecord) -> AuditEntry:
        return AuditEntry("t_id", "admin-1", "tenant_admin", "budget.delete", "budget", record.id)

    assert await store.delete_budgets("t_other", budget_id="bud_i1", audited=entry) == []  # not its tenant's
    assert [r.id for r in await store.delete_budgets("t_id", budget_id="bud_i1", audited=entry)] == ["bud_i1"]
    assert await store.delete_budgets("t_id", budget_id="bud_i1", audited=entry) == []  # gone already
    assert [r.id for r in await store.list_budgets("t_id")] == ["bud_i2"]
    assert await store.claim_alert("bud_i1", MONTH, 50, ONE)  # its claims went with it
    entries = await log.query("t_id", AuditQuery(action="budget.delete"))
    assert [(e.resource_id, e.actor) for e in entries] == [("bud_i1", "admin-1")]


async def test_a_key_chain_is_live_while_one_of_its_keys_may_authenticate(backend: Backend) -> None:
    keys = backend.stores.keys
    now = datetime.now(UTC)
    first = KeyRecord("key_c1", "hash-c1", "sk-sb-c1", "t1", expires_at=now - timedelta(seconds=1))
    second = KeyRecord("key_c2", "hash-c2", "sk-sb-c2", "t1", lineage_id="key_c1")
    await keys.put(first)
    assert not await keys.lineage_live("t1", "key_c1", now)  # expired
    await keys.put(second)
    assert await keys.lineage_live("t1", "key_c1", now)
    assert not await keys.lineage_live("t2", "key_c1", now)  # another tenant's
    assert await revoke(keys, "t1", "key_c2")
    assert not await keys.lineage_live("t1", "key_c1", now)  # revoked


async def test_key_chains_with_budgets_and_no_key_left_to_spend_are_found(backend: Backend) -> None:
    store, keys = _store(backend), backend.stores.keys
    now = datetime.now(UTC)
    await keys.put(KeyRecord("key_e1", "hash-e1", "sk-sb-e1", "t_end", expires_at=now - timedelta(seconds=1)))
    await keys.put(KeyRecord("key_e2", "hash-e2", "sk-sb-e2", "t_end", expires_at=now + timedelta(hours=1)))
    await keys.put(KeyRecord("key_e3", "hash-e3", "sk-sb-e3", "t_end", lineage_id="key_e2",
                             expires_at=now - timedelta(seconds=1)))  # the successor expired, not its chain
    for record in (BudgetRecord("bud_e1", "t_end", "key", "key_e1", Decimal(1)),
                   BudgetRecord("bud_e1d", "t_end", "key", "key_e1", Decimal(1), period="daily"),
                   BudgetRecord("bud_e2", "t_end", "key", "key_e2", Decimal(1)),
                   BudgetRecord("bud_et", "t_end", "tenant", "t_end", Decimal(1))):
        await store.put(record)

    async def ended(at: datetime) -> list[tuple[str, str]]:
        return sorted(c for c in await store.ended_key_chains(at) if c[0] == "t_end")

    assert await ended(now) == [("t_end", "key_e1")]  # once, however many budgets it has
    assert await ended(now + timedelta(hours=2)) == [("t_end", "key_e1"), ("t_end", "key_e2")]
    # Revoked with its chain's budgets left in place (as before KeyStore.revoke ended them with it).
    e2 = await keys.get("t_end", "key_e2")
    assert e2 is not None
    await keys.put(replace(e2, enabled=False))
    assert await ended(now) == [("t_end", "key_e1"), ("t_end", "key_e2")]
    # A chain with no budget set on it, whose own budget (max_budget_usd) alerted: found by its
    # claims once no key of it can spend, once however many claims and keys it has.
    await keys.put(KeyRecord("key_e4", "hash-e4", "sk-sb-e4", "t_end", max_budget_usd=Decimal(1),
                             expires_at=now + timedelta(hours=1)))
    await keys.put(KeyRecord("key_e5", "hash-e5", "sk-sb-e5", "t_end", lineage_id="key_e4",
                             max_budget_usd=Decimal(1), expires_at=now + timedelta(minutes=30)))
    for percent in (50, 80):
        assert await store.claim_alert("key:key_e4", MONTH, percent, ONE)
    before = [("t_end", "key_e1"), ("t_end", "key_e2")]
    assert await ended(now) == before
    assert await ended(now + timedelta(minutes=45)) == before  # one key expired, the other spends
    assert await ended(now + timedelta(hours=2)) == [*before, ("t_end", "key_e4")]
    await store.release_alerts("key:key_e4")  # as ending it does: not found again
    assert await ended(now + timedelta(hours=2)) == before


async def test_budgets_two_callers_delete_at_once_are_returned_to_one_of_them(backend: Backend) -> None:
    # Before, both got every budget (SQLite read them outside the transaction that deleted them):
    # a revoke racing the look for expired key chains audited each budget.delete twice.
    store, peer = _store(backend), (await backend.peer()).budgets
    assert peer is not None
    for chain in ("key_twice1", "key_twice2", "key_twice3"):  # the later ones on pooled connections
        ids = []
        for period in ("daily", "weekly", "monthly", "total"):
            ids.append(f"bud_{chain}_{period}")
            await store.put(BudgetRecord(ids[-1], "t_twice", "key", chain, Decimal(1), period=period))
            assert await store.claim_alert(ids[-1], MONTH, 50, ONE)
        first, second = await asyncio.gather(store.delete_budgets("t_twice", "key", chain),
                                             peer.delete_budgets("t_twice", "key", chain))
        assert sorted(r.id for r in [*first, *second]) == sorted(ids)
        assert await store.claim_alert(ids[0], MONTH, 50, ONE)  # its claims went with it
    assert await store.list_budgets("t_twice") == []


async def test_releasing_a_budgets_alerts_forgets_every_claim_of_it(backend: Backend) -> None:
    store = _store(backend)
    for percent in (50, 80):
        assert await store.claim_alert("key:key_r1", MONTH, percent, ONE)
    assert await store.claim_alert("key:key_r2", MONTH, 50, ONE)
    await store.release_alerts("key:key_r1")
    assert await store.claim_alert("key:key_r1", MONTH, 50, ONE)
    assert await store.claim_alert("key:key_r1", MONTH, 80, ONE)
    assert not await store.claim_alert("key:key_r2", MONTH, 50, ONE)  # another budget's: kept


async def test_claims_of_ended_periods_are_purged_and_the_current_periods_kept(backend: Backend) -> None:
    store, keys = _store(backend), backend.stores.keys
    peer = (await backend.peer()).budgets
    assert peer is not None
    now = datetime(2026, 12, 15, 12, tzinfo=UTC)
    day, month = datetime(2026, 12, 15, tzinfo=UTC), datetime(2026, 11, 30, 15, tzinfo=UTC)  # Tokyo's
    await store.put(BudgetRecord("bud_pd", "t_pg", "team", "team-p", Decimal(1), period="daily"))
    await store.put(BudgetRecord("bud_pm", "t_pg", "team", "team-p", Decimal(1), timezone="Asia/Tokyo"))
    await store.put(BudgetRecord("bud_pt", "t_pg", "tenant", "t_pg", Decimal(1), period="total"))
    await keys.put(KeyRecord("key_pd", "hash-pd", "sk-sb-pd", "t_pg", max_budget_usd=Decimal(1),
                             budget_period="daily"))
    await keys.put(KeyRecord("key_pt", "hash-pt", "sk-sb-pt", "t_pg", max_budget_usd=Decimal(1)))
    old = {"bud_pd": day - timedelta(days=5), "bud_pm": month.replace(month=10, day=31),
           "key:key_pd": day - timedelta(days=3)}
    current = {"bud_pd": day, "bud_pm": month, "key:key_pd": day, "bud_pt": EPOCH, "key:key_pt": EPOCH}
    # The day before: its counter lives two days past its end, and a late settlement may claim in it.
    recent = {"bud_pd": day - timedelta(days=1)}
    for budget_id, start in [*old.items(), *current.items(), *recent.items()]:
        assert await store.claim_alert(budget_id, start, 50, ONE)
    # Two instances at once: each claim is deleted once, by one of them.
    counts = await asyncio.gather(store.purge_alerts(claims_cutoff("UTC", now)),
                                  peer.purge_alerts(claims_cutoff("UTC", now)))
    assert sum(counts) >= len(old)
    for budget_id, start in old.items():  # forgotten: the table does not keep every period's
        assert await store.claim_alert(budget_id, start, 50, ONE), budget_id
    for budget_id, start in [*current.items(), *recent.items()]:  # still alerted
        assert not await store.claim_alert(budget_id, start, 50, ONE), budget_id
    assert await store.purge_alerts(claims_cutoff("UTC", now)) >= len(old)  # the old ones again


async def test_deleted_budgets_and_their_audit_entries_are_written_both_or_neither(backend: Backend) -> None:
    store, log = _store(backend), backend.stores.audit
    for record in (BudgetRecord("bud_x1", "t_ax", "key", "key_ax", Decimal(1)),
                   BudgetRecord("bud_x2", "t_ax", "key", "key_ax", Decimal(1), period="daily")):
        await store.put(record)

    def entry(record: BudgetRecord, actor: str | None) -> AuditEntry:
        return AuditEntry("t_ax", actor, "system", "budget.delete", "budget", record.id,  # type: ignore[arg-type]
                          before={"id": record.id})

    # The second entry cannot be written (no actor: the log refuses it): no budget is deleted.
    with pytest.raises(sa.exc.IntegrityError):
        await store.delete_budgets("t_ax", "key", "key_ax",
                                   audited=lambda r: entry(r, None if r.id == "bud_x2" else "system"))
    assert sorted(r.id for r in await store.list_budgets("t_ax")) == ["bud_x1", "bud_x2"]
    assert await log.query("t_ax", AuditQuery(action="budget.delete")) == []
    deleted = await store.delete_budgets("t_ax", "key", "key_ax", audited=lambda r: entry(r, "system"))
    assert sorted(r.id for r in deleted) == ["bud_x1", "bud_x2"] and await store.list_budgets("t_ax") == []
    entries = await log.query("t_ax", AuditQuery(action="budget.delete"))
    assert sorted((e.resource_id, e.actor) for e in entries) == [("bud_x1", "system"), ("bud_x2", "system")]


async def test_a_revoke_and_the_end_of_its_chains_budgets_are_all_or_nothing(backend: Backend) -> None:
    store, keys, log = _store(backend), backend.stores.keys, backend.stores.audit
    now = datetime.now(UTC)
    await keys.put(KeyRecord("key_rv1", "hash-rv1", "sk-sb-rv1", "t_rv"))
    await keys.put(KeyRecord("key_rv2", "hash-rv2", "sk-sb-rv2", "t_rv", lineage_id="key_rv1"))
    await store.put(BudgetRecord("bud_rv", "t_rv", "key", "key_rv1", Decimal(1)))
    assert await store.claim_alert("bud_rv", MONTH, 50, ONE)

    def revoked(key: KeyRecord) -> AuditEntry:
        return AuditEntry("t_rv", "admin-1", "tenant_admin", "key.revoke", "api_key", key.id)

    def deleted(record: BudgetRecord, actor: str | None = "admin-1") -> AuditEntry:
        return AuditEntry("t_rv", actor, "tenant_admin", "budget.delete", "budget", record.id)  # type: ignore[arg-type]

    # The successor still spends: the chain goes on, its budgets kept.
    first = await keys.revoke("t_rv", "key_rv1", now, audited=revoked, budget_audited=deleted)
    assert first is not None and first.key.id == "key_rv1" and not first.key.enabled
    assert (first.chain_ended, first.deleted) == (False, [])
    assert await keys.revoke("t_rv", "key_rv1", now, audited=revoked, budget_audited=deleted) is None
    # The chain's last key, its budget's audit entry refused (no actor): nothing is written.
    with pytest.raises(sa.exc.IntegrityError):
        await keys.revoke("t_rv", "key_rv2", now, audited=revoked, budget_audited=lambda r: deleted(r, None))
    still = await keys.get("t_rv", "key_rv2")
    assert still is not None and still.enabled
    assert [r.id for r in await store.list_budgets("t_rv")] == ["bud_rv"]
    assert [e.resource_id for e in await log.query("t_rv", AuditQuery())] == ["key_rv1"]
    last = await keys.revoke("t_rv", "key_rv2", now, audited=revoked, budget_audited=deleted)
    assert last is not None and last.chain_ended and [r.id for r in last.deleted] == ["bud_rv"]
    assert await store.list_budgets("t_rv") == []
    assert await store.claim_alert("bud_rv", MONTH, 50, ONE)  # its claims went with it
    entries = await log.query("t_rv", AuditQuery())
    assert sorted((e.action, e.resource_id) for e in entries) == [
        ("budget.delete", "bud_rv"), ("key.revoke", "key_rv1"), ("key.revoke", "key_rv2")]


async def test_the_last_two_keys_of_a_chain_revoked_at_once_end_it(backend: Backend) -> None:
    store, keys = _store(backend), backend.stores.keys
    peer = (await backend.peer()).keys
    now = datetime.now(UTC)

    def entry(record: KeyRecord | BudgetRecord) -> AuditEntry:
        return AuditEntry("t_rw", "admin-1", "tenant_admin", "revoke", "x", record.id)

    for chain in ("key_rw1", "key_rw3", "key_rw5"):
        successor = chain[:-1] + str(int(chain[-1]) + 1)
        await keys.put(KeyRecord(chain, f"hash-{chain}", f"sk-sb-{chain}", "t_rw"))
        await keys.put(KeyRecord(successor, f"hash-{successor}", f"sk-sb-{successor}", "t_rw",
                                 lineage_id=chain))
        await store.put(BudgetRecord(f"bud_{chain}", "t_rw", "key", chain, Decimal(1)))
        both = await asyncio.gather(
            keys.revoke("t_rw", chain, now, audited=entry, budget_audited=entry),
            peer.revoke("t_rw", successor, now, audited=entry, budget_audited=entry))
        # One of them saw the other's revoke and ended the chain, once.
        assert [r is not None and r.chain_ended for r in both].count(True) == 1, both
        assert [b.id for r in both if r is not None for b in r.deleted] == [f"bud_{chain}"]
    assert await store.list_budgets("t_rw") == []


async def test_a_keys_own_budget_round_trips(backend: Backend) -> None:
    keys = backend.stores.keys
    record = KeyRecord("key_b1", "hash-b1", "sk-sb-b1", "t1", max_budget_usd=Decimal("1.000000001"),
                       budget_period="daily")
    await keys.put(record)
    read = await keys.get("t1", "key_b1")
    assert read is not None and (read.max_budget_usd, read.budget_period) == (Decimal("1.000000001"), "daily")
    await keys.put(replace(record, max_budget_usd=None, budget_period=None))
    read = await keys.get("t1", "key_b1")
    assert read is not None and (read.max_budget_usd, read.budget_period) == (None, None)


def _migrate(conn: sa.Connection, target: str) -> None:
    """Up to ``head``, or down to an earlier revision."""
    if target == "head":
        command.upgrade(_config(conn), target)
    else:
        command.downgrade(_config(conn), target)


async def test_revision_0007_downgrades_and_upgrades_again(fresh_url: str) -> None:
    engine, revision = await open_database(fresh_url)
    assert revision >= "0007"  # later revisions build on it

    def shape(conn: sa.Connection) -> tuple[set[str], set[str]]:
        inspector = sa.inspect(conn)
        return set(inspector.get_table_names()), {c["name"] for c in inspector.get_columns("api_keys")}

    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(
                "INSERT INTO budgets (id, tenant_id, scope, subject, unit, max_units, period, created_at, "
                "updated_at) VALUES ('bud_x', 't', 'tenant', 't', 'usd', 1, 'monthly', :now, :now)"
            ), {"now": datetime.now(UTC)})
            await conn.run_sync(_migrate, "0006")
            await conn.commit()
            tables, columns = await conn.run_sync(shape)
            assert not {"budgets", "budget_alerts"} & tables
            assert "rate_limits" in tables and "rpm_limit" in columns
            assert not {"max_budget_nano_usd", "budget_period"} & columns
            await conn.run_sync(_migrate, "head")
            await conn.commit()
            tables, columns = await conn.run_sync(shape)
            assert {"budgets", "budget_alerts"} <= tables
            assert {"max_budget_nano_usd", "budget_period"} <= columns
    finally:
        await engine.dispose()


async def test_revision_0038_keeps_each_claimed_alert_with_its_budgets_amount(fresh_url: str) -> None:
    engine, _ = await open_database(fresh_url)
    now = datetime.now(UTC)

    try:
        async with engine.connect() as conn:
            await conn.run_sync(_migrate, "0037")
            await conn.execute(sa.text(
                "INSERT INTO budgets (id, tenant_id, scope, subject, unit, max_units, period, created_at, "
                "updated_at) VALUES ('bud_m', 't', 'tenant', 't', 'usd', 5000000000, 'monthly', :now, :now)"
            ), {"now": now})
            await conn.execute(sa.text(
                "INSERT INTO budget_alerts (budget_id, period_start, threshold, fired_at) "
                "VALUES ('bud_m', :now, 50, :now), ('bud_gone', :now, 80, :now)"), {"now": now})
            await conn.commit()
            await conn.run_sync(_migrate, "head")
            await conn.commit()
            rows = (await conn.execute(sa.text(
                "SELECT budget_id, threshold, max_units FROM budget_alerts ORDER BY budget_id"))).all()
            # Kept as sent for the budget's amount now: not sent again; a deleted budget's for none.
            assert [tuple(r) for r in rows] == [("bud_gone", 80, 0), ("bud_m", 50, 5_000_000_000)]
    finally:
        await engine.dispose()


async def test_the_search_for_ended_key_chains_reads_key_budgets_through_an_index(fresh_url: str) -> None:
    # Before, no index led with budgets.scope: every instance read the whole budgets table
    # (every tenant's, team's and user's budget) at each search for expired key chains.
    engine, _ = await open_database(fresh_url)
    try:
        async with engine.begin() as conn:
            plan = await query_plan(conn, ended_chains_statement(datetime.now(UTC)))
    finally:
        await engine.dispose()
    assert "ix_budgets_scope" in plan, plan
    # A search of the index by scope, not a walk through all of it.
    searched = r"Index Cond: \(scope = 'key'|SEARCH budgets USING COVERING INDEX ix_budgets_scope \(scope="
    assert re.search(searched, plan), plan
    # Nor are the keys read whole: each chain's are looked up through an index, those of a chain
    # known by its own budget's claims by the lineage alone.
    read_whole = r"Seq Scan on (budgets|api_keys|chain)|^SCAN (budgets|api_keys|chain)\b"
    assert not re.search(read_whole, plan, re.MULTILINE), plan
    by_lineage = (r"Index Scan using ix_api_keys_lineage on api_keys chain"
                  r"|SEARCH chain USING (COVERING )?INDEX ix_api_keys_lineage \(lineage_id=\?\)")
    assert re.search(by_lineage, plan), plan


async def test_the_search_for_ended_key_chains_reads_a_claimed_chains_keys_once(fresh_url: str) -> None:
    # Before, each claim was joined to every key of its chain and each pair looked up the chain's
    # keys again to ask whether one may spend: a chain's keys read once per claim and key.
    engine, _ = await open_database(fresh_url)
    try:
        async with engine.begin() as conn:
            plan = await query_plan(conn, ended_chains_statement(datetime.now(UTC)))
    finally:
        await engine.dispose()
    # The keys are read twice: once for the chains with budgets, once for the claimed ones (their
    # keys looked up by lineage and judged together), never once more per pair.
    key_reads = r"Index (Only )?Scan using ix_api_keys_\w+ on api_keys\b|^SEARCH (api_keys|chain) USING"
    assert len(re.findall(key_reads, plan, re.MULTILINE)) == 2, plan
    assert not re.search(r"SubPlan|Anti Join", plan.split("GroupAggregate")[-1]), plan


async def test_the_purge_of_claims_finds_keys_own_budgets_through_an_index(fresh_url: str) -> None:
    # Before, the hourly purge read the whole api_keys table (twice) to find the keys' own budgets
    # among the claims: the only index on lineage_id led with the tenant, which a claim has not.
    engine, _ = await open_database(fresh_url)
    try:
        async with engine.begin() as conn:
            plans = [await query_plan(conn, own_kinds),
                     await query_plan(conn, purge_statement("daily", None, datetime.now(UTC)))]
    finally:
        await engine.dispose()
    for plan in plans:
        # Each claim's keys looked up by its lineage, not every key read.
        searched = (r"Index Cond: \(\(?lineage_id\)?(::text)? = substr"
                    r"|SEARCH api_keys USING (COVERING )?INDEX ix_api_keys_lineage \(lineage_id=\?\)")
        assert re.search(searched, plan), plan
        assert not re.search(r"Seq Scan on api_keys|^SCAN api_keys\b", plan, re.MULTILINE), plan
