"""Analytics fixtures: a patient without records, a request of Dr Carol's that stays queued, and the
ledger going away after a patient consented.

The demo cohort, the clinician, the registered models, the blob folder and Celery run eagerly in
this process are shared with the audit and reliability tests: tests/conftest.py."""

import pytest

from analytics.services import analysis_request_create
from health_platform.celery import app
from health_platform.roles import Role
from tests.records.factories import UserFactory

CAROLS_PSEUDONYM = "ab" * 32  # a well-formed pseudonym of nobody


@pytest.fixture
def patient_user(db):
    """A user holding the patient role, with no patient linked (they see model cards, nothing else)."""
    return UserFactory(username="patient-pat", roles=[Role.PATIENT])


@pytest.fixture
def queued(monkeypatch):
    """Requests stay queued: the pipeline is not started (the permission and shape tests need no scores)."""
    monkeypatch.setattr("analytics.services._enqueue_start", lambda request_id: None)


@pytest.fixture
def carols_request(clinician, models_registered, blob_dir, queued):
    return analysis_request_create(
        requester=clinician, model_name="breast-cancer", cohort_kind="explicit", pseudonyms=[CAROLS_PSEUDONYM]
    )


@pytest.fixture
def ledger_gone_after_consent(consented, ledger_switch, settings, eager):
    """ledger_gone_after_consent() -> the patient of consented(1), after which the ledger is taken away
    (ledger_switch.down()) and a request's deadline is over at once: a batch that meets the outage fails the
    request closed instead of waiting for the ledger. An eager task's error no longer reaches the sender:
    eager retries raise Retry to the caller otherwise."""

    def make():
        ((_, patient, _),) = consented(1)
        ledger_switch.down()
        settings.ANALYTICS_REQUEST_DEADLINE_SECONDS = 0
        app.conf.update(CELERY_TASK_EAGER_PROPAGATES=False)
        return patient

    return make
