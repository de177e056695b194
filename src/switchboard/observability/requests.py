"""One structured line per failed request, written after the response.

Fields are ``key=value`` pairs (logfmt), so log pipelines can parse them without a schema: the
request id, method and path, the model the client asked for, the provider and upstream model it
was routed to, the status and error code sent, and the latency. Client errors (4xx) are logged at
INFO, gateway and upstream failures (5xx) at WARNING, a client that left at INFO. Nothing from
headers or bodies is logged, so no credential can reach the log.
"""

from __future__ import annotations

import logging

from switchboard.context import RequestContext

log = logging.getLogger("switchboard.requests")


def _value(text: object) -> str:
    shown = str(text)
    if len(shown) > 200:
        shown = shown[:200] + "..."
    if shown == "" or any(c in shown for c in ' "=\\') or not shown.isprintable():
        return '"' + shown.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
    return shown


def failure_fields(ctx: RequestContext) -> dict[str, object]:
    outcome = ctx.outcome
    model = ctx.requested_model or (ctx.request.get("model") if ctx.request else None)
    fields: dict[str, object] = {
        "request_id": ctx.request_id,
        "method": ctx.method,
        "path": ctx.path,
        "operation": ctx.operation,
        "status": outcome.recorded_status(),  # as the ledger and the metrics record it
        "code": outcome.error_code or "-",
    }
    if isinstance(model, str):
        fields["model"] = model
    if ctx.route is not None:
        fields["provider"] = ctx.route.target.provider
        fields["upstream_model"] = ctx.route.target.model
        if ctx.route.deployment:
            fields["deployment"] = ctx.route.deployment
    if ctx.attempts:  # retries and fallbacks (pipeline/attempts.py)
        fields["attempts"] = len(ctx.attempts)
    if ctx.stream:
        fields["stream"] = "true"
    if outcome.client_disconnected:
        fields["client_disconnected"] = "true"
    if outcome.finished_at is not None:
        fields["latency_ms"] = f"{(outcome.finished_at - ctx.started) * 1000:.1f}"
    return fields


def log_failure(ctx: RequestContext) -> None:
    """Log a request whose outcome is a failure (the caller checks: status >= 400 or client gone)."""
    outcome = ctx.outcome
    level = logging.WARNING if outcome.status >= 500 else logging.INFO  # a client gone: INFO
    if not log.isEnabledFor(level):
        return
    line = " ".join(f"{k}={_value(v)}" for k, v in failure_fields(ctx).items())
    log.log(level, "request failed %s", line)
