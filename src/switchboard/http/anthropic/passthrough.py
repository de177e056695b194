"""Writing a same-dialect reply (pipeline/native.py): the upstream's Message or events as they came.

A complete reply is the upstream's Message object; a stream's chunks each carry one upstream
event's bytes (``providers.base.WIRE``), written in the order they arrived, one write per batch.
A GatewayError mid-stream (the upstream's ``event: error``, a dropped connection) ends the
stream with the API's error event, as a translated stream does.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import orjson

from switchboard.errors import GatewayError
from switchboard.providers.base import WIRE


def message(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)


async def relay(
    batches: AsyncIterator[list[dict[str, Any]]], error_event: Callable[[GatewayError], bytes]
) -> AsyncGenerator[bytes, None]:
    try:
        async for batch in batches:
            data = b"".join(chunk[WIRE] for chunk in batch if WIRE in chunk)
            if data:
                yield data
    except GatewayError as err:
        yield error_event(err)
