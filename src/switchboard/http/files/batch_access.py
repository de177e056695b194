"""What a batch's lines may name: models the caller may use, files that are the caller's.

A batch's lines go upstream as written, each naming the provider's own model id, so the model
access a chat request gets from the chain (the key's model list, its regions, subscription
approval) is checked here instead: when a caller's access is scoped, every line of the input
file is read once when the batch is created, and a line asking for a model the caller may not
use refuses the whole batch (403, naming the line).

A line's ``body.model`` is matched as the pricer matches it (``costing.BatchPricer.info``): the
deployments of this provider whose upstream id it is; it is allowed when the caller may use one
of those deployments' served models. An upstream id that no served model names is allowed only
to an unscoped caller.

The files a line names (a chat ``file`` part; a Responses ``input_file`` or ``input_image``
with a ``file_id``, a tool output's, a ``code_interpreter`` tool's ``container.file_ids``, a
``shell`` tool's ``environment.file_ids``, an ``image_generation`` tool's
``input_image_mask.file_id``: named.py) would be read by the
upstream from the gateway's own account, whoever uploaded them: they must be the caller's own,
as for a single request (references.py), else the batch is refused (404, naming the line). Each
distinct file is one read: a line may name at most 64, a batch at most 1,000 (400). A Responses
line may not name a conversation, prompt, vector store, container, skill or stored item either: a
batch runs on the gateway's credential, in the provider account every caller shares (400,
naming the line; http/responses/request.py, ``account_object``), unless the provider entry sets
``allow_account_objects`` (every caller may name what its account holds). So the input file is read for
every caller; only a line that can name such a thing (its bytes hold one of the keys, or a JSON
escape that could spell one) is parsed for that.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from switchboard.access.roles import PLATFORM_ADMIN
from switchboard.access.rules import model_allowed
from switchboard.access.subscriptions import SubscriptionCache
from switchboard.context import Principal
from switchboard.errors import InvalidRequest, NotFound, PermissionDenied, UnsupportedParameter
from switchboard.http.errors import StoreUnavailable
from switchboard.http.files.costing import OutputTooLarge, lines, sent_models
from switchboard.http.files.named import chat_files, responses_files
from switchboard.http.files.upstream import Upstream, object_path
from switchboard.http.responses.request import account_object
from switchboard.pipeline.subscription import require_approved
from switchboard.pipeline.usage import ModelUnpriced
from switchboard.routing.live import LiveRouting
from switchboard.routing.prerouting import in_regions
from switchboard.routing.table import Route

PARAM = "input_file_id"
RESPONSES = "/v1/responses"
# Keys whose presence makes a line worth parsing for what it names (escaped keys: ``\\u``).
_NAMING_KEYS = (b"file_id", b"\\u")
_ACCOUNT_KEYS = (b'"conversation"', b'"prompt"', b'"vector_store_ids"', b'"container"', b'"environment"',
                 b'"item_reference"', b'"previous_response_id"')
MAX_NAMED = 64  # distinct file ids one line may name, as one request (references.py)
MAX_BATCH_NAMED = 1_000  # distinct file ids all the lines of one batch may name (each is a read)
# Lines whose models an Azure batch notes (Azure's own bound on the requests of a batch file).
MAX_NOTED_LINES = 100_000

# ``check_owned(file_id, principal, param)``: 404 unless the file is the caller's (service.py).
OwnsFile = Callable[[str, Principal, str], Awaitable[None]]
# ``unpriced(provider, provider_type, model)``: the batch's record would not price it (costing.py).
Unpriced = Callable[[str, str, str], bool]


class BatchAccess:
    def __init__(self, routing: LiveRouting, max_bytes: int, unpriced: Unpriced | None = None) -> None:
        self._routing = routing
        self._max_bytes = max_bytes  # the input file is at most an upload's size
        self._subscriptions: Callable[[], SubscriptionCache | None] = lambda: None
        # With spend.refuse_unpriced: every line's model must have a price, for every caller.
        self._unpriced = unpriced

    def use(self, subscriptions: Callable[[], SubscriptionCache | None]) -> None:
        self._subscriptions = subscriptions  # built when the stores open

    def scoped(self, p: Principal, routes: list[Route]) -> bool:
        """Whether ``p`` may not use every model of this provider's deployments (``routes``)."""
        if not _unscoped(p):
            return True
        return p.role != PLATFORM_ADMIN and any(self._gated(r) for r in routes)

    def _gated(self, route: Route) -> bool:
        """Whether ``route``'s model needs approval: its group's answer, as for a chat call."""
        group = self._routing.current.groups.get(route.target.name)
        return group.require_approval if group is not None else route.target.require_approval

    async def check(self, p: Principal, upstream: Upstream, file_id: str, endpoint: str,
                    owns: OwnsFile, note: bool = False) -> dict[str, Any] | None:
        """Refuse (400/403/404, naming the line) an input file with a line ``p`` may not run.
        ``note``: also return what each line's model is (costing.sent_models), None when the
        lines are more than MAX_NOTED_LINES."""
        routes = [r for r in self._routing.all_routes() if r.target.provider == upstream.provider]
        scoped = self.scoped(p, routes)
        models = scoped or self._unpriced is not None  # every line's model is checked
        decided: dict[str, None] = {}  # upstream ids already allowed: most lines repeat one
        named: dict[str, tuple[int, str]] = {}  # file id -> where it is first named (line, path)
        # A provider entry with allow_account_objects lets every caller name its account's objects.
        objects = endpoint == RESPONSES and not upstream.account_objects
        sent: list[tuple[str, str]] | None = [] if note else None  # (custom_id, model) per line
        stream = await upstream.open(object_path("files", file_id, "/content"))
        try:
            number = 0
            async for line in lines(stream.chunks(), self._max_bytes):
                number += 1
                if not models and not _may_name(line, objects):
                    if sent is not None:  # noted only: a line the upstream refuses is not refused here
                        sent = _noted(sent, *_loose(line))
                    continue  # nothing to check
                custom_id, body = _request_of(line, number, endpoint)
                if sent is not None:
                    sent = _noted(sent, custom_id, body.get("model"))
                if models:
                    model = _model_of(body, number)
                    if model not in decided:
                        if scoped:
                            await self._allowed(p, routes, model, number)
                        self._priced(upstream, model, number)
                        decided[model] = None
                if objects:
                    _check_account_objects(body, number)
                _collect_files(body, number, named)
        except OutputTooLarge as exc:
            raise InvalidRequest(f"the input file cannot be checked: {exc}", param=PARAM,
                                 code="invalid_value") from None
        finally:
            await stream.close()
        await _check_files(p, named, owns)
        return sent_models(sent) if sent else None

    async def _allowed(self, p: Principal, routes: list[Route], model: str, number: int) -> None:
        serving = [r for r in routes if r.target.model == model]
        shown = model[:200]
        if not serving:
            if _unscoped(p):
                return  # only approval-only models are held back from such a caller
            raise PermissionDenied(f"line {number} of the input file asks for the model '{shown}', "
                                   f"which you may not use{self._hint(p, routes, model)}", param=PARAM,
                                   code="model_not_allowed")
        usable = [r for r in serving if model_allowed(r.target.name, p.allowed_models)]
        if not usable:
            raise PermissionDenied(f"line {number} of the input file asks for the model '{shown}', "
                                   "which you may not use", param=PARAM, code="model_not_allowed")
        placed = [r for r in usable if in_regions(r, p.allowed_regions)]
        if not placed:
            raise PermissionDenied(f"line {number} of the input file asks for the model '{shown}', which "
                                   "cannot be served in the regions this key is allowed", param=PARAM,
                                   code="region_not_allowed")
        if any(not self._gated(r) for r in placed):
            return
        cache = self._subscriptions()
        if cache is None:
            raise StoreUnavailable("subscriptions are not loaded yet; try again shortly")
        refusal: PermissionDenied | None = None
        for route in placed:
            try:
                await require_approved(cache, p, route.target.name, f"the model '{route.target.name}'")
                return
            except PermissionDenied as exc:
                refusal = refusal or exc
        assert refusal is not None
        raise PermissionDenied(f"line {number} of the input file: {refusal.message}", param=PARAM,
                               code=refusal.code)

    def _priced(self, upstream: Upstream, model: str, number: int) -> None:
        """400 ``model_unpriced`` for a line whose model the batch's record could not price,
        with ``spend.refuse_unpriced``: as a single call to it is refused (pipeline/usage.py)."""
        if self._unpriced is not None and self._unpriced(upstream.provider, upstream.type, model):
            raise ModelUnpriced(f"line {number} of the input file asks for the model '{model[:200]}', which "
                                "has no price; calls to it are refused", param=PARAM)

    @staticmethod
    def _hint(p: Principal, routes: list[Route], model: str) -> str:
        """A served model's name in place of its upstream id: the upstream id is what runs."""
        for r in routes:
            if r.target.name == model and model_allowed(model, p.allowed_models):
                return f" (a batch line names the upstream model: '{r.target.model[:200]}')"
        return ""


