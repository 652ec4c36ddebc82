"""FHIR R4 Consent: export of any consent, and import of the consents the platform's grants say exactly.

The models are fhir.resources' R4B ones (the package ships R4B, not R4; Consent is the same resource in both):
everything exported validates against them, and nothing is imported that does not.

Export: one Consent per grant, an opt-in (policyRule OPTIN) whose one permit provision is the grant:
    Consent.id                     consent id
    Consent.status                 active (revoked/expired: inactive)
    Consent.scope                  consentscope#patient-privacy
    Consent.category               LOINC 59284-0 "Patient Consent"
    Consent.patient                Reference.identifier {PSEUDONYM_SYSTEM, pseudonym}: no direct identifier
    Consent.dateTime               when the grant was committed on the ledger
    Consent.policyRule             v3-ActCode#OPTIN: nothing is shared that no provision permits
    provision.type                 permit
    provision.period               valid from / until
    provision.actor[0]             role v3-ParticipationType#IRCP, reference.identifier {GRANTEE_SYSTEM, grantee id}
    provision.purpose[]            the purposes' standard codings (health_platform.fhir_codes): TREAT; HRESCH and
                                   DUO:0000042 for research; HRESCH, DUO:0000007 and the platform's code for a model
    provision.class[]              observation-category codes
    verification[0]                whether the patient signed the grant with their passkey (verified, verifiedWith
                                   the Patient); false: granted before signatures, "not patient-signed". Read past
                                   on import: the imported grants are signed anew

Import: a Consent yields one grant per permit it holds, all checked before any is written:
    opt-in       a base permit (as exported): one grant. Its nested provisions may only be deny exceptions naming
                 purposes or categories the permit names (nothing else: no period, no other actor), which
                 the grant then leaves out; an exception that would leave nothing is refused.
    opt-out      a base deny with nested permits: each permit one grant. A nested rule applies only where its base
    with         does, so it inherits the base's actor, purposes, categories and period where it names none, and
    exceptions   is refused where it names more than the base (another actor, a purpose or category the base
                 does not name, a period reaching outside the base's).
    policyRule   OPTIN; OPTOUT only with a base deny that names no condition (an opt-out policy permits
                 whatever no provision denies, which no grant can say).
    scope        patient-privacy, research or treatment.
    actor        one per permit, role IRCP or PRCP (a recipient), referenced by identifier in GRANTEE_SYSTEM.
Refused with `fhir_unsupported`, `detail.field` naming the element by its path (e.g. provision.provision[1].action)
and `detail.reason` saying why: whatever would change the meaning and has no equivalent (actions, data,
security labels, code, dataPeriod, a third level of provisions, modifier extensions, codes the platform cannot
map...), never silently dropped. Errors name fields and known codes, never a value sent.
"""

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from fhir.resources.R4B.consent import Consent as FhirConsent
from pydantic import ValidationError

from consent.models import Consent
from health_platform.errors import ValidationFailed
from health_platform.fhir_codes import (
    CONSENT_SCOPE,
    GRANTEE_SYSTEM,
    LOINC,
    OBSERVATION_CATEGORY,
    PSEUDONYM_SYSTEM,
    V3_ACT_CODE,
    V3_PARTICIPATION_TYPE,
    PurposeUnmapped,
    purposes_codings,
    purposes_from_codings,
)

SCOPE = {"system": CONSENT_SCOPE, "code": "patient-privacy"}
CATEGORY = {"system": LOINC, "code": "59284-0", "display": "Patient Consent"}
POLICY_RULE = {"system": V3_ACT_CODE, "code": "OPTIN"}
RECIPIENT_ROLE = {"system": V3_PARTICIPATION_TYPE, "code": "IRCP"}

# Consent.status by the consent's effective status: in force or yet to begin is active, revoked or over inactive.
FHIR_STATUSES = {"active": ("active", "pending"), "inactive": ("revoked", "expired")}

IMPORTED_SCOPES = {"patient-privacy", "research", "treatment"}
RECIPIENT_ROLES = {"IRCP", "PRCP"}  # information recipient, primary information recipient
# A Consent is one patient's few choices; more permits than this in one resource is not one.
MAX_PERMITS = 16

