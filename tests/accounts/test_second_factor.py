"""Staff must enrol a second factor; API tokens for staff need it; patients may use one."""

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from health_platform.roles import Role
from tests.clients import (
    enrol_totp,
    sign_in_with_second_factor,
    signed_in,
    staff_token,
    totp_code,
    unenrol,
)
from tests.records.factories import PASSWORD, UserFactory, patient_account

pytestmark = pytest.mark.django_db

STAFF = [Role.CLINICIAN, Role.AUDITOR, Role.CUSTODIAN, Role.MODEL_STEWARD]


@pytest.mark.parametrize("role", STAFF)
@pytest.mark.parametrize("page", ["/", "/analytics/", "/audit/", "/consent/granted-to-me/", "/records/"])
def test_staff_without_a_second_factor_are_sent_to_enrolment_from_every_portal_page(role, page):
    user = UserFactory(roles=[role])
    unenrol(user)

    response = signed_in(user).get(page)

    assert (response.status_code, response["Location"]) == (302, "/accounts/2fa/")


@pytest.mark.parametrize("role", STAFF)
def test_the_api_refuses_staff_without_a_second_factor_with_mfa_required(role):
    user = UserFactory(roles=[role])
    unenrol(user)
    token = Token.objects.create(user=user)

    with_token = APIClient().get("/api/analyses/", HTTP_AUTHORIZATION=f"Token {token.key}")
    with_session = signed_in(user).get("/api/analyses/")

    for response in (with_token, with_session):
        assert response.status_code == 403
        assert response.json()["code"] == "mfa_required"
        assert set(response.json()) == {"code", "message", "detail"}


def test_enrolled_staff_reach_their_pages_and_patients_need_no_second_factor():
    clinician = UserFactory(roles=[Role.CLINICIAN])  # enrolled by tests/conftest.py
    patient = patient_account("patient-plain")

    assert signed_in(clinician).get("/analytics/").status_code == 200
    assert signed_in(patient).get("/consent/").status_code == 200


def test_an_unenrolled_member_of_staff_enrols_an_authenticator_app_and_then_reaches_the_platform():
    user = UserFactory(username="auditor-new", roles=[Role.AUDITOR])
    unenrol(user)
    client = Client()
    signed = client.post("/accounts/login/", {"username": "auditor-new", "password": PASSWORD})
    assert (signed.status_code, client.get("/audit/")["Location"]) == (302, "/accounts/2fa/")

    # allauth asks for the password again before a factor is added (a session left open cannot add one).
    asked = client.get("/accounts/2fa/totp/activate/")
    assert asked["Location"].startswith("/accounts/reauthenticate/")
    client.post(asked["Location"], {"password": PASSWORD})
    page = client.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200
    secret = client.session["mfa.totp.secret"]
    assert secret in page.content.decode()  # for typing into the app, next to the QR code
    activated = client.post("/accounts/2fa/totp/activate/", {"code": totp_code(secret)})

    assert activated.status_code == 302
    assert client.get("/audit/").status_code == 200


