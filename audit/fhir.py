"""An access event as a FHIR R4 AuditEvent, in standard codes: what the FHIR export writes (audit.exports) and the
FHIR API serves (fhir_api, through audit.selectors). Apart from audit.exports so that the selectors can use it:
the exports read the log through the selectors."""

import hashlib
from typing import Any

from chaincode.vocabulary import EVENT_KINDS, OVERSIGHT_DECISIONS
from health_platform.fhir_codes import (
    ACCESS_EVENT_KIND_SYSTEM,
    AUDIT_ENTITY_TYPE,
    AUDIT_SOURCE_SYSTEM,
    GRANTEE_SYSTEM,
    LEDGER_TRANSACTION_SYSTEM,
    OBJECT_ROLE,
    PSEUDONYM_SYSTEM,
    RECORD_SYSTEM,
    SECURITY_SOURCE_TYPE,
    dicom,
    participation_type,
    purpose_codings,
)

# The AuditEvent of each kind of access event (chaincode.vocabulary.EVENT_KINDS): its DICOM type, whether the
# platform's kind must be said in a subtype (no standard code tells an outcome from other application activity),
# and its action. A record access reads the record (DICOM's Patient Record event allows C, R, U or D only); an
# export reads the log (DICOM's Export event is R); an outcome is the analysis executed over what it was given. A read
# for treatment reads the record too, and says so in a subtype (it is not an analysis's access).
#
# Oversight events are the platform's own acts about access, each said in a subtype: an emergency declaration and a
# misuse alert are DICOM Security Alerts; an emergency's review and an alert's triage are application activity. Their
# decisions (declared, justified, flagged, confirmed...) have no AuditEvent.outcome of their own: they succeeded
# (outcome 0), and the decision is a detail of the ledger entity.
EVENT_TYPES = {
    "record_access": "110110",
    "record_read": "110110",
    "export": "110106",
    "outcome": "110100",
    "emergency_declared": "110113",
    "emergency_review": "110100",
    "alert": "110113",
    "alert_triage": "110100",
}
KIND_SUBTYPES = frozenset({"outcome", "record_read", *OVERSIGHT_DECISIONS})
ACTIONS = {
    "record_access": "R",
    "record_read": "R",
    "export": "R",
    "outcome": "E",
    **dict.fromkeys(OVERSIGHT_DECISIONS, "E"),
}
# AuditEvent.outcome: 0 success; 4 minor failure, the action declined as the platform means it to be (a refusal
# by the gate, a cancelled analysis, a record changed or lacking measurements: HTTP 4xx); 8 serious failure, an
# unexpected error (the analysis failed, a record could not be read: HTTP 5xx). 12 (the system died) is never
# logged: nothing is left to log it.
SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE = "0", "4", "8"
SERIOUS_FAILURE_REASONS = frozenset({"request_failed", "content_unavailable"})
# The event's fields that FHIR has no place for, as details of the ledger transaction's entity, with where the
# ledger holds the event.
DETAILS = (
    "event_id",
    "request_id",
    "consent_id",
    "model_hash",
    "category",
    "export_sha256",
    "batch_id",
    "position",
    "block_number",
)
_ENTITY_TYPES = {"person": ("1", "Person"), "system_object": ("2", "System Object")}
_OBJECT_ROLES = {
    "patient": ("1", "Patient"),
    "domain_resource": ("4", "Domain Resource"),
    "security": ("13", "Security Resource"),
}


def audit_event(row: dict[str, Any]) -> dict[str, Any]:
    """One access event as a FHIR R4 AuditEvent (validates with fhir.resources' R4B model: the AuditEvent of R4 and
    R4B is the same resource). rows_from_audit_event reads it back into the same row."""
    kind = row["kind"]
    entities: list[dict[str, Any]] = []
    if row["patient_pseudonym"]:
        entities.append(_entity(PSEUDONYM_SYSTEM, row["patient_pseudonym"], type="person", role="patient"))
    if row["record_id"]:
        entities.append(_entity(RECORD_SYSTEM, row["record_id"], type="system_object", role="domain_resource"))
    ledger = _entity(LEDGER_TRANSACTION_SYSTEM, row["tx_id"], type="system_object", role="security")
    ledger["detail"] = [{"type": name, "valueString": str(row[name])} for name in DETAILS if row[name] is not None]
    if kind in OVERSIGHT_DECISIONS:
        ledger["detail"].append({"type": "decision", "valueString": row["decision"]})
    entities.append(ledger)
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": hashlib.sha256(row["event_id"].encode()).hexdigest(),
        "type": dicom(EVENT_TYPES[kind]),
    }
    if kind in KIND_SUBTYPES:
        event["subtype"] = [{"system": ACCESS_EVENT_KIND_SYSTEM, "code": kind, "display": EVENT_KINDS[kind]}]
    event |= {
        "action": ACTIONS[kind],
        "recorded": row["recorded_at"],
        "outcome": outcome_code(kind=kind, decision=row["decision"], reason=row["reason"]),
        "purposeOfEvent": [{"coding": purpose_codings(row["purpose"])}],
        "agent": [
            {
                "type": {"coding": [participation_type("IRCP")]},
                "who": {"identifier": {"system": GRANTEE_SYSTEM, "value": row["grantee"]}},
                "requestor": True,
            }
        ],
        "source": {
            "observer": {"identifier": {"system": AUDIT_SOURCE_SYSTEM, "value": "access-log"}},
            "type": [{"system": SECURITY_SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
        "entity": entities,
    }
    if row["reason"]:
        event["outcomeDesc"] = row["reason"]
    return event


def _entity(system: str, value: str, *, type: str, role: str) -> dict[str, Any]:
    (type_code, type_display), (role_code, role_display) = _ENTITY_TYPES[type], _OBJECT_ROLES[role]
    return {
        "what": {"identifier": {"system": system, "value": value}},
        "type": {"system": AUDIT_ENTITY_TYPE, "code": type_code, "display": type_display},
        "role": {"system": OBJECT_ROLE, "code": role_code, "display": role_display},
    }


def outcome_code(*, kind: str | None, decision: str, reason: str | None, legacy: bool = False) -> str:
    """An event's AuditEvent.outcome: success for an admitted access or a computed outcome; otherwise a serious
    failure for an unexpected error (SERIOUS_FAILURE_REASONS), else a minor one. The first format (`legacy`)
    wrote every failure as minor."""
    if decision in ("admit", "computed") or kind in OVERSIGHT_DECISIONS:
        return SUCCESS
    if kind == "outcome" and reason in SERIOUS_FAILURE_REASONS and not legacy:
        return SERIOUS_FAILURE
    return MINOR_FAILURE
