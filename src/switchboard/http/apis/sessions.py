"""The session step of a prompt API call (``x-switchboard-session``; apis/sessions.py).

Right after :class:`~switchboard.http.apis.stages.ApiStage` rendered the prompt: for an API
that keeps sessions, the caller's stored turns of the session go between the prompt's system
messages and the new user turn, trimmed to the model's context window; once the reply has been
complete (a complete reply, or a stream that ran to its end) the new turn and the reply are
appended, before the reply (or the stream's last event) is written: a caller's next turn,
sent as soon as this answer arrived, finds it. The response carries ``x-switchboard-session`` and
``x-switchboard-session-turns`` (how many stored turns the model saw).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from contextlib import aclosing
from typing import Any

from switchboard import tokens
from switchboard.apis.sessions import (
    HEADER,
    Message,
    SessionBook,
    SessionPolicy,
    counter,
    fit,
    room,
    session_id,
    split_system,
)
from switchboard.context import Chunk, Reply, RequestContext, Result, StreamReply
from switchboard.errors import InvalidRequest
from switchboard.http.apis.call import ApiCalls, reply_text
from switchboard.pipeline.chain import Handler
from switchboard.routing.router import Router
from switchboard.stores.unavailable import OutageLog

log = logging.getLogger("switchboard.apis.sessions")

TURNS_HEADER = "x-switchboard-session-turns"
# A reply longer than this is not kept in the session (its turn is dropped).
MAX_REPLY_CHARS = 4 * 1024 * 1024


def _max_output(request: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = request.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


class SessionStage:
    name = "api_session"

    def __init__(self, calls: ApiCalls, book: SessionBook, router: Router,
                 targets: Callable[[str], Iterable[str]] | None = None) -> None:
        self._calls = calls
        self._book = book
        self._router = router
        # The groups a model name may be routed to (pipeline/rules.py): this stage runs before the
        # routing rules, so a rule's, split's or semantic router's name is trimmed for all of them.
        self._targets = targets
        # The database or Redis out of reach: one warning for the outage, not a traceback a turn.
        self._outage = OutageLog(log, "storing session turns")

    def _window(self, model: str) -> tuple[int | None, str]:
        """The smallest context window of the groups ``model`` may be routed to (None: unknown),
        and the upstream model id tokens are counted for (that of the group of that window)."""
        windows = self._router.windows
        found: list[tuple[int | None, str]] = []
        for name in (self._targets(model) if self._targets is not None else (model,)):
            group = self._router.group(name)
            if group is not None and group.deployments:
                size = windows.smallest(group) if windows is not None else None
                found.append((size, group.deployments[0].target.model))
        known = [(size, upstream) for size, upstream in found if size is not None]
        if known:
            return min(known)
        return found[0] if found else (None, model)

    @staticmethod
    def _trim(request: dict[str, Any], turns: list[list[Message]], window: int | None, upstream: str,
              max_output: int | None) -> tuple[list[Message], int]:
        """(the messages with the turns that fit, how many turns that is); counting tokens. The
        new turn is counted with the rest of the request (tools, response format)."""
        system, new = split_system(request["messages"])
        count = counter(upstream)
        fixed = tokens.estimate({**request, "messages": new}, "chat", model=upstream)
        kept = fit(system, turns, room(window, fixed, max_output), count)
        return [*system, *(m for turn in kept for m in turn), *new], len(kept)

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        sid = session_id(ctx.headers)
        call = self._calls.get(ctx)
        if sid is None or call is None:
            return await call_next(ctx)
        try:
            policy = SessionPolicy.parse(call.record.sessions)
        except ValueError:
            policy = SessionPolicy()
        if policy is None:
            raise InvalidRequest(f"the API '{call.record.name}' does not keep sessions: send no {HEADER}",
                                 param=HEADER, code="sessions_not_enabled")
        api = call.record.name
        turns = await self._book.load(ctx.principal, api, sid)
        messages = list(ctx.request["messages"])
        _, new = split_system(messages)
        if turns:
            window, upstream = self._window(str(ctx.request.get("model")))
            messages, used = await asyncio.to_thread(
                self._trim, ctx.request, turns, window, upstream, _max_output(ctx.request))
            ctx.request["messages"] = messages
            ctx.expanded = True
        else:
            used = 0
        ctx.response_headers[HEADER] = sid
        ctx.response_headers[TURNS_HEADER] = str(used)
        result = await call_next(ctx)
        if isinstance(result, Reply):
            await self._keep(ctx, api, sid, [*new, _reply(reply_text(result.body))], policy)
            return result
        if isinstance(result, StreamReply):
            return StreamReply(self._relay(ctx, result, api, sid, new, policy), close=result.aclose,
                               native=result.native)
        return result

    async def _keep(self, ctx: RequestContext, api: str, sid: str, turn: Sequence[Message],
                    policy: SessionPolicy) -> None:
        """Append the turn before the reply is written (or a stream's last event), so the
        caller's next turn, sent as soon as this one's answer arrives, finds it. A turn that
        cannot be stored is logged: the answer is not lost for it."""
        if len(str(turn[-1].get("content") or "")) > MAX_REPLY_CHARS:
            log.warning("session turn of API %r not stored: the reply is too long", api)
            return
        try:
            await self._book.append(ctx.principal, api, sid, turn, policy)
        except Exception as exc:
            self._outage.failed(exc, f" (API {api!r}); the answers are served, their turns not kept")
            return
        self._outage.succeeded()

    async def _relay(self, ctx: RequestContext, inner: StreamReply, api: str, sid: str,
                     new: list[Message], policy: SessionPolicy) -> AsyncGenerator[list[Chunk], None]:
        """The stream as it is, its text gathered; stored once the stream ran to its end."""
        parts: list[str] = []
        size = 0
        async with aclosing(inner.chunks) as source:
            async for batch in source:
                for chunk in batch:
                    for choice in chunk.get("choices") or ():
                        text = (choice.get("delta") or {}).get("content")
                        if isinstance(text, str) and size <= MAX_REPLY_CHARS:
                            parts.append(text)
                            size += len(text)
                yield batch
        await self._keep(ctx, api, sid, [*new, _reply("".join(parts))], policy)


def _reply(text: str) -> Message:
    return {"role": "assistant", "content": text}
