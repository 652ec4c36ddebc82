"""Reads of the grantee directory, and the chunked IN-list read the apps share."""

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL

from health_platform.models import ClinicianProfile, GranteeStatus, Organisation


@dataclass(frozen=True)
class Grantee:
    grantee_id: str  # "clinician:<public id>" or "org:<slug>": what the ledger knows
    kind: str  # "clinician" or "organisation"
    display_name: str
    active: bool = True  # the directory's status (mirrored from the ledger); False: its consents admit nothing


def inactive_grantee_ids() -> set[str]:
    """The grantees the ledger's directory holds as inactive (from the mirror)."""
    return set(GranteeStatus.objects.filter(active=False).values_list("grantee_id", flat=True))


def grantees_all() -> list[Grantee]:
    """Everyone a patient may grant consent to: active clinicians with an active account, and active
    organisations (a grantee deactivated in the directory is left out)."""
    inactive = inactive_grantee_ids()
    clinicians = ClinicianProfile.objects.filter(user__is_active=True).select_related("organisation")
    found = [
        Grantee(
            c.grantee_id,
            "clinician",
            f"{c.display_name} ({c.organisation.name})" if c.organisation else c.display_name,
        )
        for c in clinicians
    ]
    found += [Grantee(o.grantee_id, "organisation", o.name) for o in Organisation.objects.all()]
    return [grantee for grantee in found if grantee.grantee_id not in inactive]


def grantee_get(*, grantee_id: str) -> Grantee | None:
    """The grantee with this ledger id (`active` says its directory status), or None if there is no such
    clinician with an active account or organisation."""
    kind, _, key = grantee_id.partition(":")
    active = not GranteeStatus.objects.filter(grantee_id=grantee_id, active=False).exists()
    if kind == "clinician":
        profile = ClinicianProfile.objects.filter(public_id=key, user__is_active=True).first()
        return Grantee(profile.grantee_id, "clinician", profile.display_name, active) if profile else None
    if kind == "org":
        organisation = Organisation.objects.filter(slug=key).first()
        return Grantee(organisation.grantee_id, "organisation", organisation.name, active) if organisation else None
    return None


def grantee_ids_of_user(*, user: Any) -> set[str]:
    """The grantee ids under which `user` acts: their own clinician id and their organisation's."""
    profile = ClinicianProfile.objects.filter(user=user).select_related("organisation").first()
    if profile is None:
        return set()
    ids = {profile.grantee_id}
    if profile.organisation is not None:
        ids.add(profile.organisation.grantee_id)
    return ids


# Values per IN list: well under SQLite's bound on a statement's parameters, and a few thousand ids in a few queries.
IN_LIST_CHUNK = 500


def values_among(rows: QuerySet[Any, Any], field: str, values: Iterable[Any]) -> set[Any]:
    """The `values` that some row of `rows` holds in `field`: one query per IN_LIST_CHUNK values, whatever their
    number (no statement grows past the database's bound on parameters)."""
    wanted = list(dict.fromkeys(values))
    found: set[Any] = set()
    for start in range(0, len(wanted), IN_LIST_CHUNK):
        chunk = wanted[start : start + IN_LIST_CHUNK]
        found.update(rows.filter(**{f"{field}__in": chunk}).values_list(field, flat=True))
    return found


def one_of(values: Iterable[int | str]) -> RawSQL | list[int | str]:
    """`values` (ints or strings, as the column stores them) as ONE bound parameter, for `field__in=one_of(values)`:
    any number of them in one statement, and Django does not resolve each one (for 10,000 ids that cost more than
    the query). SQLite reads them from a JSON array, PostgreSQL from an array."""
    listed = list(values)
    kinds = {type(value) for value in listed}
    if not kinds <= {int} and not kinds <= {str}:
        raise TypeError("one_of takes ints, or strings, not both nor anything else")
    if not listed:
        return []  # Django answers an empty IN list with no rows, without a query
    if connection.vendor == "postgresql":
        if kinds == {int}:
            return RawSQL("SELECT unnest(%s::bigint[])", [listed])
        return RawSQL("SELECT unnest(%s::text[])", [listed])
    return RawSQL("SELECT value FROM json_each(%s)", [json.dumps(listed)])
