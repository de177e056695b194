"""A batch the upstream has created but the gateway could not record (the database refused the
row or could not be reached): nobody could see, cancel or price it, yet it would run and cost
money. It is cancelled upstream (best effort, logged) and the caller is told so in a 503 it may
retry, rather than a bare error about a batch that exists.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from switchboard.http.errors import StoreUnavailable
from switchboard.http.files.upstream import Upstream

log = logging.getLogger("switchboard.files")


@contextlib.asynccontextmanager
async def cancelled_unless_recorded(upstream: Upstream, what: str, object_id: str, cancel_path: str,
                                    forget: Callable[[], Awaitable[None]] | None = None,
                                    ) -> AsyncIterator[None]:
    """Run the block that records ``object_id`` (a ``what`` just created on ``upstream``); if it
    fails, cancel the object at ``cancel_path``, drop what was recorded of it (``forget``,
    best effort) and raise a 503 saying what became of it."""
    try:
        yield
    except Exception as exc:
        where = f"provider '{upstream.provider}'"
        log.warning("%s %s: created at %s but could not be recorded (%s: %s); cancelling it there",
                    what, object_id, where, type(exc).__name__, exc)
        try:
            await upstream.call("POST", cancel_path)
        except Exception as failed:
            log.error("%s %s: could not be cancelled at %s (%s: %s): it may run unrecorded", what, object_id,
                      where, type(failed).__name__, failed)
            outcome = (f"{where} created it ({object_id}) and cancelling it there failed, so it may still "
                       "run; it is not recorded here")
        else:
            outcome = f"it was cancelled at {where} ({object_id}) so that it does not run"
        if forget is not None:
            with contextlib.suppress(Exception):  # nothing is read of it without its own record
                await forget()
        raise StoreUnavailable(f"the {what} could not be recorded (the database is unavailable); {outcome}. "
                               "Try again shortly") from exc
