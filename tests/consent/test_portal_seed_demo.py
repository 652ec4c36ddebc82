"""The demo seed gives the portal's grant form someone to grant to."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from health_platform.models import ClinicianProfile

pytestmark = pytest.mark.django_db


def test_seeded_demo_patient_can_grant_the_demo_clinician_and_their_organisation():
    call_command("seed_demo", "--patients", "1", stdout=io.StringIO())
    call_command("seed_demo", "--patients", "1", stdout=io.StringIO())  # re-running duplicates nothing
    profile = ClinicianProfile.objects.get(user__username="demo-clinician")
    client = Client()
    client.force_login(get_user_model().objects.get(username="demo-patient-bc"))

    html = client.get(reverse("consent:dashboard")).content.decode()

    assert profile.organisation is not None
    assert profile.organisation.slug == "st-marys"
    assert ClinicianProfile.objects.count() == 1
    assert f'<option value="{profile.grantee_id}">Dr Alex Morgan (St Mary&#x27;s Hospital)</option>' in html
    assert '<option value="org:st-marys">St Mary&#x27;s Hospital (organisation)</option>' in html
