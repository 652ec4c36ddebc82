"""Emergency access (break-the-glass) in a real browser: a clinician declares an emergency for a patient by their
hospital number and reads their records under it, the patient sees it on their emergency page and in "Who used my
data", and an auditor reviews it; the patient forbids emergency access to a kind of data and the clinician's read is
then refused with the reason; the patient's "Who used my data" explains a read for treatment and one in an emergency.

Screenshots (desktop and 375 px; the declaration form at desktop width only, as it does not fit a phone yet) go to
test-artifacts/screenshots/emergency-*.png.
"""

import re
from typing import Any

import pytest
from django.core import mail
from playwright.sync_api import Page, expect

from audit.models import AccessEvent
from care import emergencies
from care.models import EmergencyDeclaration
from care.services import treatment_records_read
from health_platform import bootstrap
from health_platform.roles import Role
from records.codes import BREAST_CANCER_DATASET, feature_codes_for_dataset
from tests.conftest import grant
from tests.e2e.conftest import (
    PHONE,
    dr_carol,
    off_browser_thread,
    screenshot,
    screenshot_that_fits,
    screenshots_at_both_widths,
    sign_in,
    sign_out,
)
from tests.records.factories import PASSWORD, UserFactory

WHY = "Unconscious after a fall, no family reachable; need prior imaging."
NOTE = "Confirmed with the ward: the patient arrived unconscious."
REASON = "Patient unconscious or unable to consent"
IMAGING = "Imaging-derived measurements"
DECLARED = f"Dr Carol Jones declared an emergency to read your records without your consent: {REASON.lower()}."


def read_in_emergency(review: str) -> str:
    return (
        f"Dr Carol Jones opened this record without your consent, in an emergency they declared ({REASON.lower()}). "
        f"{review}"
    )


@pytest.fixture
def casualty(cohort) -> tuple[Any, str]:
    """A demo patient with a portal account and an e-mail address (bc-0000 on their wristband), whose records Dr
    Carol Jones has no consent to read; Dr Carol Jones; Erin the auditor. Returns the patient's user and number."""
    ((user, _patient, _record),) = cohort(1)
    user.email = "bc-0000@example.org"
    user.save()
    dr_carol()
    UserFactory(username="auditor-erin", roles=[Role.AUDITOR])
    return user, user.username.removeprefix("patient-")


def menu(page: Page, name: str):
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name)


def status_message(page: Page):
    return page.locator("ul.messages")


def declare(page: Page, number: str) -> str:
    """On the clinician's emergency page, declare an emergency for patient `number`; returns its id."""
    menu(page, "Emergency access").click()
    expect(page.get_by_role("heading", name="Emergency access", level=1)).to_be_visible()
    page.get_by_label("Patient identifier").fill(number)
    page.get_by_label("Reason").select_option(label=REASON)
    page.get_by_label("Justification").fill(WHY)
    page.get_by_role("button", name="Declare the emergency").click()
    expect(page).to_have_url(re.compile(r"/care/emergencies/[0-9a-f-]{36}/$"))
    return page.locator("#emergency-facts").get_attribute("data-declaration-id") or ""


def open_category(page: Page, label: str) -> int:
    """Follow the declaration page's link to the records of `label`; returns the page's status."""
    with page.expect_response(re.compile(r"/care/emergencies/[0-9a-f-]{36}/[a-z-]+/$")) as answer:
        page.locator("#emergency-categories").get_by_role("link", name=label).click()
    page.wait_for_load_state()
    return answer.value.status


def explanations(page: Page):
    return page.locator("#my-data td[data-explanation]")


