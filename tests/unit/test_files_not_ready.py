"""The files and batches API before its stores are open (a request that reaches it while the
gateway is still starting): a 503 the caller may retry, named as every store that cannot be
reached is (``store_unavailable``, with ``Retry-After``), not a code of its own."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from switchboard.config.schema import FilesConfig
from switchboard.context import Principal
from switchboard.errors import GatewayError
from switchboard.http.files.batch_access import BatchAccess
from switchboard.http.files.service import FileService


def _refusal(err: GatewayError) -> tuple[int, str, str, str | None]:
    body = err.to_openai()["error"]
    return err.status, body["type"], body["code"], err.headers.get("retry-after")


def test_files_before_the_database_is_open_are_store_unavailable() -> None:
    service = FileService(FilesConfig(), *cast(Any, (None, None, None, None)))
    with pytest.raises(GatewayError) as refused:
        _ = service.store
    assert _refusal(refused.value) == (503, "api_error", "store_unavailable", "5")
    assert "database" in refused.value.message


async def test_a_batch_of_an_approval_only_model_before_subscriptions_load_is_store_unavailable() -> None:
    routing = SimpleNamespace(current=SimpleNamespace(groups={}))
    gated = SimpleNamespace(target=SimpleNamespace(name="gated", model="gpt-4o", require_approval=True),
                            entry=None)
    access = BatchAccess(cast(Any, routing), 1024)  # subscriptions not handed over yet
    caller = Principal(id="k1", role="developer", allowed_models=("gated",))
    with pytest.raises(GatewayError) as refused:
        await access._allowed(caller, [cast(Any, gated)], "gpt-4o", 1)
    assert _refusal(refused.value) == (503, "api_error", "store_unavailable", "5")
    assert "subscriptions" in refused.value.message
