"""The FHIR AuditEvent format of the access log: standard codes, validity against the R4B model, and reading back."""

import io
import json

import pytest
from fhir.resources.R4B.auditevent import AuditEvent

from audit.exports import audit_event, export_path, rows_from_audit_event, rows_from_file
from audit.manifests import manifest_of_export
from audit.models import COLUMNS, AuditExport
from audit.selectors import AccessEventFilters
from audit.services import audit_export_create
from audit.verification import events_verify
from chaincode.vocabulary import NOT_COMPUTED_REASONS, REFUSAL_REASONS
from health_platform.fhir_codes import (
    ACCESS_EVENT_KIND_SYSTEM,
    DICOM,
    GRANTEE_SYSTEM,
    LEDGER_TRANSACTION_SYSTEM,
    PSEUDONYM_SYSTEM,
    RECORD_SYSTEM,
    V3_ACT_REASON,
    V3_PARTICIPATION_TYPE,
)
from tests.audit.conftest import access_event

PSEUDONYM, MODEL, FILE_SHA256, TX = "a" * 64, "b" * 64, "c" * 64, "f" * 64


def row(**fields):
    """An event row as the mirror and the exports hold it (ledger place included), a record access by default."""
    return {
        **dict.fromkeys(COLUMNS),
        "event_id": "req-1:0:rec-1",
        "kind": "record_access",
        "record_id": "rec-1",
        "patient_pseudonym": PSEUDONYM,
        "grantee": "clinician:alice",
        "purpose": "diagnostic-model:breast-cancer",
        "request_id": "req-1",
        "model_hash": MODEL,
        "category": "imaging",
        "decision": "admit",
        "recorded_at": "2026-01-02T03:04:05.123456Z",
        "batch_id": "req-1:0",
        "position": "3",
        "tx_id": TX,
        "block_number": "7",
        **fields,
    }


EXPORT = {
    "event_id": "exp:e1",
    "kind": "export",
    "record_id": None,
    "patient_pseudonym": None,
    "grantee": "auditor:u3",
    "purpose": "audit",
    "request_id": "e1",
    "model_hash": None,
    "category": None,
    "export_sha256": FILE_SHA256,
    "batch_id": "export:e1",
    "position": "0",
}
BATCH_OUTCOME = {"event_id": "out:req-1:0", "kind": "outcome", "record_id": None, "patient_pseudonym": None}
RECORD_OUTCOME = {"event_id": "out:req-1:0:rec-1", "kind": "outcome", "category": None}

# Every kind of event with every decision and reason it may carry, each with the AuditEvent codes it must get:
# (row, DICOM type, platform subtype or None, action, outcome).
EVENTS = [
    (row(), "110110", None, "R", "0"),
    *[(row(decision="refuse", reason=reason), "110110", None, "R", "4") for reason in REFUSAL_REASONS],
    (row(purpose="treatment"), "110110", None, "R", "0"),
    (row(purpose="research"), "110110", None, "R", "0"),
    (row(**EXPORT), "110106", None, "R", "0"),
    (row(**BATCH_OUTCOME, decision="computed"), "110100", "outcome", "E", "0"),
    *[
        (
            row(**outcome, decision="not_computed", reason=reason),
            "110100",
            "outcome",
            "E",
            "8" if reason in ("request_failed", "content_unavailable") else "4",
        )
        for outcome in (BATCH_OUTCOME, RECORD_OUTCOME)
        for reason in NOT_COMPUTED_REASONS
    ],
]
IDS = [f"{event['kind']}-{event['decision']}-{event['reason']}-{event['purpose']}" for event, *_ in EVENTS]


@pytest.mark.parametrize(("event", "type_code", "subtype", "action", "outcome"), EVENTS, ids=IDS)
def test_every_kind_and_decision_is_a_valid_r4b_audit_event_with_standard_codes(
    event, type_code, subtype, action, outcome
):
    written = audit_event(event)
    resource = AuditEvent.model_validate(written)

    assert (resource.type.system, resource.type.code) == (DICOM, type_code)
    subtypes = [(coding.system, coding.code) for coding in resource.subtype or []]
    assert subtypes == ([(ACCESS_EVENT_KIND_SYSTEM, subtype)] if subtype else [])
    assert (resource.action, resource.outcome, resource.outcomeDesc) == (action, outcome, event["reason"])
    (agent,) = resource.agent
    assert (agent.who.identifier.system, agent.who.identifier.value, agent.requestor) == (
        GRANTEE_SYSTEM,
        event["grantee"],
        True,
    )
    assert [(coding.system, coding.code) for coding in agent.type.coding] == [(V3_PARTICIPATION_TYPE, "IRCP")]
    assert resource.purposeOfEvent[0].coding[0].system == V3_ACT_REASON
    entities = {entity.what.identifier.system: entity for entity in resource.entity}
    ledger = entities.pop(LEDGER_TRANSACTION_SYSTEM)
    assert ledger.what.identifier.value == TX
    details = {detail.type: detail.valueString for detail in ledger.detail}
    assert (details["event_id"], details["batch_id"], details["block_number"]) == (
        event["event_id"],
        event["batch_id"],
        "7",
    )
    expected_entities = {PSEUDONYM_SYSTEM: event["patient_pseudonym"], RECORD_SYSTEM: event["record_id"]}
    assert {system: entity.what.identifier.value for system, entity in entities.items()} == {
        system: value for system, value in expected_entities.items() if value
    }


