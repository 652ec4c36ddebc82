"""Consent only the patient can give, in a real browser: the patient's passkeys (Chromium's virtual authenticators,
driven through the DevTools protocol) go on the ledger, and every grant and revocation is signed by one of them
and verified by the chaincode.

Each signature is then checked again from the test process, offline: the signed document the ledger keeps
(ReadConsentSignature) must verify under the public key the ledger holds for the passkey that made it.
"""

import base64
import json
import re
from dataclasses import asdict
from datetime import UTC, timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from chaincode.webauthn import b64url, document_digest, verify_assertion
from consent.models import Consent
from health_platform import bootstrap
from tests.e2e.conftest import add_passkey_with_allauth, devtools_of, off_browser_thread, sign_in, virtual_authenticator
from tests.records.factories import (
    PASSWORD,
)

pytestmark = pytest.mark.timeout(120)

BREAST_CANCER_LABEL = "Running the breast-cancer diagnostic model"
CLINICIAN_LABEL = "Dr Carol Jones (St Mary's Hospital)"
ASSERTION_FIELDS = ("credential_id", "authenticator_data", "client_data_json", "signature")


@pytest.fixture
def alice(people) -> str:
    """Alice, a patient with records and a portal account (no passkey yet), and Dr Carol Jones to grant to (the
    browser tests' `people`). Returns Alice's pseudonym."""
    return people.alice.patient.pseudonym


# --- the browser's authenticators -----------------------------------------------------------------


def _remove_authenticator(devtools: Any, authenticator: str) -> None:
    devtools.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": authenticator})


def _credential(devtools: Any, authenticator: str) -> dict[str, Any]:
    """The one credential the authenticator holds (its private key and signature count included)."""
    (credential,) = devtools.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    return credential


def _credential_id(credential: dict[str, Any]) -> str:
    """A DevTools credential's id (base64) as the platform and the ledger spell it: base64url without padding."""
    return b64url(base64.b64decode(credential["credentialId"]))


# --- the portal -----------------------------------------------------------------------------------


def _add_passkey(page: Page, name: str) -> None:
    add_passkey_with_allauth(page, name, PASSWORD)


def _passkey_row(page: Page, credential_id: str):
    return page.locator(f'ul.passkeys li[data-credential="{credential_id}"]')


def _ask_to_grant(page: Page) -> None:
    """Fill the dashboard's grant form (Dr Carol, the breast-cancer model, imaging, 30 days) and send it: the
    signing page shows what will be signed."""
    page.goto("/consent/")
    page.get_by_label("Who may use your records").select_option(label=CLINICIAN_LABEL)
    page.get_by_label(BREAST_CANCER_LABEL).check()
    page.get_by_label("Imaging-derived measurements").check()
    page.get_by_label("Last day").fill((timezone.now().astimezone(UTC).date() + timedelta(days=30)).isoformat())
    page.get_by_role("button", name="Grant consent").click()
    expect(page).to_have_url(re.compile(r"/consent/grant/(#[\w-]*)?$"))
    expect(page.get_by_role("heading", name="Sign your consent", level=1)).to_be_visible()
    what = page.get_by_role("region", name="What you grant")
    expect(what).to_contain_text(CLINICIAN_LABEL)
    expect(what).to_contain_text("Imaging-derived measurements")


def _grant_signed(page: Page) -> str:
    """Grant through the dashboard and sign with the browser's passkey; the consent's id once it is on the page."""
    _ask_to_grant(page)
    page.get_by_role("button", name="Sign with my passkey").click()
    page.wait_for_url(re.compile(r"/consent/#consent-"))
    card = page.locator("article.consent-card")
    expect(card).to_have_count(1)
    expect(card.locator("[data-status]")).to_have_text("Active")
    signed = card.locator("[data-patient-signed]")
    expect(signed).to_have_attribute("data-patient-signed", "true")
    expect(signed).to_contain_text("Signed by the patient's passkey")
    consent_id = card.get_attribute("data-consent-id")
    assert consent_id
    assert page.url.endswith(f"#consent-{consent_id}")
    return consent_id


# --- the ledger, from the test process --------------------------------------------------------------


def _patient_keys(pseudonym: str):
    return off_browser_thread(lambda: bootstrap.contracts().patient_keys(pseudonym))


def _ledger_consent(pseudonym: str, consent_id: str):
    return off_browser_thread(lambda: bootstrap.contracts().read_consent(pseudonym, consent_id))


