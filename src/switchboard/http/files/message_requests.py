"""A message batch's requests (``POST /v1/messages/batches``), checked before anything is sent.

Each request is ``{custom_id, params}``; ``params`` is a Messages API request whose ``model`` is
a model the gateway serves. Every model is checked as a chat request's is in the chain: the key
may use it (its model list), it has an ``anthropic`` deployment inside the key's regions, and the
team's approved subscription where the model needs one. ``params.model`` is then rewritten to
that deployment's own model id (the batch runs upstream as written), and the whole batch goes to
one Anthropic provider: the first request's, which every other request must be served by too.

A batch runs on the gateway's credential, in the provider account every caller shares: a request
naming an object of that account (a Files API ``file`` source, a ``container``) is refused, as
the OpenAI batch path refuses such lines (batch_access.py), unless the provider entry opted in
(``allow_account_objects``).

Each request's ``messages`` are read as a ``POST /v1/messages`` body's are (http/anthropic/
content.py), before anything is sent: what that refuses (base64 that is not, a url source that
is not http(s), a malformed block) is refused here, naming the request's path and custom_id, and
a url source's scheme goes upstream in lower case (``HTTPS://`` -> ``https://``), as a single
request's does.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from switchboard.access.rules import model_allowed
from switchboard.context import Principal
from switchboard.errors import (
    GatewayError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    UnsupportedParameter,
    unraised,
)
from switchboard.http.anthropic.content import Noted, messages
from switchboard.http.files.message_costing import sent_models
from switchboard.http.files.message_upstream import ANTHROPIC
from switchboard.http.openai_api import parse_object
from switchboard.pipeline.usage import ModelUnpriced
from switchboard.routing import prerouting
from switchboard.routing.router import Router
from switchboard.routing.table import Route

MAX_REQUESTS = 100_000  # Anthropic's own bound on a batch
# A batch of this many requests or more is freed in a worker thread once it is done with (release).
RELEASE_IN_THREAD = 1000
_RELEASE_SLICE = 500  # requests freed at a time there: well under a millisecond each
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_FIELDS = frozenset({"requests"})

# ``approved(principal, route)``: 403 unless the caller may use an approval-only model (service).
Approved = Callable[[Principal, Route], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Checked:
    provider: str  # the Anthropic provider entry every request goes to
    requests: list[dict[str, Any]]  # the requests with params.model rewritten
    sent: dict[str, Any]  # what each request was sent for (message_costing.sent_models)


class MessageRequests:
    def __init__(self, router: Router, approved: Approved,
                 unpriced: Callable[[Route], bool] | None = None) -> None:
        self._router = router
        self._approved = approved
        # With spend.refuse_unpriced: whether a deployment's requests would be recorded unpriced.
        self._unpriced = unpriced

    async def check(self, body: bytes, p: Principal) -> Checked:
        """The batch's requests (the raw create body), checked and rewritten; 400/403/404
        (naming the request) else.

        A body may be 32 MiB of up to 100,000 requests: its parse and the per-request checks run
        in a worker thread, not on the event loop that serves every other request meanwhile.
        Only the routing of its distinct models (which may await the subscriptions) runs here.
        The errors are those of one pass over the requests in order: the first bad request's."""
        requests, firsts = await asyncio.to_thread(_parsed, body)
        try:
            routes = await self._routes(p, firsts)
            return await asyncio.to_thread(_checked, requests, routes)
        except Exception:
            await release(requests)  # refused: the parsed batch is not needed any more
            raise

    async def _routes(self, p: Principal, firsts: dict[str, int]) -> dict[str, Route | GatewayError]:
        """The deployment of each model (by the index of its first request), up to the first
        that is refused: that refusal is raised at its request, after the earlier ones' checks."""
        routes: dict[str, Route | GatewayError] = {}
        provider: str | None = None  # the first request's: every other must be served by it
        for model, i in firsts.items():
            try:
                route = await self._route(p, model, i, provider)
            except GatewayError as exc:
                routes[model] = unraised(exc)  # a copy never raised, raised as a copy (_checked)
                break
            routes[model] = route
            provider = route.target.provider
        return routes

    async def _route(self, p: Principal, model: str, i: int, provider: str | None) -> Route:
        """The Anthropic deployment request ``i``'s model runs on (``provider``'s when given)."""
        where, shown = f"requests.{i}.params.model", model[:200]
        if p.allowed_models is not None and not model_allowed(model, p.allowed_models):
            raise PermissionDenied(f"{where}: you may not use the model '{shown}'", param=where,
                                   code="model_not_allowed")
        group = self._router.group(model)
        if group is None:
            raise NotFound(f"{where}: the model '{shown}' does not exist or you do not have access to it",
                           param=where, code="model_not_found")
        anthropic = tuple(r for r in group.deployments if r.target.provider_type == ANTHROPIC)
        if not anthropic:
            raise InvalidRequest(f"{where}: the model '{shown}' has no Anthropic deployment; message batches "
                                 "run only on an 'anthropic' provider (use /v1/batches for OpenAI models)",
                                 param=where, code="unsupported_model")
        placed = prerouting.eligible(anthropic, p.allowed_regions, None)
        if not placed:
            raise prerouting.outside_regions(f"{where}: the model '{shown}'", p.allowed_regions, param=where)
        if provider is not None:
            placed = [r for r in placed if r.target.provider == provider]
            if not placed:
                raise InvalidRequest(f"{where}: the model '{shown}' is not served by the provider of the "
                                     f"batch's first request ('{provider}'); a batch goes to one provider",
                                     param=where, code="invalid_value")
        if group.require_approval:
            try:
                await self._approved(p, placed[0])
            except PermissionDenied as exc:
                raise PermissionDenied(f"{where}: {exc.message}", param=where, code=exc.code) from None
        if self._unpriced is not None:  # as a single call: only a deployment with a price is sent to
            placed = [r for r in placed if not self._unpriced(r)]
            if not placed:
                raise ModelUnpriced(f"{where}: the model '{shown}' has no price; calls to it are refused",
                                    param=where)
        return placed[0]


