"""Analytics fixtures: demo patients with portal accounts and breast-cancer records, a clinician,
the registered models, and Celery run eagerly in this process (real workers: see the worker tests)."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from analytics.registry import diagnostic_models_register
from consent.services import consent_grant
from health_platform.celery import app
from health_platform.roles import Role
from health_platform.services import clinician_register, organisation_create
from records.codes import BREAST_CANCER_DATASET
from records.crypto import patient_pseudonym
from records.demo import demo_bundles, demo_patients
from records.models import Patient, Record
from records.services import patient_link_user, record_ingest
from tests.records.factories import UserFactory

BREAST_CANCER = "diagnostic-model:breast-cancer"


@pytest.fixture
def blob_dir(tmp_path, settings):
    settings.ANALYTICS_BLOB_DIR = str(tmp_path / "blobs")
    return tmp_path / "blobs"


@pytest.fixture
def eager(settings):
    """Run tasks in this process as they are sent. Tests using it are transactional
    (django_db(transaction=True)) so that on-commit callbacks run as in production."""
    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.update(CELERY_TASK_ALWAYS_EAGER=True, CELERY_TASK_EAGER_PROPAGATES=True)
    settings.ANALYTICS_LEDGER_RETRY_BACKOFF_SECONDS = 0
    yield
    app.conf.update(CELERY_TASK_ALWAYS_EAGER=saved[0], CELERY_TASK_EAGER_PROPAGATES=saved[1])


@pytest.fixture
def models_registered(db, ledger):
    return {m.name: m for m in diagnostic_models_register()}


@pytest.fixture
def clinician(db):
    user = UserFactory(username="dr-carol")
    clinician_register(
        user=user, display_name="Dr Carol", organisation=organisation_create(slug="st-marys", name="St Mary's")
    )
    return user


@pytest.fixture
def cohort(db, ledger):
    """Breast-cancer demo patients 0..n-1 ingested (anchored), each with a portal account.

    cohort(n) -> list of (user, patient, record) in dataset order.
    """

    def make(count: int):
        custodian = UserFactory(username="custodian", roles=[Role.CUSTODIAN])
        patients = demo_patients(dataset=BREAST_CANCER_DATASET, count=count)
        for document in demo_bundles(patients=patients, max_entries=1000):
            record_ingest(raw_body=json.dumps(document).encode(), actor=custodian)
        made = []
        for demo in patients:
            patient = Patient.objects.get(pseudonym=patient_pseudonym(demo.patient_key))
            user = UserFactory(username=f"patient-{demo.identifier}", roles=[Role.PATIENT])
            patient_link_user(patient=patient, user=user)
            made.append((user, patient, Record.objects.get(patient=patient, category="imaging")))
        return made

    return make


def grant(user, patient, clinician, **change):
    now = timezone.now()
    terms = {
        "grantee_id": clinician.clinician_profile.grantee_id,
        "purposes": [BREAST_CANCER],
        "categories": ["imaging"],
        "valid_from": now,
        "valid_until": now + timedelta(days=30),
        **change,
    }
    return consent_grant(actor=user, patient=patient, **terms)