def _verified_offline(tx_id: str, document_sha256: str, pseudonym: str) -> tuple[Any, int]:
    """The signed document the ledger keeps under `document_sha256`, checked again here: its hash, and the
    assertion under the ledger's public key for the passkey that made it. Returns it and the signed counter."""

    def read():
        contracts = bootstrap.contracts()
        return contracts.consent_signature(tx_id, document_sha256), contracts.patient_keys(pseudonym)

    signed, keys = off_browser_thread(read)
    assert signed is not None, f"no signed document {document_sha256} on the ledger"
    assert document_digest(signed.document).hex() == document_sha256
    assert signed.document["patient_pseudonym"] == pseudonym
    key = next(key for key in keys.keys if key.credential_id == signed.credential_id)
    assertion = {field: getattr(signed, field) for field in ASSERTION_FIELDS}
    counter = verify_assertion(assertion, document=signed.document, key=asdict(key) | {"sign_count": 0})
    return signed, counter


# --- tests ----------------------------------------------------------------------------------------


def test_a_patient_enrols_a_passkey_then_grants_and_revokes_with_it(alice, new_page):
    page = new_page()
    devtools = devtools_of(page)
    phone = virtual_authenticator(devtools)

    sign_in(page, "alice", PASSWORD)
    expect(page).to_have_url(re.compile(r"/consent/$"))
    page.get_by_role("link", name="Your passkeys").click()
    expect(page).to_have_url(re.compile(r"/consent/passkeys/$"))
    expect(page.locator("#no-passkeys")).to_have_text("You have no passkey yet.")
    assert _patient_keys(alice).keys == []

    # Her first passkey, registered with allauth, goes to the ledger at once.
    _add_passkey(page, "Alice's phone")
    credential = _credential(devtools, phone)
    credential_id = _credential_id(credential)
    keys = _patient_keys(alice)
    assert [key.credential_id for key in keys.active] == [credential_id]
    (key,) = keys.keys
    assert (key.status, key.added_by, key.sign_count) == ("active", "enrolment", 0)
    page.goto("/consent/passkeys/")
    expect(page.locator("#no-passkeys")).to_have_count(0)
    row = _passkey_row(page, credential_id)
    expect(row).to_have_attribute("data-state", "on_ledger")
    expect(row).to_contain_text("Alice's phone")
    expect(row).to_contain_text("on the ledger since")

    # She grants Dr Carol; her passkey signs the grant, the ledger verifies it before writing.
    count_before = credential["signCount"]
    consent_id = _grant_signed(page)
    on_ledger = _ledger_consent(alice, consent_id)
    assert (on_ledger.status, on_ledger.patient_pseudonym) == ("active", alice)
    assert on_ledger.grant_signature
    assert on_ledger.revoke_signature is None
    signed, counter = _verified_offline(on_ledger.granted_tx_id, on_ledger.grant_signature, alice)
    assert signed.credential_id == credential_id
    assert signed.document["action"] == "grant_consent"
    assert [grant["consent_id"] for grant in signed.document["grants"]] == [consent_id]
    assert signed.document["grants"][0]["categories"] == ["imaging"]
    count_after_grant = _credential(devtools, phone)["signCount"]
    assert count_after_grant > count_before
    assert counter == count_after_grant
    assert _patient_keys(alice).active[0].sign_count == count_after_grant  # the ledger moved its counter too

    # She revokes it, signing again.
    card = page.locator(f'article.consent-card[data-consent-id="{consent_id}"]')
    card.get_by_role("link", name="Revoke…").click()
    expect(page).to_have_url(re.compile(rf"/consent/{re.escape(consent_id)}/revoke/$"))
    expect(page.get_by_role("heading", name="Revoke consent", level=1)).to_be_visible()
    assert _ledger_consent(alice, consent_id).status == "active"  # nothing changes until she signs
    page.get_by_role("button", name="Yes, revoke it with my passkey").click()
    page.wait_for_url(re.compile(rf"/consent/#consent-{re.escape(consent_id)}$"))
    expect(card.locator("[data-status]")).to_have_text("Revoked")
    expect(card.get_by_role("link", name="Revoke…")).to_have_count(0)

    on_ledger = _ledger_consent(alice, consent_id)
    assert on_ledger.status == "revoked"
    assert on_ledger.revoke_signature
    assert on_ledger.revoke_signature != on_ledger.grant_signature
    revocation, counter = _verified_offline(on_ledger.revoked_tx_id, on_ledger.revoke_signature, alice)
    assert revocation.credential_id == credential_id
    assert (revocation.document["action"], revocation.document["consent_id"]) == ("revoke_consent", consent_id)
    assert counter == _credential(devtools, phone)["signCount"] > count_after_grant


def _phone_then_laptop(page: Page, alice: str) -> tuple[Any, dict[str, Any], str, dict[str, Any]]:
    """Alice signs in; her phone's passkey, her first, goes on the ledger at once; then, the phone away, her laptop
    registers a second. Returns the DevTools session, the phone's credential, the laptop's authenticator (the one the
    browser holds now) and its credential."""
    devtools = devtools_of(page)
    phone = virtual_authenticator(devtools)
    sign_in(page, "alice", PASSWORD)
    _add_passkey(page, "Alice's phone")
    phone_credential = _credential(devtools, phone)
    assert [key.credential_id for key in _patient_keys(alice).active] == [_credential_id(phone_credential)]
    _remove_authenticator(devtools, phone)
    laptop = virtual_authenticator(devtools)
    _add_passkey(page, "Alice's laptop")
    return devtools, phone_credential, laptop, _credential(devtools, laptop)