_REFUSED_PROVISION_FIELDS = ("action", "securityLabel", "code", "dataPeriod", "data", "modifierExtension")
# verification is not refused: it says whether the exported grant was signed, and an import is a new grant that the
# patient signs anew, so it is read past.
_REFUSED_CONSENT_FIELDS = ("modifierExtension", "sourceAttachment", "sourceReference", "policy")


@dataclass(frozen=True)
class GrantTerms:
    """One grant an imported Consent asks for, and the provision (by its path) that asks for it."""

    provision: str
    grantee_id: str
    purposes: list[str]
    categories: list[str]
    valid_from: datetime
    valid_until: datetime


@dataclass(frozen=True)
class ConsentDocument:
    """What an imported FHIR Consent asks for, before the grant rules are applied."""

    consent_id: str | None
    patient_pseudonym: str
    grants: list[GrantTerms]


@dataclass(frozen=True)
class _Rule:
    """One provision's conditions; None where it names none."""

    path: str
    type: str | None
    grantee_id: str | None
    purposes: list[str] | None
    categories: list[str] | None
    start: datetime | None
    end: datetime | None
    nested: list[Any]


def consent_to_fhir(consent: Consent) -> dict[str, Any]:
    resource = {
        "resourceType": "Consent",
        "id": consent.consent_id,
        "status": next(fhir for fhir, statuses in FHIR_STATUSES.items() if consent.effective_status in statuses),
        "scope": {"coding": [SCOPE]},
        "category": [{"coding": [CATEGORY]}],
        "patient": {"identifier": {"system": PSEUDONYM_SYSTEM, "value": consent.patient.pseudonym}},
        "dateTime": _instant(consent.granted_at),
        "policyRule": {"coding": [POLICY_RULE]},
        "provision": {
            "type": "permit",
            "period": {"start": _instant(consent.valid_from), "end": _instant(consent.valid_until)},
            "actor": [
                {
                    "role": {"coding": [RECIPIENT_ROLE]},
                    "reference": {"identifier": {"system": GRANTEE_SYSTEM, "value": consent.grantee}},
                }
            ],
            "purpose": purposes_codings(consent.purposes),
            "class": [{"system": OBSERVATION_CATEGORY, "code": code} for code in consent.categories],
        },
    }
    signed = consent_patient_signed(consent)
    if signed is not None:
        patient = {"identifier": {"system": PSEUDONYM_SYSTEM, "value": consent.patient.pseudonym}}
        resource["verification"] = [{"verified": signed, "verifiedWith": patient}]
    FhirConsent.model_validate(resource)  # what we export must be valid FHIR
    return resource


def consent_patient_signed(consent: Consent) -> bool | None:
    """Whether the patient signed this grant themselves (their passkey's signature, checked by the chaincode), as
    Consent.verification says it: verified false marks a consent granted before signatures ("not patient-signed").
    The one place that maps it: the FHIR API's Consent, Patient/$everything and the patient's download all go
    through consent_to_fhir."""
    return consent.patient_signed


