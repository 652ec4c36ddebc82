"""The consent portal in a real browser: grant, see the transaction, revoke, and nobody else sees it.

Screenshots of the dashboard (desktop and 375px phone width) and of the clinician's page are written to
test-artifacts/screenshots/.
"""

import re
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from consent.models import Consent
from health_platform import bootstrap
from tests.clients import shown_text
from tests.e2e.conftest import (
    PHONE,
    off_browser_thread,
    passkey_in_browser,
    screenshot_that_fits,
    screenshots_at_both_widths,
    sign_in,
    sign_out,
    wider_than_the_viewport,
)
from tests.records.factories import (
    PASSWORD,
)
from tests.signing import grant_signed

pytestmark = pytest.mark.timeout(120)

BREAST_CANCER = "diagnostic-model:breast-cancer"
BREAST_CANCER_LABEL = "Running the breast-cancer diagnostic model"
CLINICIAN_LABEL = "Dr Carol Jones (St Mary's Hospital)"


def read_consent(consent_id: str) -> dict[str, Any]:
    return bootstrap.ledger().evaluate("consent", "ReadConsent", *_of_patient(consent_id)).json()


def ledger_history(consent_id: str) -> list[dict[str, Any]]:
    return bootstrap.ledger().evaluate("consent", "ConsentHistory", *_of_patient(consent_id)).json()


def _of_patient(consent_id: str) -> tuple[str, str]:
    """(patient pseudonym, consent id): on the ledger a consent is its patient's."""
    return Consent.objects.get(consent_id=consent_id).patient.pseudonym, consent_id


def block_of(tx_id: str) -> int | None:
    location = bootstrap.ledger().locate(tx_id)
    return None if location is None else location.block_number


def ledger_height() -> int:
    return bootstrap.ledger().height()


def today():
    return timezone.now().astimezone(UTC).date()


def on_the_ledger(function, *args):
    return off_browser_thread(function, *args)


def status_message(page: Page):
    return page.locator("ul.messages")


