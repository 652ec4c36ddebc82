"""Consent fixtures: two patients with portal accounts, a clinician in an organisation, an auditor."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from health_platform.roles import Role
from health_platform.services import clinician_register, organisation_create
from tests.records.factories import PatientFactory, UserFactory

BREAST_CANCER = "diagnostic-model:breast-cancer"


@pytest.fixture
def patient_user(db):
    user = UserFactory(username="patient-alice", roles=[Role.PATIENT])
    PatientFactory(user=user)
    return user


@pytest.fixture
def other_patient_user(db):
    user = UserFactory(username="patient-bob", roles=[Role.PATIENT])
    PatientFactory(user=user)
    return user


@pytest.fixture
def organisation(db):
    return organisation_create(slug="st-marys", name="St Mary's Hospital")


@pytest.fixture
def clinician(organisation):
    user = UserFactory(username="dr-carol")
    clinician_register(user=user, display_name="Dr Carol", organisation=organisation)
    return user


@pytest.fixture
def api_as():
    def make(user):
        client = APIClient()
        client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def terms(clinician):
    """Valid grant terms: the clinician, breast-cancer model use of imaging records, for 30 days."""
    now = timezone.now()
    return {
        "grantee_id": clinician.clinician_profile.grantee_id,
        "purposes": [BREAST_CANCER],
        "categories": ["imaging"],
        "valid_from": now,
        "valid_until": now + timedelta(days=30),
    }
