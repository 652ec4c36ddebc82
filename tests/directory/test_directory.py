"""The custodian's directory: add clinicians and organisations, deactivate and reactivate them (API, portal,
management commands), each change on the ledger first; only custodians manage it."""

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import CommandError, call_command
from django.test import Client

from health_platform import bootstrap
from health_platform.models import ClinicianProfile, GranteeStatus, Organisation
from health_platform.roles import Role, user_has_role
from tests.clients import api_as, signed_in

pytestmark = pytest.mark.django_db

CLINICIAN = {"username": "dr-new", "display_name": "Dr New", "email": "new@hospital.example", "organisation": ""}
STEWARD = {"username": "steward-new", "email": "steward@hospital.example"}


def test_adding_a_clinician_creates_their_account_registers_them_on_the_ledger_and_emails_a_password_link(custodian):
    response = api_as(custodian).post("/api/directory/clinicians/", CLINICIAN, format="json")
    assert response.status_code == 201, response.content
    entry = response.json()
    assert (entry["kind"], entry["active"], entry["on_ledger"]) == ("clinician", True, True)
    user = get_user_model().objects.get(username="dr-new")
    assert user_has_role(user, Role.CLINICIAN)
    assert not user.has_usable_password()
    assert bootstrap.contracts().read_grantee(entry["grantee_id"]).active

    (message,) = mail.outbox
    link = next(word for word in message.body.split() if "/enrol/staff/" in word)
    path = link.split("testserver", 1)[1]
    client = Client()
    assert client.get(path).status_code == 200
    chosen = {"new_password1": "a-long-enough-Passphrase-9", "new_password2": "a-long-enough-Passphrase-9"}
    assert client.post(path, chosen).status_code == 302
    user.refresh_from_db()
    assert user.check_password("a-long-enough-Passphrase-9")
    # The link works once.
    again = Client().get(path)
    assert again.status_code == 404
    assert '<code id="refusal-code">invitation_invalid</code>' in again.content.decode()


def test_adding_a_model_steward_creates_a_staff_account_with_a_password_link_and_nothing_on_the_ledger(custodian):
    from health_platform.second_factor import second_factor_required

    height = bootstrap.contracts().height()
    response = api_as(custodian).post("/api/directory/model-stewards/", STEWARD, format="json")
    assert response.status_code == 201, response.content
    assert response.json() == {**STEWARD, "roles": ["model-steward"]}
    user = get_user_model().objects.get(username="steward-new")
    assert user_has_role(user, Role.MODEL_STEWARD)
    assert not user_has_role(user, Role.CLINICIAN)
    assert not user.has_usable_password()
    assert second_factor_required(user)
    assert not ClinicianProfile.objects.filter(user=user).exists()
    assert bootstrap.contracts().height() == height

    (message,) = mail.outbox
    link = next(word for word in message.body.split() if "/enrol/staff/" in word)
    chosen = {"new_password1": "a-long-enough-Passphrase-9", "new_password2": "a-long-enough-Passphrase-9"}
    assert Client().post(link.split("testserver", 1)[1], chosen).status_code == 302
    user.refresh_from_db()
    assert user.check_password("a-long-enough-Passphrase-9")


def test_deactivating_and_reactivating_through_the_api_is_on_the_ledger_and_idempotent(custodian, clinician):
    grantee_id = clinician.clinician_profile.grantee_id
    api = api_as(custodian)
    first = api.post(f"/api/directory/grantees/{grantee_id}/deactivate/")
    again = api.post(f"/api/directory/grantees/{grantee_id}/deactivate/")
    assert first.status_code == again.status_code == 200
    assert first.json()["tx_id"] == again.json()["tx_id"]
    assert not bootstrap.contracts().read_grantee(grantee_id).active
    assert GranteeStatus.objects.get(grantee_id=grantee_id).active is False
    listed = {e["grantee_id"]: e["active"] for e in api.get("/api/directory/grantees/").json()}
    assert listed[grantee_id] is False
    assert api.post(f"/api/directory/grantees/{grantee_id}/reactivate/").json()["active"] is True


@pytest.mark.parametrize(
    ("url", "body", "status", "code"),
    [
        ("/api/directory/grantees/clinician:nobody/deactivate/", None, 404, "unknown_grantee"),
        ("/api/directory/grantees/org:nowhere/reactivate/", None, 404, "unknown_grantee"),
        ("/api/directory/organisations/", {"slug": "Bad Slug", "name": "X"}, 400, "invalid_slug"),
        ("/api/directory/organisations/", {"slug": "st-marys", "name": "Again"}, 409, "organisation_exists"),
        ("/api/directory/organisations/", {"slug": "x", "name": "n" * 201}, 400, "validation_failed"),
        ("/api/directory/clinicians/", {**CLINICIAN, "username": "dr-carol"}, 409, "username_taken"),
        ("/api/directory/clinicians/", {**CLINICIAN, "email": "not-an-address"}, 400, "validation_failed"),
        ("/api/directory/clinicians/", {**CLINICIAN, "organisation": "nowhere"}, 400, "unknown_organisation"),
        ("/api/directory/clinicians/", {**CLINICIAN, "username": "bad name!"}, 400, "invalid_username"),
        ("/api/directory/clinicians/", [1, 2], 400, "validation_failed"),
        ("/api/directory/model-stewards/", {**STEWARD, "username": "dr-carol"}, 409, "username_taken"),
        ("/api/directory/model-stewards/", {**STEWARD, "username": "bad name!"}, 400, "invalid_username"),
        ("/api/directory/model-stewards/", {**STEWARD, "email": "not-an-address"}, 400, "validation_failed"),
    ],
)
def test_bad_directory_input_is_refused_with_a_stable_code_and_stores_nothing(
    custodian, clinician, url, body, status, code
):
    users, organisations, statuses = (
        get_user_model().objects.count(),
        Organisation.objects.count(),
        GranteeStatus.objects.count(),
    )
    height = bootstrap.contracts().height()
    response = api_as(custodian).post(url, body, format="json")
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert set(response.json()) == {"code", "message", "detail"}
    assert (get_user_model().objects.count(), Organisation.objects.count(), GranteeStatus.objects.count()) == (
        users,
        organisations,
        statuses,
    )
    assert bootstrap.contracts().height() == height
    assert mail.outbox == []


