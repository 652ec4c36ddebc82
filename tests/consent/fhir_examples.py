"""FHIR R4 Consents written the way the specification's examples are (opt-in, opt-out with exceptions, research,
treatment; hl7.org/fhir/R4/consent-examples.html), as test data: written here, not copied.

The patient is named by pseudonym and the grantee by its directory id (the only references the platform can
resolve); each example is a function of them and of a period to start in the future, and `GRANTS` says the
grants each one must import to, `REFUSED` the element each refused one must be refused at.
"""

import copy
from datetime import datetime
from typing import Any

from health_platform.fhir_codes import (
    CONSENT_SCOPE,
    DUO,
    GRANTEE_SYSTEM,
    LOINC,
    OBSERVATION_CATEGORY,
    PSEUDONYM_SYSTEM,
    PURPOSE_SYSTEM,
    V3_ACT_CODE,
    V3_ACT_REASON,
    V3_PARTICIPATION_TYPE,
)

BREAST_CANCER = "diagnostic-model:breast-cancer"
TREAT = {"system": V3_ACT_REASON, "code": "TREAT", "display": "treatment"}
ETREAT = {"system": V3_ACT_REASON, "code": "ETREAT", "display": "Emergency Treatment"}
HRESCH = {"system": V3_ACT_REASON, "code": "HRESCH", "display": "healthcare research"}
GENERAL_RESEARCH = {"system": DUO, "code": "DUO:0000042", "display": "general research use"}
DISEASE_SPECIFIC = {"system": DUO, "code": "DUO:0000007", "display": "disease specific research"}
BREAST_CANCER_MODEL = {"system": PURPOSE_SYSTEM, "code": BREAST_CANCER}


def category(code: str) -> dict[str, str]:
    return {"system": OBSERVATION_CATEGORY, "code": code}


def recipient(grantee: str, role: str = "IRCP") -> dict[str, Any]:
    return {
        "role": {"coding": [{"system": V3_PARTICIPATION_TYPE, "code": role}]},
        "reference": {"identifier": {"system": GRANTEE_SYSTEM, "value": grantee}, "display": "the clinician"},
    }


def period(start: datetime, end: datetime) -> dict[str, str]:
    return {"start": start.isoformat(), "end": end.isoformat()}


