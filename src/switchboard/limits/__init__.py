"""Rate limits: which limits apply to a request (``plan``), what it is estimated to take
(``estimate``), the limits set through the admin API kept in memory (``cache``) and the
OpenAI-style response headers (``headers``). The windows themselves live behind the
``RateLimiter`` store protocol; the stage that enforces all this is ``pipeline/limits.py``.
See docs/limits.md."""