async def release(requests: list[Any]) -> None:
    """Empty ``requests`` (a batch's, once sent or refused), a large one in a worker thread.

    Freeing a batch's objects (over a million for 100,000 requests) takes 100 ms and more, in
    whichever thread drops the last reference: on the event loop, when the handler returns.
    Emptied in slices in a thread, the loop gets the interpreter back between slices."""
    if len(requests) >= RELEASE_IN_THREAD:
        await asyncio.to_thread(_emptied, requests)


def _emptied(requests: list[Any]) -> None:
    while requests:
        del requests[-_RELEASE_SLICE:]


def _parsed(body: bytes) -> tuple[list[Any], dict[str, int]]:
    """The body's requests (its top level checked) and the index of each model's first request
    (of those naming one). In a worker thread."""
    obj = parse_object(body)
    for name in obj:
        if name not in _FIELDS:
            raise InvalidRequest(f"{str(name)[:100]}: Extra inputs are not permitted",
                                 param=str(name)[:100], code="unknown_parameter")
    requests = obj.get("requests")
    if not isinstance(requests, list):
        raise InvalidRequest("requests: Field required" if requests is None
                             else "requests: Input should be a valid list", param="requests")
    if not requests:
        raise InvalidRequest("requests: List should have at least 1 item", param="requests")
    if len(requests) > MAX_REQUESTS:
        raise InvalidRequest(f"requests: a batch may hold at most {MAX_REQUESTS} requests "
                             f"({len(requests)} given)", param="requests")
    firsts: dict[str, int] = {}
    for i, request in enumerate(requests):
        params = request.get("params") if isinstance(request, dict) else None
        model = params.get("model") if isinstance(params, dict) else None
        if isinstance(model, str) and model:
            firsts.setdefault(model, i)
    return requests, firsts


