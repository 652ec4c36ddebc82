"""A history of access events written on the embedded ledger at past times, for the detector to learn from."""

import contextlib
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