@pytest.mark.parametrize(("event", "type_code", "subtype", "action", "outcome"), EVENTS, ids=IDS)
def test_every_audit_event_reads_back_into_the_same_row(event, type_code, subtype, action, outcome):
    line = json.dumps(audit_event(event), separators=(",", ":"))
    assert rows_from_audit_event(json.loads(line)) == event


@pytest.mark.parametrize(
    ("purpose", "codes"),
    [
        ("treatment", [(V3_ACT_REASON, "TREAT")]),
        ("research", [(V3_ACT_REASON, "HRESCH"), ("http://purl.obolibrary.org/obo/duo", "DUO:0000042")]),
        ("audit", [(V3_ACT_REASON, "HCOMPL")]),
    ],
)
def test_purpose_of_event_is_hl7_act_reason_first(purpose, codes):
    written = audit_event(row(**EXPORT) if purpose == "audit" else row(purpose=purpose))
    (concept,) = written["purposeOfEvent"]
    assert [(coding["system"], coding["code"]) for coding in concept["coding"]] == codes


def edited(event, edit):
    written = audit_event(event)
    edit(written)
    return rows_from_audit_event(written)


def test_edited_codes_read_as_changed_values_not_as_another_valid_event():
    failed = row(**BATCH_OUTCOME, decision="not_computed", reason="request_failed")

    def minor(event):
        event["outcome"] = "4"  # a serious failure downgraded: no decision reads back as 4 with this reason

    def operations(event):  # healthcare operations: a standard purpose the platform has no equivalent of
        event["purposeOfEvent"][0]["coding"] = [{"system": V3_ACT_REASON, "code": "HOPERAT"}]

    def retyped(event):
        event["type"]["code"] = "110106"

    def grantee_elsewhere(event):
        event["agent"][0]["who"]["identifier"]["system"] = "urn:example:other"

    def deleted(event):
        event["action"] = "D"

    def outcome_retyped(event):
        event["type"]["code"] = "110110"

    assert edited(failed, minor)["decision"] == "4"
    assert edited(row(), operations)["purpose"] is None
    assert edited(row(), retyped)["kind"] == "export"
    assert edited(row(), deleted)["kind"] is None
    assert edited(failed, outcome_retyped)["kind"] is None
    assert edited(row(), grantee_elsewhere)["grantee"] is None