def consent_from_fhir(resource: Any) -> ConsentDocument:
    """Read the grants a FHIR Consent asks for (see the module's mapping), or refuse it naming the element."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Consent":
        raise _unsupported("resourceType", "The resource is not a FHIR Consent.", code="not_a_consent")
    try:
        FhirConsent.model_validate(resource)
    except (ValidationError, ValueError) as error:
        fields = (
            sorted({".".join(str(p) for p in e["loc"]) for e in error.errors()})
            if isinstance(error, ValidationError)
            else []
        )
        raise ValidationFailed(
            "The resource is not a valid FHIR R4 Consent.", code="fhir_invalid", detail={"fields": fields[:20]}
        ) from None
    for name in _REFUSED_CONSENT_FIELDS:
        if resource.get(name):
            raise _unsupported(name, f"Consent.{name} cannot be represented on the platform.")
    if resource.get("status") != "active":
        raise _unsupported("status", "Only an active consent can be imported.")
    if not _codes_of(resource.get("scope"), CONSENT_SCOPE) & IMPORTED_SCOPES:
        raise _unsupported("scope", "The scope must be patient-privacy, research or treatment (consentscope).")
    pseudonym = _identifier_value(resource.get("patient"), PSEUDONYM_SYSTEM, "patient")
    if not isinstance(resource.get("provision"), dict):
        raise _unsupported("provision", "A Consent without a provision grants nothing.")
    base = _rule(resource["provision"], "provision")
    policy = _codes_of(resource.get("policyRule"), V3_ACT_CODE)
    if policy == {"OPTOUT"} and base.type == "deny" and _names_no_condition(base):
        pass  # the base deny takes back everything the opt-out policy gave: only its exceptions stand
    elif policy != {"OPTIN"}:
        raise _unsupported(
            "policyRule",
            "The policy rule must be v3-ActCode OPTIN (or OPTOUT under a base deny naming no condition): "
            "an opt-out policy permits what no provision denies, which no grant can say.",
        )
    if len(base.nested) > MAX_PERMITS:
        raise _unsupported("provision.provision", f"At most {MAX_PERMITS} nested provisions can be imported.")
    if base.type == "permit":
        grants = [_permit_with_exceptions(base)]
    elif base.type == "deny":
        if not base.nested:
            raise _unsupported("provision.provision", "A deny with no permit exceptions grants nothing to import.")
        grants = [_exception_permit(base, index, provision) for index, provision in enumerate(base.nested)]
    else:
        raise _unsupported("provision.type", "The base provision must be a permit or a deny.")
    return ConsentDocument(consent_id=resource.get("id"), patient_pseudonym=pseudonym, grants=grants)


def _permit_with_exceptions(base: _Rule) -> GrantTerms:
    """The grant of a base permit, less what its deny exceptions name."""
    grant = _grant(base)
    for index, provision in enumerate(base.nested):
        exception = _rule(provision, f"provision.provision[{index}]", nested=True)
        if exception.type != "deny":
            raise _unsupported(f"{exception.path}.type", "Within a permit only deny exceptions can be represented.")
        if exception.start or exception.end:
            raise _unsupported(f"{exception.path}.period", "A grant cannot be interrupted for part of its period.")
        if exception.grantee_id not in (None, grant.grantee_id):
            raise _unsupported(f"{exception.path}.actor", "The exception names an actor its permit does not.")
        if (exception.purposes is None) == (exception.categories is None):
            raise _unsupported(
                exception.path,
                "An exception must deny purposes or categories, not both nor neither: a grant "
                "permits every purpose it names for every category it names.",
            )
        if exception.purposes is not None:
            grant = replace(grant, purposes=_less(grant.purposes, exception.purposes, f"{exception.path}.purpose"))
        else:
            categories = _less(grant.categories, exception.categories or [], f"{exception.path}.class")
            grant = replace(grant, categories=categories)
    return grant


def _exception_permit(base: _Rule, index: int, provision: Any) -> GrantTerms:
    """The grant of a permit nested in a base deny: its own conditions, the base's where it names none."""
    permit = _rule(provision, f"provision.provision[{index}]", nested=True)
    if permit.type != "permit":
        raise _unsupported(f"{permit.path}.type", "Within a deny only permit exceptions can be represented.")
    if None not in (permit.grantee_id, base.grantee_id) and permit.grantee_id != base.grantee_id:
        raise _unsupported(f"{permit.path}.actor", "The permit names another actor than its base deny.")
    for field, own, inherited in (
        ("purpose", permit.purposes, base.purposes),
        ("class", permit.categories, base.categories),
    ):
        if own is not None and inherited is not None and not set(own) <= set(inherited):
            raise _unsupported(f"{permit.path}.{field}", f"The permit names a {field} its base deny does not.")
    if (base.start and permit.start and permit.start < base.start) or (
        base.end and permit.end and permit.end > base.end
    ):
        raise _unsupported(f"{permit.path}.period", "The permit's period reaches outside its base deny's.")
    return _grant(
        replace(
            permit,
            grantee_id=permit.grantee_id or base.grantee_id,
            purposes=base.purposes if permit.purposes is None else permit.purposes,
            categories=base.categories if permit.categories is None else permit.categories,
            start=permit.start or base.start,
            end=permit.end or base.end,
        )
    )


def _grant(rule: _Rule) -> GrantTerms:
    """A permit's grant, once everything it needs is named (by it, or by the base it inherits from)."""
    for field, value in (("actor", rule.grantee_id), ("purpose", rule.purposes), ("class", rule.categories)):
        if not value:
            raise _unsupported(f"{rule.path}.{field}", f"A permit needs {field} (here or in its base provision).")
    if rule.start is None or rule.end is None:
        raise _unsupported(f"{rule.path}.period", "A permit needs a period with start and end.")
    return GrantTerms(
        provision=rule.path,
        grantee_id=str(rule.grantee_id),
        purposes=list(rule.purposes or []),
        categories=list(rule.categories or []),
        valid_from=rule.start,
        valid_until=rule.end,
    )


