"""A history of access events written on the embedded ledger at past times, for the detector to learn from."""

import contextlib
import hashlib
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from health_platform import bootstrap
from tests.conftest import grant

SCORED = date(2026, 11, 30)
HISTORY_DAYS = 21


@contextlib.contextmanager
def ledger_clock(moment: datetime):
    """The embedded ledger stamps the transactions written inside with `moment` (its clock moved, as a test moves
    the gate's clock instead of waiting)."""
    import ledger.embedded

    real = ledger.embedded.time.time_ns
    ledger.embedded.time.time_ns = lambda: int(moment.timestamp() * 1e9)
    try:
        yield
    finally:
        ledger.embedded.time.time_ns = real


def read(clinician, patient, consent_id, at: datetime, *, batch=None):
    """One read for treatment of one record, as care.services logs it, written at `at`."""
    batch_id = batch or f"read:{uuid.uuid4().hex}"
    event = {
        "event_id": f"{batch_id}:r1",
        "kind": "record_read",
        "record_id": f"rec-{patient.pseudonym[:8]}",
        "patient_pseudonym": patient.pseudonym,
        "grantee": clinician.clinician_profile.grantee_id,
        "purpose": "treatment",
        "consent_id": consent_id,
        "category": "imaging",
        "decision": "admit",
    }
    with ledger_clock(at):
        bootstrap.contracts().append_access_events(batch_id=batch_id, events=[event])


@pytest.fixture
def history(cohort, clinician, other_clinician, settings):
    """Three weeks before SCORED: each clinician reads two or three of their five consented patients once a day,
    in office hours. Returns {clinician: [(patient, consent_id)]}."""
    settings.OVERSIGHT_HISTORY_DAYS = HISTORY_DAYS
    people = cohort(5)
    panels = {
        doctor: [
            (patient, grant(user, patient, doctor, purposes=["treatment"]).consent_id) for user, patient, _ in people
        ]
        for doctor in (clinician, other_clinician)
    }
    for offset in range(HISTORY_DAYS, 0, -1):
        day = SCORED - timedelta(days=offset)
        for shift, (doctor, panel) in enumerate(panels.items()):
            for index in range(2 + (offset % 2)):
                patient, consent_id = panel[(offset + index) % len(panel)]
                at = datetime(day.year, day.month, day.day, 9 + 2 * index + shift, 15, tzinfo=UTC)
                read(doctor, patient, consent_id, at)
    return panels


def snooping(history, clinician):
    """The clinician reads one patient's records 15 times in the night of SCORED."""
    patient, consent_id = history[clinician][0]
    for minute in range(15):
        read(clinician, patient, consent_id, datetime(2026, 11, 30, 2, 3 * minute, tzinfo=UTC))


def alerts_raised(clinician, days: list[str]) -> list[str]:
    """Alerts about `clinician` on `days` (YYYY-MM-DD), raised on the ledger by an anchored detector as a scoring run
    would, and mirrored: their ids. For tests about what is done with an alert, not about how one is found."""
    from audit.services import logged_batch_mirror
    from ledger.contracts import AlertRequest
    from oversight.models import DETECTOR_NAME, Alert, Detector

    weights = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    version = f"test-{weights[:12]}"
    anchor = bootstrap.contracts().anchor_model(name=DETECTOR_NAME, version=version, sha256=weights)
    detector = Detector.objects.create(
        version=version,
        weights_sha256=weights,
        fitted_at=datetime.now(UTC),
        history_from=date(2026, 11, 1),
        history_until=date(2026, 11, 29),
        clinician_days=40,
        file="",
        tx_id=anchor.tx_id,
    )
    grantee = clinician.clinician_profile.grantee_id
    requests = [AlertRequest(str(uuid.uuid4()), grantee, day, "0.700000", ["repeated_reads"]) for day in days]
    logged = bootstrap.contracts().raise_alerts(
        run_id=uuid.uuid4().hex,
        detector_name=DETECTOR_NAME,
        detector_version=version,
        detector_sha256=weights,
        alerts=requests,
    )
    logged_batch_mirror(logged)
    for request in requests:
        Alert.objects.create(
            id=request.alert_id,
            grantee_id=grantee,
            day=date.fromisoformat(request.day),
            score=request.score,
            reasons=[
                {"code": "repeated_reads", "value": 15, "usual": 1, "text": "Read one patient's records 15 times"}
            ],
            detector=detector,
            run_id=logged.batch_id,
            raised_at=datetime.now(UTC),
            tx_id=logged.tx_id,
        )
    return [request.alert_id for request in requests]
