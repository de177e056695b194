"""Configuration of the MCP gateway (docs/mcp.md): the upstream MCP servers (``mcp_servers:``)
and the gateway-wide bounds of the ``/mcp`` endpoint (``mcp:``).

Minimal contract: each ``mcp_servers`` entry takes at least ``name`` and ``url`` (a
streamable-HTTP MCP server); everything else has a default.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from switchboard.config.base import Strict, header_problem
from switchboard.config.catalog import Price
from switchboard.config.urls import check_http_url

# Tool names are exposed as "<server>__<tool>": a server name neither contains the separator nor
# ends with "_", so the first "__" of an exposed name is always where the server's name ends
# (a server "notes_" would expose "notes___t", read back as server "notes", tool "_t").
SERVER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
SEPARATOR = "__"


def server_name_problem(name: str) -> str | None:
    """Why ``name`` (already matching SERVER_NAME) cannot name a server; None when it can."""
    if SEPARATOR in name or name.endswith("_"):
        return (f"must not contain {SEPARATOR!r} nor end with '_' (tools are exposed as "
                "<server>__<tool>: the first '__' must end the server's name)")
    return None


class McpOAuthConfig(Strict):
    """Per-user OAuth 2.1 for a server that needs it. Endpoints not given are discovered from the
    server (protected-resource metadata, then the authorization server's metadata).
    ``revocation_url`` (RFC 7009) is where forgotten tokens are revoked: with both
    ``authorization_url`` and ``token_url`` given no metadata is read, so without it they are
    deleted but not revoked; given, it is used in place of the metadata's endpoint."""

    client_id: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    client_secret: SecretStr | None = None
    authorization_url: str | None = None
    token_url: str | None = None
    revocation_url: str | None = None
    scopes: Annotated[list[Annotated[str, Field(max_length=256)]], Field(max_length=50)] = Field(
        default_factory=list)

    @field_validator("authorization_url", "token_url", "revocation_url")
    @classmethod
    def _endpoint_url(cls, value: str | None) -> str | None:
        # Used long after the configuration was read (a user's sign-in, a refresh, a revocation
        # in the background): a URL no request could go to is refused now, as the admin API does.
        return None if value is None else check_http_url(value)


class McpServerConfig(Strict):
    name: Annotated[str, Field(pattern=SERVER_NAME)]
    # The server's endpoint (streamable HTTP or SSE); never taken from a caller.
    url: str | None = None
    transport: Literal["streamable_http", "sse", "stdio"] = "streamable_http"
    # stdio servers: the command and its environment (only when mcp.allow_stdio is true).
    command: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=100)] | None = None
    env: Annotated[dict[str, str], Field(max_length=100)] = Field(default_factory=dict)
    description: Annotated[str, Field(max_length=2000)] | None = None
    # The tenant whose callers see the server; None: every tenant.
    tenant: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    # Static credentials sent with every operation (e.g. Authorization), never shown.
    headers: Annotated[dict[str, SecretStr], Field(max_length=32)] = Field(default_factory=dict)
    # Per-user OAuth (each user authorizes once; tokens stored per user, encrypted).
    oauth: McpOAuthConfig | None = None
    # Tool-level permissions of the server itself (names as the server gives them).
    allowed_tools: Annotated[list[str], Field(max_length=1000)] | None = None
    denied_tools: Annotated[list[str], Field(max_length=1000)] = Field(default_factory=list)
    # Charged to budgets per tool call (USD); per tool when named. Finite and at most a million,
    # as the admin API and the catalog's prices: .inf made every call of the tool a 500 (no
    # whole number of nano-USD), 1e300 a charge no store holds.
    price_per_call: Price = 0.0
    tool_prices: Annotated[dict[str, Price], Field(max_length=1000)] = Field(default_factory=dict)
    connect_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    max_concurrency: Annotated[int, Field(ge=1, le=10_000)] = 32
    health_check_seconds: Annotated[float, Field(ge=0, le=86_400)] = 30.0

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, secret in value.items():
            if (problem := header_problem(name, secret.get_secret_value())) is not None:
                raise ValueError(problem)
        return value

    @field_validator("name")
    @classmethod
    def _no_separator(cls, value: str) -> str:
        problem = server_name_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _transport(self) -> McpServerConfig:
        if self.transport == "stdio":
            if not self.command:
                raise ValueError("command: transport stdio needs one")
        elif self.url is None:
            raise ValueError(f"url: transport {self.transport} needs one")
        else:
            # Its path may be its credential (a hosted server's /mcp/<token>/sse): errors name
            # its origin only, as webhooks' do.
            check_http_url(self.url, secret_path=True)
        return self


