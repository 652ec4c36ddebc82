"""The custodian's portal in a real browser: sign in, upload a FHIR bundle (posted in place by htmx), read its
per-entry report, upload a refused one and read which entry and why, then the ingest history.

Screenshots (desktop and 375 px) go to test-artifacts/screenshots/custodian-*.png.
"""

import json
import re

import pytest
from playwright.sync_api import expect

from health_platform.roles import Role
from records.models import IngestRun, Record
from tests.e2e.conftest import off_browser_thread, screenshots_at_both_widths, sign_in
from tests.records.factories import PASSWORD, UserFactory, bundle, patient_with_observations

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def custodian_user(transactional_db, ledger):
    return UserFactory(username="e2e-custodian", roles=[Role.CUSTODIAN])


def test_custodian_uploads_a_bundle_and_reads_its_report_then_the_history(custodian_user, new_page, tmp_path):
    stored = tmp_path / "ward-7.json"
    stored.write_text(json.dumps(bundle(*patient_with_observations(mrn="MRN-E2E-1", values=(87.0, 90.0)))))
    broken_patient, broken_observation = patient_with_observations(mrn="MRN-E2E-2")
    broken_observation["subject"] = {"reference": "Patient/elsewhere"}
    refused = tmp_path / "ward-8.json"
    refused.write_text(json.dumps(bundle(broken_patient, broken_observation)))

    page = new_page()
    sign_in(page, "e2e-custodian", PASSWORD)
    expect(page).to_have_url(re.compile(r"/records/ingest/$"))
    expect(page.get_by_role("heading", name="Ingest records", level=1)).to_be_visible()
    expect(page.locator("#no-uploads")).to_be_visible()
    screenshots_at_both_widths(page, "custodian-ingest")

    page.evaluate("window.loadedOnce = true")  # survives only if htmx answers in place
    page.get_by_label("FHIR R4 Bundle (JSON file)").set_input_files(str(stored))
    page.get_by_role("button", name="Upload and ingest").click()
    report = page.locator("#ingest-report")
    expect(report).to_have_attribute("data-outcome", "stored")
    assert page.evaluate("window.loadedOnce") is True
    expect(report.locator("tr[data-entry]")).to_have_count(3)
    expect(report.locator('tr[data-entry="1"]')).to_have_attribute("data-status", "stored")
    expect(page.locator("#recent-uploads tr[data-run-id]")).to_have_count(1)
    assert "MRN-E2E-1" not in page.content()
    screenshots_at_both_widths(page, "custodian-ingest-report")

    page.get_by_label("FHIR R4 Bundle (JSON file)").set_input_files(str(refused))
    page.get_by_role("button", name="Upload and ingest").click()
    expect(report).to_have_attribute("data-outcome", "refused")
    expect(report.locator('tr[data-entry="1"]')).to_have_attribute("data-status", "refused")
    expect(report.locator("[data-error-code]")).to_have_attribute("data-error-code", "observation_subject_unknown")
    screenshots_at_both_widths(page, "custodian-ingest-refused")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Ingest history").click()
    expect(page.get_by_role("heading", name="Ingest history", level=1)).to_be_visible()
    rows = page.locator("#ingest-runs tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_have_attribute("data-outcome", "refused")
    expect(rows.nth(1)).to_contain_text("e2e-custodian")
    screenshots_at_both_widths(page, "custodian-ingest-history")

    counts = off_browser_thread(lambda: (Record.objects.count(), IngestRun.objects.count()))
    assert counts == (1, 2)
