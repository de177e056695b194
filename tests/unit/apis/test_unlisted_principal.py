"""A prompt API call drops the key's model list from its caller (http/apis/stages.py): the
copy is one object per key record, so the memos that compare callers by identity (rate-limit
plans, budgets in force, services) keep what they worked out across calls."""

from __future__ import annotations

from dataclasses import replace

from switchboard.context import Principal
from switchboard.http.apis.stages import Unlisted


def test_the_same_key_record_gets_the_same_copy_without_its_model_list() -> None:
    unlisted = Unlisted()
    key = Principal(id="key-1", role="developer", key_id="key-1", tenant_id="t", allowed_models=("gpt-4o",))
    first = unlisted(key)
    assert first.allowed_models is None and replace(first, allowed_models=key.allowed_models) == key
    assert unlisted(key) is first
    # Another key is its own; a changed record of the key (a new object) gets a new copy.
    other = replace(key, id="key-2", key_id="key-2")
    assert unlisted(other) is not first and unlisted(other).id == "key-2"
    changed = replace(key, allowed_models=("gpt-4o", "claude"), rpm_limit=5)
    again = unlisted(changed)
    assert again is not first and (again.allowed_models, again.rpm_limit) == (None, 5)
    assert unlisted(changed) is again


def test_the_copies_are_bounded() -> None:
    unlisted = Unlisted()
    for i in range(Unlisted.MAX + 5):
        unlisted(Principal(id=f"key-{i}", allowed_models=("m",)))
    assert len(unlisted._copies) <= Unlisted.MAX
