"""Patient onboarding and the directory in a real browser: a patient ingested through the API (MRN-000777) is
invited by the custodian, enrols from the e-mail's link, signs in and grants consent; the link then refuses a
second use; the custodian deactivates a clinician in the directory.

Screenshots of each new page (desktop and 375px phone width) are written to test-artifacts/screenshots/.
"""

import re
from datetime import date, timedelta

from django.core import mail
from playwright.sync_api import expect
from rest_framework.authtoken.models import Token

from health_platform import bootstrap
from health_platform.roles import Role
from records.models import Patient
from tests.e2e.conftest import (
    add_passkey_with_allauth,
    devtools_of,
    dr_carol,
    off_browser_thread,
    screenshots_at_both_widths,
    sign_in,
    sign_out,
    virtual_authenticator,
)
from tests.records import factories
from tests.records.factories import MRN_SYSTEM, PASSWORD, UserFactory

MRN = "MRN-000777"
CHOSEN_PASSWORD = "a-long-enough-Passphrase-9"
BREAST_CANCER_LABEL = "Running the breast-cancer diagnostic model"
LINK = re.compile(r"https?://[^\s]+/enrol/link/[0-9A-Z]+/")


def _setup():
    custodian = UserFactory(username="e2e-custodian", roles=[Role.CUSTODIAN])
    carol = dr_carol()
    token = Token.objects.create(user=custodian).key
    return custodian, carol.clinician_profile.grantee_id, token


def _bundle() -> dict:
    patient = factories.PatientResourceFactory(mrn=MRN)
    observation = factories.ObservationResourceFactory(
        patient=patient,
        category_code="imaging",
        code_value="bc-mean-radius",
        display="Nucleus radius, mean",
        value=14.1,
    )
    return factories.bundle(patient, observation)


def _outbox() -> list:
    return list(mail.outbox)


def test_a_patient_ingested_through_the_api_is_invited_enrols_signs_in_and_grants_consent(new_page, live_server):
    _custodian, carol_grantee, token = off_browser_thread(_setup)

    # The EHR integration ingests MRN-000777 through the API.
    desk = new_page()
    ingest = desk.request.post(
        "/api/records/",
        data=_bundle(),
        headers={"Authorization": f"Token {token}", "Content-Type": "application/fhir+json"},
    )
    assert ingest.status in (200, 201), ingest.text()

    # The custodian invites the person behind it by e-mail.
    sign_in(desk, "e2e-custodian", PASSWORD)
    desk.get_by_role("link", name="Invitations").click()
    expect(desk.get_by_role("heading", name="Patient invitations", level=1)).to_be_visible()
    screenshots_at_both_widths(desk, "directory-invitations")
    desk.get_by_label("Identifier system").fill(MRN_SYSTEM)
    desk.get_by_label("Identifier", exact=True).fill(MRN)
    desk.get_by_label("E-mail (leave empty to hand over a code at the desk)").fill("patient777@example.org")
    desk.get_by_role("button", name="Invite").click()
    expect(desk.locator("#issued")).to_contain_text("Invitation sent by e-mail")
    expect(desk.locator("#invitations tbody tr")).to_have_count(1)
    expect(desk.locator("#invitations")).to_contain_text("Waiting to be used")
    screenshots_at_both_widths(desk, "directory-invitation-sent")
    assert MRN not in desk.content()

    (message,) = off_browser_thread(_outbox)
    assert message.to == ["patient777@example.org"]
    assert MRN not in message.body
    link = LINK.search(message.body).group(0)
    path = link.split(live_server.url, 1)[1]

    # The patient follows the link and chooses a username and password.
    person = new_page()
    person.goto(path)
    expect(person.get_by_role("heading", name="Create your account", level=1)).to_be_visible()
    assert MRN not in person.content()
    screenshots_at_both_widths(person, "enrol-account")
    person.get_by_label("Username").fill("patient777")
    person.get_by_label("Password", exact=True).fill("short")
    person.get_by_label("Password again").fill("short")
    person.get_by_role("button", name="Create account").click()
    expect(person.locator(".alert")).to_contain_text("Nothing was changed")
    screenshots_at_both_widths(person, "enrol-account-refused-password")
    person.get_by_label("Password", exact=True).fill(CHOSEN_PASSWORD)
    person.get_by_label("Password again").fill(CHOSEN_PASSWORD)
    person.get_by_role("button", name="Create account").click()
    expect(person).to_have_url(re.compile(r"/accounts/login/"))
    expect(person.locator(".messages")).to_contain_text("Your account patient777 is ready")
    expect(person.locator(".messages")).to_contain_text("then add your passkey")

    # The same link again is refused with a clear page and its code.
    again = new_page()
    again.goto(path)
    expect(again.locator("#refusal-code")).to_have_text("invitation_used")
    screenshots_at_both_widths(again, "enrol-refused")
    again.goto("/enrol/")
    expect(again.get_by_role("heading", name="Create your account", level=1)).to_be_visible()
    screenshots_at_both_widths(again, "enrol-code")

    # The patient signs in and sees their record; the dashboard asks for a passkey first, and they add one (the
    # browser's authenticator makes it; its public key goes to the ledger under their pseudonym).
    virtual_authenticator(devtools_of(person))
    sign_in(person, "patient777", CHOSEN_PASSWORD)
    expect(person).to_have_url(re.compile(r"/consent/$"))
    expect(person.locator("table.stack tbody tr")).to_have_count(1)
    person.locator("#passkey-needed").get_by_role("link", name="Add your passkey").click()
    expect(person.locator("#no-passkeys")).to_be_visible()
    add_passkey_with_allauth(person, "My phone", CHOSEN_PASSWORD)
    person.goto("/consent/")
    expect(person.locator("#passkey-needed")).to_have_count(0)

    # They grant Dr Carol Jones consent, signed with the passkey.
    person.get_by_label("Who may use your records").select_option(label="Dr Carol Jones (St Mary's Hospital)")
    person.get_by_label(BREAST_CANCER_LABEL).check()
    person.get_by_label("Imaging-derived measurements").check()
    person.get_by_label("Last day").fill((date.today() + timedelta(days=30)).isoformat())
    person.get_by_role("button", name="Grant consent").click()
    person.get_by_role("button", name="Sign with my passkey").click()
    card = person.locator("article.consent-card")
    expect(card.locator("[data-status]")).to_have_text("Active")

    pseudonym = off_browser_thread(lambda: Patient.objects.get(user__username="patient777").pseudonym)
    on_ledger = off_browser_thread(lambda: bootstrap.contracts().consents_of_patient(pseudonym, with_blocks=False))
    assert [(c.grantee, c.status) for c in on_ledger] == [(carol_grantee, "active")]

    # The custodian deactivates Dr Carol Jones in the directory: on the ledger, shown as deactivated.
    desk.get_by_role("link", name="Directory").click()
    expect(desk.get_by_role("heading", name="Directory", level=1)).to_be_visible()
    screenshots_at_both_widths(desk, "directory")
    desk.locator(f'tr[data-grantee-id="{carol_grantee}"]').get_by_role("button", name="Deactivate").click()
    expect(desk.locator(f'tr[data-grantee-id="{carol_grantee}"]')).to_contain_text("Deactivated")
    screenshots_at_both_widths(desk, "directory-deactivated")
    assert off_browser_thread(lambda: bootstrap.contracts().read_grantee(carol_grantee).active) is False
    sign_out(desk)