# The first FHIR format, as exports wrote it before the standard codes (copies of it were handed out): a record
# access refused, and an export.
FIRST_FORMAT = [
    (
        row(
            event_id="r1-e2",
            purpose="diagnostic-model:breast-cancer",
            decision="refuse",
            reason="consent_revoked",
            batch_id="batch-1",
            position="1",
        ),
        '{"resourceType":"AuditEvent","id":"480b0c440877d5453f54a6be9e1f2dbaaade70403175b228f48d95e75983d375",'
        '"type":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110110","display":"Patient Record"},'
        '"subtype":[{"system":"urn:health-platform:access-event-kind","code":"record_access"}],"action":"E",'
        '"recorded":"2026-01-02T03:04:05.123456Z","outcome":"4","purposeOfEvent":[{"coding":[{"system":'
        '"urn:health-platform:purpose","code":"diagnostic-model:breast-cancer"}]}],"agent":[{"who":{"identifier":'
        '{"system":"urn:health-platform:actor","value":"clinician:alice"}},"requestor":true}],"source":{"observer":'
        '{"identifier":{"system":"urn:health-platform","value":"health_platform"}},"type":[{"system":'
        '"http://terminology.hl7.org/CodeSystem/security-source-type","code":"4","display":"Application Server"}]},'
        '"entity":[{"what":{"identifier":{"system":"urn:health-platform:patient-pseudonym","value":"' + PSEUDONYM + '"'
        '}},"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"1","display":"Person"},'
        '"role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"1","display":"Patient"}},'
        '{"what":{"identifier":{"system":"urn:health-platform:record","value":"rec-1"}},"type":{"system":'
        '"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"2","display":"System Object"},"role":'
        '{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"4","display":"Domain Resource"}},'
        '{"what":{"identifier":{"system":"urn:health-platform:ledger-transaction","value":"' + TX + '"}},"type":'
        '{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"2","display":"System Object"},'
        '"role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"13","display":'
        '"Security Resource"},"detail":[{"type":"event_id","valueString":"r1-e2"},{"type":"kind","valueString":'
        '"record_access"},{"type":"request_id","valueString":"req-1"},{"type":"model_hash","valueString":"'
        + MODEL
        + '"},{"type":"category","valueString":"imaging"},{"type":"reason","valueString":"consent_revoked"},'
        '{"type":"batch_id","valueString":"batch-1"},{"type":"position","valueString":"1"},{"type":"block_number",'
        '"valueString":"7"}]}],"outcomeDesc":"consent_revoked"}',
    ),
    (
        row(**{**EXPORT, "request_id": "123", "event_id": "exp:123", "batch_id": "export:123"}),
        '{"resourceType":"AuditEvent","id":"9886f172e9712a84c3aa06d617399345404d4586b7aee929e85b2578e8bfa77a",'
        '"type":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110106","display":"Export"},'
        '"subtype":[{"system":"urn:health-platform:access-event-kind","code":"export"}],"action":"R",'
        '"recorded":"2026-01-02T03:04:05.123456Z","outcome":"0","purposeOfEvent":[{"coding":[{"system":'
        '"urn:health-platform:purpose","code":"audit"}]}],"agent":[{"who":{"identifier":{"system":'
        '"urn:health-platform:actor","value":"auditor:u3"}},"requestor":true}],"source":{"observer":{"identifier":'
        '{"system":"urn:health-platform","value":"health_platform"}},"type":[{"system":'
        '"http://terminology.hl7.org/CodeSystem/security-source-type","code":"4","display":"Application Server"}]},'
        '"entity":[{"what":{"identifier":{"system":"urn:health-platform:ledger-transaction","value":"' + TX + '"}},'
        '"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"2","display":'
        '"System Object"},"role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"13",'
        '"display":"Security Resource"},"detail":[{"type":"event_id","valueString":"exp:123"},{"type":"kind",'
        '"valueString":"export"},{"type":"request_id","valueString":"123"},{"type":"export_sha256","valueString":"'
        + FILE_SHA256
        + '"},{"type":"batch_id","valueString":"export:123"},{"type":"position","valueString":"0"},'
        '{"type":"block_number","valueString":"7"}]}]}',
    ),
]


@pytest.mark.parametrize(("event", "line"), FIRST_FORMAT, ids=["record_access", "export"])
def test_a_copy_in_the_first_fhir_format_still_reads_back_into_its_rows(event, line):
    (read,) = rows_from_file(io.BytesIO(line.encode() + b"\n"), format="fhir")
    assert read == event


def first_format(event):
    """An event as the first FHIR format wrote it: this format's AuditEvent with the platform's URNs put back."""
    written = audit_event(event)
    urns = {
        PSEUDONYM_SYSTEM: "urn:health-platform:patient-pseudonym",
        RECORD_SYSTEM: "urn:health-platform:record",
        LEDGER_TRANSACTION_SYSTEM: "urn:health-platform:ledger-transaction",
    }
    for entity in written["entity"]:
        entity["what"]["identifier"]["system"] = urns[entity["what"]["identifier"]["system"]]
    written["subtype"] = [{"system": "urn:health-platform:access-event-kind", "code": event["kind"]}]
    written["purposeOfEvent"] = [{"coding": [{"system": "urn:health-platform:purpose", "code": event["purpose"]}]}]
    written["agent"] = [{"who": {"identifier": {"system": "urn:health-platform:actor", "value": event["grantee"]}}}]
    written["outcome"] = "0" if event["decision"] in ("admit", "computed") else "4"
    written["action"] = "R" if event["kind"] == "export" else "E"
    return json.dumps(written)


@pytest.mark.django_db(transaction=True)
def test_an_export_copy_in_the_first_fhir_format_still_verifies_against_the_ledger(
    logged, audit_user, export_dir, eager
):
    logged("b1", [access_event("e1"), access_event("e2", decision="refuse", reason="no_consent")])
    logged("b1:outcome", [access_event("o1", kind="outcome", decision="not_computed", reason="request_failed")])
    created = audit_export_create(requester=audit_user, format="fhir", filters=AccessEventFilters(request_id="req-1"))
    done = AuditExport.objects.get(pk=created.pk)
    with export_path(done).open("rb") as stream:
        rows = list(rows_from_file(stream, format="fhir"))
    old_copy = "".join(first_format(event) + "\n" for event in rows).encode()

    result = events_verify(
        rows_from_file(io.BytesIO(old_copy), format="fhir"), filters=manifest_of_export(export=done).scope
    )

    assert [event["kind"] for event in rows] == ["record_access", "record_access", "outcome"]
    assert (result.ok, result.checked, result.problem_count) == (True, 3, 0)
