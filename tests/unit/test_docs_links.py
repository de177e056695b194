"""Every relative link in README.md and docs/ points at a file that exists and, with a
``#fragment``, at a heading of that file (GitHub's anchors: lower case, punctuation dropped,
spaces as hyphens, ``-1``, ``-2``... for repeated headings). Links to other sites are not
fetched."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _prose(path: Path) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for _, line in _prose(path):
        if m := _HEADING.match(line):
            slug = _slug(m[2])
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    anchors |= {m for _, line in _prose(path) for m in re.findall(r"<a (?:name|id)=\"([^\"]+)\"", line)}
    return anchors


def _links(path: Path) -> list[tuple[int, str]]:
    return [(number, target) for number, line in _prose(path)
            for target in _LINK.findall(_CODE_SPAN.sub("", line))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target, re.I)]  # http:, https:, mailto:


def test_the_slugs_are_githubs() -> None:
    assert _slug("`POST /v1/chat/completions`") == "post-v1chatcompletions"
    assert _slug("JWT / OIDC callers") == "jwt--oidc-callers"
    assert _slug("Canary and A/B splits") == "canary-and-ab-splits"
    assert _slug("Sessions: `x-switchboard-session` on `POST /apis/{name}`") == \
        "sessions-x-switchboard-session-on-post-apisname"


def test_links_are_found() -> None:
    assert len([link for page in PAGES for link in _links(page)]) > 100


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for number, target in _links(page):
        file, _, fragment = target.partition("#")
        where = (page.parent / file).resolve() if file else page
        if not where.exists():
            broken.append(f"{page.name}:{number}: {target}: no such file")
        elif fragment and where.suffix == ".md" and fragment not in _anchors(where):
            broken.append(f"{page.name}:{number}: {target}: no heading #{fragment} in {where.name}")
    assert broken == [], "\n".join(broken)


def test_every_page_is_listed_in_the_readme_or_reached_from_it() -> None:
    """A page nothing links to is one nobody finds: README.md links every page of docs/, and
    they reach the rest (docs/providers/*.md from providers.md)."""
    readme = {(ROOT / target.partition("#")[0]).resolve() for _, target in _links(ROOT / "README.md")}
    top = sorted((ROOT / "docs").glob("*.md"))
    assert [p.name for p in top if p not in readme] == [], "docs/ pages README.md does not link"
    reached, todo = set(readme), list(readme)
    while todo:
        page = todo.pop()
        for _, target in _links(page) if page.suffix == ".md" and page.is_file() else []:
            linked = (page.parent / target.partition("#")[0]).resolve() if target[0] != "#" else page
            if linked not in reached:
                reached.add(linked)
                todo.append(linked)
    assert [str(p.relative_to(ROOT)) for p in PAGES if p not in reached and p.name != "README.md"] == []
