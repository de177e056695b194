"""The MCP gateway (docs/mcp.md): tools, resources and prompts of many upstream MCP servers behind
one streamable-HTTP endpoint, ``/mcp``, under the gateway's keys, permissions, limits, budgets and
logs.

Layout: ``interfaces`` (what the parts agree on), ``upstream`` (a client session to one server),
``toolbox`` (aggregation, ``server__tool`` naming, permissions), ``credentials`` (static and
per-user OAuth), ``loop`` (the tool loop run for chat and Responses requests), ``stdio`` (managed
child-process servers); the HTTP edge is ``http/mcp/``.
"""
