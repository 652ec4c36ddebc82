"""Reads for treatment on the real Fabric network: the gate answers from the chain at the moment of the read, and
every read (admitted with its consent, refused with its reason) is one committed access-log transaction endorsed by
both organisations."""

import pytest

from audit.exports import audit_export_run
from audit.models import AccessEvent, AuditExport
from audit.selectors import AccessEventFilters
from audit.services import audit_export_create
from care import emergencies
from care.services import treatment_records_read
from oversight import services
from tests.conftest import grant
from tests.fabric.blocks import endorsing_peers, organisation_authorities
from tests.oversight.conftest import alerts_raised
from tests.signing import revoke_signed

pytestmark = [pytest.mark.fabric, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TREATMENT = {"purposes": ["treatment"], "categories": ["imaging"]}


def test_treatment_reads_on_fabric_are_gated_and_logged_on_the_chain(cohort, clinician, ledger, fabric_network):
    assert type(ledger).__name__ == "FabricLedger"
    (u0, p0, r0), (u1, p1, r1), (u2, p2, r2) = cohort(3)
    consent = grant(u0, p0, clinician, **TREATMENT)
    grant(u1, p1, clinician)  # an analysis's consent: no treatment
    revoke_signed(actor=u2, consent=grant(u2, p2, clinician, **TREATMENT))
    first_block = ledger.height()

    reads = [
        treatment_records_read(clinician=clinician, patient_pseudonym=p.pseudonym, category="imaging")
        for p in (p0, p1, p2)
    ]

    answers = [(r.records[0].record_id, r.records[0].decision, r.records[0].reason) for r in reads]
    assert answers == [
        (str(r0.pk), "admit", None),
        (str(r1.pk), "refuse", "no_consent"),
        (str(r2.pk), "refuse", "consent_revoked"),
    ]
    assert reads[0].records[0].observations
    assert [r.records[0].observations for r in reads[1:]] == [None, None]
    for read in reads:
        location = ledger.locate(read.tx_id)
        assert location is not None
        assert location.status == "VALID"
        mirrored = AccessEvent.objects.get(batch_id=f"read:{read.read_id}")
        assert (mirrored.kind, mirrored.tx_id, mirrored.block_number) == (
            "record_read",
            read.tx_id,
            location.block_number,
        )
    assert AccessEvent.objects.get(batch_id=f"read:{reads[0].read_id}").consent_id == consent.consent_id

    authorities = organisation_authorities(fabric_network.directory / "public")
    endorsed: dict[str, list[str]] = {}
    for number in range(first_block, ledger.height()):
        endorsed.update(endorsing_peers(ledger._block(number), ledger.chaincode, authorities))
    for read in reads:
        assert tuple(sorted(endorsed[read.tx_id])) == ("HospitalMSP", "ResearchMSP")
    assert ledger.verify().ok


def test_an_emergency_on_fabric_opens_reads_for_its_clinician_and_is_reviewed_on_the_chain(
    cohort, clinician, auditor, ledger, fabric_network, export_dir, django_capture_on_commit_callbacks
):
    ((user, _, record),) = cohort(1)
    number = user.username.removeprefix("patient-")
    declaration = emergencies.emergency_declare(
        clinician=clinician, identifier=number, reason="life_threatening", justification="Cardiac arrest in A&E."
    )
    read = emergencies.emergency_records_read(
        clinician=clinician, declaration_id=str(declaration.id), category="imaging"
    )
    assert [(r.record_id, r.decision) for r in read.records] == [(str(record.pk), "admit")]
    emergencies.emergency_refusals_set(user=user, categories=["imaging"])
    refused = emergencies.emergency_records_read(
        clinician=clinician, declaration_id=str(declaration.id), category="imaging"
    )
    assert [r.reason for r in refused.records] == ["emergency_refused"]
    reviewed = emergencies.emergency_review(
        auditor=auditor, declaration_id=str(declaration.id), verdict="justified", note="Resuscitation record seen."
    )
    for tx_id in (declaration.tx_id, read.tx_id, refused.tx_id, reviewed.verdict_tx_id):
        location = ledger.locate(tx_id)
        assert location is not None
        assert location.status == "VALID"
    kinds = AccessEvent.objects.filter(request_id=str(declaration.id)).values_list("kind", "decision")
    assert sorted(kinds) == [
        ("emergency_declared", "declared"),
        ("emergency_review", "justified"),
        ("record_read", "admit"),
        ("record_read", "refuse"),
    ]
    assert ledger.verify().ok
    with django_capture_on_commit_callbacks(execute=False):
        created = audit_export_create(
            requester=auditor, format="csv", filters=AccessEventFilters(request_id=str(declaration.id))
        )
    audit_export_run(export_id=str(created.pk))
    done = AuditExport.objects.get(pk=created.pk)
    assert (done.event_count, done.verification["ok"]) == (4, True)


def test_an_alert_and_its_triage_on_fabric_are_in_a_verified_audit_export(
    clinician, auditor, ledger, fabric_network, export_dir, django_capture_on_commit_callbacks
):
    (alert_id,) = alerts_raised(clinician, ["2026-11-30"])
    triaged = services.alert_triage(auditor=auditor, alert_id=alert_id, verdict="confirmed", note="Seen.")
    assert ledger.locate(triaged.verdict_tx_id).status == "VALID"
    with django_capture_on_commit_callbacks(execute=False):
        created = audit_export_create(requester=auditor, format="json", filters=AccessEventFilters(request_id=alert_id))
    audit_export_run(export_id=str(created.pk))
    done = AuditExport.objects.get(pk=created.pk)
    assert (done.event_count, done.verification["ok"]) == (2, True)
