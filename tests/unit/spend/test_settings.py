"""The ``spend`` settings: defaults, and bad values refused at load time with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.config.schema import Settings
from switchboard.settings.loader import ConfigError, load

BASE = "auth: {master_key: 12345678}\n"


def _load(tmp_path: Path, spend: str) -> Settings:
    path = tmp_path / "switchboard.yaml"
    path.write_text(BASE + spend)
    return load(path)


def test_defaults_and_a_valid_section(tmp_path: Path) -> None:
    d = _load(tmp_path, "").spend
    assert (d.refuse_unpriced, d.spool_max_bytes, d.flush_seconds) == (False, 256 * 2**20, 0.5)
    text = "spend: {refuse_unpriced: true, spool_max_bytes: 2097152, flush_seconds: 0.1}\n"
    custom = _load(tmp_path, text).spend
    assert (custom.refuse_unpriced, custom.spool_max_bytes, custom.flush_seconds) == (True, 2097152, 0.1)


@pytest.mark.parametrize(("spend", "key"), [
    ("spend: {refuse_unpriced: maybe}", "spend.refuse_unpriced"),
    ("spend: {spool_max_bytes: 10}", "spend.spool_max_bytes"),
    ("spend: {spool_max_bytes: -1}", "spend.spool_max_bytes"),
    ("spend: {flush_seconds: 0}", "spend.flush_seconds"),
    ("spend: {flush_seconds: 3600}", "spend.flush_seconds"),
    ("spend: {flush_batch: 0}", "spend.flush_batch"),
    ("spend: {flush_batch: many}", "spend.flush_batch"),
    ("spend: {spool: /tmp/x}", "spend.spool"),
])
def test_bad_values_are_refused_naming_the_key(tmp_path: Path, spend: str, key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        _load(tmp_path, spend + "\n")
    assert any(p.startswith(f"{key}:") for p in exc.value.problems), exc.value.problems
