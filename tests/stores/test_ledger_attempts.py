"""UsageLedger contract for routing: the deployment that answered and every attempt are stored
and read back the same way by ``append`` and ``append_rows``; a row spooled before these
fields existed is replayed with them empty."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from switchboard.spend.ledger import decode_row
from switchboard.stores.protocols import usage_row
from tests.stores.conftest import Backend
from tests.stores.test_ledger import usage

pytestmark = pytest.mark.asyncio(loop_scope="session")

ATTEMPTS = (
    {"deployment": "east", "group": "gpt", "status": 429, "code": "rate_limit_exceeded", "ms": 12},
    {"deployment": "west", "group": "gpt", "status": 200, "code": None, "ms": 340},
)


async def test_the_deployment_and_attempts_are_stored_by_both_paths(backend: Backend) -> None:
    ledger = backend.stores.ledger
    routed = usage("routed", deployment="west", attempts=ATTEMPTS)
    await ledger.append([routed])
    await ledger.append_rows([usage_row(replace(routed, request_id="routed-row", entry_id="routed-row"))])
    await ledger.append_rows([usage_row(usage("plain-row"))])
    assert await ledger.get("tenant-a", "routed") == routed
    assert await ledger.get("tenant-a", "routed-row") == replace(routed, request_id="routed-row",
                                                                 entry_id="routed-row")
    plain = await ledger.get("tenant-a", "plain-row")
    assert plain is not None and plain.deployment is None and plain.attempts is None


async def test_a_row_spooled_before_the_routing_fields_is_read_with_them_empty() -> None:
    row = usage_row(usage("old", deployment="west", attempts=ATTEMPTS))
    old = orjson.dumps(list(row[:24]))  # the first row format: 24 fields
    decoded = decode_row(old)
    assert decoded[:24] == tuple(orjson.loads(old))
    # No entry id then: the request id, the key it was stored under before revision 0042.
    assert decoded[24:] == (0, 0, 0, 0, None, None, None, None, None, "old")
    assert decode_row(orjson.dumps(row)) == tuple(orjson.loads(orjson.dumps(row)))
