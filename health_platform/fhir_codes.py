"""The standard codes the platform speaks in FHIR, and its own systems where no standard one exists: one place for
the Consent import and export, the AuditEvent export and the FHIR API. Free of Django.

A purpose of the platform (chaincode.vocabulary) is written as codings, most standard first:
    treatment                 v3-ActReason TREAT
    research                  v3-ActReason HRESCH, GA4GH DUO:0000042 (general research use)
    diagnostic-model:<family> v3-ActReason HRESCH, GA4GH DUO:0000007 (disease-specific research), and the
                              platform's own code for the family (DUO names no model family)
    training:<family>         the same standard codes (DUO has no code for training a model), and the platform's
                              own code, which alone tells training a family's model from running it
    audit                     v3-ActReason HCOMPL (an auditor's export of the access log, review or triage)
    emergency                 v3-ActReason ETREAT (a read in an emergency, break-the-glass)
    patient-request           v3-ActReason PATRQT (a patient downloading their own data)
and read back from them: the platform's own code when present, else the one purpose the standard codes name
(HCOMPL, ETREAT and PATRQT only where an access event's purpose is read: no consent is granted for an audit, an
emergency or the patient's own download).

A FHIR R4 Consent.provision.purpose is a list of separate Codings, each a purpose of use: several purposes are
written as the union of their codings (`purposes_codings`), and read back (`purposes_from_codings`) with the
HRESCH and DUO:0000007 that stand beside a model family's own code taken as that family's, not as research in
general (which DUO:0000042, or HRESCH with no model family beside it, names).
"""

from chaincode.vocabulary import PATIENT_REQUEST, is_purpose, model_family_of

# Terminology systems (FHIR R4 canonical URLs).
V3_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
V3_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
AUDIT_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SECURITY_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
# GA4GH Data Use Ontology, by its OBO namespace (codes written DUO:0000042).
DUO = "http://purl.obolibrary.org/obo/duo"

# The platform's own systems, where no standard one says the thing.
PLATFORM = "https://health-platform.example/fhir"
PURPOSE_SYSTEM = f"{PLATFORM}/CodeSystem/purpose"
PSEUDONYM_SYSTEM = f"{PLATFORM}/NamingSystem/patient-pseudonym"
GRANTEE_SYSTEM = f"{PLATFORM}/NamingSystem/grantee"
RECORD_SYSTEM = f"{PLATFORM}/NamingSystem/record"
LEDGER_TRANSACTION_SYSTEM = f"{PLATFORM}/NamingSystem/ledger-transaction"
# The kinds of access event (chaincode.vocabulary.EVENT_KINDS), where no standard code tells them apart.
ACCESS_EVENT_KIND_SYSTEM = f"{PLATFORM}/CodeSystem/access-event-kind"
# What observed an AuditEvent: the platform's access log on the ledger.
AUDIT_SOURCE_SYSTEM = f"{PLATFORM}/NamingSystem/audit-source"

Coding = dict[str, str]

_ACT_REASON_DISPLAY = {
    "TREAT": "treatment",
    "HRESCH": "healthcare research",
    "HCOMPL": "health compliance",
    "ETREAT": "Emergency Treatment",
    "PATRQT": "patient requested",
}
_DUO_DISPLAY = {"DUO:0000042": "general research use", "DUO:0000007": "disease specific research"}
# DICOM PS3.16 CID 400 (Audit Event ID), as far as the platform uses it.
_DICOM_DISPLAY = {
    "110100": "Application Activity",
    "110106": "Export",
    "110110": "Patient Record",
    "110113": "Security Alert",
}
_PARTICIPATION_TYPE_DISPLAY = {"IRCP": "information recipient"}


def act_reason(code: str) -> Coding:
    return {"system": V3_ACT_REASON, "code": code, "display": _ACT_REASON_DISPLAY[code]}


def duo(code: str) -> Coding:
    return {"system": DUO, "code": code, "display": _DUO_DISPLAY[code]}


def dicom(code: str) -> Coding:
    return {"system": DICOM, "code": code, "display": _DICOM_DISPLAY[code]}


def participation_type(code: str) -> Coding:
    return {"system": V3_PARTICIPATION_TYPE, "code": code, "display": _PARTICIPATION_TYPE_DISPLAY[code]}


def purpose_codings(purpose: str) -> list[Coding]:
    """The codings of one of the platform's purposes (or "audit"), most standard first."""
    if purpose == "treatment":
        return [act_reason("TREAT")]
    if purpose == "research":
        return [act_reason("HRESCH"), duo("DUO:0000042")]
    if purpose == "audit":
        return [act_reason("HCOMPL")]
    if purpose == "emergency":
        return [act_reason("ETREAT")]
    if purpose == PATIENT_REQUEST:
        return [act_reason("PATRQT")]
    if model_family_of(purpose):  # diagnostic-model:<family> or training:<family>
        return [act_reason("HRESCH"), duo("DUO:0000007"), {"system": PURPOSE_SYSTEM, "code": purpose}]
    raise ValueError(f"not a purpose of the platform: {purpose[:64]!r}")


