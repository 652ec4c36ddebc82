"""Break-the-glass through the platform, on the embedded ledger: declaration, reads for its period only, the
patient's refusal, the review, the patient told, and every step in a verified audit export."""

import json
import re
from datetime import timedelta

import pytest
from django.core import mail

from audit.explanations import Context, explanation
from audit.exports import audit_export_run, export_path, rows_from_file
from audit.models import AccessEvent, AuditExport
from audit.selectors import AccessEventFilters
from audit.services import access_log_mirror_rebuild, audit_export_create
from care import emergencies
from care.models import EmergencyDeclaration
from care.services import treatment_records_read
from health_platform import bootstrap
from health_platform.errors import NotFound, PermissionDenied, ValidationFailed
from records.demo import DEMO_IDENTIFIER_SYSTEM
from tests.conftest import grant

WHY = "Unconscious after a fall, no family reachable; need prior imaging."


@pytest.fixture
def casualty(cohort):
    """A demo patient (with an e-mail address) whose records the clinician has no consent for."""
    ((user, patient, record),) = cohort(1)
    user.email = "pat@example.org"
    user.save()
    return user, patient, record, user.username.removeprefix("patient-")


def declare(clinician, number, **change):
    return emergencies.emergency_declare(
        clinician=clinician, **{"identifier": number, "reason": "unconscious", "justification": WHY, **change}
    )


def test_a_declaration_is_on_the_ledger_with_the_justifications_hash_only(
    casualty, clinician, django_capture_on_commit_callbacks
):
    user, patient, _, number = casualty
    with django_capture_on_commit_callbacks(execute=True):
        declaration = declare(clinician, number)
    on_ledger = bootstrap.contracts().read_emergency(str(declaration.id))
    assert (on_ledger.patient_pseudonym, on_ledger.reason, on_ledger.grantee) == (
        patient.pseudonym,
        "unconscious",
        clinician.clinician_profile.grantee_id,
    )
    assert on_ledger.justification_sha256 == declaration.justification_sha256
    assert WHY.encode() not in bytes(declaration.justification_sealed)
    assert WHY not in json.dumps(on_ledger.__dict__, default=str)
    assert emergencies.justification_open(declaration) == WHY
    assert declaration.expires_at - declaration.declared_at == timedelta(hours=4)
    event = AccessEvent.objects.get(event_id=f"emergency:{declaration.id}")
    assert (event.kind, event.decision, event.reason, event.tx_id) == (
        "emergency_declared",
        "declared",
        "unconscious",
        declaration.tx_id,
    )
    (told,) = mail.outbox
    assert told.to == [user.email]
    assert "emergency" in told.subject.lower()
    assert WHY not in told.body
    assert EmergencyDeclaration.objects.get().patient_emailed_at is not None


def test_the_identifier_may_name_its_system(casualty, clinician):
    _, patient, _, number = casualty
    assert declare(clinician, f"{DEMO_IDENTIFIER_SYSTEM}|{number}").patient == patient


def test_an_emergency_read_is_admitted_for_the_declarations_period_only(casualty, clinician, monkeypatch):
    _, _patient, record, number = casualty
    declaration = declare(clinician, number)
    read = emergencies.emergency_records_read(
        clinician=clinician, declaration_id=str(declaration.id), category="imaging"
    )
    (only,) = read.records
    assert (only.record_id, only.decision, only.consent_id) == (str(record.pk), "admit", None)
    assert only.observations
    (event,) = bootstrap.contracts().read_access_batch(f"read:{read.read_id}").events
    assert (event["kind"], event["purpose"], event["request_id"], event["decision"]) == (
        "record_read",
        "emergency",
        str(declaration.id),
        "admit",
    )
    monkeypatch.setattr("care.services.read_clock", lambda: declaration.expires_at + timedelta(seconds=1))
    late = emergencies.emergency_records_read(
        clinician=clinician, declaration_id=str(declaration.id), category="imaging"
    )
    assert [(r.decision, r.reason, r.observations) for r in late.records] == [("refuse", "emergency_expired", None)]
    assert AccessEvent.objects.get(batch_id=f"read:{late.read_id}").reason == "emergency_expired"


