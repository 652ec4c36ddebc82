"""FHIR R4 Consent: export of any consent, and import of the consents the platform can represent.

Mapping (export, and what import accepts):
    Consent.id                     consent id
    Consent.status                 active (import: active only); exported revoked/expired as inactive
    Consent.scope                  consentscope#patient-privacy
    Consent.category               LOINC 59284-0 "Patient Consent"
    Consent.patient                Reference.identifier {PSEUDONYM_SYSTEM, pseudonym}: no direct identifier
    Consent.dateTime               when the grant was committed on the ledger
    Consent.policyRule             v3-ActCode#OPTIN
    provision.type                 permit (a deny provision cannot be represented: refused)
    provision.period               valid from / until
    provision.actor[0]             role v3-ParticipationType#IRCP, reference.identifier {GRANTEE_SYSTEM, grantee id}
    provision.purpose[]            {PURPOSE_SYSTEM, purpose code}
    provision.class[]              {observation-category system, category code}
Anything else that would change the meaning (nested provisions, actions, data, security labels,
code, dataPeriod, several actors, modifier extensions) is refused with `fhir_unsupported` naming
the field: never silently dropped.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir.resources.R4B.consent import Consent as FhirConsent
from pydantic import ValidationError

from chaincode.vocabulary import OBSERVATION_CATEGORY_SYSTEM
from consent.models import Consent
from health_platform.errors import ValidationFailed

PSEUDONYM_SYSTEM = "https://health-platform.example/fhir/NamingSystem/patient-pseudonym"
GRANTEE_SYSTEM = "https://health-platform.example/fhir/NamingSystem/grantee"
PURPOSE_SYSTEM = "https://health-platform.example/fhir/CodeSystem/purpose"
SCOPE = {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}
CATEGORY = {"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}
POLICY_RULE = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}
RECIPIENT_ROLE = {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}

_REFUSED_PROVISION_FIELDS = ("action", "securityLabel", "code", "dataPeriod", "data", "provision", "modifierExtension")
_REFUSED_CONSENT_FIELDS = ("modifierExtension", "sourceAttachment", "sourceReference", "policy", "verification")


@dataclass(frozen=True)
class ConsentDocument:
    """What an imported FHIR Consent asks for, before the grant rules are applied."""

    consent_id: str | None
    patient_pseudonym: str
    grantee_id: str
    purposes: list[str]
    categories: list[str]
    valid_from: datetime
    valid_until: datetime


def consent_to_fhir(consent: Consent) -> dict[str, Any]:
    resource = {
        "resourceType": "Consent",
        "id": consent.consent_id,
        "status": "active" if consent.effective_status in ("active", "pending") else "inactive",
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
            "purpose": [{"system": PURPOSE_SYSTEM, "code": code} for code in consent.purposes],
            "class": [{"system": OBSERVATION_CATEGORY_SYSTEM, "code": code} for code in consent.categories],
        },
    }
    FhirConsent.model_validate(resource)  # what we export must be valid FHIR
    return resource


def consent_from_fhir(resource: Any) -> ConsentDocument:
    """Read a FHIR Consent the platform can represent, or refuse it naming the field."""
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
    pseudonym = _identifier_value(resource.get("patient"), PSEUDONYM_SYSTEM, "patient")
    provision = resource.get("provision")
    if not isinstance(provision, dict):
        raise _unsupported("provision", "A Consent without a provision cannot be represented.")
    for name in _REFUSED_PROVISION_FIELDS:
        if provision.get(name):
            raise _unsupported(f"provision.{name}", f"provision.{name} cannot be represented on the platform.")
    if provision.get("type") != "permit":
        raise _unsupported("provision.type", "Only permit provisions can be represented (deny is refused).")
    actors = provision.get("actor") or []
    if len(actors) != 1:
        raise _unsupported("provision.actor", "Exactly one actor (the grantee) is required.")
    roles = {(c.get("system"), c.get("code")) for c in (actors[0].get("role") or {}).get("coding", [])}
    if (RECIPIENT_ROLE["system"], RECIPIENT_ROLE["code"]) not in roles:
        raise _unsupported("provision.actor[0].role", "The actor's role must be IRCP (information recipient).")
    grantee = _identifier_value(actors[0].get("reference"), GRANTEE_SYSTEM, "provision.actor[0].reference")
    period = provision.get("period") or {}
    if not period.get("start") or not period.get("end"):
        raise _unsupported("provision.period", "The provision needs a period with start and end.")
    return ConsentDocument(
        consent_id=resource.get("id"),
        patient_pseudonym=pseudonym,
        grantee_id=grantee,
        purposes=_codes(provision.get("purpose"), PURPOSE_SYSTEM, "provision.purpose"),
        categories=_codes(provision.get("class"), OBSERVATION_CATEGORY_SYSTEM, "provision.class"),
        valid_from=_datetime(period["start"], "provision.period.start"),
        valid_until=_datetime(period["end"], "provision.period.end"),
    )


def _identifier_value(reference: Any, system: str, field: str) -> str:
    identifier = (reference or {}).get("identifier") if isinstance(reference, dict) else None
    if not isinstance(identifier, dict) or identifier.get("system") != system or not identifier.get("value"):
        raise _unsupported(field, f"{field} must be a reference by identifier in system {system}.")
    if set(reference) - {"identifier", "display"}:
        raise _unsupported(field, f"{field} must reference by identifier only.")
    return str(identifier["value"])


def _codes(codings: Any, system: str, field: str) -> list[str]:
    if not codings:
        raise _unsupported(field, f"{field} must list at least one code.")
    codes = []
    for index, coding in enumerate(codings):
        if coding.get("system") != system or not coding.get("code"):
            raise _unsupported(f"{field}[{index}]", f"{field}[{index}] must be a code of {system}.")
        codes.append(coding["code"])
    return codes


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


def _unsupported(field: str, message: str, *, code: str = "fhir_unsupported") -> ValidationFailed:
    return ValidationFailed(message, code=code, detail={"field": field})
