"""Patient enrolment: a single-use, expiring invitation creates one account linked to the patient's records,
and any link that cannot be used is refused with a stable code and creates nothing."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.utils import timezone

from directory.models import PatientInvitation
from directory.services import patient_enrol, patient_invitation_issue, token_display
from health_platform.errors import ApplicationError
from health_platform.roles import Role, user_has_role
from tests.clients import api_as, signed_in
from tests.directory.conftest import MRN, invite_body, token_in
from tests.records.factories import MRN_SYSTEM

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-enough-Passphrase-9"


def enrol(client, token, username="pat", password=PASSWORD, again=None):
    return client.post(
        f"/enrol/link/{token}/", {"username": username, "password": password, "password_again": again or password}
    )


def users():
    return get_user_model().objects.count()


def issue(custodian, **change):
    response = api_as(custodian).post("/api/directory/invitations/", invite_body(**change), format="json")
    assert response.status_code == 201, response.content
    return response


def test_the_email_holds_the_link_and_no_health_data_and_only_a_hash_of_the_token_is_stored(custodian, ingested):
    response = issue(custodian)
    (message,) = mail.outbox
    token = token_in(message)
    assert message.to == ["pat@example.org"]
    # The token is random: it may hold "87" by chance, so it is taken out (as a link and as a code) first.
    body = message.body.replace(token, "<token>").replace(token_display(token), "<code>")
    assert ("<token>" in body, "<code>" in body) == (True, True)
    for secret in (MRN, MRN_SYSTEM, ingested.pseudonym, "laboratory", "87"):
        assert secret not in body
        assert secret not in message.subject
    assert response.json()["code"] is None  # sent by e-mail: the API answers no token
    stored = PatientInvitation.objects.get()
    assert token not in str(stored.__dict__)
    assert len(stored.token_sha256) == 64


def test_following_the_link_creates_one_patient_account_linked_to_the_records(custodian, ingested):
    issue(custodian)
    token = token_in(mail.outbox[0])
    page = Client().get(f"/enrol/link/{token}/")
    assert page.status_code == 200
    assert page["Referrer-Policy"] == "same-origin"
    assert page["Cache-Control"] == "no-store"
    for secret in (MRN, ingested.pseudonym):
        assert secret not in page.content.decode()

    response = enrol(Client(), token)
    assert response.status_code == 302
    ingested.refresh_from_db()
    user = ingested.user
    assert user.username == "pat"
    assert user_has_role(user, Role.PATIENT)
    assert user.check_password(PASSWORD)
    records = signed_in(user).get("/api/records/")
    assert records.status_code == 200
    assert PatientInvitation.objects.get().state == "used"


@pytest.mark.parametrize("case", ["reused", "expired", "revoked", "tampered", "guessed", "reissued"])
def test_an_unusable_link_is_refused_with_a_stable_code_and_creates_nothing(custodian, ingested, case):
    issue(custodian)
    token = token_in(mail.outbox[0])
    invitation = PatientInvitation.objects.get()
    expected = {
        "reused": (410, "invitation_used"),
        "expired": (410, "invitation_expired"),
        "revoked": (410, "invitation_revoked"),
        "tampered": (404, "invitation_invalid"),
        "guessed": (404, "invitation_invalid"),
        "reissued": (410, "invitation_revoked"),
    }[case]
    if case == "reused":
        assert enrol(Client(), token).status_code == 302
    elif case == "expired":
        PatientInvitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif case == "revoked":
        assert api_as(custodian).post(f"/api/directory/invitations/{invitation.pk}/revoke/").status_code == 200
    elif case == "tampered":
        token = token[:-1] + ("0" if token[-1] != "0" else "1")
    elif case == "guessed":
        token = "ABCD" * 5
    elif case == "reissued":
        assert api_as(custodian).post(f"/api/directory/invitations/{invitation.pk}/reissue/").status_code == 201
    before = users()

    for response in (Client().get(f"/enrol/link/{token}/"), enrol(Client(), token, username="second")):
        assert response.status_code == expected[0]
        assert f'<code id="refusal-code">{expected[1]}</code>' in response.content.decode()
    assert users() == before
    assert not get_user_model().objects.filter(username="second").exists()
    ingested.refresh_from_db()
    assert (ingested.user is None) == (case != "reused")


def test_a_hostile_token_in_the_url_is_refused_as_invalid(custodian, ingested):
    for token in ("x" * 300, "%00", "ABCD-EFGH", "'; DROP TABLE", "A" * 21):
        response = Client().get(f"/enrol/link/{token}/")
        assert response.status_code in (404,)
    assert users() == 1


def test_one_patient_one_account_no_invitation_is_issued_once_the_patient_has_enrolled(custodian, ingested):
    issue(custodian)
    assert enrol(Client(), token_in(mail.outbox[0])).status_code == 302
    refused = api_as(custodian).post("/api/directory/invitations/", invite_body(), format="json")
    assert refused.status_code == 409
    assert refused.json()["code"] == "patient_already_enrolled"
    assert PatientInvitation.objects.count() == 1


def test_a_second_pending_invitation_cannot_enrol_a_patient_who_has_an_account(custodian, ingested):
    issued_first = patient_invitation_issue(
        actor=custodian, identifier_system=MRN_SYSTEM, identifier_value=MRN, base_url="http://testserver"
    )
    issued_second = patient_invitation_issue(
        actor=custodian, identifier_system=MRN_SYSTEM, identifier_value=MRN, base_url="http://testserver"
    )
    PatientInvitation.objects.update(revoked_at=None)  # both pending, as if issued concurrently
    assert enrol(Client(), issued_first.token).status_code == 302
    before = users()
    response = enrol(Client(), issued_second.token, username="another")
    assert response.status_code == 409
    assert '<code id="refusal-code">patient_already_enrolled</code>' in response.content.decode()
    assert users() == before


def test_the_desk_code_is_shown_once_and_typed_in_with_dashes_and_lower_case(custodian, ingested):
    response = issue(custodian, email="")
    code = response.json()["code"]
    assert len(mail.outbox) == 0
    assert code == token_display(code.replace("-", ""))
    client = Client()
    typed = client.post("/enrol/", {"code": code.lower()})
    assert typed.status_code == 302
    assert enrol(client, code.replace("-", "")).status_code == 302


@pytest.mark.parametrize(
    ("username", "password", "again", "code"),
    [
        ("pat", "short", "short", "password_too_weak"),
        ("pat", PASSWORD, PASSWORD + "x", "password_mismatch"),
        ("bad name!", PASSWORD, PASSWORD, "invalid_username"),
        ("custodian", PASSWORD, PASSWORD, "username_taken"),
        ("x" * 151, PASSWORD, PASSWORD, "invalid_username"),
    ],
)
def test_bad_account_choices_are_refused_by_field_and_the_invitation_stays_usable(
    custodian, ingested, username, password, again, code
):
    issue(custodian)
    token = token_in(mail.outbox[0])
    before = users()
    with pytest.raises(ApplicationError) as error:
        patient_enrol(token_text=token, username=username, password=password, password_again=again)
    assert error.value.code == code
    assert enrol(Client(), token, username=username, password=password, again=again).status_code == 400
    assert users() == before
    assert PatientInvitation.objects.get().state == "pending"


def test_only_an_ingested_identifier_can_be_invited(custodian, ingested):
    response = api_as(custodian).post(
        "/api/directory/invitations/", invite_body(identifier_value="MRN-999999"), format="json"
    )
    assert response.status_code == 404
    assert response.json()["code"] == "patient_not_found"
    assert PatientInvitation.objects.count() == 0


def test_the_portal_invites_shows_the_desk_code_once_revokes_and_reissues(custodian, ingested):
    client = signed_in(custodian)
    assert client.get("/directory/invitations/").status_code == 200
    shown = client.post("/directory/invitations/", {"identifier_system": MRN_SYSTEM, "identifier_value": MRN})
    assert shown.status_code == 201
    assert 'id="desk-code"' in shown.content.decode()
    assert MRN not in client.get("/directory/invitations/").content.decode()
    invitation = PatientInvitation.objects.get()
    assert client.post(f"/directory/invitations/{invitation.pk}/revoke/").status_code == 302
    assert PatientInvitation.objects.get().state == "revoked"
    again = client.post(f"/directory/invitations/{invitation.pk}/reissue/", {"email": "pat@example.org"})
    assert again.status_code == 201
    assert len(mail.outbox) == 1
    assert client.post("/directory/invitations/not-a-uuid/revoke/").status_code == 404
    unknown = client.post("/directory/invitations/", {"identifier_system": MRN_SYSTEM, "identifier_value": "MRN-0"})
    assert unknown.status_code == 404