@pytest.mark.parametrize("role", STAFF)
def test_a_staff_password_alone_yields_no_api_token(role):
    user = UserFactory(roles=[role])

    response = APIClient().post("/api/auth/token/", {"username": user.username, "password": PASSWORD}, format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "second_factor_required"
    assert not Token.objects.filter(user=user).exists()


def test_a_patient_password_still_yields_a_token():
    user = UserFactory(roles=[Role.PATIENT])

    response = APIClient().post("/api/auth/token/", {"username": user.username, "password": PASSWORD}, format="json")

    assert response.status_code == 200
    assert response.json()["token"] == Token.objects.get(user=user).key


def test_a_session_that_passed_the_second_factor_gets_the_staff_token_and_one_that_did_not_does_not():
    user = UserFactory(username="dr-token", roles=[Role.CLINICIAN])
    password_only = signed_in(user)  # a session without the second factor

    refused = password_only.post("/api/auth/token/")
    key = staff_token("dr-token")

    assert (refused.status_code, refused.json()["code"]) == (403, "second_factor_required")
    listed = APIClient().get("/api/analyses/", HTTP_AUTHORIZATION=f"Token {key}")
    assert listed.status_code == 200


def test_signing_in_as_enrolled_staff_asks_for_the_code_and_a_wrong_code_signs_in_nobody():
    UserFactory(username="auditor-code", roles=[Role.AUDITOR])
    client = Client()

    first = client.post("/accounts/login/", {"username": "auditor-code", "password": PASSWORD})
    assert first["Location"].startswith("/accounts/2fa/authenticate/")
    assert "_auth_user_id" not in client.session
    wrong = client.post("/accounts/2fa/authenticate/", {"code": "000000" if totp_code() != "000000" else "111111"})
    assert wrong.status_code == 200
    assert "_auth_user_id" not in client.session

    passed = sign_in_with_second_factor(Client(), "auditor-code")
    assert (passed.status_code, passed["Location"]) == (302, "/")


@pytest.mark.parametrize(("periods_ago", "passes"), [(0, True), (1, True), (2, False)])
def test_a_code_typed_as_its_period_ends_still_passes_and_an_older_one_does_not(periods_ago, passes, monkeypatch):
    import time

    from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
    from django.core.cache import cache

    from tests.clients import TOTP_SECRET

    UserFactory(username="clinician-edge", roles=[Role.CLINICIAN])
    now = (int(time.time()) // 30) * 30 + 1  # one second into a period: the code shown a second ago is the last one's
    monkeypatch.setattr(time, "time", lambda: float(now))
    code = format_hotp_value(hotp_value(TOTP_SECRET, now // 30 - periods_ago))
    cache.clear()  # an earlier test may have used this period's code: a code passes once
    client = Client()

    client.post("/accounts/login/", {"username": "clinician-edge", "password": PASSWORD})
    client.post("/accounts/2fa/authenticate/", {"code": code})

    assert ("_auth_user_id" in client.session) is passes


def test_a_recovery_code_passes_the_second_factor_once():
    from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes

    user = UserFactory(username="custodian-rc", roles=[Role.CUSTODIAN])
    code = RecoveryCodes.activate(user).get_unused_codes()[0]

    def sign_in_with(recovery_code: str) -> Client:
        client = Client()
        client.post("/accounts/login/", {"username": "custodian-rc", "password": PASSWORD})
        client.post("/accounts/2fa/authenticate/", {"code": recovery_code})
        return client

    assert "_auth_user_id" in sign_in_with(code).session
    assert "_auth_user_id" not in sign_in_with(code).session


def test_personal_tokens_are_made_and_revoked_in_the_portal_only_after_the_second_factor():
    user = UserFactory(username="dr-personal", roles=[Role.CLINICIAN])
    password_only = signed_in(user)
    assert password_only.post("/accounts/tokens/", {"action": "create"}).status_code == 403
    assert not Token.objects.filter(user=user).exists()

    client = Client()
    sign_in_with_second_factor(client, "dr-personal")
    created = client.post("/accounts/tokens/", {"action": "create"})
    key = Token.objects.get(user=user).key
    assert key in created.content.decode()
    assert APIClient().get("/api/analyses/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200

    client.post("/accounts/tokens/", {"action": "revoke"})
    assert not Token.objects.filter(user=user).exists()
    assert APIClient().get("/api/analyses/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 401


def test_a_patient_may_enrol_a_second_factor_and_is_then_asked_for_it():
    user = UserFactory(username="patient-careful", roles=[Role.PATIENT])
    enrol_totp(user)

    first = Client().post("/accounts/login/", {"username": "patient-careful", "password": PASSWORD})

    assert first["Location"].startswith("/accounts/2fa/authenticate/")


def test_the_second_factor_page_says_in_plain_words_what_staff_need_and_what_each_factor_is():
    user = UserFactory(roles=[Role.CLINICIAN])
    unenrol(user)
    client = signed_in(user)

    before = client.get("/accounts/2fa/").content.decode()
    enrol_totp(user)
    after = client.get("/accounts/2fa/").content.decode()

    assert 'id="second-factor-needed"' in before
    assert "Set up an authenticator app" in before
    assert 'href="/accounts/2fa/webauthn/add/"' in before
    assert "Two-Factor Authentication" not in before  # allauth's own wording
    assert 'id="second-factor-needed"' not in after
    assert "Remove the authenticator app" in after
    assert 'href="/accounts/2fa/recovery-codes/generate/"' in after
