"""``GET /apis/{name}/openapi.json`` and ``GET /apis/openapi.json``: the generated OpenAPI 3.1
documents (apis/openapi.py) of one API and of every API the caller's tenant serves."""

from __future__ import annotations

import re
from collections.abc import Callable

from switchboard.apis import openapi
from switchboard.apis.lifecycle import SERVED
from switchboard.context import Reply, RequestContext, Result
from switchboard.errors import Gone, NotFound
from switchboard.stores import Stores
from switchboard.stores.protocols import ApiRecord, PromptStore, PromptVersion

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


class ApiDocs:
    """The terminal of the documents' chain."""

    def __init__(self, stores: Callable[[], Stores | None]) -> None:
        self._stores = stores

    async def __call__(self, ctx: RequestContext) -> Result:
        stores = self._stores()
        assert stores is not None and stores.apis is not None, "the gateway has started"
        principal = ctx.principal
        tenant = (principal.tenant_id if principal else None) or DEFAULT_TENANT
        prompts = stores.prompts
        server = server_url(ctx.headers)
        if ctx.path == CATALOG_PATH:
            served = []
            if prompts is not None:
                for each in await stores.apis.list_apis(tenant):
                    if each.status in SERVED and (current := await serving(prompts, each)) is not None:
                        served.append((each, current))
            return Reply(openapi.document(served, server, description="Every prompt API of this tenant"))
        match = _DOC_PATH.match(ctx.path)
        name = match.group(1) if match else ""
        found = await stores.apis.get(tenant, name)
        if found is None or found.status == "draft" or prompts is None:
            raise NotFound(f"no API '{name}'", code="api_not_found")
        record = found
        if record.status == "retired":
            then = f"; use '{record.successor}'" if record.successor else ""
            raise Gone(f"the API '{name}' is retired{then}", code="api_retired")
        prompt = await serving(prompts, record)
        if prompt is None:
            raise NotFound(f"the API '{name}' has no version to serve", code="version_not_found")
        return Reply(openapi.one(record, prompt, server))
