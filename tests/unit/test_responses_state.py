"""Stored responses: written after the response, held in memory until then, owned by their
caller, bounded in size, purged when expired."""

from __future__ import annotations

from datetime import datetime

import pytest

from switchboard.config.schema import ResponsesConfig
from switchboard.context import Principal, RequestContext
from switchboard.errors import InvalidRequest
from switchboard.http.openai_api import CHAT
from switchboard.http.responses.request import translate
from switchboard.http.responses.state import Responses
from switchboard.stores.protocols import StoredResponse


class FakeStore:
    def __init__(self) -> None:
        self.rows: dict[str, StoredResponse] = {}
        self.expired = 0

    async def put(self, record: StoredResponse) -> None:
        self.rows[record.id] = record

    async def get(self, response_id: str) -> StoredResponse | None:
        return self.rows.get(response_id)

    async def delete(self, response_id: str) -> bool:
        return self.rows.pop(response_id, None) is not None

    async def purge(self, now: datetime, limit: int = 1000) -> int:
        deleted, self.expired = min(self.expired, limit), max(0, self.expired - limit)
        return deleted


def _ctx(principal: Principal) -> RequestContext:
    return RequestContext("rid", "chat", CHAT, {}, b"", 0.0, principal=principal)


ALICE = Principal(id="k1", role="developer", key_id="k1", tenant_id="t1")
BOB = Principal(id="k2", role="developer", key_id="k2", tenant_id="t1")
OUTPUT = [{"type": "message", "content": [{"type": "output_text", "text": "hi there"}]}]


async def _answered(responses: Responses, principal: Principal, body: dict[str, object]) -> str:
    ctx = _ctx(principal)
    translated = translate(body)
    ctx.request = translated.request
    call = responses.begin(ctx, translated)
    await responses.history(ctx)
    responses.complete(ctx, {"id": call.id, "output": OUTPUT})
    held = await responses.find(call.id, principal)  # held in memory until written
    assert (held is not None) == (body.get("store") is not False)
    if (waits := ctx.run_after_response()) is not None:  # None: no callback waited
        await waits
    assert call.id not in responses.pending
    return call.id


async def test_written_after_the_response_and_owned() -> None:
    store = FakeStore()
    responses = Responses(ResponsesConfig(), lambda: store)
    first = await _answered(responses, ALICE, {"model": "m", "input": "hello"})
    record = store.rows[first]
    assert (record.tenant_id, record.owner) == ("t1", "k1")
    assert record.conversation == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi there"},
    ]
    assert await responses.find(first, BOB) is None
    second = await _answered(
        responses, ALICE, {"model": "m", "input": "again", "previous_response_id": first}
    )
    assert [m["content"] for m in store.rows[second].conversation] == [
        "hello",
        "hi there",
        "again",
        "hi there",
    ]
    ctx = _ctx(BOB)
    translated = translate({"model": "m", "input": "x", "previous_response_id": first})
    ctx.request = translated.request
    responses.begin(ctx, translated)
    with pytest.raises(InvalidRequest) as info:
        await responses.history(ctx)
    assert info.value.code == "previous_response_not_found"


async def test_store_false_and_oversized_are_not_kept() -> None:
    store = FakeStore()
    responses = Responses(ResponsesConfig(max_stored_bytes=1024), lambda: store)
    await _answered(responses, ALICE, {"model": "m", "input": "hello", "store": False})
    await _answered(responses, ALICE, {"model": "m", "input": "x" * 2000})
    assert store.rows == {}


async def test_purge_runs_until_nothing_is_left() -> None:
    store = FakeStore()
    store.expired = 2500
    responses = Responses(ResponsesConfig(), lambda: store)
    assert await responses.purge_once() == 2500
    assert await responses.purge_once() == 0


def test_input_items_validate_against_the_openai_sdk_types() -> None:
    import typing

    from openai.types.responses import ResponseItem

    from switchboard.http.responses.state import _items

    members = typing.get_args(typing.get_args(ResponseItem)[0])
    translated = translate(
        {
            "model": "m",
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "a"},
                        {"type": "input_image", "image_url": "http://x"},
                    ],
                },
                {"role": "assistant", "content": "yo"},
                {"role": "developer", "content": "d"},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c", "output": "1"},
            ],
        }
    )
    items = _items(translated.items)
    assert len({item["id"] for item in items}) == 5
    for item in items:
        candidates = [
            m for m in members if typing.get_args(m.model_fields["type"].annotation)[0] == item["type"]
        ]
        errors = []
        for model in candidates:
            try:
                model.model_validate(item)
                break
            except ValueError as exc:
                errors.append(exc)
        else:
            raise AssertionError(errors)
