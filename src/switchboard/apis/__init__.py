"""Prompts published as REST APIs (``/apis/{name}``) and what they need: sessions
(apis/sessions.py)."""