class PurposeUnmapped(ValueError):
    """Codings that name no purpose of the platform, or more than one; `reason` says which, for a `detail`, and
    `index` which coding of a list, where one is to blame. A reason names only codes the platform knows: never
    the text it was sent."""

    def __init__(self, reason: str, *, index: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.index = index


def purpose_from_codings(codings: list[Coding]) -> str:
    """The one purpose of the platform that `codings` (of one CodeableConcept) name. The platform's own code wins
    (it is the only one that names a model family); else TREAT is treatment, and HRESCH or DUO:0000042 research.
    Refused (PurposeUnmapped): a code the platform has no equivalent of (ETREAT, DUO:0000007 without the model
    family, ...), or codes that disagree."""
    own = {c.get("code") for c in codings if c.get("system") == PURPOSE_SYSTEM}
    if own:
        (own_code, *others) = sorted(str(code) for code in own)
        if others or not is_purpose(own_code):
            raise PurposeUnmapped("the platform's purpose codes name no one purpose it knows")
        return own_code
    named = set()
    for coding in codings:
        system, code = coding.get("system"), coding.get("code")
        if (system, code) == (V3_ACT_REASON, "TREAT"):
            named.add("treatment")
        elif (system, code) in ((V3_ACT_REASON, "HRESCH"), (DUO, "DUO:0000042")):
            named.add("research")
        else:
            raise PurposeUnmapped(f"{_known_name(system, code)} has no equivalent among the platform's purposes")
    if len(named) != 1:
        raise PurposeUnmapped("the codes name no purpose" if not named else "the codes name more than one purpose")
    return named.pop()


def purposes_codings(purposes: list[str]) -> list[Coding]:
    """The codings of several purposes, as one list of separate Codings (Consent.provision.purpose): each
    purpose's codings, in order, each coding once."""
    codings: dict[tuple[str, str], Coding] = {}
    for purpose in purposes:
        for coding in purpose_codings(purpose):
            codings.setdefault((coding["system"], coding["code"]), coding)
    return list(codings.values())


def purposes_from_codings(codings: list[Coding]) -> list[str]:
    """The purposes a list of separate Codings names (sorted), as `purposes_codings` writes them. Refused
    (PurposeUnmapped, with the index of the coding to blame): a coding with no equivalent, as for
    purpose_from_codings; DUO:0000007 with no model family beside it."""
    purposes: set[str] = set()
    for index, coding in enumerate(codings):
        if coding.get("system") == PURPOSE_SYSTEM:
            purposes.add(_single_purpose(coding, index))
    with_family = any(model_family_of(purpose) for purpose in purposes)
    for index, coding in enumerate(codings):
        key = (coding.get("system"), coding.get("code"))
        if key[0] == PURPOSE_SYSTEM or (with_family and key in _WRITTEN_WITH_A_FAMILY):
            continue
        purposes.add(_single_purpose(coding, index))
    return sorted(purposes)


_WRITTEN_WITH_A_FAMILY = {(V3_ACT_REASON, "HRESCH"), (DUO, "DUO:0000007")}


def _single_purpose(coding: Coding, index: int) -> str:
    try:
        return purpose_from_codings([coding])
    except PurposeUnmapped as unmapped:
        raise PurposeUnmapped(unmapped.reason, index=index) from None


_SYSTEM_NAMES = {V3_ACT_REASON: "v3-ActReason", DUO: "GA4GH DUO"}
_KNOWN_CODES = {V3_ACT_REASON: _ACT_REASON_DISPLAY, DUO: _DUO_DISPLAY}


def _known_name(system: object, code: object) -> str:
    """A code as a reason may name it: itself where the platform knows it, else only its system's name or none."""
    if not isinstance(system, str) or system not in _SYSTEM_NAMES:
        return "a code of a system the platform does not map"
    if code in _KNOWN_CODES[system]:
        return f"{_SYSTEM_NAMES[system]} {code}"
    return f"a {_SYSTEM_NAMES[system]} code the platform does not know"


def access_purpose_from_codings(codings: list[Coding]) -> str:
    """The purpose of an access event that `codings` name: HCOMPL alone is "audit" (an auditor's export of the
    log), anything else is read as purpose_from_codings reads a consent's. Refused (PurposeUnmapped) as there."""
    for code, purpose in (("HCOMPL", "audit"), ("ETREAT", "emergency"), ("PATRQT", PATIENT_REQUEST)):
        if any((coding.get("system"), coding.get("code")) == (V3_ACT_REASON, code) for coding in codings):
            if len(codings) != 1:
                raise PurposeUnmapped(f"{_ACT_REASON_DISPLAY[code]} is a purpose alone")
            return purpose
    return purpose_from_codings(codings)
