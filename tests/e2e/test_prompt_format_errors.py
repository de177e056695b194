"""A format string in a prompt template that names an argument not given is a 400 in the
product's words. ``'{²}'.format(1)`` answered "ValueError: invalid literal for int() with base
10: '²'": the render's own weighing of the format string read "²" as an index (``isdigit``),
which ``str.format`` reads as a name. Other failures of a format string name no Python class.
Rendering is the same whatever the backend: the embedded default suffices."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.servers import MASTER_KEY, Gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
MISSING = "nothing named '{}' was given (a format string's field or a key looked up)"
PAST_END = ("an index past the end (a format string's field numbers more arguments than were "
            "given, or an item looked up)")


def _render(gateway: Gateway, template: str) -> httpx.Response:
    name = f"p{uuid.uuid4().hex[:8]}"
    created = httpx.post(gateway.url + "/admin/v1/prompts", headers=ADMIN, timeout=10, json={
        "name": name, "model": "gpt-4o-mini", "messages": [{"role": "user", "content": template}]})
    assert created.status_code == 201, created.text
    return httpx.post(f"{gateway.url}/admin/v1/prompts/{name}/render", headers=ADMIN, timeout=10,
                      json={"variables": {}})


@pytest.mark.parametrize(("template", "message"), [
    ("{{ '{\u00b2}'.format(1) }}", MISSING.format("\u00b2")),
    ("{{ '{\u00b2}'.format_map({}) }}", MISSING.format("\u00b2")),
    ("{{ '{x}'.format(1) }}", MISSING.format("x")),
    ("{{ '{0}{\u0665}'.format(1) }}", PAST_END),  # U+0665 is str.format's index 5
    ("{{ '{'.format(1) }}", "Single '{' encountered in format string"),
])
def test_a_format_string_error_is_in_the_products_words(gateway: Gateway, template: str,
                                                        message: str) -> None:
    resp = _render(gateway, template)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == "prompt_render_failed" and error["param"] == "prompt", resp.text
    assert error["message"] == f"messages[0]: {message}", resp.text


def test_a_superscript_name_given_is_printed(gateway: Gateway) -> None:
    resp = _render(gateway, "{{ '{\u00b2}|{\u0661}'.format('a', 'b', **{'\u00b2': 'sq'}) }}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["messages"] == [{"role": "user", "content": "sq|b"}]
