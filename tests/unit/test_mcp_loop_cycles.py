"""The tool loop's failures leave no reference cycle: an error kept in a local of a frame its own
traceback holds is a cycle per request, left for the cyclic garbage collector, whose passes stall
the event loop."""

from __future__ import annotations

import gc
from collections.abc import AsyncGenerator

import pytest

from switchboard.context import RequestContext, Result, StreamReply
from switchboard.errors import InternalError
from tests.unit.test_mcp_loop import MCP, FakeToolbox, context, stage


async def _chunks() -> AsyncGenerator[list[dict[str, object]], None]:
    yield [{"choices": [{"delta": {"content": "a"}}]}]


async def _streams(ctx: RequestContext) -> Result:
    """A model step that answers with a stream (which the loop never asks for)."""
    return StreamReply(_chunks())


def _ours(garbage: list[object]) -> list[str]:
    start = len(gc.garbage)
    gc.collect()
    garbage.extend(gc.garbage[start:])
    return [type(o).__qualname__ for o in garbage if type(o).__module__.startswith("switchboard")]


async def test_a_step_that_streams_leaves_no_cycle(garbage: list[object]) -> None:
    loop = stage(FakeToolbox())
    for _ in range(3):
        with pytest.raises(InternalError, match="a step streamed"):
            await loop(context([MCP]), _streams)
    assert _ours(garbage) == []
