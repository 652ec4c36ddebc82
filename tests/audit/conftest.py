"""Audit fixtures: access events on the real embedded ledger, logged as the pipeline logs them,
and an analysis over a mixed cohort (admitted, never consented, revoked, category not covered)."""

import time

import pytest

from analytics.models import AnalysisStatus
from audit.services import access_batch_log
from health_platform.roles import Role
from tests.conftest import BREAST_CANCER, explicit_analysis, grant
from tests.records.factories import UserFactory
from tests.signing import revoke_signed


def access_event(event_id: str, *, patient: str = "a" * 64, **overrides) -> dict:
    return {
        "event_id": event_id,
        "kind": "record_access",
        "record_id": f"rec-{event_id}",
        "patient_pseudonym": patient,
        "grantee": "clinician:alice",
        "purpose": BREAST_CANCER,
        "request_id": "req-1",
        "model_hash": "b" * 64,
        "category": "imaging",
        "decision": "admit",
        **overrides,
    }


MODEL_B = "c" * 64  # the second model's hash (access_event's default is the first's, "b" * 64)


def two_batches_logged(logged, *, mine: str, theirs: str, grantee: str = "clinician:alice") -> dict[str, dict]:
    """Two batches on the ledger: the first uses the records of patients `mine` and `theirs` (pseudonyms) for
    `grantee`, admitted; the second refuses `mine`'s record to St Mary's under MODEL_B, its consent revoked.
    Returns {event_id: event}."""
    first = [
        access_event("r1-e1", patient=mine, grantee=grantee, request_id="req-1"),
        access_event("r1-e2", patient=theirs, grantee=grantee, request_id="req-1"),
    ]
    second = [
        access_event(
            "r2-e1",
            patient=mine,
            grantee="org:st-marys",
            request_id="req-2",
            model_hash=MODEL_B,
            decision="refuse",
            reason="consent_revoked",
        )
    ]
    logged("batch-1", first)
    logged("batch-2", second)
    return {event["event_id"]: event for event in first + second}


@pytest.fixture
def audit_user(db):
    return UserFactory(username="auditor-ann", roles=[Role.AUDITOR])


@pytest.fixture
def logged(db, ledger):
    """log(batch_id, events) -> LoggedBatch: events on the ledger and in the mirror."""

    def log(batch_id: str, events: list[dict]):
        return access_batch_log(batch_id=batch_id, events=events)

    return log


@pytest.fixture
def mixed_analysis(cohort, clinician, models_registered, ledger, blob_dir, eager):
    """An analysis over four patients: one admitted, one with no consent, one revoked, one whose
    consent covers another category. Returns (request, {record_id: (decision, reason)}, people)."""
    people = cohort(4)
    (u0, p0, r0), (_, _p1, r1), (u2, p2, r2), (u3, p3, r3) = people
    grant(u0, p0, clinician)
    revoke_signed(actor=u2, consent=grant(u2, p2, clinician))
    grant(u3, p3, clinician, categories=["laboratory"])
    time.sleep(0.01)
    request = explicit_analysis(clinician, people)
    assert request.status == AnalysisStatus.COMPLETED, request.failure_code
    expected = {
        str(r0.id): ("admit", None),
        str(r1.id): ("refuse", "no_consent"),
        str(r2.id): ("refuse", "consent_revoked"),
        str(r3.id): ("refuse", "category_not_covered"),
    }
    return request, expected, people
