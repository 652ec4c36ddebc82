"""The patient portal's "My records" pages."""

import pytest
from django.urls import reverse

from health_platform.roles import Role
from records.crypto import patient_pseudonym
from records.models import Patient, RecordVersion
from records.services import patient_link_user, record_ingest
from tests.clients import shown_text
from tests.records.factories import MRN_SYSTEM, UserFactory, bundle, encode, patient_with_observations


@pytest.fixture
def patient_user(custodian):
    record_ingest(
        raw_body=encode(
            bundle(
                *patient_with_observations(mrn="MRN-PORTAL", values=(98.6,)),
                *patient_with_observations(mrn="MRN-ELSE", values=(55.5,)),
            )
        ),
        actor=custodian,
    )
    user = UserFactory(username="portal-patient", roles=[Role.PATIENT])
    patient_link_user(patient=Patient.objects.get(pseudonym=patient_pseudonym(f"{MRN_SYSTEM}|MRN-PORTAL")), user=user)
    return user


@pytest.mark.django_db
def test_my_records_lists_category_version_anchor_and_verified_integrity(patient_user, client):
    client.force_login(patient_user)
    version = RecordVersion.objects.get(record__patient__user=patient_user)

    response = client.get(reverse("records:my-records"))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Laboratory results" in html
    assert version.anchor_tx_id in html
    assert f">{version.anchor_block}<" in html
    assert "Verified" in html
    other = RecordVersion.objects.exclude(record__patient__user=patient_user).get()
    assert other.anchor_tx_id in html  # same transaction: one batch
    assert str(other.record_id) not in html
    assert "55.5" not in shown_text(html)


@pytest.mark.django_db
def test_my_records_shows_a_failed_integrity_check(patient_user, client):
    client.force_login(patient_user)
    RecordVersion.objects.filter(record__patient__user=patient_user).update(sha256="0" * 64)

    html = client.get(reverse("records:my-records")).content.decode()

    assert "Not verified" in html
    assert "hash_mismatch_local" in html


@pytest.mark.django_db
def test_record_page_shows_the_patients_own_values(patient_user, client):
    client.force_login(patient_user)
    record_id = RecordVersion.objects.get(record__patient__user=patient_user).record_id

    response = client.get(reverse("records:record-detail", args=[record_id]))

    assert response.status_code == 200
    assert "98.6" in response.content.decode()


@pytest.mark.django_db
def test_record_page_of_another_patient_is_404(patient_user, client):
    client.force_login(patient_user)
    other = RecordVersion.objects.exclude(record__patient__user=patient_user).get()

    assert client.get(reverse("records:record-detail", args=[other.record_id])).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.AUDITOR, Role.CUSTODIAN])
def test_my_records_is_forbidden_to_non_patients(role, client):
    client.force_login(UserFactory(roles=[role]))

    assert client.get(reverse("records:my-records")).status_code == 403


@pytest.mark.django_db
def test_my_records_sends_anonymous_users_to_sign_in(client):
    response = client.get(reverse("records:my-records"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_my_records_tells_a_patient_without_a_linked_record(client):
    client.force_login(UserFactory(roles=[Role.PATIENT]))

    response = client.get(reverse("records:my-records"))

    assert response.status_code == 200
    assert "not linked to a patient record" in response.content.decode()
