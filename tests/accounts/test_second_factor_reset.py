"""A member of staff who lost their second factor: the custodian resets a clinician's (portal, API), the operator
anyone's (`manage.py second_factor_reset`). Every authenticator goes, every session ends, the person is told by
e-mail, and they enrol a new factor at their next sign-in."""

import io

import pytest
from allauth.mfa.models import Authenticator
from django.core import mail
from django.core.management import CommandError, call_command
from django.test import Client

from health_platform.roles import Role
from tests.clients import api_as, sign_in_with_second_factor, signed_in
from tests.records.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def carol_signed_in(clinician) -> Client:
    clinician.email = "carol@hospital.example"
    clinician.save()
    client = Client()
    assert sign_in_with_second_factor(client, "dr-carol").status_code == 302
    assert client.get("/analytics/").status_code == 200
    return client


def _assert_reset(user, session: Client) -> None:
    assert not Authenticator.objects.filter(user=user).exists()
    # Signed out everywhere: the session that had passed the second factor opens nothing now.
    assert session.get("/analytics/")["Location"].startswith("/accounts/login/")
    # The password still signs them in, straight to enrolment: nothing else opens before a new factor.
    fresh = Client()
    first = fresh.post("/accounts/login/", {"login": user.get_username(), "password": PASSWORD})
    assert first.status_code == 302
    assert fresh.get("/analytics/")["Location"] == "/accounts/2fa/"
    (message,) = mail.outbox
    assert message.to == [user.email]
    assert "second factor" in message.subject
    assert "did not ask for this" in message.body


def test_the_custodian_resets_a_clinicians_second_factor_in_the_portal(custodian, clinician, carol_signed_in):
    grantee_id = clinician.clinician_profile.grantee_id
    portal = signed_in(custodian)
    assert "Reset second factor" in portal.get("/directory/").content.decode()

    response = portal.post(f"/directory/grantees/{grantee_id}/second-factor-reset/")

    assert (response.status_code, response["Location"]) == (302, "/directory/")
    assert "second factor was reset" in portal.get("/directory/").content.decode()
    _assert_reset(clinician, carol_signed_in)


def test_the_custodian_resets_it_through_the_api(custodian, clinician, carol_signed_in):
    grantee_id = clinician.clinician_profile.grantee_id

    response = api_as(custodian).post(f"/api/directory/grantees/{grantee_id}/second-factor-reset/")

    assert response.status_code == 200, response.content
    assert response.json()["grantee_id"] == grantee_id
    _assert_reset(clinician, carol_signed_in)


@pytest.mark.parametrize("grantee_id", ["org:st-marys", "clinician:nobody", "not-a-grantee", "clinician:" + "x" * 500])
def test_only_a_clinician_of_the_directory_can_be_reset(custodian, clinician, grantee_id):
    api = api_as(custodian).post(f"/api/directory/grantees/{grantee_id}/second-factor-reset/")
    portal = signed_in(custodian).post(f"/directory/grantees/{grantee_id}/second-factor-reset/")

    assert (api.status_code, api.json()["code"]) == (404, "unknown_clinician")
    assert portal.status_code == 404
    assert Authenticator.objects.filter(user=clinician).exists()
    assert mail.outbox == []


def test_nobody_but_a_custodian_resets_anyones_second_factor(clinician, other_clinician, auditor):
    grantee_id = clinician.clinician_profile.grantee_id
    for who in (other_clinician, auditor, clinician):
        assert api_as(who).post(f"/api/directory/grantees/{grantee_id}/second-factor-reset/").status_code == 403
        assert signed_in(who).post(f"/directory/grantees/{grantee_id}/second-factor-reset/").status_code == 403
    assert Authenticator.objects.filter(user=clinician).exists()


def test_the_operator_resets_anyones_second_factor_with_a_command(custodian):
    custodian.email = "custodian@hospital.example"
    custodian.save()
    session = Client()
    assert sign_in_with_second_factor(session, "custodian").status_code == 302

    out = io.StringIO()
    call_command("second_factor_reset", "custodian", stdout=out)

    assert "custodian: 1 authenticator(s) removed" in out.getvalue()  # the authenticator app
    _assert_reset(custodian, session)


def test_the_command_refuses_an_unknown_account_with_its_code():
    UserFactory(username="someone", roles=[Role.AUDITOR])
    with pytest.raises(CommandError, match=r"^unknown_user: "):
        call_command("second_factor_reset", "no-such-person")
    assert Authenticator.objects.filter(user__username="someone").exists()
