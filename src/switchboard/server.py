"""Runs the gateway under uvicorn (uvloop + httptools), one or many worker processes."""

from __future__ import annotations

import json
import math
import os
import signal
from dataclasses import dataclass
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from switchboard.app import SwitchboardApp, create_app
from switchboard.config.embedded import embedded_settings
from switchboard.config.loader import load
from switchboard.config.schema import Settings
from switchboard.observability.logs import configure as configure_logs

_ENV = "SWITCHBOARD_SERVE"


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with an OpenAI-shaped body for requests it cannot parse."""

    def send_400_response(self, msg: str) -> None:
        body = orjson.dumps(
            {
                "error": {
                    "message": "malformed HTTP request",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "malformed_http_request",
                }
            }
        )
        self.transport.write(
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode()
            + b"\r\nconnection: close\r\n\r\n"
            + body
        )
        self.transport.close()


@dataclass(frozen=True)
class ServeOptions:
    config: str | None
    host: str | None
    port: int | None
    workers: int | None

    def dumps(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def loads(cls, text: str) -> ServeOptions:
        return cls(**json.loads(text))


def resolve_settings(opts: ServeOptions) -> Settings:
    """The config file (or the embedded default) with command-line overrides applied."""
    if opts.config:
        settings = load(opts.config)
    else:
        settings = embedded_settings(opts.host or "127.0.0.1", opts.port if opts.port is not None else 4000)
    overrides = {
        k: v
        for k, v in {"host": opts.host, "port": opts.port, "workers": opts.workers}.items()
        if v is not None
    }
    if overrides:
        server = settings.server.model_copy(update=overrides)
        settings = settings.model_copy(update={"server": server})
    return settings


def app_factory() -> SwitchboardApp:
    """Entry point for worker processes: rebuilds the settings from what the parent was given."""
    settings = resolve_settings(ServeOptions.loads(os.environ[_ENV]))
    configure_logs(settings.server.log_level)
    return create_app(settings)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    s = settings.server
    return {
        "host": s.host,
        "port": s.port,
        "loop": "uvloop",
        "http": GatewayHttpProtocol,
        "lifespan": "on",
        "access_log": s.access_log,
        "log_level": s.log_level,
        # 0 means "do not wait"; uvicorn reads None as "wait forever", which is never wanted here.
        "timeout_graceful_shutdown": math.ceil(s.graceful_shutdown_seconds),
        "timeout_keep_alive": 75,
        "server_header": False,
        "proxy_headers": False,
    }


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(opts: ServeOptions, settings: Settings) -> None:
    configure_logs(settings.server.log_level)
    # uvicorn re-raises SIGTERM once its graceful shutdown is done; exiting 0 then tells process
    # managers the shutdown was clean.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    options = uvicorn_options(settings)
    if settings.server.workers > 1:
        # Worker processes import the factory and rebuild the same settings.
        os.environ[_ENV] = opts.dumps()
        uvicorn.run(
            "switchboard.server:app_factory", factory=True, workers=settings.server.workers, **options
        )
    else:
        uvicorn.run(create_app(settings), **options)
