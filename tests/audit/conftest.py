"""Audit fixtures: access events on the real embedded ledger, logged as the pipeline logs them,
and an analysis over a mixed cohort (admitted, never consented, revoked, category not covered)."""

import time

import pytest

from analytics.models import AnalysisStatus
from analytics.services import analysis_request_create
from audit.services import access_batch_log
from consent.services import consent_revoke
from health_platform.roles import Role
from tests.analytics.conftest import (  # noqa: F401  (fixtures shared with the analytics tests)
    BREAST_CANCER,
    blob_dir,
    clinician,
    cohort,
    eager,
    grant,
    models_registered,
)
from tests.records.factories import UserFactory


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


@pytest.fixture
def export_dir(tmp_path, settings):
    settings.AUDIT_EXPORT_DIR = str(tmp_path / "exports")
    return tmp_path / "exports"


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
def mixed_analysis(cohort, clinician, models_registered, ledger, blob_dir, eager):  # noqa: F811
    """An analysis over four patients: one admitted, one with no consent, one revoked, one whose
    consent covers another category. Returns (request, {record_id: (decision, reason)}, people)."""
    people = cohort(4)
    (u0, p0, r0), (_, _p1, r1), (u2, p2, r2), (u3, p3, r3) = people
    grant(u0, p0, clinician)
    consent_revoke(actor=u2, consent=grant(u2, p2, clinician))
    grant(u3, p3, clinician, categories=["laboratory"])
    time.sleep(0.01)
    request = analysis_request_create(
        requester=clinician,
        model_name="breast-cancer",
        cohort_kind="explicit",
        pseudonyms=[p.pseudonym for _, p, _ in people],
    )
    request.refresh_from_db()
    assert request.status == AnalysisStatus.COMPLETED, request.failure_code
    expected = {
        str(r0.id): ("admit", None),
        str(r1.id): ("refuse", "no_consent"),
        str(r2.id): ("refuse", "consent_revoked"),
        str(r3.id): ("refuse", "category_not_covered"),
    }
    return request, expected, people
