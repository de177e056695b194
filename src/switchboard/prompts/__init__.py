"""The prompt registry: templates checked and rendered in a sandbox, versions cached for the
request path (docs/prompts.md)."""
