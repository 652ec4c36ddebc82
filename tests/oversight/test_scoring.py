"""The misuse detector at work on the embedded ledger: a history of explained reads written at past times, a day of
snooping flagged with its reason, the detector anchored and cited, the alert and its triage on the ledger and in a
verified audit export, and an access with no valid explanation flagged by itself."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command

from audit.exports import audit_export_run, export_path, rows_from_file
from audit.models import AccessEvent, AuditExport
from audit.selectors import AccessEventFilters
from audit.services import audit_export_create
from health_platform import bootstrap
from health_platform.errors import PermissionDenied, ValidationFailed
from oversight import services
from oversight.models import Alert, Detector
from tests.conftest import grant
from tests.oversight.conftest import SCORED, read, snooping


def test_a_night_of_snooping_on_one_patient_is_flagged_with_its_reason_on_the_ledger(history, clinician, auditor):
    snooping(history, clinician)

    run = services.misuse_score(until=SCORED + timedelta(days=1))

    (alert,) = run.alerts
    assert (alert.grantee_id, alert.day) == (clinician.clinician_profile.grantee_id, SCORED)
    codes = [reason["code"] for reason in alert.reasons]
    assert "repeated_reads" in codes
    words = next(r["text"] for r in alert.reasons if r["code"] == "repeated_reads")
    assert "15" in words
    assert "usual 1" in words
    detector = run.detector
    anchored = (
        bootstrap.contracts().client.evaluate("anchors", "ReadModelAnchor", "misuse-detector", detector.version).json()
    )
    assert anchored["sha256"] == detector.weights_sha256 == alert.detector.weights_sha256
    assert services.detector_load(detector).weights_sha256 == detector.weights_sha256
    on_ledger = bootstrap.contracts().read_alert(str(alert.id))
    assert (on_ledger.detector_version, on_ledger.detector_sha256, on_ledger.tx_id) == (
        detector.version,
        detector.weights_sha256,
        alert.tx_id,
    )
    assert "repeated_reads" in on_ledger.reasons
    assert AccessEvent.objects.get(event_id=f"alert:{alert.id}").model_hash == detector.weights_sha256

    again = services.misuse_score(until=SCORED + timedelta(days=1))
    assert again.alerts == []
    assert Alert.objects.count() == 1


def test_an_access_with_no_valid_explanation_is_an_alert_by_itself(history, clinician):
    patient, _ = history[clinician][0]
    read(clinician, patient, "consent-that-never-was", datetime(2026, 11, 30, 11, 0, tzinfo=UTC))
    run = services.misuse_score(until=SCORED + timedelta(days=1))
    (alert,) = run.alerts
    assert alert.reasons[0]["code"] == "unexplained_access"


def test_explanations_check_each_kind_of_access(history, clinician, other_clinician):
    patient, consent_id = history[clinician][0]
    grantee = clinician.clinician_profile.grantee_id
    base = {
        "kind": "record_read",
        "purpose": "treatment",
        "decision": "admit",
        "grantee": grantee,
        "patient_pseudonym": patient.pseudonym,
        "consent_id": consent_id,
        "recorded_at": "2026-11-30T10:00:00Z",
    }
    rows = [
        base,  # its consent, its patient, its grantee: explained
        {**base, "grantee": other_clinician.clinician_profile.grantee_id, "consent_id": consent_id},  # not theirs
        {**base, "patient_pseudonym": "0" * 64},  # another patient
        {**base, "consent_id": None},  # no consent named
        {**base, "decision": "refuse", "consent_id": None, "reason": "no_consent"},  # refusals need none
        {**base, "purpose": "emergency", "consent_id": None, "request_id": str(uuid.uuid4())},  # no declaration
        {**base, "kind": "record_access", "consent_id": None, "request_id": "analysis-1"},  # logged before consent_id
    ]
    assert services.explanations_check(rows) == [False, True, True, True, False, True, False]


def test_an_alert_is_triaged_once_on_the_ledger_and_exported_verified(
    history, clinician, auditor, export_dir, django_capture_on_commit_callbacks
):
    snooping(history, clinician)
    (alert,) = services.misuse_score(until=SCORED + timedelta(days=1)).alerts

    with pytest.raises(PermissionDenied):
        services.alert_triage(auditor=clinician, alert_id=str(alert.id), verdict="dismissed", note="mine")
    with pytest.raises(ValidationFailed) as bad:
        services.alert_triage(auditor=auditor, alert_id=str(alert.id), verdict="maybe", note="?")
    assert bad.value.code == "invalid_verdict"
    triaged = services.alert_triage(
        auditor=auditor, alert_id=str(alert.id), verdict="confirmed", note="Asked the ward: no treatment."
    )
    assert triaged.verdict == "confirmed"
    assert services.triage_note_open(triaged) == "Asked the ward: no treatment."
    ledger_triage = bootstrap.contracts().read_alert(str(alert.id)).judgement
    assert (ledger_triage.verdict, ledger_triage.note_sha256) == ("confirmed", triaged.note_sha256)
    with pytest.raises(ValidationFailed) as twice:
        services.alert_triage(auditor=auditor, alert_id=str(alert.id), verdict="dismissed", note="No.")
    assert twice.value.code == "already_triaged"

    with django_capture_on_commit_callbacks(execute=False):
        created = audit_export_create(
            requester=auditor, format="csv", filters=AccessEventFilters(request_id=str(alert.id))
        )
    audit_export_run(export_id=str(created.pk))
    done = AuditExport.objects.get(pk=created.pk)
    with export_path(done).open("rb") as stream:
        rows = list(rows_from_file(stream, format="csv"))
    assert [(r["kind"], r["decision"], r["model_hash"]) for r in rows] == [
        ("alert", "flagged", alert.detector.weights_sha256),
        ("alert_triage", "confirmed", alert.detector.weights_sha256),
    ]
    assert done.verification["ok"] is True


def test_nothing_to_score_is_said_and_bad_input_refused(db, ledger, capsys):
    assert services.misuse_score(until=SCORED).skipped == "no_events"
    with pytest.raises(ValidationFailed) as bad:
        services.misuse_score(days=0)
    assert bad.value.code == "invalid_days"
    call_command("score_access_log", "--until", "2026-11-30")
    assert "Nothing scored" in capsys.readouterr().out
    assert not Detector.objects.exists()


def test_with_no_history_an_unexplained_access_is_still_an_alert_and_nothing_else(cohort, clinician):
    ((user, patient, _),) = cohort(1)
    consent_id = grant(user, patient, clinician, purposes=["treatment"]).consent_id
    explained_day = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    for minute in range(20):  # a burst nobody can call unusual without a history
        read(clinician, patient, consent_id, explained_day + timedelta(minutes=minute))
    assert services.misuse_score(until=SCORED).skipped == "no_history"

    read(clinician, patient, "consent-that-never-was", datetime(2026, 11, 30, 11, 0, tzinfo=UTC))
    run = services.misuse_score(until=SCORED + timedelta(days=1))
    (alert,) = run.alerts
    assert (alert.day, [r["code"] for r in alert.reasons]) == (SCORED, ["unexplained_access"])


def test_the_command_says_why_it_scored_nothing_when_the_ledger_is_away(db, ledger_switch):
    ledger_switch.down()
    with pytest.raises(CommandError) as away:
        call_command("score_access_log")
    assert "(code ledger_unavailable)" in str(away.value)
    with pytest.raises(CommandError, match="code invalid_date"):
        call_command("score_access_log", "--until", "someday")


def test_an_alert_the_database_lost_is_mirrored_again_from_the_ledger_not_raised_twice(history, clinician):
    snooping(history, clinician)
    (alert,) = services.misuse_score(until=SCORED + timedelta(days=1)).alerts
    Alert.objects.all().delete()  # a restore from a backup older than the alert, say

    run = services.misuse_score(until=SCORED + timedelta(days=1))

    (again,) = run.alerts
    assert (again.id, again.tx_id, again.score) == (alert.id, alert.tx_id, alert.score)
    assert run.tx_id is None  # nothing new on the ledger
    assert {r["code"] for r in again.reasons} == {r["code"] for r in alert.reasons}


@pytest.mark.parametrize(("offset", "day"), [(0, SCORED - timedelta(days=1)), (3, SCORED)])
def test_days_and_nights_are_the_hospitals(history, clinician, settings, offset, day):
    """Reads at 22:00-22:45 UTC on the 29th are on the 29th in London, and at 01:00 on the 30th three hours east."""
    settings.OVERSIGHT_UTC_OFFSET_HOURS = offset
    patient, consent_id = history[clinician][0]
    for minute in range(15):
        read(clinician, patient, consent_id, datetime(2026, 11, 29, 22, 3 * minute, tzinfo=UTC))
    (alert,) = services.misuse_score(until=SCORED + timedelta(days=1)).alerts
    assert alert.day == day
