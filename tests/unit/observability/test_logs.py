"""The process log formatters: JSON lines and the text line, with and without a request."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterator
from datetime import datetime

import orjson
import pytest

from switchboard.observability import logs


def record(message: str = "hello %s", args: tuple[object, ...] = ("world",), exc: bool = False,
           ) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("switchboard.test", logging.WARNING, __file__, 1, message, args, exc_info)


@pytest.fixture
def in_request() -> Iterator[None]:
    token = logs.CURRENT.set(("rid-1", "ab" * 16))
    yield
    logs.CURRENT.reset(token)


def test_json_line_outside_a_request() -> None:
    line = logs.JsonFormatter().format(record())
    assert "\n" not in line
    entry = orjson.loads(line)
    assert entry.keys() == {"time", "level", "logger", "message"}
    assert (entry["level"], entry["logger"]) == ("WARNING", "switchboard.test")
    assert entry["message"] == "hello world"
    assert entry["time"].endswith("Z") and datetime.fromisoformat(entry["time"])


def test_json_line_in_a_request_carries_its_ids(in_request: None) -> None:
    entry = orjson.loads(logs.JsonFormatter().format(record(exc=True)))
    assert entry["request_id"] == "rid-1" and entry["trace_id"] == "ab" * 16
    assert "ValueError: bad" in entry["exception"]


def test_json_line_of_an_odd_message() -> None:
    entry = orjson.loads(logs.JsonFormatter().format(record("a\nb \"%s\"", (b"\xff",))))
    assert entry["message"] == "a\nb \"b'\\xff'\""


def test_text_line_is_unchanged_outside_a_request() -> None:
    assert logs.TextFormatter().format(record()) == "WARNING:     switchboard.test: hello world"


def test_text_line_in_a_request_gains_its_ids_once(in_request: None) -> None:
    formatter = logs.TextFormatter()
    assert formatter.format(record()) == (
        f"WARNING:     switchboard.test: hello world request_id=rid-1 trace_id={'ab' * 16}")
    named = formatter.format(record("request failed request_id=%s", ("rid-1",)))
    assert named.count("request_id=rid-1") == 1
    first, *traceback = formatter.format(record(exc=True)).splitlines()
    assert first.endswith(f"hello world request_id=rid-1 trace_id={'ab' * 16}")
    assert traceback[-1] == "ValueError: bad"


def test_uvicorn_config_per_format_redacts_the_access_log() -> None:
    text = logs.uvicorn_log_config("info", "text")
    assert text["formatters"]["access"]["()"] == "uvicorn.logging.AccessFormatter"  # uvicorn's own line
    config = logs.uvicorn_log_config("debug", "json")
    assert config["disable_existing_loggers"] is False
    assert config["loggers"]["uvicorn"]["level"] == "DEBUG"
    module, _, name = config["formatters"]["json"]["()"].rpartition(".")
    assert getattr(importlib.import_module(module), name) is logs.JsonFormatter
    for each in (text, config):
        assert each["loggers"]["uvicorn.access"]["filters"] == ["credentials"]
        module, _, name = each["filters"]["credentials"]["()"].rpartition(".")
        assert getattr(importlib.import_module(module), name) is logs.AccessLogRedaction


@pytest.mark.parametrize(("target", "shown"), [
    ("/v1/models", "/v1/models"),
    ("/v1/chat/completions?key=sk-1", "/v1/chat/completions?key=[REDACTED]"),
    ("/v1beta/models?pageSize=5&key=sk-1&alt=json", "/v1beta/models?pageSize=5&key=[REDACTED]&alt=json"),
    ("/x?%6Bey=sk-1", "/x?%6Bey=[REDACTED]"),  # the name compared decoded
    ("/x?KEY=sk-1;ticket=t-2", "/x?KEY=[REDACTED];ticket=[REDACTED]"),
    ("/x?key", "/x?key=[REDACTED]"),
    ("/x?monkey=1&keys=2&a=key", "/x?monkey=1&keys=2&a=key"),  # only the names themselves
])
def test_credential_query_parameters_are_redacted(target: str, shown: str) -> None:
    assert logs.redact_target(target) == shown


def test_the_access_log_filter_redacts_the_target_argument() -> None:
    line = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                             ("127.0.0.1:5000", "GET", "/v1beta/models?key=sk-secret", "1.1", 404), None)
    assert logs.AccessLogRedaction().filter(line) is True
    assert line.getMessage() == '127.0.0.1:5000 - "GET /v1beta/models?key=[REDACTED] HTTP/1.1" 404'


def test_configure_replaces_its_own_handler() -> None:
    logger = logging.getLogger("switchboard")
    otel = logging.getLogger("opentelemetry")
    before = list(logger.handlers)
    before_state = (logger.level, logger.propagate)
    otel_before = (list(otel.handlers), otel.level, otel.propagate)
    try:
        logs.configure("info", "json")
        logs.configure("info", "json")
        ours = [h for h in logger.handlers if isinstance(h.formatter, logs.JsonFormatter)]
        assert len(ours) <= 1
        root = [h for h in logging.getLogger().handlers if isinstance(h.formatter, logs.JsonFormatter)]
        assert len(root) == 1 and root[0].level == logging.WARNING
        assert [type(h.formatter) for h in otel.handlers if h not in otel_before[0]] == [logs.JsonFormatter]
        logs.configure("info", "text")
        assert not [h for h in logging.getLogger().handlers if isinstance(h.formatter, logs.JsonFormatter)]
        assert [type(h.formatter) for h in otel.handlers if h not in otel_before[0]] == [logs.TextFormatter]
    finally:
        logging.captureWarnings(False)
        for handler in list(logger.handlers):
            if handler not in before:
                logger.removeHandler(handler)
        logger.setLevel(before_state[0])  # the other tests' caplog reads through the root logger
        logger.propagate = before_state[1]
        for handler in list(otel.handlers):
            if handler not in otel_before[0]:
                otel.removeHandler(handler)
        otel.setLevel(otel_before[1])
        otel.propagate = otel_before[2]
