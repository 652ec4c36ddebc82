"""The search parameters the FHIR API accepts, declared once (the CapabilityStatement is written from these
declarations, and the views accept exactly these), and how their values are read.

Strict: a parameter an interaction does not declare is refused 400 `fhir_unknown_parameter` (a FHIR server may
ignore unknown parameters, but then a client cannot tell a filter that was applied from one that was dropped, and
here a dropped `patient` would widen an auditor's search to everyone). Modifiers (`status:not`) are not supported
and so are unknown parameters. A parameter given twice is refused, except a date, whose conditions are all applied
(`period=ge2026-01-01&period=lt2027-01-01`). Errors name the parameter (when it looks like one) and never its value.

Dates (FHIR `date` search type): a value is a range at its precision (`2026` is the whole year, `2026-03-01` the
whole day in UTC, `2026-03-01T10:00:00Z` that second), with the prefixes eq (default), ne, gt, lt, ge and le; sa,
eb and ap are refused. A time without a zone is read as UTC.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Q
from django.http import QueryDict

from health_platform.errors import ValidationFailed

DEFAULT_COUNT = 50
MAX_COUNT = 200
# The paging links' offset (the name HAPI gives it): clients follow `next` and `previous` rather than write it.
OFFSET_PARAMETER = "_getpagesoffset"
MAX_OFFSET = 10_000_000


@dataclass(frozen=True)
class SearchParameter:
    """A search parameter as the CapabilityStatement lists it (name, FHIR search type, documentation)."""

    name: str
    type: str
    documentation: str


FORMAT = SearchParameter("_format", "token", "json, application/json or application/fhir+json; nothing else (406).")
COUNT = SearchParameter("_count", "number", f"Entries per page: 0 to {MAX_COUNT}, {DEFAULT_COUNT} when not given.")
OFFSET = SearchParameter(OFFSET_PARAMETER, "number", "Where a page starts; written into the paging links.")
PAGING = (COUNT, OFFSET)

CONSENT_SEARCH = (
    SearchParameter(
        "patient",
        "reference",
        "The patient: Patient/<pseudonym>, <pseudonym>, or the identifier <pseudonym system>|<pseudonym>.",
    ),
    SearchParameter(
        "status",
        "token",
        "active (granted, not expired: also before its period begins) or inactive (revoked or expired); "
        "several separated by commas.",
    ),
    SearchParameter("period", "date", "The consent's period (provision.period), with eq, ne, gt, lt, ge or le."),
)
AUDIT_EVENT_SEARCH = (
    SearchParameter("patient", "reference", "The patient whose record the event is about, as for Consent."),
    SearchParameter("date", "date", "When the event was recorded, with eq, ne, gt, lt, ge or le."),
    SearchParameter("agent", "reference", "The grantee that acted: its id, or <grantee system>|<id>."),
    SearchParameter("outcome", "token", "0 success, 4 minor failure, 8 serious failure, 12 major failure; commas."),
)

_SAFE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_:.\-]{0,63}")
_DATE = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?P<fraction>\.\d{1,6})?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})?)?)?)?"
)
DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le")


def invalid(message: str, *, code: str = "fhir_invalid_parameter") -> ValidationFailed:
    return ValidationFailed(message, code=code)


def parameters_check(query: QueryDict, accepted: tuple[SearchParameter, ...]) -> None:
    """Refuse a parameter not in `accepted` (or `_format`), and one given twice unless it is a date."""
    types = {parameter.name: parameter.type for parameter in (*accepted, FORMAT)}
    for name in query:
        if name not in types:
            shown = f" {name}" if _SAFE_NAME.fullmatch(name) else ""
            raise invalid(
                f"The parameter{shown} is not supported here (the CapabilityStatement at /fhir/metadata lists those "
                "that are).",
                code="fhir_unknown_parameter",
            )
        values = query.getlist(name)
        if len(values) > 1 and types[name] != "date":
            raise invalid(f"The parameter {name} is given more than once.")
        if any(not value for value in values):
            raise invalid(f"The parameter {name} is empty.")


def paging(query: QueryDict) -> tuple[int, int]:
    """(count, offset) of the page asked for."""
    return (
        _number(query, COUNT.name, DEFAULT_COUNT, MAX_COUNT),
        _number(query, OFFSET_PARAMETER, 0, MAX_OFFSET),
    )


def _number(query: QueryDict, name: str, default: int, maximum: int) -> int:
    value = query.get(name)
    if value is None:
        return default
    if not value.isascii() or not value.isdigit() or int(value) > maximum:
        raise invalid(f"The parameter {name} must be a whole number from 0 to {maximum}.")
    return int(value)


def token_codes(query: QueryDict, name: str, *, system: str, codes: tuple[str, ...]) -> set[str] | None:
    """The codes a token parameter asks for (None: not given); each `code` or `system|code`, commas for "or"."""
    value = query.get(name)
    if value is None:
        return None
    wanted = set()
    for item in value.split(","):
        item_system, separator, code = item.rpartition("|")
        if (separator and item_system not in ("", system)) or code not in codes:
            raise invalid(f"The parameter {name} takes one or more of: {', '.join(codes)}.")
        wanted.add(code)
    return wanted


def reference_id(query: QueryDict, name: str, *, resource_type: str | None, system: str) -> str | None:
    """The id a reference parameter names (None: not given): `<id>`, the identifier `system|id`, or (with a
    `resource_type`) `<type>/<id>`."""
    value = query.get(name)
    if value is None:
        return None
    item_system, separator, identifier = value.rpartition("|")
    if separator:
        if item_system != system:
            raise invalid(f"The parameter {name} takes an identifier of the system {system}.")
        return identifier
    return value.removeprefix(f"{resource_type}/") if resource_type else value


def date_range(value: str, name: str) -> tuple[str, datetime, datetime]:
    """(prefix, start, end) of a date parameter's value: the range [start, end) its precision covers."""
    prefix = value[:2] if value[:2].isalpha() else "eq"
    if prefix not in DATE_PREFIXES:
        raise invalid(f"The parameter {name} takes the prefixes {', '.join(DATE_PREFIXES)} only.")
    text = value[2:] if value[:2].isalpha() else value
    match = _DATE.fullmatch(text)
    if match is None:
        raise invalid(f"The parameter {name} must be a FHIR date or dateTime (2026, 2026-03, 2026-03-01, ...).")
    part = {key: int(found) for key, found in match.groupdict().items() if found and key not in ("fraction", "zone")}
    try:
        start = datetime(
            part["year"],
            part.get("month", 1),
            part.get("day", 1),
            part.get("hour", 0),
            part.get("minute", 0),
            part.get("second", 0),
            int((match["fraction"] or ".0")[1:].ljust(6, "0")),
            tzinfo=UTC,
        )
    except ValueError:
        raise invalid(f"The parameter {name} names a date that does not exist.") from None
    zone = match["zone"]
    try:
        if zone and zone != "Z":
            sign = 1 if zone[0] == "+" else -1
            start -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        return prefix, start, _end_of(start, match)
    except (OverflowError, ValueError):  # year 1 moved east of UTC, the end of year 9999
        raise invalid(f"The parameter {name} names a time out of range.") from None