def _unscoped(p: Principal) -> bool:
    """Every model anywhere: no model list (or ``*`` in it), no regions."""
    models = p.allowed_models
    return (models is None or "*" in models) and p.allowed_regions is None


def _may_name(line: bytes, objects: bool) -> bool:
    """Whether a line can name a file (the key ``file_id``, written as it is or with a ``\\u``
    escape: no other JSON escape stands for a letter or ``_``) or, when ``objects`` (a Responses
    line on a provider that did not opt in), an object of the provider account. Most lines cannot
    and are not parsed for it."""
    if any(key in line for key in _NAMING_KEYS):
        return True
    return objects and any(key in line for key in _ACCOUNT_KEYS)


def _check_account_objects(body: dict[str, Any], number: int) -> None:
    """A batch runs on the gateway's own credential, in the account every caller shares: a
    Responses line may not name a conversation, prompt or vector store there (by id, another
    caller's as well), nor a stored response (``previous_response_id``), as a single request
    may not without the caller's credential."""
    found = account_object(body)
    if found is None and body.get("previous_response_id") is not None:
        # A single request's previous_response_id is the gateway's own state (never sent on); a
        # line's reaches the upstream, naming a response stored there: anyone's, as an item is.
        found = "previous_response_id", "a stored response"
    if found is not None:
        param, what = found
        raise UnsupportedParameter(
            f"line {number} of the input file: '{param}' names {what} of the provider account the "
            "gateway shares among all its callers, which it neither creates nor keeps apart per "
            "caller; a batch runs on the gateway's credential, so its lines may not use it",
            param=PARAM)