def test_a_second_devices_passkey_is_confirmed_with_the_first_and_then_signs(alice, new_page):
    page = new_page()
    # The phone's passkey on the ledger; on her laptop she registers a second passkey: it waits, not on the ledger.
    devtools, phone_credential, laptop, laptop_credential = _phone_then_laptop(page, alice)
    phone_id, laptop_id = _credential_id(phone_credential), _credential_id(laptop_credential)
    assert laptop_id != phone_id
    assert [key.credential_id for key in _patient_keys(alice).keys] == [phone_id]
    page.goto("/consent/passkeys/")
    waiting = _passkey_row(page, laptop_id)
    expect(waiting).to_have_attribute("data-state", "waiting")
    expect(waiting).to_contain_text("not on the ledger yet")
    expect(_passkey_row(page, phone_id)).to_have_attribute("data-state", "on_ledger")

    # The phone is back (Chromium holds one platform authenticator at a time: the laptop's steps aside, its
    # credential kept): the phone's passkey signs the laptop's onto the ledger.
    _remove_authenticator(devtools, laptop)
    phone = virtual_authenticator(devtools, phone_credential)
    confirm = waiting.get_by_role("button", name="Confirm it with a passkey already on the ledger")
    expect(waiting.locator("form")).to_have_attribute("data-credentials", json.dumps([phone_id]))
    confirm.click()
    expect(page.get_by_role("status").filter(has_text="The new passkey is on the ledger").first).to_be_visible()
    expect(page).to_have_url(re.compile(r"/consent/passkeys/$"))
    expect(_passkey_row(page, laptop_id)).to_have_attribute("data-state", "on_ledger")
    keys = {key.credential_id: key for key in _patient_keys(alice).active}
    assert set(keys) == {phone_id, laptop_id}
    assert (keys[phone_id].added_by, keys[laptop_id].added_by) == ("enrolment", "patient")
    assert keys[phone_id].sign_count == _credential(devtools, phone)["signCount"] > phone_credential["signCount"]
    assert keys[laptop_id].sign_count == 0  # it has signed nothing yet

    # The phone away again, the laptop's passkey alone signs a grant, and the ledger takes it.
    _remove_authenticator(devtools, phone)
    laptop = virtual_authenticator(devtools, laptop_credential)
    consent_id = _grant_signed(page)
    on_ledger = _ledger_consent(alice, consent_id)
    assert on_ledger.status == "active"
    assert on_ledger.grant_signature
    signed, counter = _verified_offline(on_ledger.granted_tx_id, on_ledger.grant_signature, alice)
    assert signed.credential_id == laptop_id
    assert counter == _credential(devtools, laptop)["signCount"] > laptop_credential["signCount"]
    assert {key.credential_id: key.sign_count for key in _patient_keys(alice).active}[laptop_id] == counter


def test_a_grant_signed_by_a_passkey_not_on_the_ledger_is_refused(alice, new_page):
    page = new_page()
    # A second passkey, registered but never confirmed on the ledger, is all the browser holds.
    devtools, phone_credential, laptop, laptop_credential = _phone_then_laptop(page, alice)
    phone_id = _credential_id(phone_credential)
    laptop_id = _credential_id(laptop_credential)
    keys_before = _patient_keys(alice)
    assert [key.credential_id for key in keys_before.keys] == [phone_id]

    _ask_to_grant(page)
    form = page.locator("#sign-form")
    expect(form).to_have_attribute("data-credentials", json.dumps([phone_id]))  # only the ledger's keys are asked
    # A page made to ask the waiting passkey instead: the browser signs with it, and the ledger must refuse.
    form.evaluate("(form, id) => { form.dataset.credentials = JSON.stringify([id]); }", laptop_id)
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        page.get_by_role("button", name="Sign with my passkey").click()
    assert answer.value.status == 403
    expect(page.locator("#sign-error")).to_contain_text("did not accept your passkey's signature (unknown_key)")
    expect(page.locator("#sign-error")).to_contain_text("nothing was changed")
    assert _credential(devtools, laptop)["signCount"] > laptop_credential["signCount"]  # it did sign

    # Nothing was written: no consent on the ledger or in the database, the keys as they were.
    assert off_browser_thread(lambda: bootstrap.contracts().consents_of_patient(alice)) == []
    assert off_browser_thread(lambda: Consent.objects.count()) == 0
    assert _patient_keys(alice) == keys_before
    page.goto("/consent/")
    expect(page.locator("#no-consents")).to_be_visible()