@pytest.mark.parametrize("role", [Role.PATIENT, Role.CLINICIAN, Role.AUDITOR, Role.MODEL_STEWARD, None])
def test_only_custodians_manage_the_directory(role, clinician):
    from tests.records.factories import UserFactory

    user = UserFactory(username=f"someone-{role}", roles=[role] if role else [])
    grantee_id = clinician.clinician_profile.grantee_id
    assert api_as(user).post(f"/api/directory/grantees/{grantee_id}/deactivate/").status_code == 403
    assert api_as(user).get("/api/directory/grantees/").status_code == 403
    assert api_as(user).post("/api/directory/model-stewards/", STEWARD, format="json").status_code == 403
    assert signed_in(user).get("/directory/").status_code == 403
    assert signed_in(user).post(f"/directory/grantees/{grantee_id}/deactivate/").status_code == 403
    steward = {"steward-username": "steward-x", "steward-email": "x@example.org"}
    assert signed_in(user).post("/directory/model-stewards/", steward).status_code == 403
    assert bootstrap.contracts().read_grantee(grantee_id).active


def test_the_portal_adds_an_organisation_and_a_clinician_and_deactivates_them(custodian):
    client = signed_in(custodian)
    page = client.get("/directory/")
    assert page.status_code == 200
    assert client.post("/directory/organisations/", {"slug": "north", "name": "North Clinic"}).status_code == 302
    added = client.post(
        "/directory/clinicians/",
        {"display_name": "Dr North", "username": "dr-north", "email": "n@example.org", "organisation": "north"},
    )
    assert added.status_code == 302
    profile = ClinicianProfile.objects.get(user__username="dr-north")
    assert profile.organisation.slug == "north"
    assert client.post(f"/directory/grantees/{profile.grantee_id}/deactivate/").status_code == 302
    page = client.get("/directory/").content.decode()
    assert "Deactivated" in page
    assert "Reactivate" in page
    assert not bootstrap.contracts().read_grantee(profile.grantee_id).active
    refused = client.post("/directory/organisations/", {"slug": "north", "name": "Again"})
    assert refused.status_code == 400


def test_the_portal_adds_a_model_steward_and_shows_a_refusal_by_its_field(custodian):
    client = signed_in(custodian)
    page = client.get("/directory/").content.decode()
    assert 'id="id_steward-username"' in page
    assert 'id="id_username"' in page  # the clinician's form keeps its own ids

    added = client.post("/directory/model-stewards/", {"steward-username": "steward-p", "steward-email": "p@x.org"})
    assert (added.status_code, added["Location"]) == (302, "/directory/")
    assert user_has_role(get_user_model().objects.get(username="steward-p"), Role.MODEL_STEWARD)
    assert "/enrol/staff/" in mail.outbox[0].body

    again = client.post("/directory/model-stewards/", {"steward-username": "steward-p", "steward-email": "q@x.org"})
    assert again.status_code == 400
    assert "This username is taken." in again.content.decode()
    assert len(mail.outbox) == 1


def test_the_management_commands_add_deactivate_and_reactivate(clinician):
    call_command("grantee_add", "--organisation", "east", "--name", "East Hospital")
    call_command(
        "grantee_add", "--clinician", "dr-east", "--name", "Dr East", "--email", "e@example.org", "--member-of", "east"
    )
    profile = ClinicianProfile.objects.get(user__username="dr-east")
    assert len(mail.outbox) == 1
    call_command("grantee_deactivate", profile.grantee_id)
    assert not bootstrap.contracts().read_grantee(profile.grantee_id).active
    call_command("grantee_reactivate", profile.grantee_id)
    assert bootstrap.contracts().read_grantee(profile.grantee_id).active
    with pytest.raises(CommandError, match="unknown_grantee"):
        call_command("grantee_deactivate", "clinician:nobody")
    GranteeStatus.objects.all().delete()
    call_command("rebuild_grantee_mirror")
    assert GranteeStatus.objects.filter(grantee_id=profile.grantee_id, active=True).exists()


def test_the_patient_invite_command_prints_a_desk_code_and_no_identifier(capsys, custodian, ingested):
    from tests.directory.conftest import MRN
    from tests.records.factories import MRN_SYSTEM

    call_command("patient_invite", "--system", MRN_SYSTEM, "--value", MRN)
    out = capsys.readouterr().out
    assert "code " in out
    assert MRN not in out
    assert ingested.pseudonym not in out
