"""Query-string reading shared by the admin API's read-only reports (usage, analytics, logs,
audit, alerts): known parameters only, each once and bounded, RFC 3339 times, and the caller's
reach applied to the tenant and owner filters the same way everywhere. (Text no store can hold,
a NUL, is refused before any route runs, for every admin route: text_input.py.)"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Query, Request
from pydantic import BeforeValidator

from switchboard.access.roles import Reach
from switchboard.errors import InvalidRequest, NotFound
from switchboard.http.admin.authz import Access

# Times are clamped to this range, so a default range or a zone shift cannot overflow.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
MAX_VALUE = 256  # characters of any one parameter
# The databases' integer columns: a number past them is a 400, never an error of the driver.
MAX_INT = 2**31 - 1  # INTEGER (32 bits in PostgreSQL)
MAX_BIGINT = 2**63 - 1  # BIGINT, and any SQLite integer


def whole(value: str, low: int, high: int) -> int | None:
    """``value`` as an integer from ``low`` to ``high``, or None: ASCII decimal digits only.
    ``int()`` (and pydantic's lax mode after it) also reads " 5", "+5", "5.0", "1_0" and other
    scripts' digits (U+0665, an Arabic-Indic 5), and ``str.isdigit`` takes "²", which ``int()``
    then refuses: one rule for every integer a query string gives."""
    if not (value.isascii() and value.isdigit()):
        return None
    digits = value.lstrip("0")  # int() refuses text of over 4,300 digits, leading zeros included
    if len(digits) > len(str(high)):
        return None
    number = int(digits or "0")
    return number if low <= number <= high else None


def plain_decimal(value: str) -> bool:
    """Whether ``value`` is a plain decimal number, ASCII digits with at most one point ("5",
    "0.25", ".5"): ``Decimal()`` and ``float()`` also read " 5", "+5", "1_0", "1e3" and other
    scripts' digits (U+0665, an Arabic-Indic 5, read as 5). Any decimal a query string gives
    passes this first."""
    return value.isascii() and value.replace(".", "", 1).isdigit()


def whole_number(name: str, value: str | None, low: int, high: int) -> int | None:
    """A query parameter read by hand (logs, usage): its integer, None if absent, else a 400."""
    if value is None:
        return None
    number = whole(value, low, high)
    if number is None:
        raise InvalidRequest(f"{name}: expected a whole number from {low} to {high}", param=name,
                             code="invalid_value")
    return number


def digits_only(low: int, high: int) -> BeforeValidator:
    """A FastAPI query integer (``Annotated[int, digits_only(1, 1000), Query(ge=1, le=1000)]``)
    held to :func:`whole`, refused in the words of :func:`whole_number` (the admin app's
    validation handler prefixes the parameter and answers 400 ``invalid_value``). Query's own
    bounds stay for the API description; this check runs first. Only text is checked: a
    default is not text."""
    def check(value: object) -> object:
        if isinstance(value, str) and whole(value, low, high) is None:
            raise ValueError(f"expected a whole number from {low} to {high}")
        return value
    return BeforeValidator(check)


# A list's page size, on every admin list.
Limit = Annotated[int, digits_only(1, 1000), Query(ge=1, le=1000)]


def _true_or_false(value: object) -> object:
    if isinstance(value, str) and value not in ("true", "false"):
        raise ValueError("expected true or false")
    return value


# A query boolean: ``true`` or ``false`` only (pydantic alone also reads "yes", "on", "1"...).
TrueOrFalse = BeforeValidator(_true_or_false)


def query_params(request: Request, allowed: Collection[str], *, nonblank: bool = False,
                 longer: Mapping[str, int] | None = None) -> dict[str, str]:
    """The query string as a dict: an unknown, repeated or oversized (or, with ``nonblank``,
    blank) parameter is a 400. Oversized: past MAX_VALUE characters, or past the bound
    ``longer`` gives a parameter whose values may be longer (an id or a claim the API issues or
    takes at that length)."""
    found: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            raise InvalidRequest(f"{name[:64]}: unknown parameter", param=name[:64], code="unknown_parameter")
        if name in found:
            raise InvalidRequest(f"{name}: given more than once", param=name, code="duplicate_parameter")
        bound = longer.get(name, MAX_VALUE) if longer else MAX_VALUE
        if len(value) > bound or (nonblank and not value.strip()):
            expected = f"1 to {bound} characters" if nonblank else f"at most {bound} characters"
            raise InvalidRequest(f"{name}: expected {expected}", param=name, code="invalid_value")
        found[name] = value
    return found


def rfc3339(name: str, value: str | None, *, clamp: bool = True) -> datetime | None:
    """An RFC 3339 time with a zone, in UTC and clamped to [EARLIEST, LATEST]; None if absent.
    ``clamp=False``: a time outside that range is a 400 (an answer that names the range it
    covered must not name another one than asked)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC)
            if not clamp and not EARLIEST <= parsed <= LATEST:
                raise InvalidRequest(f"{name}: outside {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d} (UTC)",
                                     param=name, code="invalid_time")
            return max(min(parsed, LATEST), EARLIEST)
    except (ValueError, OverflowError):
        pass
    raise InvalidRequest(f"{name}: expected an RFC 3339 time with a zone, e.g. 2026-06-01T00:00:00Z",
                         param=name, code="invalid_time")


def within_reach(access: Access, tenant: str | None, filters: dict[str, Any]) -> str | None:
    """The tenant to read (None: every tenant, the platform admin only), with ``filters``
    narrowed in place to the caller's reach: a team role reads its own team (another team named
    is 404), a developer the records of its user and key (``filters["owners"]``) and of every
    key of its key's rotation chain (``owner_lineage``): rotation replaces a key's secret, not
    its history, as its budgets carry on. A key's user's records are those of its own team
    (``owner_team``): it does not reach what its user did with another team's keys."""
    if access.reach >= Reach.ANY:
        return tenant
    scoped = access.tenant_for(tenant)
    p = access.principal
    if access.reach == Reach.TEAM:
        team = filters.get("team_id")
        if team is not None and team != p.team_id:
            raise NotFound(f"no team '{team[:64]}'", code="team_not_found")
        filters["team_id"] = p.team_id
        if p.team_id is None:
            filters["owners"] = ()  # no team: nothing to see
    elif access.reach == Reach.SELF:
        filters["owners"] = tuple(dict.fromkeys(v for v in (p.user_id, p.key_id, p.id) if v))
        filters["owner_team"] = access.owner_team
        if p.key_id is not None:
            filters["owner_lineage"] = p.key_lineage or p.key_id
    return scoped


_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def refuse_undeclared_query(request: Request) -> None:
    """A change's query string holds only the parameters its route declares, each once: a
    misspelt ``?tenant=`` on a delete must not act on the caller's own tenant instead. Read
    routes check their own (:func:`query_params`, FastAPI's declared ones). Installed for every
    admin route (app.py); a request with no query string costs one lookup."""
    if not request.scope.get("query_string") or request.method not in _WRITES:
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known_only(request, _declared(dependant))


def known_only(request: Request, allowed: Collection[str]) -> None:
    """400 for a parameter not in ``allowed``, or one given twice (values left to the route)."""
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name not in allowed:
            raise InvalidRequest(f"{name[:64]}: unknown parameter", param=name[:64], code="unknown_parameter")
        if name in seen:
            raise InvalidRequest(f"{name}: given more than once", param=name, code="duplicate_parameter")
        seen.add(name)


def _declared(dependant: Any) -> set[str]:
    """The query parameters a route and its dependencies declare, by the name sent."""
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _declared(sub)
    return names