# Strict: a tool name is text; the lenient reading (coerce_numbers_to_str) would store a number
# given as one (the admin API's {"allow": [1]}) as "1".
_Pattern = Annotated[str, Field(min_length=1, max_length=200, strict=True)]


# Tool-level permissions (docs/mcp.md, "Permissions"): patterns on the exposed names
# ("<server>__<tool>", "github__*"); deny wins over allow.
class McpToolRule(Strict):
    # None: every tool not denied; a list: only the tools matching one of its patterns.
    allow: Annotated[list[_Pattern], Field(max_length=1000)] | None = None
    deny: Annotated[list[_Pattern], Field(max_length=1000)] = Field(default_factory=list)


class McpPermissions(Strict):
    # By role (access/roles.py) and by team id: every key of the role or team is bound by the rule.
    roles: Annotated[dict[str, McpToolRule], Field(max_length=100)] = Field(default_factory=dict)
    teams: Annotated[dict[str, McpToolRule], Field(max_length=10_000)] = Field(default_factory=dict)


class McpConfig(Strict):
    """Gateway-wide bounds of the MCP endpoint."""

    # stdio servers run as child processes of the gateway: off unless the platform admin allows.
    allow_stdio: bool = False
    # How long a tools/list waits for each server before leaving it out of the answer.
    list_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 5.0
    max_argument_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    max_result_bytes: Annotated[int, Field(ge=1024, le=256 * 1024 * 1024)] = 4 * 1024 * 1024
    # Tool descriptions from servers are untrusted text: cut to this length.
    max_description_chars: Annotated[int, Field(ge=64, le=100_000)] = 4096
    # The tool loop run for chat/Responses requests naming MCP servers: at most this many steps.
    max_tool_steps: Annotated[int, Field(ge=1, le=100)] = 8
    # Per-user OAuth (docs/mcp.md, "Credentials and OAuth"). The gateway's address as users'
    # browsers reach it: authorization servers send users back to <public_url>/mcp/oauth/callback,
    # and "authorization required" errors link to <public_url>/mcp/oauth/<server>/authorize.
    # None: links are relative and the callback is on the address the authorize request came to.
    public_url: str | None = None
    # How long an authorization confirmed at /mcp/oauth/<server>/authorize may take to complete.
    oauth_state_seconds: Annotated[float, Field(ge=30, le=3600)] = 600.0
    # The life of the link in an "authorization required" error (its ticket, used once).
    oauth_ticket_seconds: Annotated[float, Field(ge=30, le=3600)] = 300.0
    # Access tokens are refreshed this long before they expire.
    oauth_refresh_margin_seconds: Annotated[float, Field(ge=0, le=3600)] = 60.0
    # Each call to an authorization server or for discovery (metadata, token exchange, refresh).
    oauth_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 10.0

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value).rstrip("/")
    # Tool-level allow/deny lists by role and team (keys carry their own: docs/mcp.md).
    permissions: McpPermissions = Field(default_factory=McpPermissions)
    # How long a server's tool list (for permissions and argument validation) is reused.
    tools_cache_seconds: Annotated[float, Field(ge=0, le=3600)] = 30.0
    # Server-initiated requests passed to the client (docs/mcp.md, "Server-initiated requests"):
    # how long a client session (Mcp-Session-Id) is remembered after its last use, how long the
    # server's request waits for the client's answer, how many wait per session, and an
    # answer's size bound.
    client_session_seconds: Annotated[float, Field(ge=60, le=7 * 86400)] = 3600.0
    client_request_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 120.0
    max_pending_client_requests: Annotated[int, Field(ge=1, le=100)] = 4
    # Sessions one caller (key) may hold open at once: one key alone cannot fill the embedded
    # cache of sessions (10,000), pushing out everyone else's.
    max_client_sessions_per_key: Annotated[int, Field(ge=1, le=10_000)] = 100
    max_client_answer_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 1024 * 1024


def check_stdio(servers: list[McpServerConfig], config: McpConfig) -> None:
    """Refuse stdio servers unless the platform admin allowed them (a config error at start)."""
    for i, server in enumerate(servers):
        if server.transport == "stdio" and not config.allow_stdio:
            raise ValueError(
                f"mcp_servers[{i}] ({server.name!r}): stdio servers run as child processes of the gateway "
                "and are off unless the platform admin sets mcp.allow_stdio: true"
            )