def consent(patient: str, provision: dict[str, Any], *, scope: str = "patient-privacy", policy: str = "OPTIN"):
    return {
        "resourceType": "Consent",
        "id": "consent-example",
        "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">A consent</div>'},
        "status": "active",
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": scope}]},
        "category": [{"coding": [{"system": LOINC, "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": {"identifier": {"system": PSEUDONYM_SYSTEM, "value": patient}},
        "dateTime": "2026-01-15",
        "policyRule": {"coding": [{"system": V3_ACT_CODE, "code": policy}]},
        "provision": provision,
    }


def opt_in(patient: str, grantee: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Opt-in: the clinician may use my imaging results for the breast-cancer model, for a while."""
    return consent(
        patient,
        {
            "type": "permit",
            "period": period(start, end),
            "actor": [recipient(grantee)],
            "purpose": [HRESCH, DISEASE_SPECIFIC, BREAST_CANCER_MODEL],
            "class": [category("imaging")],
        },
    )


def opt_in_with_exceptions(patient: str, grantee: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Opt-in with exceptions: treatment and research over three categories, but not my laboratory results,
    and not for research after all."""
    return consent(
        patient,
        {
            "type": "permit",
            "period": period(start, end),
            "actor": [recipient(grantee)],
            "purpose": [TREAT, HRESCH, GENERAL_RESEARCH],
            "class": [category("imaging"), category("laboratory"), category("vital-signs")],
            "provision": [
                {"type": "deny", "class": [category("laboratory")]},
                {"type": "deny", "actor": [recipient(grantee)], "purpose": [HRESCH, GENERAL_RESEARCH]},
            ],
        },
    )


def opt_out_with_exceptions(patient: str, grantee: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Opt-out with exceptions: share nothing (an opt-out policy, taken back whole by the base deny), except
    laboratory and vital signs for my treatment, and imaging for general research."""
    return consent(
        patient,
        {
            "type": "deny",
            "provision": [
                {
                    "type": "permit",
                    "period": period(start, end),
                    "actor": [recipient(grantee, "PRCP")],
                    "purpose": [TREAT],
                    "class": [category("laboratory"), category("vital-signs")],
                },
                {
                    "type": "permit",
                    "period": period(start, end),
                    "actor": [recipient(grantee)],
                    "purpose": [GENERAL_RESEARCH],
                    "class": [category("imaging")],
                },
            ],
        },
        policy="OPTOUT",
    )


def opt_out_inheriting(patient: str, grantee: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Deny this clinician everything for this period, except imaging for the breast-cancer model and laboratory
    results for treatment: the exceptions take the actor and the period from the deny."""
    return consent(
        patient,
        {
            "type": "deny",
            "period": period(start, end),
            "actor": [recipient(grantee)],
            "provision": [
                {"type": "permit", "purpose": [BREAST_CANCER_MODEL], "class": [category("imaging")]},
                {"type": "permit", "purpose": [TREAT], "class": [category("laboratory")]},
            ],
        },
    )


def research(patient: str, grantee: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Research: general research use (GA4GH DUO) of my laboratory and imaging results."""
    return consent(
        patient,
        {
            "type": "permit",
            "period": period(start, end),
            "actor": [recipient(grantee)],
            "purpose": [GENERAL_RESEARCH],
            "class": [category("laboratory"), category("imaging")],
        },
        scope="research",
    )


def treatment(patient: str, grantee: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Treatment: my clinician may use my vital signs and examination findings to treat me."""
    return consent(
        patient,
        {
            "type": "permit",
            "period": period(start, end),
            "actor": [recipient(grantee, "PRCP")],
            "purpose": [TREAT],
            "class": [category("vital-signs"), category("exam")],
        },
        scope="treatment",
    )


# example -> the grants it imports to: (purposes, categories), in the order of its permits.
GRANTS = {
    opt_in: [([BREAST_CANCER], ["imaging"])],
    opt_in_with_exceptions: [(["treatment"], ["imaging", "vital-signs"])],
    opt_out_with_exceptions: [(["treatment"], ["laboratory", "vital-signs"]), (["research"], ["imaging"])],
    opt_out_inheriting: [([BREAST_CANCER], ["imaging"]), (["treatment"], ["laboratory"])],
    research: [(["research"], ["imaging", "laboratory"])],
    treatment: [(["treatment"], ["exam", "vital-signs"])],
}


def changed(example: dict[str, Any], *path_and_value: Any) -> dict[str, Any]:
    """`example` with the element at path (keys and indexes) set to value (None: removed)."""
    *path, value = path_and_value
    document = copy.deepcopy(example)
    target = document
    for step in path[:-1]:
        target = target[step]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return document


def emergency_only(patient: str, grantee: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Opt-out except for emergency treatment: the platform grants no emergency access (that is a break-the-glass
    declaration, not a consent)."""
    example = opt_out_inheriting(patient, grantee, start, end)
    return changed(example, "provision", "provision", 1, "purpose", [ETREAT])


def variant(example: Any, *path_and_value: Any) -> Any:
    """An example changed as `changed` does, still a function of the patient, grantee and period."""
    return lambda *arguments: changed(example(*arguments), *path_and_value)


ACCESS = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}]
ALL_THREE = [category("imaging"), category("laboratory"), category("vital-signs")]
EXCEPTIONS = ("provision", "provision")

# (what it shows, the example, the element it is refused at with fhir_unsupported)
REFUSED = [
    ("emergency treatment has no grant", emergency_only, "provision.provision[1].purpose[0]"),
    ("an action", variant(opt_in_with_exceptions, *EXCEPTIONS, 0, "action", ACCESS), "provision.provision[0].action"),
    (
        "a literal reference",
        variant(opt_in, "provision", "actor", 0, "reference", {"reference": "Practitioner/f001"}),
        "provision.actor[0].reference",
    ),
    (
        "an actor that is no recipient",
        variant(
            opt_in, "provision", "actor", 0, "role", {"coding": [{"system": V3_PARTICIPATION_TYPE, "code": "CST"}]}
        ),
        "provision.actor[0].role",
    ),
    (
        # a grant permits each of its purposes for each of its categories: it cannot leave out one pair
        "an exception of a purpose for one category",
        variant(opt_in_with_exceptions, *EXCEPTIONS, 1, "class", [category("imaging")]),
        "provision.provision[1]",
    ),
    (
        "an exception for part of the period",
        variant(opt_in_with_exceptions, *EXCEPTIONS, 0, "period", {"start": "2031-01-01T00:00:00Z"}),
        "provision.provision[0].period",
    ),
    (
        "an exception of what the permit does not name",
        variant(opt_in_with_exceptions, *EXCEPTIONS, 0, "class", [category("exam")]),
        "provision.provision[0].class",
    ),
    (
        "an exception of everything",
        variant(opt_in_with_exceptions, *EXCEPTIONS, 0, "class", ALL_THREE),
        "provision.provision[0].class",
    ),
    (
        "a permit in a permit",
        variant(opt_in_with_exceptions, *EXCEPTIONS, 0, "type", "permit"),
        "provision.provision[0].type",
    ),
    (
        "a third level",
        variant(opt_out_inheriting, *EXCEPTIONS, 0, "provision", [{"type": "deny"}]),
        "provision.provision[0].provision",
    ),
    (
        "a permit for another actor than its deny",
        variant(opt_out_inheriting, *EXCEPTIONS, 1, "actor", [recipient("clinician:someone-else")]),
        "provision.provision[1].actor",
    ),
    (
        "a permit reaching outside its deny's period",
        variant(opt_out_inheriting, *EXCEPTIONS, 0, "period", {"start": "2020-01-01T00:00:00Z"}),
        "provision.provision[0].period",
    ),
    (
        "a permit with no actor anywhere",
        variant(opt_out_inheriting, "provision", "actor", None),
        "provision.provision[0].actor",
    ),
    ("a deny with no exceptions", variant(opt_out_inheriting, *EXCEPTIONS, None), "provision.provision"),
    # under an opt-out policy, a deny with conditions leaves everything outside them permitted
    (
        "an opt-out policy over a scoped deny",
        variant(opt_out_inheriting, "policyRule", "coding", 0, "code", "OPTOUT"),
        "policyRule",
    ),
    ("an opt-out policy over a permit", variant(opt_in, "policyRule", "coding", 0, "code", "OPTOUT"), "policyRule"),
    ("an advance directive", variant(research, "scope", "coding", 0, "code", "adr"), "scope"),
]