def _collect_files(body: dict[str, Any], number: int, named: dict[str, tuple[int, str]]) -> None:
    """Add the file ids a line's body names to ``named`` (where each is first named). Bounded
    before any is read: at most MAX_NAMED per line, MAX_BATCH_NAMED in the whole batch (400)."""
    found = [*chat_files(body.get("messages")), *responses_files(body)]
    if len({file_id for file_id, _ in found if isinstance(file_id, str)}) > MAX_NAMED:
        raise InvalidRequest(f"line {number} of the input file names more than {MAX_NAMED} files",
                             param=PARAM, code="invalid_value")
    for file_id, where in found:
        if not isinstance(file_id, str) or file_id in named:
            continue  # not an id: the upstream refuses the line, no file is read
        if len(named) == MAX_BATCH_NAMED:
            raise InvalidRequest(f"line {number} of the input file: the lines of a batch may name at most "
                                 f"{MAX_BATCH_NAMED} distinct files", param=PARAM, code="invalid_value")
        named[file_id] = (number, where)


async def _check_files(p: Principal, named: dict[str, tuple[int, str]], owns: OwnsFile) -> None:
    """404 naming the line and path unless every file the lines name is the caller's: one read
    of each distinct file, in the order the lines name them."""
    for file_id, (number, where) in named.items():
        try:
            await owns(file_id, p, PARAM)
        except NotFound as exc:
            raise NotFound(f"line {number} of the input file ({where}): {exc.message}", param=PARAM,
                           code="not_found") from None


def _noted(sent: list[tuple[str, str]], custom_id: Any, model: Any) -> list[tuple[str, str]] | None:
    """``sent`` with a line's (custom_id, model) added; None past MAX_NOTED_LINES (more than the
    upstream runs: the batch is then priced as its answers report)."""
    if len(sent) == MAX_NOTED_LINES:
        return None
    if isinstance(custom_id, str) and isinstance(model, str):
        sent.append((custom_id, model))
    return sent


def _loose(line: bytes) -> tuple[Any, Any]:
    """A line's ``custom_id`` and ``body.model`` when it has them (else None): it is the
    upstream's to refuse."""
    try:
        obj: Any = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None, None
    body = obj.get("body") if isinstance(obj, dict) else None
    return (obj.get("custom_id"), body.get("model")) if isinstance(body, dict) else (None, None)


def _request_of(line: bytes, number: int, endpoint: str) -> tuple[Any, dict[str, Any]]:
    """A request line's ``custom_id`` and body; the line must be a request object for the
    batch's endpoint."""
    try:
        obj: Any = orjson.loads(line)
    except orjson.JSONDecodeError:
        obj = None
    body = obj.get("body") if isinstance(obj, dict) else None
    if not isinstance(body, dict):
        raise InvalidRequest(f"line {number} of the input file is not a request object with a 'body'",
                             param=PARAM, code="invalid_value")
    if obj.get("url") != endpoint:
        raise InvalidRequest(f"line {number} of the input file is for another endpoint than the batch's "
                             f"'{endpoint}'", param=PARAM, code="invalid_value")
    return obj.get("custom_id"), body


def _model_of(body: dict[str, Any], number: int) -> str:
    """The model a request line asks for."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest(f"line {number} of the input file names no model", param=PARAM,
                             code="invalid_value")
    return model
