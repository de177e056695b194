"""Files named by id inside a model request: only the caller's own.

A chat completion's ``file`` part (``{"type": "file", "file": {"file_id"}}``) and the file ids
of a Responses request (an ``input_file`` / ``input_image`` part's ``file_id``, a tool output's,
a ``code_interpreter`` tool's ``container.file_ids``, a ``shell`` tool's
``environment.file_ids``, an ``image_generation`` tool's ``input_image_mask.file_id``: named.py)
make the upstream read a file of the gateway's own account there, whoever uploaded it.
``/v1/files`` answers another caller's file id 404 as if it did not exist (docs/api-files.md); a
request naming one is refused the same way, before anything is sent. Requests that name no file
(nearly all) cost a walk over their content parts and no read; each named file is one
primary-key read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from switchboard.context import LARGE_BODY_BYTES, RequestContext, Result
from switchboard.errors import InvalidRequest
from switchboard.http.files.named import chat_files, responses_files
from switchboard.http.files.service import FileService
from switchboard.pipeline.chain import Handler

MAX_NAMED = 64  # distinct file ids one request may name (each is a read)


class FileReferenceStage:
    """After decoding: every file id the request names is the caller's, else 404 ``not_found``.
    ``raw_body``: the Responses request as the client sent it (its input parts and tools reach a
    native deployment as written, not through the canonical messages)."""

    name = "file_references"

    def __init__(self, files: FileService,
                 raw_body: Callable[[RequestContext], Any] | None = None) -> None:
        self._files = files
        self._raw_body = raw_body

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        # The walk over a large request's parts (thousands of messages) runs in a worker thread,
        # not on the event loop; a small one's stays inline (no thread hop on the common path).
        if len(ctx.body) <= LARGE_BODY_BYTES:
            named = self._named(ctx)
        else:
            named = await asyncio.to_thread(self._named, ctx)
        if named:
            await self._check(ctx, named)
        return await call_next(ctx)

    def _named(self, ctx: RequestContext) -> list[tuple[str, str]]:
        """The file ids the request names, with the parameter naming each."""
        named = chat_files(ctx.request.get("messages"))
        if self._raw_body is not None:
            named += responses_files(self._raw_body(ctx))
        return named

    async def _check(self, ctx: RequestContext, named: list[tuple[str, str]]) -> None:
        assert ctx.principal is not None  # after authentication
        seen: set[str] = set()
        for file_id, param in named:
            if not isinstance(file_id, str):
                continue  # the request's own validation names a wrong type
            if file_id not in seen:
                if len(seen) == MAX_NAMED:
                    raise InvalidRequest(f"a request may name at most {MAX_NAMED} files", param=param,
                                         code="invalid_value")
                seen.add(file_id)
                await self._files.check_owned(file_id, ctx.principal, param)
