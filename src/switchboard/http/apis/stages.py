"""The stages of a prompt API call (``POST /apis/{name}``), placed in the chat chain.

- :class:`ApiStage` takes the place of decoding: it resolves the API in the caller's tenant
  (another tenant's is 404; the record, the prompt version and the subscription come from
  their request-path caches, so a call makes no database query once they are cached), applies
  its lifecycle (a draft is 404, a retired one 410 naming its successor, a deprecated one is
  served with ``Deprecation``/``Sunset``/``Link`` headers), requires the team's approved
  subscription when the API needs approval, picks the prompt version (pinned by ``/v{N}``,
  else the A/B split's arm for this key, else the API's version or label), checks the
  variables against the prompt's schema (400 naming each invalid field) and renders the
  canonical chat request. The rest of the chat chain (routing, limits, budgets, usage ledger,
  request log, attempts) runs as for any chat call.
- :class:`OutputStage` (just outside the attempts) checks the output against the prompt's output
  schema and asks the model to repair an invalid answer ``apis.repair_attempts`` times, the
  usage of every try summed into the call's; then 502 ``invalid_model_output``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

from switchboard.access.subscriptions import SubscriptionCache
from switchboard.apis.cache import ApiCache
from switchboard.apis.lifecycle import deprecation_headers, split_version
from switchboard.apis.output import output_errors, repair_messages
from switchboard.config.prompts import ApisConfig
from switchboard.context import Principal, Reply, RequestContext, Result
from switchboard.errors import GatewayError, Gone, InvalidModelOutput, InvalidRequest, NotFound
from switchboard.http import validate
from switchboard.http.apis.call import ApiCall, ApiCalls, reply_text
from switchboard.http.openai_api import parse_object
from switchboard.pipeline.chain import Handler
from switchboard.pipeline.subscription import require_approved
from switchboard.prompts.cache import PromptCache
from switchboard.prompts.sandbox import templates
from switchboard.providers.counts import count
from switchboard.stores import Stores
from switchboard.stores.protocols import PromptVersion

DEFAULT_TENANT = "default"
PREFIX = "/apis/"
# /apis/{name} and /apis/{name}/v{N}
# Any digits read as a version, so that one the prompt cannot have is `version_not_found`.
_CALL_PATH = re.compile(r"^/apis/([A-Za-z0-9][A-Za-z0-9_.-]{0,127})(?:/v([0-9]{1,40}))?$")
_MAX_VERSION = 2**31 - 1  # the stores' integer column; none beyond it is looked up


def call_path(path: str) -> tuple[str, int | None] | None:
    """(API name, pinned version or None) of a call path; None when it is not one."""
    match = _CALL_PATH.match(path)
    if match is None:
        return None
    return match.group(1), int(match.group(2)) if match.group(2) else None


_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def wants_stream(ctx: RequestContext) -> bool:
    """``?stream=true`` or ``Accept: text/event-stream`` (the body stays the variables). The
    documents declare ``stream`` a boolean: another value is 400, never read as false."""
    asked = False
    for key, value in parse_qsl(ctx.query, keep_blank_values=True):
        if key == "stream":
            if value.lower() not in _BOOLEANS:
                raise InvalidRequest(f"stream: expected true or false, not '{value[:64]}'", param="stream",
                                     code="invalid_value")
            asked = _BOOLEANS[value.lower()]
    return asked or "text/event-stream" in ctx.headers.get("accept", "")


def canonical_request(prompt: PromptVersion, messages: list[dict[str, Any]], stream: bool) -> dict[str, Any]:
    """The chat request of a rendered prompt: its default parameters, its model, and structured
    output (``response_format: json_schema``, translated by each adapter) when it has an output
    schema."""
    request: dict[str, Any] = {k: v for k, v in prompt.params.items()
                               if k not in ("model", "messages", "stream", "stream_options")}
    request["model"] = prompt.model
    request["messages"] = messages
    if prompt.output_schema is not None:
        request["response_format"] = {"type": "json_schema",
                                      "json_schema": {"name": "output", "schema": dict(prompt.output_schema)}}
    if stream:
        request["stream"] = True
    return validate.chat_request(request)


class Unlisted:
    """A caller without its key's model list, the same object for as long as the key cache hands
    out the same principal: the rate-limit, budget and service memos keep what they worked out
    for a principal while it is the same object, so a copy made per call missed them all."""

    MAX = 10_000  # callers kept; cleared when full

    def __init__(self) -> None:
        self._copies: dict[str, tuple[Principal, Principal]] = {}

    def __call__(self, principal: Principal) -> Principal:
        entry = self._copies.get(principal.id)
        if entry is not None and entry[0] is principal:
            return entry[1]
        copy = replace(principal, allowed_models=None)
        if len(self._copies) >= self.MAX:
            self._copies.clear()
        self._copies[principal.id] = (principal, copy)
        return copy


class ApiStage:
    name = "api"

    def __init__(self, calls: ApiCalls, stores: Callable[[], Stores | None],
                 subscriptions: Callable[[], SubscriptionCache | None],
                 prompts: Callable[[], Awaitable[PromptCache]],
                 apis: Callable[[], ApiCache | None]) -> None:
        self._calls = calls
        self._stores = stores
        self._subscriptions = subscriptions
        self._prompts = prompts  # the prompt registry's request-path cache (prompts/cache.py)
        self._apis = apis  # the API records' request-path cache (apis/cache.py)
        self._unlisted = Unlisted()

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        parsed = call_path(ctx.path)
        if parsed is None:
            raise NotFound(f"no API at {ctx.path[:200]}", code="api_not_found")
        name, pinned = parsed
        stores, apis = self._stores(), self._apis()
        assert stores is not None and apis is not None, "the gateway has started"
        principal = ctx.principal
        tenant = (principal.tenant_id if principal else None) or DEFAULT_TENANT
        record = await apis.record(tenant, name)  # cached: no database query per call
        if record is None or record.status == "draft":
            raise NotFound(f"no API '{name}'", code="api_not_found")
        successor_url = f"/apis/{record.successor}" if record.successor else None
        if record.status == "retired":
            then = f"; use '{record.successor}' ({successor_url})" if record.successor else ""
            link = {"link": f'<{successor_url}>; rel="successor-version"'} if successor_url else None
            raise Gone(f"the API '{name}' is retired{then}", code="api_retired", headers=link)
        if record.status == "deprecated":
            ctx.response_headers.update(deprecation_headers(
                deprecated_at=record.deprecated_at or record.updated_at, sunset_at=record.sunset_at,
                successor_url=successor_url))
        # The owning team needs no subscription; a caller of no team is no API's owning team (an
        # API of no team has none), and holds no subscription either: it is refused.
        team = principal.team_id if principal is not None else None
        owning = team is not None and team == record.team_id
        if record.require_approval and not owning:
            cache = self._subscriptions()
            assert cache is not None, "the gateway has started"
            await require_approved(cache, principal, f"api:{name}", f"the API '{name}'", param=None)
        if principal is not None and principal.allowed_models is not None:
            # Access to an API is the API's: the key's model list applies neither to its model
            # nor to the groups routing sends it to (a rule, a split, a fallback).
            ctx.principal = self._unlisted(principal)
        if stores.prompts is None:
            raise NotFound(f"no API '{name}'", code="api_not_found")
        prompts = await self._prompts()
        if pinned is not None:
            in_range = 1 <= pinned <= _MAX_VERSION
            prompt = await prompts.resolve(tenant, record.prompt, version=pinned) if in_range else None
        elif record.split:
            key = principal.owner if principal else ""  # the key's lineage: rotation keeps the arm
            arm = split_version(record.split, key, name)
            prompt = await prompts.resolve(tenant, record.prompt, version=arm)
        else:
            prompt = await prompts.resolve(tenant, record.prompt, version=record.version, label=record.label)
        if prompt is None:
            shown = f"version {pinned}" if pinned is not None else "the version it serves"
            raise NotFound(f"the API '{name}' has no {shown}", code="version_not_found")
        stream = wants_stream(ctx)
        variables = _variables(ctx.body)
        sandbox = templates()  # imported on the first call (prompts/sandbox.py)
        invalid = sandbox.validate_variables(prompt.variables, variables)
        if invalid:
            listed = "; ".join(f"{field or '(body)'}: {why}" for field, why in invalid)
            raise InvalidRequest(f"invalid variables: {listed}", param=invalid[0][0] or None,
                                 code="invalid_variables")
        ctx.request = canonical_request(prompt, await sandbox.render_async(prompt, variables), stream)
        ctx.expanded = True  # the body holds the variables, not the prompt
        ctx.stream = stream
        ctx.usage_metadata = {"api": name, "api_version": prompt.version}
        ctx.response_headers["x-switchboard-api-version"] = str(prompt.version)
        self._calls.begin(ctx, ApiCall(record, prompt, prompt.version))
        return await call_next(ctx)


def _variables(body: bytes) -> dict[str, Any]:
    """The API's variables by name. No body is none (an API may take no variables); other JSON
    than an object is refused as on every JSON-body endpoint (``invalid_json``)."""
    if not body.strip():
        return {}
    return parse_object(body)


_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens")
_DETAILS = ("prompt_tokens_details", "completion_tokens_details")


def _summed(before: dict[str, Any] | None, now: dict[str, Any] | None) -> dict[str, Any] | None:
    """Two tries' usage as one: the counts summed, and their details' (cache reads and writes,
    reasoning, media), so each try's tokens are priced as they were billed. Counts are read as
    the ledger reads them (providers/counts.py): one of the wrong type counts as none."""
    if not before:
        return now
    if not now:
        return before
    summed = {**now, **{k: count(before.get(k)) + count(now.get(k)) for k in _COUNTS}}
    for key in _DETAILS:
        old, new = before.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            summed[key] = {k: count(old.get(k)) + count(new.get(k)) for k in old.keys() | new.keys()}
        elif isinstance(old, dict):
            summed[key] = old
    return summed


class OutputStage:
    name = "api_output"

    def __init__(self, calls: ApiCalls, config: ApisConfig,
                 reserve: Callable[[RequestContext], Awaitable[None]] | None = None) -> None:
        """``reserve``: reserves a repair try's cost on the caller's budgets before it is sent
        (``BudgetStage.reserve_again``), raising the refusal; None: no budgets."""
        self._calls = calls
        self._config = config
        self._reserve = reserve

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        call = self._calls.get(ctx)
        schema = call.schema if call is not None else None
        if call is None or schema is None or ctx.stream:
            return await call_next(ctx)
        result = await call_next(ctx)
        repairs = self._config.repair_attempts
        repaired = False
        while True:
            if not isinstance(result, Reply):
                return result
            text = reply_text(result.body)
            value, errors = output_errors(text, schema)
            if not errors:
                call.output, call.checked = value, True
                if repaired:
                    result.body["usage"] = ctx.usage
                return result
            if repairs <= 0:
                raise InvalidModelOutput(
                    "the model's output does not satisfy the API's output schema"
                    f"{' after repair' if repaired else ''}: {'; '.join(errors)}")
            repairs -= 1
            repaired = True
            used = ctx.usage  # every try so far, summed once (the finally below keeps it so)
            messages = [*ctx.request["messages"], *repair_messages(text, errors, schema)]
            ctx.request = {**ctx.request, "messages": messages}
            ctx.usage = None  # this try's own usage, summed below
            try:
                if self._reserve is not None:  # the budgets cover this try too, or it is not sent
                    await self._reserve(ctx)
                result = await call_next(ctx)
            except GatewayError as exc:
                # The first try was sent: a refusal of this one (nothing sent for it) must not
                # give the request's rate limits back (as ``BudgetStage.reserve_again``'s).
                exc.spares_limits = False
                raise
            finally:
                ctx.usage = _summed(used, ctx.usage)