def test_a_declared_emergency_is_read_seen_by_the_patient_and_reviewed_by_an_auditor(casualty, new_page):
    patient, number = casualty
    page = new_page()

    # Dr Carol Jones has no consent from the patient: she declares an emergency by the number on the wristband.
    sign_in(page, "dr-carol", PASSWORD)
    menu(page, "Emergency access").click()
    expect(page.locator("#no-emergencies")).to_have_text("You have declared no emergency.")
    expect(page.get_by_role("heading", name="Declare an emergency")).to_be_visible()
    screenshot(page, "emergency-declare-desktop")  # at a phone's width: test_the_declaration_form_fits_a_phone
    declaration_id = declare(page, number)

    expect(status_message(page)).to_contain_text("Emergency declared on the ledger. The patient is told")
    facts = page.locator("#emergency-facts")
    expect(facts).to_have_attribute("data-active", "true")
    # (Who declared it, by name: test_the_clinician_is_named_as_the_directory_names_them.)
    expect(facts.locator("[data-reason]")).to_have_text(REASON)
    expect(page.locator("#justification")).to_have_text(WHY)
    expect(facts).to_contain_text("open now")
    expect(facts).to_contain_text("In their portal, and by e-mail.")
    expect(page.locator("#verdict-waiting")).to_have_text("Waiting for an auditor's review.")
    on_ledger = off_browser_thread(lambda: bootstrap.contracts().read_emergency(declaration_id))
    declaration = off_browser_thread(EmergencyDeclaration.objects.select_related("patient").get, pk=declaration_id)
    assert (on_ledger.patient_pseudonym, on_ledger.reason, on_ledger.tx_id) == (
        declaration.patient.pseudonym,
        "unconscious",
        declaration.tx_id,
    )
    expect(facts.locator(f'[data-tx-id="{declaration.tx_id}"]')).to_be_visible()
    expect(facts).to_contain_text(declaration.grantee_id)
    (told,) = mail.outbox
    assert told.to == [patient.email]
    assert WHY not in told.body
    screenshots_at_both_widths(page, "emergency-declared")

    # She opens the patient's imaging: shown, and said to be read in an emergency under her declaration.
    assert open_category(page, IMAGING) == 200
    expect(page.get_by_role("heading", name=IMAGING, level=1)).to_be_visible()
    expect(page.locator('[data-purpose="emergency"]')).to_contain_text("read in an emergency")
    expect(page.locator('[data-purpose="emergency"]')).to_contain_text("logged there as emergency access")
    record = page.locator("section.record-read")
    expect(record).to_have_count(1)
    expect(record).to_have_attribute("data-decision", "admit")
    expect(record).to_contain_text("Allowed under emergency declaration")
    features = feature_codes_for_dataset(BREAST_CANCER_DATASET)
    expect(record.locator("tbody tr")).to_have_count(len(features))
    shown = record.locator('tbody td[data-label="Measurement"]').all_inner_texts()
    assert sorted(shown) == sorted(feature.display for feature in features)
    (read,) = off_browser_thread(lambda: list(AccessEvent.objects.filter(kind="record_read")))
    assert (read.purpose, read.request_id, read.decision) == ("emergency", declaration_id, "admit")
    screenshots_at_both_widths(page, "emergency-read")

    page.get_by_role("link", name="← The emergency declaration").click()
    page.get_by_role("link", name="← Emergency access").click()
    row = page.locator(f'#my-emergencies tr[data-declaration-id="{declaration_id}"]')
    expect(row).to_contain_text(REASON)
    expect(row).to_contain_text("waiting")
    sign_out(page)

    # The patient sees who opened their records, why and until when; not the clinician's own words.
    sign_in(page, patient.username, PASSWORD)
    menu(page, "Emergency access").click()
    expect(page.get_by_role("heading", name="Emergency access to your records", level=1)).to_be_visible()
    row = page.locator(f'#emergencies-about-me tr[data-declaration-id="{declaration_id}"]')
    expect(page.locator("#emergencies-about-me tbody tr")).to_have_count(1)
    expect(row.locator('[data-label="Why"]')).to_have_text(REASON)
    expect(row.locator("[data-verdict]")).to_have_text("waiting")
    assert WHY not in page.content()
    screenshots_at_both_widths(page, "emergency-patient-page")

    menu(page, "Who used my data").click()
    expect(page.get_by_role("columnheader", name="Why")).to_be_visible()
    expect(explanations(page)).to_have_text([read_in_emergency("An auditor will review it."), DECLARED])
    screenshots_at_both_widths(page, "emergency-patient-my-data")
    sign_out(page)

    # Erin the auditor finds it waiting, reads the justification and records her verdict.
    sign_in(page, "auditor-erin", PASSWORD)
    menu(page, "Emergency reviews").click()
    expect(page.get_by_role("heading", name="Emergency reviews", level=1)).to_be_visible()
    expect(page.locator("#waiting-count")).to_have_text("1")
    waiting = page.locator(f'#review-queue tr[data-declaration-id="{declaration_id}"]')
    expect(waiting.locator('[data-label="Reason"]')).to_have_text(REASON)
    screenshots_at_both_widths(page, "emergency-review-queue")
    waiting.get_by_role("link").click()

    expect(page.get_by_role("heading", name="Emergency declaration", level=1)).to_be_visible()
    expect(page.locator("#justification")).to_have_text(WHY)
    expect(page.locator("#emergency-categories")).to_have_count(0)  # the records are not the auditor's to read
    form = page.locator("#verdict-form")
    expect(form.get_by_role("group", name="Was this emergency access justified?")).to_be_visible()
    form.get_by_label("Justified", exact=True).check()
    form.get_by_label("Note").fill(NOTE)
    screenshots_at_both_widths(page, "emergency-review-form")
    form.get_by_role("button", name="Record the verdict").click()

    expect(page).to_have_url(re.compile(r"/care/emergencies/review/$"))
    expect(status_message(page)).to_have_text("Review recorded on the ledger.")
    expect(page.locator("#waiting-count")).to_have_text("0")
    expect(page.locator("#queue-empty")).to_have_text("No emergency is waiting for review.")
    expect(page.locator(f'#reviewed li[data-declaration-id="{declaration_id}"] [data-verdict]')).to_have_text(
        "Justified"
    )
    reviewed = off_browser_thread(EmergencyDeclaration.objects.get, pk=declaration_id)
    review = off_browser_thread(lambda: bootstrap.contracts().read_emergency(declaration_id)).judgement
    assert (review.verdict, review.note_sha256, review.tx_id) == (
        "justified",
        reviewed.note_sha256,
        reviewed.verdict_tx_id,
    )
    assert off_browser_thread(emergencies.note_open, reviewed) == NOTE
    screenshots_at_both_widths(page, "emergency-review-done")

    page.locator(f'#reviewed li[data-declaration-id="{declaration_id}"]').get_by_role("link").click()
    expect(page.locator("#verdict")).to_have_attribute("data-verdict", "justified")
    expect(page.locator("#verdict-note")).to_have_text(NOTE)
    expect(page.locator("#verdict-form")).to_have_count(0)
    sign_out(page)

    # The patient sees the verdict, on both pages.
    sign_in(page, patient.username, PASSWORD)
    menu(page, "Emergency access").click()
    expect(page.locator(f'tr[data-declaration-id="{declaration_id}"] [data-verdict]')).to_have_text("Justified")
    assert NOTE not in page.content()
    menu(page, "Who used my data").click()
    expect(explanations(page)).to_have_text(
        [
            "An auditor reviewed an emergency access to your records: justified.",
            read_in_emergency("An auditor reviewed it: justified."),
            DECLARED,
        ]
    )
    screenshots_at_both_widths(page, "emergency-patient-reviewed")