def _checked(requests: list[Any], routes: dict[str, Route | GatewayError]) -> Checked:
    """Every request checked in order (the first bad one refused) and its model rewritten to
    its deployment's. In a worker thread."""
    seen: set[str] = set()
    sent: list[tuple[str, Route]] = []  # (custom_id, the deployment it runs on) per request
    for i, request in enumerate(requests):
        custom_id, params = _request(request, i, seen)
        # Routed: a model is routed by its first request, which is this one or an earlier one.
        route = routes[params["model"]]
        if isinstance(route, GatewayError):  # refused at its first request, this one
            # A copy: the frames its traceback holds hold the map that keeps it.
            raise unraised(route)
        files = _read_messages(params, f"requests.{i}.params", custom_id)
        if not route.target.own_account:  # providers[].allow_account_objects lifts it
            _check_account_objects(params, f"requests.{i}.params", files)
        # In place (the parsed body is the batch's own): no copy of up to 100,000 requests.
        params["model"] = route.target.model
        sent.append((custom_id, route))
    provider = sent[0][1].target.provider
    return Checked(provider, requests, sent_models(sent))


def _request(request: Any, i: int, seen: set[str]) -> tuple[str, dict[str, Any]]:
    """(custom_id, params) of request ``i``, its shape checked and its custom_id unique."""
    where = f"requests.{i}"
    if not isinstance(request, dict):
        raise InvalidRequest(f"{where}: Input should be an object", param=where)
    for name in request:
        if name not in ("custom_id", "params"):
            raise InvalidRequest(f"{where}.{str(name)[:100]}: Extra inputs are not permitted",
                                 param=f"{where}.{str(name)[:100]}", code="unknown_parameter")
    custom_id, params = request.get("custom_id"), request.get("params")
    if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
        raise InvalidRequest(f"{where}.custom_id: a custom_id is 1 to 64 letters, digits, '_' or '-'",
                             param=f"{where}.custom_id")
    if custom_id in seen:
        raise InvalidRequest(f"{where}.custom_id: the custom_id '{custom_id}' is used more than once; "
                             "each request's custom_id must be unique within the batch",
                             param=f"{where}.custom_id")
    seen.add(custom_id)
    if not isinstance(params, dict):
        raise InvalidRequest(f"{where}.params: Field required" if params is None
                             else f"{where}.params: Input should be an object", param=f"{where}.params")
    model = params.get("model")
    if not isinstance(model, str) or not model:  # worded as on /v1/messages (http/anthropic/request.py)
        raise InvalidRequest(f"{where}.params.model: Field required" if model is None
                             else f"{where}.params.model: Input should be a non-empty string",
                             param=f"{where}.params.model")
    return custom_id, params


def _read_messages(params: dict[str, Any], where: str, custom_id: str) -> list[str]:
    """``params.messages`` read as a /v1/messages body's (the canonical messages are not kept):
    url sources lowered in place, so the batch is sent so; a refusal named under ``where``.
    The paths of its Files API sources (``messages.0.content.1.source.file_id``), in order."""
    found = Noted()
    try:
        messages(params.get("messages"), found)
    except InvalidRequest as exc:
        # The reading names paths within the body (messages.0.content.1.source.data): here that
        # body is the request's params, and a batch's results are matched by custom_id.
        param = f"{where}.{exc.param}" if exc.param else where
        shown = f"{where}.{exc.message}" if exc.param else f"{where}: {exc.message}"
        raise InvalidRequest(f"{shown} (custom_id '{custom_id}')", param=param, code=exc.code) from None
    return found.files


def _check_account_objects(params: dict[str, Any], where: str, files: list[str]) -> None:
    """Refuse what names an object of the provider account the gateway shares: a ``container``,
    and a Files API ``file`` source in a content block or inside a tool result (``files``: their
    paths, as the reading of the messages noted them)."""
    if params.get("container") is not None:
        raise UnsupportedParameter(f"{where}.container: a batch runs on the gateway's credential, in the "
                                   "provider account all its callers share; it may not name a container",
                                   param=f"{where}.container")
    if files:  # the error names the source (a noted path goes on to its file_id)
        path = f"{where}.{files[0].removesuffix('.file_id')}"
        raise UnsupportedParameter(f"{path}: a Files API file lives in the provider account the gateway "
                                   "shares among all its callers; a batch may not name one", param=path)
