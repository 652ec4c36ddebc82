from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AccessEvent
from care.services import treatment_records_read
from health_platform import bootstrap
from health_platform.errors import NotFound, PermissionDenied
from ledger import LedgerUnavailable
from tests.conftest import grant, tamper_with
from tests.signing import revoke_signed

TREATMENT = {"purposes": ["treatment"], "categories": ["imaging"]}


def ledger_events(read):
    return bootstrap.contracts().read_access_batch(f"read:{read.read_id}").events


def test_a_treatment_read_is_admitted_logged_with_its_consent_and_decrypted(cohort, clinician, client):
    ((user, patient, record),) = cohort(1)
    consent = grant(user, patient, clinician, **TREATMENT)
    read = treatment_records_read(clinician=clinician, patient_pseudonym=patient.pseudonym, category="imaging")
    (only,) = read.records
    assert (only.record_id, only.decision, only.consent_id) == (str(record.pk), "admit", consent.consent_id)
    assert only.observations
    assert all("value" in row for row in only.observations)
    (event,) = ledger_events(read)
    assert (event["kind"], event["purpose"], event["decision"], event["consent_id"]) == (
        "record_read",
        "treatment",
        "admit",
        consent.consent_id,
    )
    mirrored = AccessEvent.objects.get(event_id=event["event_id"])
    assert (mirrored.consent_id, mirrored.tx_id, mirrored.block_number) == (
        consent.consent_id,
        read.tx_id,
        read.block_number,
    )
    client.force_login(user)
    page = client.get("/audit/my-data/").content.decode()
    assert f'data-event-id="{event["event_id"]}"' in page
    assert f'data-consent-id="{consent.consent_id}"' in page


def every_refusal(cohort, clinician, monkeypatch):
    """cohort(5): 0 consented for research only; 1 treatment consent revoked; 2 treatment consent expired at the
    read; 3 treatment consent over laboratory only; 4 treatment consent, its record tampered with."""
    people = cohort(5)
    (u0, p0, _), (u1, p1, _), (u2, p2, _), (u3, p3, _), (u4, p4, r4) = people
    grant(u0, p0, clinician)
    revoke_signed(actor=u1, consent=grant(u1, p1, clinician, **TREATMENT))
    expires = timezone.now() + timedelta(hours=1)
    grant(u2, p2, clinician, **TREATMENT, valid_until=expires)
    grant(u3, p3, clinician, purposes=["treatment"], categories=["laboratory"])
    grant(u4, p4, clinician, **TREATMENT)
    tamper_with(r4)
    monkeypatch.setattr("care.services.read_clock", lambda: expires + timedelta(seconds=1))
    return people


@pytest.mark.parametrize(
    ("index", "reason"),
    [
        (0, "no_consent"),
        (1, "consent_revoked"),
        (2, "consent_expired"),
        (3, "category_not_covered"),
        (4, "hash_mismatch"),
    ],
)
def test_a_treatment_read_is_refused_with_its_reason_logged_and_nothing_shown(
    cohort, clinician, monkeypatch, client, index, reason
):
    user, patient, record = every_refusal(cohort, clinician, monkeypatch)[index]
    read = treatment_records_read(clinician=clinician, patient_pseudonym=patient.pseudonym, category="imaging")
    (only,) = read.records
    assert (only.decision, only.reason, only.consent_id, only.observations) == ("refuse", reason, None, None)
    (event,) = ledger_events(read)
    assert (event["kind"], event["record_id"], event["decision"], event["reason"]) == (
        "record_read",
        str(record.pk),
        "refuse",
        reason,
    )
    client.force_login(user)
    page = client.get("/audit/my-data/").content.decode()
    assert f'data-event-id="{event["event_id"]}"' in page
    assert f'data-reason="{reason}"' in page


def test_a_clinician_cannot_name_a_patient_who_never_consented_to_them(cohort, clinician, other_clinician):
    ((user, patient, _),) = cohort(1)
    grant(user, patient, clinician, **TREATMENT)
    with pytest.raises(NotFound):
        treatment_records_read(clinician=other_clinician, patient_pseudonym=patient.pseudonym, category="imaging")
    with pytest.raises(NotFound):
        treatment_records_read(clinician=clinician, patient_pseudonym="0" * 64, category="imaging")
    with pytest.raises(PermissionDenied):
        treatment_records_read(clinician=user, patient_pseudonym=patient.pseudonym, category="imaging")
    assert not AccessEvent.objects.filter(kind="record_read").exists()


def test_a_read_the_ledger_cannot_confirm_shows_nothing(cohort, clinician, client, monkeypatch):
    ((user, patient, _),) = cohort(1)
    grant(user, patient, clinician, **TREATMENT)

    def down(*args, **kwargs):
        raise LedgerUnavailable("down")

    monkeypatch.setattr(type(bootstrap.contracts()), "check_access_batch", down)
    client.force_login(clinician)
    answer = client.get(f"/api/care/patients/{patient.pseudonym}/records/?category=imaging")
    assert answer.status_code == 503
    assert answer.json()["code"] == "ledger_unavailable"
    page = client.get(f"/care/patients/{patient.pseudonym}/imaging/")
    assert page.status_code == 503
    assert not AccessEvent.objects.filter(kind="record_read").exists()


def test_the_api_answers_the_read_or_the_refusal_reason(cohort, clinician, client):
    (u0, p0, _), (u1, p1, _) = cohort(2)
    consent = grant(u0, p0, clinician, **TREATMENT)
    grant(u1, p1, clinician)
    client.force_login(clinician)
    admitted = client.get(f"/api/care/patients/{p0.pseudonym}/records/?category=imaging")
    assert admitted.status_code == 200
    assert admitted.json()["records"][0]["consent_id"] == consent.consent_id
    refused = client.get(f"/api/care/patients/{p1.pseudonym}/records/?category=imaging")
    assert refused.status_code == 403
    assert refused.json()["code"] == "no_consent"
    assert client.get(f"/api/care/patients/{'0' * 64}/records/?category=imaging").status_code == 404
    page = client.get(f"/care/patients/{p0.pseudonym}/imaging/")
    assert page.status_code == 200
    assert f'data-consent-id="{consent.consent_id}"' in page.content.decode()
    assert client.get(f"/care/patients/{p1.pseudonym}/imaging/").status_code == 403