def test_the_patient_forbids_emergency_access_to_imaging_and_the_clinicians_read_is_refused(casualty, new_page):
    patient, number = casualty
    page = new_page()

    # The patient closes their imaging to emergency access.
    sign_in(page, patient.username, PASSWORD)
    menu(page, "Emergency access").click()
    expect(page.locator("#no-emergencies")).to_have_text("No emergency access to your records has been declared.")
    refusals = page.locator("#emergency-refusals")
    expect(refusals.get_by_label(IMAGING)).not_to_be_checked()
    refusals.get_by_label(IMAGING).check()
    refusals.get_by_role("button", name="Save on the ledger").click()

    expect(status_message(page)).to_have_text("Saved on the ledger: the gate honours it from now on.")
    expect(refusals.get_by_label(IMAGING)).to_be_checked()
    expect(refusals.get_by_label("Laboratory results")).not_to_be_checked()
    on_ledger = off_browser_thread(lambda: bootstrap.contracts().emergency_refusals(patient.patient.pseudonym))
    assert on_ledger.categories == ["imaging"]
    expect(refusals.locator(f'[data-tx-id="{on_ledger.tx_id}"]')).to_be_visible()
    screenshots_at_both_widths(page, "emergency-refusal-saved")
    sign_out(page)

    # Dr Carol Jones declares an emergency: her read of the patient's imaging is refused, with the reason, and logged.
    sign_in(page, "dr-carol", PASSWORD)
    declaration_id = declare(page, number)
    assert open_category(page, IMAGING) == 403
    expect(page.get_by_role("heading", name=IMAGING, level=1)).to_be_visible()
    record = page.locator("section.record-read")
    expect(record).to_have_attribute("data-decision", "refuse")
    refusal = record.get_by_role("alert")
    expect(refusal).to_have_attribute("data-reason", "emergency_refused")
    expect(refusal).to_have_text("Refused: patient refused emergency access to this kind of data.")
    expect(record.locator("table")).to_have_count(0)
    (read,) = off_browser_thread(lambda: list(AccessEvent.objects.filter(kind="record_read")))
    assert (read.purpose, read.request_id, read.decision, read.reason) == (
        "emergency",
        declaration_id,
        "refuse",
        "emergency_refused",
    )
    screenshots_at_both_widths(page, "emergency-read-refused")


