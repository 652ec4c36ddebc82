"""Reads for treatment on the real Fabric network: the gate answers from the chain at the moment of the read, and
every read (admitted with its consent, refused with its reason) is one committed access-log transaction endorsed by
both organisations."""

import hashlib
import uuid
from datetime import UTC, date, datetime

import pytest

from audit.exports import audit_export_run
from audit.models import AccessEvent, AuditExport
from audit.selectors import AccessEventFilters
from audit.services import audit_export_create, logged_batch_mirror
from care import emergencies
from care.services import treatment_records_read
from consent.services import consent_revoke
from health_platform import bootstrap
from ledger.contracts import AlertRequest
from oversight import services
from oversight.models import DETECTOR_NAME, Alert, Detector
from tests.conftest import grant
from tests.fabric.blocks import endorsing_peers, organisation_authorities

pytestmark = [pytest.mark.fabric, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TREATMENT = {"purposes": ["treatment"], "categories": ["imaging"]}


def test_treatment_reads_on_fabric_are_gated_and_logged_on_the_chain(cohort, clinician, ledger, fabric_network):
    assert type(ledger).__name__ == "FabricLedger"
    (u0, p0, r0), (u1, p1, r1), (u2, p2, r2) = cohort(3)
    consent = grant(u0, p0, clinician, **TREATMENT)
    grant(u1, p1, clinician)  # an analysis's consent: no treatment
    consent_revoke(actor=u2, consent=grant(u2, p2, clinician, **TREATMENT))
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

    authorities = organisation_authorities(fabric_network.directory / "crypto")
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
    weights = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    version = f"test-{weights[:12]}"
    anchor = bootstrap.contracts().anchor_model(name=DETECTOR_NAME, version=version, sha256=weights)
    detector = Detector.objects.create(
        version=version,
        weights_sha256=weights,
        fitted_at=datetime.now(UTC),
        history_from=date(2026, 11, 1),
        history_until=date(2026, 11, 29),
        clinician_days=10,
        file="",
        tx_id=anchor.tx_id,
    )
    alert_id = str(uuid.uuid4())
    grantee = clinician.clinician_profile.grantee_id
    logged = bootstrap.contracts().raise_alerts(
        run_id=uuid.uuid4().hex,
        detector_name=DETECTOR_NAME,
        detector_version=version,
        detector_sha256=weights,
        alerts=[AlertRequest(alert_id, grantee, "2026-11-30", "0.712000", ["repeated_reads"])],
    )
    logged_batch_mirror(logged)
    Alert.objects.create(
        id=alert_id,
        grantee_id=grantee,
        day=date(2026, 11, 30),
        score="0.712",
        reasons=[{"code": "repeated_reads", "value": 15, "usual": 1, "text": "15 reads"}],
        detector=detector,
        run_id="r",
        raised_at=datetime.now(UTC),
        tx_id=logged.tx_id,
    )
    triaged = services.alert_triage(auditor=auditor, alert_id=alert_id, verdict="confirmed", note="Seen.")
    assert ledger.locate(triaged.triage_tx_id).status == "VALID"
    with django_capture_on_commit_callbacks(execute=False):
        created = audit_export_create(requester=auditor, format="json", filters=AccessEventFilters(request_id=alert_id))
    audit_export_run(export_id=str(created.pk))
    done = AuditExport.objects.get(pk=created.pk)
    assert (done.event_count, done.verification["ok"]) == (2, True)
