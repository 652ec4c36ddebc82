"""Consent fixtures: a clinician in an organisation, and valid grant terms naming her.

The two patients with portal accounts (patient_user, other_patient_user) are tests/conftest.py's."""

import pytest

from health_platform.services import clinician_register, organisation_create
from tests.conftest import consent_terms
from tests.records.factories import UserFactory


@pytest.fixture
def organisation(db):
    return organisation_create(slug="st-marys", name="St Mary's Hospital")


@pytest.fixture
def clinician(organisation):
    user = UserFactory(username="dr-carol")
    clinician_register(user=user, display_name="Dr Carol", organisation=organisation)
    return user


@pytest.fixture
def terms(clinician):
    """Valid grant terms: the clinician, breast-cancer model use of imaging records, for 30 days."""
    return consent_terms(clinician)
