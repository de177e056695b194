"""Encryption of stored secrets (provider credentials, the key-hashing key) and credential
references (``env:NAME``, ``file:/path``). Pure: no I/O beyond reading a referenced file."""