def _rule(provision: Any, path: str, *, nested: bool = False) -> _Rule:
    """Read one provision's conditions, refusing what has no equivalent on the platform."""
    for name in _REFUSED_PROVISION_FIELDS:
        if provision.get(name):
            raise _unsupported(f"{path}.{name}", f"A provision's {name} cannot be represented on the platform.")
    if nested and provision.get("provision"):
        raise _unsupported(f"{path}.provision", "Provisions nested deeper than one level cannot be represented.")
    actors = provision.get("actor") or []
    if len(actors) > 1:
        raise _unsupported(f"{path}.actor", "A provision can name one actor (the grantee), no more.")
    period = provision.get("period") or {}
    purposes = provision.get("purpose")
    categories = provision.get("class")
    return _Rule(
        path=path,
        type=provision.get("type"),
        grantee_id=_grantee(actors[0], f"{path}.actor[0]") if actors else None,
        purposes=_purposes(purposes, f"{path}.purpose") if purposes else None,
        categories=_categories(categories, f"{path}.class") if categories else None,
        start=_datetime(period["start"], f"{path}.period.start") if period.get("start") else None,
        end=_datetime(period["end"], f"{path}.period.end") if period.get("end") else None,
        nested=[] if nested else list(provision.get("provision") or []),
    )


def _grantee(actor: dict[str, Any], path: str) -> str:
    if not _codes_of(actor.get("role"), V3_PARTICIPATION_TYPE) & RECIPIENT_ROLES:
        raise _unsupported(f"{path}.role", "The actor's role must be IRCP or PRCP (v3-ParticipationType): a recipient.")
    return _identifier_value(actor.get("reference"), GRANTEE_SYSTEM, f"{path}.reference")


def _purposes(codings: list[dict[str, Any]], path: str) -> list[str]:
    try:
        return purposes_from_codings(codings)
    except PurposeUnmapped as unmapped:
        field = path if unmapped.index is None else f"{path}[{unmapped.index}]"
        raise _unsupported(field, f"The purpose cannot be represented: {unmapped.reason}.") from None


def _categories(codings: list[dict[str, Any]], path: str) -> list[str]:
    for index, coding in enumerate(codings):
        if coding.get("system") != OBSERVATION_CATEGORY or not coding.get("code"):
            raise _unsupported(f"{path}[{index}]", "A class must be a code of the observation-category system.")
    return sorted({coding["code"] for coding in codings})


def _less(granted: list[str], denied: list[str], path: str) -> list[str]:
    if not set(denied) <= set(granted):
        raise _unsupported(path, "The exception denies what its permit does not name.")
    remaining = [code for code in granted if code not in denied]
    if not remaining:
        raise _unsupported(path, "The exception denies everything its permit names.")
    return remaining


def _names_no_condition(rule: _Rule) -> bool:
    return (rule.grantee_id, rule.purposes, rule.categories, rule.start, rule.end) == (None,) * 5


def _codes_of(concept: Any, system: str) -> set[str]:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    return {str(c.get("code")) for c in codings or [] if isinstance(c, dict) and c.get("system") == system}


def _identifier_value(reference: Any, system: str, field: str) -> str:
    identifier = (reference or {}).get("identifier") if isinstance(reference, dict) else None
    if not isinstance(identifier, dict) or identifier.get("system") != system or not identifier.get("value"):
        raise _unsupported(field, f"{field} must be a reference by identifier in system {system}.")
    if set(reference) - {"identifier", "display"}:
        raise _unsupported(field, f"{field} must reference by identifier only.")
    return str(identifier["value"])


def _datetime(text: str, field: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _unsupported(field, f"{field} must be a FHIR dateTime with a time and a zone.") from None
    if moment.tzinfo is None:
        raise _unsupported(field, f"{field} must carry a time zone.")
    return moment


def _instant(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _unsupported(field: str, reason: str, *, code: str = "fhir_unsupported") -> ValidationFailed:
    return ValidationFailed(reason, code=code, detail={"field": field, "reason": reason})
