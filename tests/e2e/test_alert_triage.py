"""The auditors' misuse alerts in a real browser: a night of snooping on one patient, scored by the detector on the
embedded ledger, is listed for the auditor with its reasons in words; she opens it, sees the detector it cites,
is refused a verdict without a note (nothing recorded), then confirms it with a note, which the alert then shows.
Clinicians and patients who open the alerts get the refusal page.

Screenshots (desktop and 375 px) go to test-artifacts/screenshots/misuse-alert*.png.
"""

import re
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from health_platform import bootstrap
from oversight import services
from oversight.models import Alert
from tests.e2e.conftest import off_browser_thread, screenshots_at_both_widths, sign_in
from tests.oversight.conftest import SCORED, history, snooping  # noqa: F401 (history is a fixture)
from tests.records.factories import PASSWORD

SNOOPING = "Read one patient's records 15 times in a day, usual 1"
NOTE = "Dr Carol had no patient on the ward that night; reported to the privacy officer."
REFUSED = "Misuse alerts are for auditors."


@pytest.fixture
def alert(history, clinician, auditor) -> Alert:  # noqa: F811 (the history fixture)
    """Dr Carol's night of snooping on one patient, scored: the one open alert; Erin the auditor."""
    snooping(history, clinician)
    (raised,) = services.misuse_score(until=SCORED + timedelta(days=1)).alerts
    return raised


def alert_now(alert_id: object) -> tuple[str, object]:
    """The alert's verdict here and its judgement on the ledger."""
    return Alert.objects.get(pk=alert_id).verdict, bootstrap.contracts().read_alert(str(alert_id)).judgement


