"""``GET /apis/{name}/openapi.json`` and ``GET /apis/openapi.json``: the generated OpenAPI 3.1
documents (apis/openapi.py) of one API and of every API the caller's tenant serves.

Any key of the tenant may fetch them, and building one reads the store (the catalog: the
tenant's APIs, then the prompt version each serves). So each document is built once per
(tenant, API name; "" for the catalog) and kept in process memory (:class:`DocumentCache`) until
a change to the tenant's APIs (topic ``apis``, apis/cache.py) or prompts (topic ``prompts``,
prompts/cache.py: a moved label changes what an API serves) arrives on the change feed, which
drops every document of that tenant on every instance; entries also expire after
``apis.cache_seconds``, the bound on staleness when a message is lost. A flood of requests for
them costs no database query. A document is built without its ``servers`` (the URL each caller
used), filled in per request.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from switchboard.apis import openapi
from switchboard.apis.cache import TOPIC as APIS_TOPIC
from switchboard.apis.lifecycle import SERVED
from switchboard.context import Reply, RequestContext, Result
from switchboard.errors import GatewayError, Gone, NotFound
from switchboard.prompts.cache import TOPIC as PROMPTS_TOPIC
from switchboard.stores.feedcache import ALL, STORE_READ_SECONDS, FeedCache
from switchboard.stores.protocols import ApiRecord, ApiStore, ChangeFeed, PromptStore, PromptVersion

DEFAULT_TENANT = "default"
CATALOG_PATH = "/apis/openapi.json"
_DOC_PATH = re.compile(r"^/apis/([A-Za-z0-9][A-Za-z0-9_.-]{0,127})/openapi\.json$")
_HOST = re.compile(r"^[A-Za-z0-9.\-]{1,253}(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?$")


def is_docs_path(path: str) -> bool:
    return path == CATALOG_PATH or _DOC_PATH.match(path) is not None


def server_url(headers: dict[str, str]) -> str:
    """The gateway's URL as the caller reached it (its Host header; X-Forwarded-Proto when a
    proxy set it), for the document's ``servers``; a malformed host reads as localhost."""
    host = headers.get("host", "")
    if not _HOST.match(host):
        host = "localhost"
    proto = headers.get("x-forwarded-proto", "http").split(",")[0].strip().lower()
    return f"{'https' if proto == 'https' else 'http'}://{host}"


async def serving(prompts: PromptStore, record: ApiRecord) -> PromptVersion | None:
    """The prompt version the API serves now (a split: its first arm's)."""
    if record.split:
        return await prompts.get(record.tenant_id, record.prompt, version=int(record.split[0]["version"]))
    return await prompts.get(record.tenant_id, record.prompt, version=record.version, label=record.label)


CATALOG = ""  # the key's name for the catalog document: no API is named "" (nor "openapi.json")
_SEP = "\x1f"  # both topics' messages are "<tenant>\x1f<name>"

Key = tuple[str, str]  # tenant, API name (CATALOG: every API of the tenant)


@dataclass(frozen=True, slots=True)
class Document:
    """A built document, or why there is none (kept as its parts: an exception instance raised
    again and again would grow its traceback)."""

    body: dict[str, Any] | None = None
    refusal: tuple[type[GatewayError], str, str] | None = None  # (class, message, code)

    def answer(self, server_url: str) -> dict[str, Any]:
        """The document with the caller's URL as its server, else the refusal raised."""
        if self.body is None:
            assert self.refusal is not None
            kind, message, code = self.refusal
            raise kind(message, code=code)
        return {**self.body, "servers": [{"url": server_url}]}  # the key keeps its place


def _not_found(message: str, code: str) -> Document:
    return Document(refusal=(NotFound, message, code))


async def build(apis: ApiStore, prompts: PromptStore | None, key: Key) -> Document:
    """The document ``key`` names, read from the stores."""
    tenant, name = key
    if name == CATALOG:
        served = []
        if prompts is not None:
            for each in await apis.list_apis(tenant):
                if each.status in SERVED and (current := await serving(prompts, each)) is not None:
                    served.append((each, current))
        return Document(openapi.document(served, "", description="Every prompt API of this tenant"))
    record = await apis.get(tenant, name)
    if record is None or record.status == "draft" or prompts is None:
        return _not_found(f"no API '{name}'", "api_not_found")
    if record.status == "retired":
        then = f"; use '{record.successor}'" if record.successor else ""
        return Document(refusal=(Gone, f"the API '{name}' is retired{then}", "api_retired"))
    prompt = await serving(prompts, record)
    if prompt is None:
        return _not_found(f"the API '{name}' has no version to serve", "version_not_found")
    return Document(openapi.one(record, prompt, ""))


class DocumentCache(FeedCache[Key, Document]):
    """Built documents by (tenant, API name), dropped per tenant by the change feed."""

    def __init__(
        self,
        apis: ApiStore,
        prompts: PromptStore | None,
        feed: ChangeFeed,
        *,
        ttl: float = 10.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        async def load(key: Key) -> Document:
            return await build(apis, prompts, key)

        super().__init__(
            APIS_TOPIC, load, feed, encode=lambda key: f"{key[0]}{_SEP}{key[1]}",
            decode=lambda message: None, ttl=ttl, max_entries=max_entries, clock=clock,
            also=(PROMPTS_TOPIC,), read_timeout=STORE_READ_SECONDS,
        )

    def drop(self, message: str) -> None:
        """Forget every document of the tenant a message names (``ALL`` or unknown: all)."""
        parts = message.split(_SEP)
        if message == ALL or len(parts) != 2:
            super().drop(ALL)
            return
        self.drop_where(lambda key: key[0] == parts[0])

    async def document(self, tenant_id: str, name: str, server_url: str) -> dict[str, Any]:
        """The document of the tenant's API ``name`` (CATALOG: of all its APIs), for a caller
        that reached the gateway at ``server_url``; raises 404/410 as the API's state says."""
        found = await self.get((tenant_id, name))
        assert found is not None  # the loader always answers a Document
        return found.answer(server_url)


class ApiDocs:
    """The terminal of the documents' chain."""

    def __init__(self, documents: Callable[[], DocumentCache | None]) -> None:
        self._documents = documents

    async def __call__(self, ctx: RequestContext) -> Result:
        documents = self._documents()
        assert documents is not None, "the gateway has started"
        principal = ctx.principal
        tenant = (principal.tenant_id if principal else None) or DEFAULT_TENANT
        if ctx.path == CATALOG_PATH:
            name = CATALOG
        else:
            match = _DOC_PATH.match(ctx.path)
            name = match.group(1) if match else ""
            if not name:  # not routed here (is_docs_path)
                raise NotFound(f"no API '{name}'", code="api_not_found")
        return Reply(await documents.document(tenant, name, server_url(ctx.headers)))