def test_the_patients_refusal_of_emergency_access_is_honoured(casualty, clinician):
    user, _, _, number = casualty
    refusals = emergencies.emergency_refusals_set(user=user, categories=["imaging"])
    assert refusals.categories == ["imaging"]
    declaration = declare(clinician, number)
    read = emergencies.emergency_records_read(
        clinician=clinician, declaration_id=str(declaration.id), category="imaging"
    )
    assert [(r.decision, r.reason) for r in read.records] == [("refuse", "emergency_refused")]
    emergencies.emergency_refusals_set(user=user, categories=[])
    again = emergencies.emergency_records_read(
        clinician=clinician, declaration_id=str(declaration.id), category="imaging"
    )
    assert [r.decision for r in again.records] == ["admit"]


def test_only_the_declaring_clinician_reads_under_a_declaration(casualty, clinician, other_clinician):
    declaration = declare(clinician, casualty[3])
    before = AccessEvent.objects.count()
    with pytest.raises(NotFound):
        emergencies.emergency_records_read(
            clinician=other_clinician, declaration_id=str(declaration.id), category="imaging"
        )
    assert AccessEvent.objects.count() == before


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"reason": "curiosity"}, "invalid_emergency_reason"),
        ({"justification": "short"}, "invalid_justification"),
        ({"justification": "x" * 1001}, "invalid_justification"),
        ({"justification": "ten chars\x00 and a nul"}, "invalid_justification"),
        ({"identifier": ""}, "invalid_identifier"),
        ({"identifier": "bc-9999"}, "unknown_patient"),
    ],
)
def test_a_bad_declaration_is_refused_with_its_code_and_nothing_is_written(casualty, clinician, change, code):
    height = bootstrap.contracts().height()
    with pytest.raises((ValidationFailed, NotFound)) as refused:
        declare(clinician, casualty[3], **change)
    assert refused.value.code == code
    assert bootstrap.contracts().height() == height
    assert not EmergencyDeclaration.objects.exists()


def test_only_clinicians_declare(casualty, auditor):
    with pytest.raises(PermissionDenied):
        declare(auditor, casualty[3])
    with pytest.raises(PermissionDenied):
        declare(casualty[0], casualty[3])


def test_an_auditor_reviews_once_on_the_ledger(casualty, clinician, auditor):
    declaration = declare(clinician, casualty[3])
    assert list(emergencies.emergency_review_queue()) == [declaration]
    reviewed = emergencies.emergency_review(
        auditor=auditor, declaration_id=str(declaration.id), verdict="justified", note="Checked with the ward."
    )
    assert (reviewed.verdict, reviewed.judged_by) == ("justified", auditor)
    assert emergencies.note_open(reviewed) == "Checked with the ward."
    on_ledger = bootstrap.contracts().read_emergency(str(declaration.id)).judgement
    assert (on_ledger.verdict, on_ledger.note_sha256, on_ledger.tx_id) == (
        "justified",
        reviewed.note_sha256,
        reviewed.verdict_tx_id,
    )
    assert AccessEvent.objects.get(event_id=f"emergency-review:{declaration.id}").decision == "justified"
    assert not emergencies.emergency_review_queue().exists()
    with pytest.raises(ValidationFailed) as twice:
        emergencies.emergency_review(
            auditor=auditor, declaration_id=str(declaration.id), verdict="unjustified", note="Changed my mind."
        )
    assert twice.value.code == "already_reviewed"
    with pytest.raises(PermissionDenied):
        emergencies.emergency_review(
            auditor=clinician, declaration_id=str(declaration.id), verdict="justified", note="Mine."
        )