def test_patient_grants_sees_the_transaction_revokes_and_another_patient_sees_none_of_it(people, new_page):
    page = new_page()

    # Alice signs in and lands on her dashboard: her records, verified on the ledger, and no consent yet.
    sign_in(page, "alice", PASSWORD)
    expect(page).to_have_url(re.compile(r"/consent/$"))
    expect(page.get_by_role("heading", name="My records and consents", level=1)).to_be_visible()
    expect(page.locator("table.stack tbody tr")).to_have_count(2)
    expect(page.locator("table.stack .status-ok")).to_have_count(2)
    expect(page.locator("#no-consents")).to_be_visible()
    passkey_in_browser(page, people.alice.patient)

    # She grants Dr Carol Jones the breast-cancer model over her imaging data for 90 days, and signs it.
    last_day = today() + timedelta(days=90)
    page.get_by_label("Who may use your records").select_option(label=CLINICIAN_LABEL)
    page.get_by_label(BREAST_CANCER_LABEL).check()
    page.get_by_label("Imaging-derived measurements").check()
    page.get_by_label("Last day").fill(last_day.isoformat())
    page.get_by_role("button", name="Grant consent").click()
    expect(page.get_by_role("heading", name="Sign your consent", level=1)).to_be_visible()
    page.get_by_role("button", name="Sign with my passkey").click()

    card = page.locator("article.consent-card")
    expect(card).to_have_count(1)
    expect(card.locator("[data-status]")).to_have_text("Active")
    expect(card.get_by_role("heading", name="Dr Carol Jones (St Mary's Hospital)")).to_be_visible()
    consent_id = card.get_attribute("data-consent-id")
    granted_tx = card.locator("[data-tx=granted]").inner_text()
    expect(status_message(page)).to_contain_text(f"Consent granted. It is on the ledger in transaction {granted_tx}")

    # What the page shows is what the ledger holds.
    on_ledger = on_the_ledger(read_consent, consent_id)
    assert on_ledger["status"] == "active"
    assert on_ledger["granted_tx_id"] == granted_tx
    assert on_ledger["patient_pseudonym"] == people.alice.patient.pseudonym
    assert on_ledger["grantee"] == people.carol.clinician_profile.grantee_id
    assert (on_ledger["purposes"], on_ledger["categories"]) == ([BREAST_CANCER], ["imaging"])
    ends = datetime.combine(last_day + timedelta(days=1), time.min, tzinfo=UTC)
    assert datetime.fromisoformat(on_ledger["valid_until"].replace("Z", "+00:00")) == ends
    granted_block = on_the_ledger(block_of, granted_tx)
    expect(card.locator("[data-block=granted]")).to_have_text(str(granted_block))
    screenshots_at_both_widths(page, "dashboard-granted")

    # The consent's history loads in place (htmx): one change so far, the grant.
    dashboard_url = page.url
    card.get_by_role("link", name="Ledger history").click()
    history = card.locator(".history-slot li")
    expect(history).to_have_count(1)
    expect(history.first).to_contain_text("Granted")
    expect(history.first).to_contain_text(f"{granted_tx}, block {granted_block}")
    assert page.url == dashboard_url

    # Revoking asks first; nothing happens on the ledger until she signs.
    height = on_the_ledger(ledger_height)
    card.get_by_role("link", name="Revoke…").click()
    expect(page.locator("#what-you-sign + p")).to_contain_text(
        "The consent you gave Dr Carol Jones (St Mary's Hospital)."
    )
    assert on_the_ledger(ledger_height) == height
    assert on_the_ledger(read_consent, consent_id)["status"] == "active"
    screenshots_at_both_widths(page, "dashboard-revoke-confirmation")
    page.get_by_role("button", name="Yes, revoke it with my passkey").click()

    expect(card.locator("[data-status]")).to_have_text("Revoked")
    revoked_tx = card.locator("[data-tx=revoked]").inner_text()
    expect(status_message(page)).to_contain_text(f"The revocation is on the ledger in transaction {revoked_tx}")
    expect(card.locator("[data-tx=granted]")).to_have_text(granted_tx)
    expect(card.get_by_role("link", name="Revoke…")).to_have_count(0)
    on_ledger = on_the_ledger(read_consent, consent_id)
    assert (on_ledger["status"], on_ledger["revoked_tx_id"]) == ("revoked", revoked_tx)
    assert [entry["tx_id"] for entry in on_the_ledger(ledger_history, consent_id)] == [granted_tx, revoked_tx]
    expect(card.locator("[data-block=revoked]")).to_have_text(str(on_the_ledger(block_of, revoked_tx)))
    card.get_by_role("link", name="Ledger history").click()
    expect(history).to_have_count(2)
    expect(history.nth(1)).to_contain_text("Revoked")
    expect(history.nth(1)).to_contain_text(revoked_tx)
    screenshots_at_both_widths(page, "dashboard-revoked")

    # Bob signs in: none of it is visible to him, and he cannot reach it by its address either.
    sign_out(page)
    sign_in(page, "bob", PASSWORD)
    expect(page.get_by_role("heading", name="My records and consents", level=1)).to_be_visible()
    expect(page.locator("#no-consents")).to_be_visible()
    expect(page.locator("article.consent-card")).to_have_count(0)
    html = page.content()
    for secret in (consent_id, granted_tx, revoked_tx, people.alice.patient.pseudonym):
        assert secret not in html
    for address in (f"/consent/{consent_id}/", f"/consent/{consent_id}/revoke/"):
        response = page.goto(address)
        assert response is not None
        assert response.status == 404  # as for a consent that does not exist (403 until issue 20)
        expect(page.get_by_role("alert")).to_have_text("There is no such consent among yours.")
    height = on_the_ledger(ledger_height)
    token = next(cookie["value"] for cookie in page.context.cookies() if cookie["name"] == "csrftoken")
    forged = page.request.post(f"/consent/{consent_id}/revoke/", headers={"X-CSRFToken": token})
    assert forged.status == 404
    assert on_the_ledger(ledger_height) == height


