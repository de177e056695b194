"""The third-party internals the gateway relies on, checked before it starts serving.

Some libraries are used beyond their documented API (docs/architecture.md, "Dependencies and the
internals we rely on"): uvicorn's httptools protocol and request cycle are subclassed and some of
their steps repeated, the command line builds its groups with typer's internals, the Redis wire
reads a redis-py pool's settings and drives a bare connection, the prompt sandbox overrides
Jinja2's parser and compiler, the upload parser reads python-multipart's parser state, and the
usage writer compiles SQLAlchemy statements itself. pyproject.toml holds each of them to the
releases checked; an install that ignored that (``--no-deps``, a later upgrade of one library)
would otherwise fail on the first request, or worse, misbehave. Here each internal is looked up
(names, signatures, the attributes a constructor sets), without building anything: a missing one
is a clear error at ``switchboard serve`` naming the library, its installed version and the
range pyproject.toml declares. Run once per start, never on the request path.

Imports nothing of the gateway, and each library only when it is checked: the command line runs
this before importing the server (whose modules import these internals at import time), and
Redis's check runs only where a Redis is configured (stores/redis/client.py).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
from collections.abc import Callable, Iterable
from typing import Any

# The libraries checked at every start; "redis" where the cluster store opens.
CORE = ("uvicorn", "typer", "jinja2", "python-multipart", "SQLAlchemy")
REDIS = ("redis",)


def _lookup(module: str, path: str) -> Any:
    """``module``'s attribute at the dotted ``path``; raises LookupError naming what is missing."""
    try:
        found: Any = importlib.import_module(module)
    except ImportError as exc:
        raise LookupError(f"{module} cannot be imported ({exc})") from None
    for part in path.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise LookupError(f"{module} has no {path}") from None
    return found


def _names(module: str, paths: Iterable[str]) -> list[str]:
    missing = []
    for path in paths:
        try:
            _lookup(module, path)
        except LookupError as exc:
            missing.append(str(exc))
    return missing


def _sets(module: str, method: str, attributes: Iterable[str]) -> list[str]:
    """Attributes ``method`` must set or read (from its code's names: nothing is built or run)."""
    try:
        names = set(_lookup(module, method).__code__.co_names)
    except (LookupError, AttributeError) as exc:
        return [str(exc)]
    absent = [a for a in attributes if a not in names]
    return [f"{module}.{method} no longer sets {', '.join(absent)}"] if absent else []


def _parameters(module: str, function: str, expected: Iterable[str], *, exact: bool) -> list[str]:
    """``function``'s parameters: exactly ``expected`` in order, or at least them (``exact=False``)."""
    try:
        have = list(inspect.signature(_lookup(module, function)).parameters)
    except (LookupError, TypeError, ValueError) as exc:
        return [str(exc)]
    want = list(expected)
    if (have != want) if exact else not set(want) <= set(have):
        return [f"{module}.{function} takes ({', '.join(have)}), not ({', '.join(want)})"]
    return []


_HTTP = "uvicorn.protocols.http.httptools_impl"


def _uvicorn() -> list[str]:
    # http/protocol.py and http/cycle.py (their docstrings list the same internals).
    return [
        *_names(_HTTP, (
            "HttpToolsProtocol.connection_made", "HttpToolsProtocol.connection_lost",
            "HttpToolsProtocol.data_received", "HttpToolsProtocol.on_body", "HttpToolsProtocol.on_header",
            "HttpToolsProtocol.on_headers_complete", "HttpToolsProtocol.on_message_complete",
            "HttpToolsProtocol.on_response_complete", "HttpToolsProtocol.pause_writing",
            "HttpToolsProtocol.resume_writing", "HttpToolsProtocol.send_400_response",
            "HttpToolsProtocol.timeout_keep_alive_handler", "HttpToolsProtocol._unset_keepalive_if_required",
            "HttpToolsProtocol._start_asgi_task", "HttpToolsProtocol._should_upgrade",
            "RequestResponseCycle.send", "RequestResponseCycle.receive", "RequestResponseCycle.run_asgi",
            "service_unavailable", "STATUS_LINE", "HEADER_RE", "HEADER_VALUE_RE",
        )),
        *_sets(_HTTP, "HttpToolsProtocol.__init__", (
            "cycle", "flow", "connections", "tasks", "pipeline", "timeout_keep_alive",
            "timeout_keep_alive_task", "expect_100_continue", "scope", "root_path",
            "limit_concurrency", "app", "parser", "transport", "loop", "logger", "access_logger",
            "access_log", "server_state",
        )),
        *_sets(_HTTP, "HttpToolsProtocol.on_message_begin",
               ("url", "expect_100_continue", "headers", "scope")),
        # http/cycle.py's new_cycle sets these itself, in this order.
        *_parameters(_HTTP, "RequestResponseCycle.__init__", (
            "self", "scope", "transport", "flow", "logger", "access_logger", "access_log",
            "default_headers", "message_event", "expect_100_continue", "keep_alive", "on_response",
        ), exact=True),
        *_sets(_HTTP, "RequestResponseCycle.__init__", (
            "scope", "transport", "flow", "logger", "access_logger", "access_log", "default_headers",
            "message_event", "on_response", "disconnected", "keep_alive", "waiting_for_100_continue",
            "body", "more_body", "response_started", "response_complete", "chunked_encoding",
            "expected_content_length",
        )),
        *_names("uvicorn.config", ("LOGGING_CONFIG",)),
    ]


