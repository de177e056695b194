"""Who may call what: the gateway's own API keys (format, keyed hash, cache) and access rules.

Used by the authentication and access stages of the pipeline and by the admin API. Keys are
stored only as an HMAC-SHA256 of the key under the server secret (``auth.secret_key``), looked
up through a cache that the change feed keeps honest across instances.
"""
