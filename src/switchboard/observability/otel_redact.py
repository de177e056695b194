"""Keeping the collector's URL credentials out of OpenTelemetry's own log lines.

OpenTelemetry's exporter logs why an export failed, and for a collector it cannot reach that is
the HTTP library's message, which quotes the URL with its query string
(``... with url: /v1/traces?api_key=...``). A collector that takes its key in the query would have
it written to the process log, where ``tracing.headers`` never are. A filter on the loggers the
export path writes with replaces that query string wherever it appears, in the message and in a
traceback."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

REDACTED = "[REDACTED]"
# The loggers OpenTelemetry's export path writes with (a filter applies to its own logger only).
EXPORT_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.sdk.trace.export",
)


class EndpointRedaction(logging.Filter):
    """Rewrites a record so that no query string of ``endpoint``'s path is left in it (as written
    or as the HTTP library re-encoded it: whatever follows the path's ``?`` up to a space or a
    quote)."""

    def __init__(self, endpoint: str) -> None:
        super().__init__()
        parts = urlsplit(endpoint)
        path = parts.path or "/"
        self._pattern = re.compile(re.escape(path) + r"\?[^\s'\")]+") if parts.query else None
        self._replacement = f"{path}?{REDACTED}"

    def _scrub(self, text: str) -> str:
        assert self._pattern is not None
        return self._pattern.sub(self._replacement, text)

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is None:
            return True
        record.msg = self._scrub(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self._scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self._scrub(record.exc_text)
        return True


def install(endpoint: str) -> None:
    """Redact ``endpoint``'s query string from the export loggers (replacing an earlier filter)."""
    redaction = EndpointRedaction(endpoint)
    for name in EXPORT_LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, EndpointRedaction)]:
            logger.removeFilter(old)
        logger.addFilter(redaction)