def _typer() -> list[str]:
    # cli.py: the command groups built lazily, as Typer.add_typer would build them.
    return [
        *_names("typer.models", ("TyperInfo",)),
        *_names("typer.core", ("TyperGroup.list_commands",)),
        *_parameters("typer.main", "get_group_from_info", (
            "group_info", "pretty_exceptions_short", "suggest_commands", "rich_markup_mode",
        ), exact=False),
        *_sets("typer", "Typer.__init__",
               ("pretty_exceptions_short", "rich_markup_mode", "suggest_commands")),
    ]


def _jinja2() -> list[str]:
    # prompts/templates.py's sandbox.
    return _names("jinja2.sandbox", (
        "ImmutableSandboxedEnvironment._parse", "ImmutableSandboxedEnvironment.call_binop",
        "ImmutableSandboxedEnvironment.call",
    )) + _names("jinja2.compiler",
                ("CodeGenerator.visit_Concat", "CodeGenerator.write", "CodeGenerator.visit"))


def _multipart() -> list[str]:
    # http/files/multipart.py: a body's end is told by the parser's state.
    return [
        *_names("python_multipart.multipart", ("MultipartParser.write", "MultipartState.END",
                                                "parse_options_header")),
        *_sets("python_multipart.multipart", "MultipartParser.__init__", ("state",)),
        *_parameters("python_multipart.multipart", "MultipartParser.__init__",
                     ("max_header_count", "max_header_size"), exact=False),
    ]


def _sqlalchemy() -> list[str]:
    # stores/sql/ledger.py: the usage rows' insert, compiled once and run by the driver.
    return [
        *_names("sqlalchemy.sql.expression", ("UnaryExpression",)),
        *_names("sqlalchemy.sql.operators", ("custom_op",)),
        *_names("sqlalchemy.sql.compiler", ("SQLCompiler.positiontup",)),
    ]


def _redis() -> list[str]:
    # stores/redis/wire.py, silence.py, batch.py.
    return [
        *_names("redis.asyncio", ("Redis.from_pool", "Redis.aclose", "BlockingConnectionPool.from_url")),
        *_sets("redis.asyncio", "ConnectionPool.__init__", ("connection_class", "connection_kwargs")),
        *_names("redis.asyncio.connection", (
            "Connection.connect", "Connection.send_command", "Connection.read_response",
            "UnixDomainSocketConnection",
        )),
        *_names("redis.commands.core", ("AsyncScript",)),
    ]


_CHECKS: dict[str, Callable[[], list[str]]] = {
    "uvicorn": _uvicorn,
    "typer": _typer,
    "jinja2": _jinja2,
    "python-multipart": _multipart,
    "SQLAlchemy": _sqlalchemy,
    "redis": _redis,
}

_NAME = re.compile(r"[-_.]+")
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*)")


def _normal(name: str) -> str:
    return _NAME.sub("-", name).lower()


def declared_range(distribution: str) -> str:
    """The versions of ``distribution`` the installed switchboard declares (``>=0.53,<0.56``)."""
    try:
        requirements = importlib.metadata.requires("switchboard") or []
    except importlib.metadata.PackageNotFoundError:
        requirements = []
    for requirement in requirements:
        match = _REQUIREMENT.match(requirement)
        if match and _normal(match[1]) == _normal(distribution) and "extra ==" not in requirement:
            return match[2].strip() or "any"
    return "see switchboard's pyproject.toml"


def installed_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def unsupported(distributions: Iterable[str] = CORE) -> list[str]:
    """One message per library whose internals differ from what the gateway was checked against;
    empty when all is as expected."""
    problems = []
    for distribution in distributions:
        missing = _CHECKS[distribution]()
        if missing:
            problems.append(
                f"{distribution} {installed_version(distribution)} is not a supported release "
                f"(supported: {distribution}{declared_range(distribution)}): {'; '.join(missing)}"
            )
    return problems
