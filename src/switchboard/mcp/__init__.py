"""The MCP gateway (docs/mcp.md): tools, resources and prompts of many upstream MCP servers behind
one streamable-HTTP endpoint, ``/mcp``, under the gateway's keys, permissions, limits, budgets and
logs.

Layout: ``interfaces`` (what the parts agree on), ``upstream`` (a client to one server, and the
default ``ConfigCredentials``), ``registry`` (the servers a caller may use), ``toolbox``
(aggregation, ``server__tool`` naming), ``permissions`` (tool allow/deny lists), ``stages`` (a
``tools/call``'s stages: record, checks, budgets, the call), ``credentials`` (static and
per-user OAuth), ``loop`` (the tool loop run for chat and Responses requests), ``stdio`` (managed
child-process servers); the HTTP edge is ``http/mcp/`` (with ``runner``: the gateway's own tool
calls through the same stages).
"""
