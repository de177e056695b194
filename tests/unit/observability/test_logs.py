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


def test_uvicorn_config_only_for_json() -> None:
    assert logs.uvicorn_log_config("info", "text") is None
    config = logs.uvicorn_log_config("debug", "json")
    assert config is not None and config["disable_existing_loggers"] is False
    assert config["loggers"]["uvicorn"]["level"] == "DEBUG"
    module, _, name = config["formatters"]["json"]["()"].rpartition(".")
    assert getattr(importlib.import_module(module), name) is logs.JsonFormatter


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
