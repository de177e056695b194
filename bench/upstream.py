"""The mock upstream: one nginx worker answering fixed OpenAI-format bodies from memory.

``POST /v1/chat/completions`` returns a chat.completion JSON; ``POST /stream/v1/chat/completions``
returns a fixed text/event-stream body. nginx's ``return 200 '...'`` serves any method, so there is
no static-file 405 to work around, and the body never touches the disk.
"""

from __future__ import annotations

import json
from pathlib import Path

from procs import Service, free_port, tool

CHAT_PATH = "/v1/chat/completions"
STREAM_PATH = "/stream/v1/chat/completions"

_ID, _CREATED, _MODEL = "chatcmpl-bench0001", 1700000000, "gpt-4o-mini"
_USAGE = {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18}
_CONTENT = ["Hello", "! How can I", " help you today?"]
CONTENT_TEXT = "".join(_CONTENT)  # what a client should read back, streamed or not

COMPLETION = {
    "id": _ID,
    "object": "chat.completion",
    "created": _CREATED,
    "model": _MODEL,
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": CONTENT_TEXT},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": _USAGE,
    "system_fingerprint": "fp_bench",
}


def _chunk(delta: dict | None, finish: str | None = None, usage: dict | None = None) -> dict:
    """One chunk as OpenAI streams it for a request with ``stream_options.include_usage`` (the
    gateway always asks upstream for usage): ``"usage": null`` on every chunk but the last, which
    carries the usage and ``"choices": []``."""
    choices = (
        [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    )
    return {
        "id": _ID,
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": _MODEL,
        "system_fingerprint": "fp_bench",
        "choices": choices,
        "usage": usage,
    }


STREAM_CHUNKS = [
    _chunk({"role": "assistant", "content": ""}),
    *(_chunk({"content": text}) for text in _CONTENT),
    _chunk({}, finish="stop"),
    _chunk(None, usage=_USAGE),
]


def _compact(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


COMPLETION_BODY = _compact(COMPLETION)
STREAM_BODY = "".join(f"data: {_compact(c)}\n\n" for c in STREAM_CHUNKS) + "data: [DONE]\n\n"


def _nginx_string(text: str) -> str:
    """Quote ``text`` for nginx.conf. ``return`` bodies interpolate variables, so no ``$``."""
    if "$" in text:
        raise ValueError("nginx return bodies must not contain '$'")
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def nginx_conf(port: int, root: Path) -> str:
    temp = "\n".join(
        f"    {kind}_temp_path {root / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""\
daemon off;
worker_processes 1;
pid {root / "nginx.pid"};
error_log {root / "error.log"} warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    server_tokens off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    types {{}}
{temp}

    server {{
        listen 127.0.0.1:{port} backlog=4096;

        location = {CHAT_PATH} {{
            default_type application/json;
            return 200 {_nginx_string(COMPLETION_BODY)};
        }}

        location = {STREAM_PATH} {{
            default_type text/event-stream;
            add_header Cache-Control no-cache;
            return 200 {_nginx_string(STREAM_BODY)};
        }}

        location / {{
            return 404;
        }}
    }}
}}
"""


def nginx(root: Path, cpu: int | str | None) -> tuple[Service, str]:
    """Return the (not yet started) nginx service and its base URL, config written under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = root / "nginx.conf"
    conf.write_text(nginx_conf(port, root))
    cmd = [tool("nginx"), "-p", str(root), "-c", str(conf), "-e", str(root / "error.log")]
    return Service("nginx", cmd, root / "stdout.log", cpu=cpu), f"http://127.0.0.1:{port}"
