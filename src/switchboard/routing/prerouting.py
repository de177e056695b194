"""Which of a group's deployments may serve a request at all, before any strategy: inside the
caller's allowed regions (data residency), large enough for the request's context, not
cooling down (routing/health.py, checked by the router).

A deployment without a ``region`` is outside every restricted policy. A deployment whose
catalog record has no context window is assumed large enough.

The refusals a request meets when nothing may serve it are built here too, so every path that
chooses a deployment (the router, a pin, a file upload) answers them alike.
"""

from __future__ import annotations

from collections.abc import Callable, Container

from switchboard.catalog import Catalog
from switchboard.errors import InvalidRequest, PermissionDenied
from switchboard.routing.groups import Group
from switchboard.routing.table import Route

Window = Callable[[Route], int | None]


def in_regions(route: Route, regions: frozenset[str] | None) -> bool:
    if regions is None:
        return True
    region = route.entry.region if route.entry is not None else None
    return region is not None and region in regions


def fits(route: Route, needed_tokens: int | None, window: Window | None) -> bool:
    if needed_tokens is None or window is None:
        return True
    size = window(route)
    return size is None or needed_tokens <= size


def eligible(deployments: tuple[Route, ...], regions: frozenset[str] | None, needed_tokens: int | None,
             window: Window | None = None) -> list[Route]:
    """The deployments inside ``regions`` (None: anywhere) whose context window holds
    ``needed_tokens`` (None: unchecked), in their order."""
    if regions is None and needed_tokens is None:
        return list(deployments)
    return _eligible(deployments, regions, needed_tokens, window)


def _eligible(deployments: tuple[Route, ...], regions: frozenset[str] | None, needed_tokens: int | None,
              window: Window | None) -> list[Route]:
    """``eligible``'s filter. A function of its own: its comprehension made the arguments cells
    of ``eligible`` on every call, most of which need no filter."""
    return [r for r in deployments if in_regions(r, regions) and fits(r, needed_tokens, window)]


def outside_regions(what: str, regions: frozenset[str] | None, param: str | None = None,
                    hint: str = "") -> PermissionDenied:
    """403 ``region_not_allowed``: ``what`` (the model 'x', a pinned deployment...) has no
    deployment inside the caller's ``regions``."""
    shown = ", ".join(sorted(regions or ())) or "none"
    return PermissionDenied(f"{what} cannot be served in the regions this key is allowed ({shown}){hint}",
                            param=param, code="region_not_allowed")


def too_large(needed: int, what: str, largest: int, per_input: bool = False) -> InvalidRequest:
    """400 ``context_length_exceeded``: the request needs more tokens than ``what`` holds (with
    ``per_input``, its largest embeddings input does: a window bounds each input, not the list)."""
    if per_input:
        return InvalidRequest(f"an input of this request needs {needed} tokens, more than {what} "
                              f"({largest} tokens)", param="input", code="context_length_exceeded")
    return InvalidRequest(f"this request needs {needed} tokens (prompt and max_tokens), more than {what} "
                          f"({largest} tokens)", param="messages", code="context_length_exceeded")


class Windows:
    """Each deployment's context window, from its own catalog record (the entry's model and
    ``info:`` overrides), resolved once per model entry; and whether a group has any, so a
    group without one pays nothing for pre-routing."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._sizes: dict[tuple[str, str], tuple[object, int | None]] = {}
        self._groups: dict[str, tuple[Group, int | None]] = {}

    def __call__(self, route: Route) -> int | None:
        key = (route.target.name, route.deployment)
        memo = self._sizes.get(key)
        if memo is not None and memo[0] is route.entry:
            return memo[1]
        size: int | None = None
        if route.entry is not None:
            entry = route.entry
            match = self._catalog.resolve_entry(route.target.provider_type, entry.model, entry.info)
            size = match.info.context_window if match is not None else None
        self._sizes[key] = (route.entry, size)
        return size

    def keep(self, deployments: Container[tuple[str, str]], groups: Container[str]) -> None:
        """Forget the deployments and groups no longer in the model table (a group's memo holds
        its routes, and so their clients, retired or not)."""
        for key in [k for k in self._sizes if k not in deployments]:
            del self._sizes[key]
        for name in [n for n in self._groups if n not in groups]:
            del self._groups[name]

    def smallest(self, group: Group) -> int | None:
        """The smallest known context window of ``group``'s deployments (None: none known)."""
        memo = self._groups.get(group.name)
        if memo is not None and memo[0] is group:
            return memo[1]
        return self._smallest(group)

    def _smallest(self, group: Group) -> int | None:
        """``smallest`` worked out, and kept. A method of its own: its comprehension made
        variables of ``smallest`` cells on every call, most of which read the memo."""
        sizes = [size for r in group.deployments if (size := self(r)) is not None]
        smallest = min(sizes) if sizes else None
        self._groups[group.name] = (group, smallest)
        return smallest