def test_the_auditor_reads_an_alert_s_reasons_and_confirms_it_with_a_note(alert, new_page):
    weights = alert.detector.weights_sha256
    page: Page = new_page()
    sign_in(page, "auditor-erin", PASSWORD)

    # The list: the open alert, its reasons in words, the open count.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Misuse alerts").click()
    expect(page).to_have_url(re.compile(r"/oversight/alerts/$"))
    expect(page.get_by_role("heading", name="Misuse alerts", level=1)).to_be_visible()
    expect(page.locator("#open-count")).to_have_text("1")
    expect(page.locator(".toolbar")).to_contain_text("1 open alert.")
    rows = page.locator("#alerts tbody tr")
    expect(rows).to_have_count(1)
    row = page.locator(f'#alerts tr[data-alert-id="{alert.id}"]')
    expect(row).to_have_attribute("data-status", "open")
    expect(row.locator('[data-label="Day"]')).to_have_text("Mon 30 Nov 2026")
    expect(row.locator('[data-label="Clinician"]')).to_have_text("Dr Carol")
    expect(row.locator('[data-reason="repeated_reads"]')).to_have_text(SNOOPING)
    expect(row.locator("li[data-reason]")).to_have_text([reason["text"] for reason in alert.reasons])
    expect(row.locator('[data-label="Status"]')).to_have_text("Open")
    screenshots_at_both_widths(page, "misuse-alerts")

    # The alert: its reasons and the exact detector it cites.
    row.get_by_role("link", name="Mon 30 Nov 2026").click()
    expect(page).to_have_url(re.compile(rf"/oversight/alerts/{alert.id}/$"))
    expect(page.get_by_role("heading", name="Dr Carol, Monday 30 November 2026", level=1)).to_be_visible()
    expect(page.locator('#alert-reasons [data-reason="repeated_reads"]')).to_have_text(SNOOPING)
    facts = page.locator("#alert-facts")
    expect(facts).to_have_attribute("data-status", "open")
    expect(page.locator("#detector-version")).to_have_text(alert.detector.version)
    cited = facts.locator(f'[data-weights="{weights}"]')
    expect(cited).to_have_text(f"{weights[:16]}…")
    expect(cited).to_have_attribute("title", weights)
    expect(facts.locator(f'[data-tx-id="{alert.detector.tx_id}"]')).to_be_visible()
    expect(facts.locator(f'[data-tx-id="{alert.tx_id}"]')).to_be_visible()
    expect(page.locator("#verdict-form")).to_be_visible()
    screenshots_at_both_widths(page, "misuse-alert")

    # A verdict without a note: refused with its code, the choice kept, nothing recorded here or on the ledger.
    form = page.locator("#verdict-form")
    form.get_by_label("Misuse confirmed").check()
    with page.expect_response(re.compile(rf"/oversight/alerts/{alert.id}/triage/$")) as answer:
        page.locator("#record-verdict").click()
    page.wait_for_load_state()
    assert answer.value.status == 400
    error = form.get_by_role("alert")
    expect(error).to_have_attribute("data-error-code", "invalid_note")
    expect(error).to_have_text("Not recorded (code invalid_note): Write a note of 1 to 2000 characters.")
    expect(form.get_by_label("Misuse confirmed")).to_be_checked()
    expect(page.locator("#verdict")).to_have_count(0)
    assert off_browser_thread(alert_now, alert.id) == ("", None)
    screenshots_at_both_widths(page, "misuse-alert-no-note")

    # Confirmed with a note: back on the list, the alert confirmed and none open.
    page.locator("#note").fill(NOTE)
    page.locator("#record-verdict").click()
    expect(page).to_have_url(re.compile(r"/oversight/alerts/$"))
    expect(page.locator("ul.messages")).to_have_text("Triage recorded on the ledger.")
    expect(page.locator("#open-count")).to_have_text("0")
    expect(row).to_have_attribute("data-status", "confirmed")
    expect(row.locator('[data-label="Status"]')).to_have_text("Misuse confirmed")

    verdict, judgement = off_browser_thread(alert_now, alert.id)
    triaged = off_browser_thread(Alert.objects.get, pk=alert.id)
    assert verdict == judgement.verdict == "confirmed"
    assert judgement.note_sha256 == triaged.note_sha256
    assert judgement.tx_id == triaged.verdict_tx_id

    # The alert now shows the verdict, who gave it, the note and where it is on the ledger; no form.
    row.get_by_role("link", name="Mon 30 Nov 2026").click()
    expect(page.locator("#alert-facts")).to_have_attribute("data-status", "confirmed")
    given = page.locator("#verdict")
    expect(given).to_have_attribute("data-verdict", "confirmed")
    expect(given).to_contain_text("Misuse confirmed")
    expect(given).to_contain_text("auditor-erin")
    expect(page.locator("#verdict-note")).to_have_text(NOTE)
    expect(given.locator(f'[data-tx-id="{triaged.verdict_tx_id}"]')).to_be_visible()
    expect(page.locator("#verdict-form")).to_have_count(0)
    screenshots_at_both_widths(page, "misuse-alert-confirmed")


@pytest.mark.parametrize("who", ["clinician", "patient"])
def test_clinicians_and_patients_get_the_refusal_page_not_the_alerts(
    alert,
    who,
    history,  # noqa: F811 (the fixture)
    clinician,
    new_page,
):
    patient, _ = history[clinician][0]
    username = {"clinician": "dr-carol", "patient": off_browser_thread(lambda: patient.user.username)}[who]
    page: Page = new_page()
    sign_in(page, username, PASSWORD)
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Misuse alerts")).to_have_count(0)

    for path in ("/oversight/alerts/", f"/oversight/alerts/{alert.id}/"):
        answer = page.goto(path)
        assert answer is not None
        assert answer.status == 403, path
        expect(page.get_by_role("heading", name="Not available", level=1)).to_be_visible()
        expect(page.get_by_role("alert")).to_have_text(REFUSED)
        expect(page.locator("#alerts, #alert-facts, #verdict-form")).to_have_count(0)
        assert SNOOPING not in page.content()