@pytest.mark.parametrize("format", ["csv", "json", "fhir"])
def test_the_declaration_its_reads_and_review_are_in_a_verified_audit_export(
    casualty, clinician, auditor, export_dir, django_capture_on_commit_callbacks, format
):
    _, patient, _, number = casualty
    declaration = declare(clinician, number)
    emergencies.emergency_records_read(clinician=clinician, declaration_id=str(declaration.id), category="imaging")
    emergencies.emergency_review(auditor=auditor, declaration_id=str(declaration.id), verdict="unjustified", note="No.")
    with django_capture_on_commit_callbacks(execute=False):
        created = audit_export_create(
            requester=auditor, format=format, filters=AccessEventFilters(patient_pseudonym=patient.pseudonym)
        )
    audit_export_run(export_id=str(created.pk))
    done = AuditExport.objects.get(pk=created.pk)
    with export_path(done).open("rb") as stream:
        rows = list(rows_from_file(stream, format=format))
    assert [(r["kind"], r["purpose"], r["decision"]) for r in rows] == [
        ("emergency_declared", "emergency", "declared"),
        ("record_read", "emergency", "admit"),
        ("emergency_review", "audit", "unjustified"),
    ]
    assert {r["request_id"] for r in rows} == {str(declaration.id)}
    assert done.verification["ok"] is True
    assert done.verification["checked"] == 3


def test_the_patient_sees_why_each_access_happened_in_plain_words(
    casualty, clinician, auditor, client, django_capture_on_commit_callbacks
):
    user, patient, _, number = casualty
    consent = grant(user, patient, clinician, purposes=["treatment"], categories=["imaging"])
    treatment_records_read(clinician=clinician, patient_pseudonym=patient.pseudonym, category="imaging")
    declaration = declare(clinician, number)
    emergencies.emergency_records_read(clinician=clinician, declaration_id=str(declaration.id), category="imaging")
    emergencies.emergency_review(auditor=auditor, declaration_id=str(declaration.id), verdict="justified", note="OK")
    client.force_login(user)
    page = client.get("/audit/my-data/").content.decode()
    words = [" ".join(cell.split()) for cell in re.findall(r"data-explanation>(.*?)</td>", page, re.S)]
    assert words == [  # newest first
        "An auditor reviewed an emergency access to your records: justified.",
        "Dr Carol opened this record without your consent, in an emergency they declared (patient unconscious or "
        "unable to consent). An auditor reviewed it: justified.",
        "Dr Carol declared an emergency to read your records without your consent: patient unconscious or unable to "
        "consent.",
        f"Dr Carol opened this record to treat you, as your consent {consent.consent_id} allows.",
    ]
    emergency_page = client.get("/care/my-emergency-access/").content.decode()
    assert f'data-declaration-id="{declaration.id}"' in emergency_page
    assert WHY not in emergency_page  # the clinician's words are for the auditors


def test_an_admitted_access_with_no_explanation_says_so():
    context = Context(who="Dr Carol")
    read = {"kind": "record_read", "consent_id": "", "context": context}
    unexplained = explanation(**read, purpose="treatment", decision="admit", reason="", request_id="r")
    assert "names no consent or emergency" in unexplained
    refused = explanation(**read, purpose="emergency", decision="refuse", reason="emergency_refused", request_id="d")
    assert refused == (
        "Dr Carol asked to open this record in an emergency; the ledger refused it: patient refused emergency access "
        "to this kind of data."
    )


def test_the_mirror_rebuilt_from_the_ledger_holds_the_same_events(casualty, clinician, auditor):
    user, patient, _, number = casualty
    grant(user, patient, clinician, purposes=["treatment"], categories=["imaging"])
    treatment_records_read(clinician=clinician, patient_pseudonym=patient.pseudonym, category="imaging")
    declaration = declare(clinician, number)
    emergencies.emergency_records_read(clinician=clinician, declaration_id=str(declaration.id), category="imaging")
    emergencies.emergency_review(auditor=auditor, declaration_id=str(declaration.id), verdict="justified", note="OK")
    columns = ("event_id", "kind", "purpose", "request_id", "consent_id", "decision", "reason", "tx_id", "block_number")
    before = sorted(AccessEvent.objects.values_list(*columns))
    assert {row[1] for row in before} == {"record_read", "emergency_declared", "emergency_review"}
    assert access_log_mirror_rebuild() == len(before)
    assert sorted(AccessEvent.objects.values_list(*columns)) == before
