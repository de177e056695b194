"""Log set-up of the process: the gateway's own loggers (``switchboard.*``) and, for JSON lines,
uvicorn's too.

Every line emitted while a request is handled carries its id (and its trace id when traces are
on): the edge (``http/endpoint.py``) puts the request id in :data:`CURRENT` for the time it owns
the request, the trace stage adds the trace id, and the formatters read it. Work the request
starts in tasks of its own inherits it, as contextvars are copied into new tasks. Only the two
short strings are held, never the request's context: a copy of the context outlives the request
in places (a pooled upstream connection keeps the one it was opened in).

``server.log_format``:

- ``text`` (default): ``LEVEL:     logger: message``, followed by `` request_id=...`` (and
  `` trace_id=...``) on a line about a request.
- ``json``: one JSON object per line: ``time`` (UTC, ISO 8601, milliseconds), ``level``,
  ``logger``, ``message``, ``request_id`` and ``trace_id`` when known, ``exception`` (the
  traceback) when there is one. uvicorn's own lines (start-up, errors, the access log) and
  those of libraries (the root logger, warnings and above) are JSON too.

Nothing here adds content: what a line says is what its logger wrote, and no logger of the
gateway writes a credential or a prompt. uvicorn's access log line names the request target,
query string included, whatever the path: the value of every query parameter that carries a
credential by convention (``?key=``, as Google's API takes one, ``ticket``, ``access_token``...)
is replaced with ``[REDACTED]`` in it, in both formats (:class:`AccessLogRedaction`).
"""

from __future__ import annotations

import copy
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

import orjson
from uvicorn.config import LOGGING_CONFIG

# (request id, trace id or None) of the request being handled; None outside requests.
CURRENT: ContextVar[tuple[str, str | None] | None] = ContextVar("switchboard_request", default=None)

TEXT_FORMAT = "%(levelname)s:     %(name)s: %(message)s"


def request_fields() -> tuple[str | None, str | None]:
    """(request id, trace id) of the request this code runs for, if any."""
    return CURRENT.get() or (None, None)


class TextFormatter(logging.Formatter):
    """The classic text line, with the request's id (and trace id) appended."""

    def __init__(self, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)

    def formatMessage(self, record: logging.LogRecord) -> str:  # the line, before any traceback
        line = super().formatMessage(record)
        request_id, trace_id = request_fields()
        if request_id is None:
            return line
        if f"request_id={request_id}" not in line:  # the failure line names it already
            line += f" request_id={request_id}"
        if trace_id is not None:
            line += f" trace_id={trace_id}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module's docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id, trace_id = request_fields()
        if request_id is not None:
            entry["request_id"] = request_id
        if trace_id is not None:
            entry["trace_id"] = trace_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


# Query parameters whose value is a credential by convention. Compared by decoded, lower-cased
# name (``%6Bey`` is ``key``), on every path: a caller may put one where the gateway does not
# read it (``/v1/chat/completions?key=``), and the line must not keep it there either.
CREDENTIAL_PARAMS = frozenset({"key", "api_key", "api-key", "apikey", "access_token", "token",
                               "ticket", "code"})
REDACTED = "[REDACTED]"
_SEPARATORS = re.compile(r"([&;])")


def redact_target(target: str) -> str:
    """A request target (``/path?query``) with each credential parameter's value redacted."""
    path, mark, query = target.partition("?")
    if not mark:
        return target
    parts = _SEPARATORS.split(query)  # separators kept, at the odd indexes
    for i in range(0, len(parts), 2):
        name = parts[i].partition("=")[0]
        if unquote_plus(name).strip().lower() in CREDENTIAL_PARAMS:
            parts[i] = f"{name}={REDACTED}"
    return f"{path}?{''.join(parts)}"


class AccessLogRedaction(logging.Filter):
    """On uvicorn's access logger: the request target among the line's arguments (the one with a
    query string) with its credentials redacted, before any formatter sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_target(a) if isinstance(a, str) and "?" in a else a
                                for a in record.args)
        return True


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


class _Handler(logging.StreamHandler):
    """The handler this module installs (so a second configure replaces, never duplicates)."""


def configure(level: str, log_format: str = "text") -> None:
    """The ``switchboard`` and ``opentelemetry`` loggers' handlers (stderr) in ``log_format``;
    with ``json``, also the root logger's (libraries' warnings and errors), so every line of the
    process is JSON."""
    logger = logging.getLogger("switchboard")
    logger.setLevel(level.upper())
    for old in [h for h in logger.handlers if isinstance(h, _Handler)]:
        logger.removeHandler(old)
    if not logger.handlers:
        handler = _Handler(sys.stderr)
        handler.setFormatter(formatter(log_format))
        logger.addHandler(handler)
        logger.propagate = False
    # OpenTelemetry's export warnings (a collector that is down) in the same form as ours.
    otel = logging.getLogger("opentelemetry")
    for old in [h for h in otel.handlers if isinstance(h, _Handler)]:
        otel.removeHandler(old)
    otel_handler = _Handler(sys.stderr)
    otel_handler.setFormatter(formatter(log_format))
    otel.addHandler(otel_handler)
    otel.setLevel(logging.WARNING)
    otel.propagate = False
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    if log_format == "json":
        handler = _Handler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler.setLevel(logging.WARNING)
        root.addHandler(handler)
        logging.captureWarnings(True)


def uvicorn_log_config(level: str, log_format: str) -> dict[str, Any]:
    """uvicorn's logging config for ``log_format`` (``text``: uvicorn's own), its access log
    line redacted (:class:`AccessLogRedaction`)."""
    redaction = {"()": f"{__name__}.AccessLogRedaction"}
    if log_format != "json":
        config = copy.deepcopy(LOGGING_CONFIG)
        config["filters"] = {"credentials": redaction}
        config["loggers"]["uvicorn.access"]["filters"] = ["credentials"]
        return config
    name = f"{__name__}.JsonFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,  # keep the switchboard loggers configured above
        "formatters": {"json": {"()": name}},
        "filters": {"credentials": redaction},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
            "access": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False,
                               "filters": ["credentials"]},
        },
    }