def test_without_javascript_errors_show_by_their_fields_and_nothing_is_granted_unsigned(people, new_page):
    page = new_page(javascript=False, viewport=PHONE)
    sign_in(page, "alice", PASSWORD)
    height = on_the_ledger(ledger_height)

    # Nothing chosen: each missing answer is named next to its field and in the summary.
    page.get_by_role("button", name="Grant consent").click()
    expect(page.get_by_role("alert")).to_contain_text("The consent was not granted.")
    expect(page.locator("#id_grantee_error")).to_have_text("Choose a clinician or an organisation.")
    expect(page.locator("#id_purposes_error")).to_have_text("Choose at least one purpose.")
    expect(page.locator("#id_categories_error")).to_have_text("Choose at least one kind of data.")
    expect(page.get_by_label("Who may use your records")).to_have_attribute("aria-invalid", "true")
    screenshot_that_fits(page, "dashboard-errors-phone")

    # A last day before the first day: refused by the consent service, shown by the last day.
    page.get_by_label("Who may use your records").select_option(label=CLINICIAN_LABEL)
    page.get_by_label(BREAST_CANCER_LABEL).check()
    page.get_by_label("Laboratory results").check()
    page.get_by_label("First day").fill((today() + timedelta(days=10)).isoformat())
    page.get_by_label("Last day").fill((today() + timedelta(days=5)).isoformat())
    page.get_by_role("button", name="Grant consent").click()
    expect(page.locator("#id_valid_until_error")).to_have_text("The last day must be on or after the first day.")
    assert on_the_ledger(ledger_height) == height

    # Corrected, it asks for the passkey's signature, which needs JavaScript: it says so, and nothing is written.
    page.get_by_label("Last day").fill((today() + timedelta(days=40)).isoformat())
    page.get_by_role("button", name="Grant consent").click()
    expect(page.get_by_role("heading", name="Sign your consent", level=1)).to_be_visible()
    expect(page.locator("#no-passkey")).to_be_visible()  # and she has no passkey yet: it says where to set one up
    assert on_the_ledger(ledger_height) == height
    assert wider_than_the_viewport(page) == []


@pytest.fixture
def grants(people):
    """Alice grants Dr Carol Jones; Bob grants St Mary's Hospital (Dr Carol's organisation)."""
    now = timezone.now()
    terms = {"purposes": [BREAST_CANCER], "valid_from": now, "valid_until": now + timedelta(days=60)}
    return [
        grant_signed(
            actor=people.alice,
            patient=people.alice.patient,
            grantee_id=people.carol.clinician_profile.grantee_id,
            categories=["imaging"],
            **terms,
        ),
        grant_signed(
            actor=people.bob,
            patient=people.bob.patient,
            grantee_id=people.st_marys.grantee_id,
            categories=["imaging", "laboratory"],
            **terms,
        ),
    ]


def test_clinician_sees_which_patients_granted_what_by_pseudonym_only(people, grants, new_page):
    page = new_page()

    sign_in(page, "dr-carol", PASSWORD)

    expect(page).to_have_url(re.compile(r"/consent/granted-to-me/$"))
    rows = page.locator("#granted-consents tbody tr")
    expect(rows).to_have_count(2)
    for consent in grants:
        row = page.locator(f'tr[data-consent-id="{consent.consent_id}"]')
        expect(row.locator("[data-pseudonym]")).to_have_attribute("title", consent.patient.pseudonym)
        expect(row.locator("[data-status]")).to_have_text("Active")
    expect(page.get_by_text("2 patients with an active consent")).to_be_visible()
    html = page.content()
    for identifying in ("alice", "bob", "MRN-", str(people.alice.patient.pk)):
        assert identifying not in html
    for value in ("14.1", "87.0"):  # the records' values; a clock time such as 10:10:14.112505 is not one
        assert value not in shown_text(html)
    screenshots_at_both_widths(page, "granted-to-me")
    # The patients' own pages are not the clinician's.
    response = page.goto("/consent/")
    assert response is not None
    assert response.status == 403


def test_grant_form_can_be_filled_with_the_keyboard(people, new_page):
    page = new_page()
    sign_in(page, "alice", PASSWORD)
    passkey_in_browser(page, people.alice.patient)

    page.get_by_label("Who may use your records").focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Treatment of the patient")).to_be_focused()
    page.keyboard.press("Space")
    # Past the other purposes and the purposes' codes (a <details>), to the kinds of data Alice has records in,
    # which come first (the rest are behind "more").
    for _ in range(8):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.value") == "imaging":
            break
    expect(page.get_by_label("Imaging-derived measurements")).to_be_focused()
    page.keyboard.press("Space")
    page.get_by_role("button", name="Grant consent").focus()
    page.keyboard.press("Enter")
    sign = page.get_by_role("button", name="Sign with my passkey")
    expect(sign).to_be_enabled()  # once the signing script is there (a click before would send it unsigned)
    sign.focus()  # the signing page: by the keyboard too
    page.keyboard.press("Enter")

    card = page.locator("article.consent-card")
    expect(card.locator("[data-status]")).to_have_text("Active")
    on_ledger = on_the_ledger(read_consent, card.get_attribute("data-consent-id"))
    assert (on_ledger["purposes"], on_ledger["categories"]) == (["treatment"], ["imaging"])
    # Focus is visible: the focused control draws an outline.
    page.get_by_role("link", name="Revoke…").focus()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")