def _end_of(start: datetime, match: re.Match[str]) -> datetime:
    if match["fraction"]:
        return start + timedelta(microseconds=1)
    if match["second"]:
        return start + timedelta(seconds=1)
    if match["minute"]:
        return start + timedelta(minutes=1)
    if match["day"]:
        return start + timedelta(days=1)
    if match["month"]:
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        return start.replace(year=year, month=month)
    return start.replace(year=start.year + 1)


# How each prefix compares a target with the searched range [low, high): a moment (an event's time) ...
_MOMENT: dict[str, Callable[[str, datetime, datetime], Q]] = {
    "eq": lambda field, low, high: Q(**{f"{field}__gte": low, f"{field}__lt": high}),
    "gt": lambda field, low, high: Q(**{f"{field}__gte": high}),
    "ge": lambda field, low, high: Q(**{f"{field}__gte": low}),
    "lt": lambda field, low, high: Q(**{f"{field}__lt": low}),
    "le": lambda field, low, high: Q(**{f"{field}__lt": high}),
}
# ... and a period [start, end) (a consent's validity): eq is "contains the searched range", the others
# "some of the period lies after (before) the searched range, or in it" as FHIR defines them for ranges.
_PERIOD: dict[str, Callable[[tuple[str, str], datetime, datetime], Q]] = {
    "eq": lambda fields, low, high: Q(**{f"{fields[0]}__lte": low, f"{fields[1]}__gte": high}),
    "gt": lambda fields, low, high: Q(**{f"{fields[1]}__gt": high}),
    "ge": lambda fields, low, high: Q(**{f"{fields[1]}__gt": low}),
    "lt": lambda fields, low, high: Q(**{f"{fields[0]}__lt": low}),
    "le": lambda fields, low, high: Q(**{f"{fields[0]}__lt": high}),
}


def moment_condition(query: QueryDict, name: str, field: str) -> Q:
    """The conditions of every value of the date parameter `name` over the moment `field`, all of them."""
    return _conditions(query, name, lambda prefix, low, high: _MOMENT[prefix](field, low, high))


def period_condition(query: QueryDict, name: str, fields: tuple[str, str]) -> Q:
    """The conditions of every value of the date parameter `name` over the period (start, end) `fields`."""
    return _conditions(query, name, lambda prefix, low, high: _PERIOD[prefix](fields, low, high))


def _conditions(query: QueryDict, name: str, condition: Callable[[str, datetime, datetime], Q]) -> Q:
    combined = Q()
    for value in query.getlist(name):
        prefix, low, high = date_range(value, name)
        combined &= ~condition("eq", low, high) if prefix == "ne" else condition(prefix, low, high)
    return combined


def page_links(query: QueryDict, *, count: int, offset: int, total: int) -> dict[str, dict[str, Any]]:
    """The parameters of the self, first, previous and next links of a page: the query's own parameters (as
    sent, in a stable order) with the page's count and offset. The same query always gives the same links."""
    paging_names = (COUNT.name, OFFSET_PARAMETER)
    kept = [(name, value) for name in sorted(query) if name not in paging_names for value in query.getlist(name)]

    def at(start: int) -> dict[str, Any]:
        return {"parameters": [*kept, (COUNT.name, str(count)), (OFFSET_PARAMETER, str(start))]}

    links = {"self": at(offset), "first": at(0)}
    if count and offset > 0:
        links["previous"] = at(max(0, offset - count))
    if count and offset + count < total:
        links["next"] = at(offset + count)
    return links
