"""Which budgets are in force: a key's are held under its lineage, so a rotation keeps them."""

from __future__ import annotations

import gc
from datetime import UTC, datetime
from decimal import Decimal

from switchboard.config.schema import BudgetsConfig
from switchboard.context import Principal
from switchboard.spend.budgets.plan import in_force, of_key, of_record
from switchboard.stores.protocols import BudgetRecord

CONFIG = BudgetsConfig()
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _key(key_id: str, lineage: str | None = None) -> Principal:
    return Principal(id=key_id, role="developer", key_id=key_id, tenant_id="t1",
                     max_budget_usd=Decimal("0.03"), key_lineage=lineage)


def test_a_rotated_key_has_its_predecessors_own_budget() -> None:
    first, rotated = of_key(_key("key_a"), CONFIG), of_key(_key("key_b", lineage="key_a"), CONFIG)
    assert first is not None and rotated is not None
    assert (rotated.id, rotated.subject) == (first.id, first.subject) == ("key:key_a", "key_a")
    never_rotated = of_key(_key("key_c", lineage="key_c"), CONFIG)
    assert never_rotated is not None and never_rotated.id == "key:key_c"
    # A principal built without a lineage (a batch's owner whose key is gone) is its own.
    unlinked = of_key(_key("key_d"), CONFIG)
    assert unlinked is not None and unlinked.subject == "key_d"


def test_budgets_set_on_the_lineage_apply_to_every_key_of_it() -> None:
    record = BudgetRecord(id="bud_1", tenant_id="t1", scope="key", subject="key_a", max_amount=Decimal(1),
                          unit="usd", period="daily", created_at=NOW, updated_at=NOW)
    stored = {("key", "key_a"): [of_record(record, CONFIG)]}
    for principal in (_key("key_a"), _key("key_b", lineage="key_a")):
        assert [b.id for b in in_force(principal, stored, CONFIG)] == ["bud_1", "key:key_a"]
    assert [b.id for b in in_force(_key("key_x"), stored, CONFIG)] == ["key:key_x"]


def test_a_key_budget_follows_the_config_it_is_asked_with_not_one_freed_before_it() -> None:
    # A new config may be given the memory, so the id, of one that was freed (a config replaced
    # on a reload; another test's): its key budgets take its own thresholds and time zone.
    key = _key("key_e")
    old = BudgetsConfig(thresholds=[50], timezone="Europe/Paris")
    assert of_key(key, old) is not None
    del old
    gc.collect()
    configs = [BudgetsConfig(thresholds=[], timezone="UTC") for _ in range(200)]
    budgets = [of_key(key, config) for config in configs]
    assert {(b.thresholds, b.zone.key) for b in budgets if b is not None} == {((), "UTC")}
    assert None not in budgets
