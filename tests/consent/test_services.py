import json
from datetime import timedelta

import pytest
from django.utils import timezone

from consent.models import Consent
from consent.selectors import consent_history, consents_granted_to
from health_platform.errors import LedgerUnavailableError, PermissionDenied, ValidationFailed
from tests.chaincode.conftest import digest
from tests.conftest import BREAST_CANCER
from tests.signing import grant_signed, revoke_signed


def _check(ledger, grantee, record_id, sha, *, at=None):
    request = {
        "grantee": grantee,
        "purpose": BREAST_CANCER,
        "at": (at or timezone.now()).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "items": [{"record_id": record_id, "category": "imaging", "sha256": sha}],
    }
    return ledger.evaluate("consent", "CheckAccessBatch", json.dumps(request)).json()["results"][0]


def test_grant_is_a_ledger_transaction_mirrored_with_its_id_and_block(patient_user, terms, ledger):
    consent = grant_signed(actor=patient_user, patient=patient_user.patient, **terms)
    on_ledger = ledger.evaluate("consent", "ReadConsent", consent.patient.pseudonym, consent.consent_id).json()
    assert on_ledger["patient_pseudonym"] == patient_user.patient.pseudonym
    assert on_ledger["grantee"] == terms["grantee_id"]
    assert consent.granted_tx_id == on_ledger["granted_tx_id"]
    assert consent.granted_block == ledger.locate(consent.granted_tx_id).block_number
    assert consent.effective_status == "active"


def test_grant_then_revoke_history_holds_both_and_the_gate_refuses_consent_revoked(patient_user, terms, ledger):
    ledger.submit("anchors", "AnchorRecord", "rec-1", patient_user.patient.pseudonym, digest(1), "1")
    consent = grant_signed(actor=patient_user, patient=patient_user.patient, **terms)
    assert _check(ledger, terms["grantee_id"], "rec-1", digest(1))["decision"] == "admit"

    revoked = revoke_signed(actor=patient_user, consent=consent)

    history = consent_history(consent=revoked)
    assert [change.status for change in history] == ["active", "revoked"]
    assert [change.tx_id for change in history] == [consent.granted_tx_id, revoked.revoked_tx_id]
    assert history[1].block_number == revoked.revoked_block
    assert _check(ledger, terms["grantee_id"], "rec-1", digest(1))["reason"] == "consent_revoked"


def test_an_expired_consent_is_refused_with_consent_expired(patient_user, terms, ledger):
    ledger.submit("anchors", "AnchorRecord", "rec-1", patient_user.patient.pseudonym, digest(1), "1")
    grant_signed(actor=patient_user, patient=patient_user.patient, **terms)
    later = terms["valid_until"] + timedelta(seconds=1)
    assert _check(ledger, terms["grantee_id"], "rec-1", digest(1), at=later)["reason"] == "consent_expired"


def test_revoke_is_idempotent_and_writes_nothing_the_second_time(patient_user, terms, ledger):
    consent = grant_signed(actor=patient_user, patient=patient_user.patient, **terms)
    first = revoke_signed(actor=patient_user, consent=consent)
    height = ledger.height()
    again = revoke_signed(actor=patient_user, consent=first)
    assert ledger.height() == height
    assert (again.status, again.revoked_tx_id, again.revoked_block) == (
        "revoked",
        first.revoked_tx_id,
        first.revoked_block,
    )


def test_a_patient_cannot_grant_or_revoke_for_another_and_nothing_reaches_the_ledger(
    patient_user, other_patient_user, terms, ledger
):
    height = ledger.height()
    with pytest.raises(PermissionDenied):
        grant_signed(actor=other_patient_user, patient=patient_user.patient, **terms)
    assert ledger.height() == height
    consent = grant_signed(actor=patient_user, patient=patient_user.patient, **terms)
    height = ledger.height()
    with pytest.raises(PermissionDenied):
        revoke_signed(actor=other_patient_user, consent=consent)
    assert ledger.height() == height
    on_ledger = ledger.evaluate("consent", "ReadConsent", consent.patient.pseudonym, consent.consent_id).json()
    assert on_ledger["status"] == "active"


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"grantee_id": "clinician:nobody"}, "unknown_grantee", "grantee"),
        ({"grantee_id": "org:unknown"}, "unknown_grantee", "grantee"),
        ({"purposes": ["marketing"]}, "unknown_purpose", "purposes"),
        ({"purposes": []}, "unknown_purpose", "purposes"),
        ({"categories": ["genome"]}, "unknown_category", "categories"),
        ({"valid_until": timezone.now() - timedelta(days=400)}, "invalid_period", "valid_until"),
        (
            {"valid_from": timezone.now() - timedelta(days=3), "valid_until": timezone.now() - timedelta(days=1)},
            "period_in_past",
            "valid_until",
        ),
        ({"valid_from": timezone.now() - timedelta(days=1)}, "period_in_past", "valid_from"),
    ],
)
def test_each_invalid_grant_gets_a_clear_error_and_writes_nothing(patient_user, terms, ledger, change, code, field):
    height = ledger.height()
    with pytest.raises(ValidationFailed) as refused:
        grant_signed(actor=patient_user, patient=patient_user.patient, **{**terms, **change})
    assert (refused.value.code, refused.value.detail["field"]) == (code, field)
    assert ledger.height() == height
    assert Consent.objects.count() == 0


def test_a_deactivated_clinician_is_no_longer_a_grantee(patient_user, clinician, terms):
    clinician.is_active = False
    clinician.save()
    with pytest.raises(ValidationFailed) as refused:
        grant_signed(actor=patient_user, patient=patient_user.patient, **terms)
    assert refused.value.code == "unknown_grantee"


def test_an_organisation_grant_reaches_its_clinicians(patient_user, clinician, organisation, other_clinician, terms):
    grant_signed(actor=patient_user, patient=patient_user.patient, **{**terms, "grantee_id": organisation.grantee_id})
    assert [c.grantee for c in consents_granted_to(user=clinician)] == ["org:st-marys"]
    assert list(consents_granted_to(user=other_clinician)) == []


def test_ledger_down_means_ledger_unavailable_and_nothing_written(patient_user, terms, settings):
    settings.LEDGER_URL = "embedded:///proc/health-platform-no-such-dir/ledger.sqlite3"
    with pytest.raises(LedgerUnavailableError):
        grant_signed(actor=patient_user, patient=patient_user.patient, **terms)
    assert Consent.objects.count() == 0