def test_the_declaration_form_fits_a_phone(casualty, new_page):
    page = new_page(viewport=PHONE)
    sign_in(page, "dr-carol", PASSWORD)
    page.goto("/care/emergencies/")
    expect(page.get_by_label("Reason")).to_be_visible()
    screenshot_that_fits(page, "emergency-declare-phone")


@pytest.fixture
def declared_by_carol(casualty) -> Any:
    """Dr Carol Jones declares an emergency for the patient (before any browser starts: the database is this
    thread's). Returns the patient's user."""
    from django.contrib.auth import get_user_model

    patient, number = casualty
    carol = get_user_model().objects.get(username="dr-carol")
    emergencies.emergency_declare(clinician=carol, identifier=number, reason="unconscious", justification=WHY)
    return patient


def test_the_clinician_is_named_as_the_directory_names_them(declared_by_carol, new_page):
    """The patient's emergency page and e-mail say who opened their records as "Who used my data" does, by the name
    the directory gives the clinician; never by the clinician's username, which is half of a way in."""
    patient = declared_by_carol
    page = new_page()
    sign_in(page, patient.username, PASSWORD)
    menu(page, "Emergency access").click()
    expect(page.locator('#emergencies-about-me [data-label="Who"]')).to_have_text(["Dr Carol Jones"])
    menu(page, "Who used my data").click()
    expect(page.locator('#my-data [data-label="Who asked"]')).to_have_text(["Dr Carol Jones"])
    (told,) = mail.outbox
    assert "Dr Carol Jones" in told.body
    assert "dr-carol" not in told.body


@pytest.fixture
def treated_then_in_an_emergency(casualty) -> tuple[Any, str]:
    """Dr Carol Jones reads the patient's imaging for treatment under their consent, then in an emergency she
    declares. Returns the patient's user and the consent's id."""
    from django.contrib.auth import get_user_model

    patient, number = casualty
    carol = get_user_model().objects.get(username="dr-carol")
    consent = grant(patient, patient.patient, carol, purposes=["treatment"], categories=["imaging"])
    treatment_records_read(clinician=carol, patient_pseudonym=patient.patient.pseudonym, category="imaging")
    declaration = emergencies.emergency_declare(
        clinician=carol, identifier=number, reason="unconscious", justification=WHY
    )
    emergencies.emergency_records_read(clinician=carol, declaration_id=str(declaration.id), category="imaging")
    return patient, consent.consent_id


def test_who_used_my_data_explains_a_read_for_treatment_and_one_in_an_emergency(treated_then_in_an_emergency, new_page):
    patient, consent_id = treated_then_in_an_emergency
    page = new_page()
    sign_in(page, patient.username, PASSWORD)
    menu(page, "Who used my data").click()

    expect(page.get_by_role("heading", name="Who used my data", level=1)).to_be_visible()
    expect(page.get_by_role("columnheader", name="Why")).to_be_visible()
    expect(explanations(page)).to_have_text(
        [
            read_in_emergency("An auditor will review it."),
            DECLARED,
            f"Dr Carol Jones opened this record to treat you, as your consent {consent_id} allows.",
        ]
    )
    rows = page.locator("#my-data tbody tr")
    expect(rows.nth(0)).to_have_attribute("data-decision", "admit")
    expect(rows.nth(2)).to_have_attribute("data-decision", "admit")
    expect(rows.nth(0).locator('[data-label="Who asked"]')).to_have_text("Dr Carol Jones")
    assert WHY not in page.content()
    screenshots_at_both_widths(page, "emergency-my-data-explanations")
