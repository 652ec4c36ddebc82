"""The clinician's "Consents granted to me" in a real browser at 300 consents: one page of at most 50, and three
patients ticked straight into an analysis request that is then created with their full pseudonyms.

Screenshots (desktop and 375 px) go to test-artifacts/screenshots/granted-to-me-300-*.png and
analysis-request-selected-*.png.
"""

import re
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from analytics.models import AnalysisRequest, CohortKind
from analytics.registry import diagnostic_models_register
from consent.models import Consent, ConsentStatus
from health_platform.services import clinician_register, organisation_create
from tests.e2e.conftest import off_browser_thread, screenshots_at_both_widths, sign_in
from tests.records.factories import PASSWORD, PatientFactory, UserFactory

BREAST_CANCER = "diagnostic-model:breast-cancer"
CONSENTS = 300


@pytest.fixture
def carol_with_300_consents(transactional_db, ledger):
    """Dr Carol Jones, named by 300 consents (of 300 patients) in the consent mirror, which the page reads."""
    diagnostic_models_register()
    carol = UserFactory(username="dr-carol")
    clinician_register(
        user=carol, display_name="Dr Carol Jones", organisation=organisation_create(slug="st-marys", name="St Mary's")
    )
    now = timezone.now()
    Consent.objects.bulk_create(
        Consent(
            consent_id=f"cns-{uuid.uuid4().hex}",
            patient=PatientFactory(),
            grantee=carol.clinician_profile.grantee_id,
            purposes=[BREAST_CANCER],
            categories=["imaging"],
            valid_from=now - timedelta(days=1),
            valid_until=now + timedelta(days=30),
            status=ConsentStatus.ACTIVE,
            granted_at=now - timedelta(seconds=index),
            granted_tx_id=f"tx-{index}",
            granted_block=index + 1,
        )
        for index in range(CONSENTS)
    )
    return carol


def test_300_consents_show_one_page_and_three_selected_patients_become_a_request(
    carol_with_300_consents, new_page, monkeypatch
):
    monkeypatch.setattr("analytics.services._enqueue_start", lambda request_id: None)  # created, not run
    page = new_page()
    sign_in(page, "dr-carol", PASSWORD)

    expect(page).to_have_url(re.compile(r"/consent/granted-to-me/$"))
    rows = page.locator("#granted-consents tbody tr")
    assert rows.count() <= 50
    expect(rows).to_have_count(50)
    expect(page.get_by_role("navigation", name="Pages of consents")).to_contain_text("Page 1 of 6")
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 26_000 / 2, f"the page is {height} px tall"
    screenshots_at_both_widths(page, "granted-to-me-300")

    chosen = []
    for row in range(3):
        checkbox = rows.nth(row).locator('input[type="checkbox"][name="patient"]')
        checkbox.check()
        chosen.append(checkbox.get_attribute("value"))
    assert all(len(value or "") == 64 for value in chosen)
    page.get_by_role("button", name="Request an analysis for the selected patients").click()

    expect(page.get_by_role("heading", name="Request an analysis", level=1)).to_be_visible()
    expect(page.locator("#selection-note")).to_contain_text("3 patients selected")
    expect(page.get_by_label("Only the patients I list")).to_be_checked()
    assert page.get_by_label("Pseudonymous patient ids").input_value().split() == chosen
    page.get_by_label("Diagnostic model").select_option("breast-cancer")
    screenshots_at_both_widths(page, "analysis-request-selected")
    page.get_by_role("button", name="Request analysis").click()

    expect(page).to_have_url(re.compile(r"/analytics/[0-9a-f-]{36}/$"))
    created = off_browser_thread(lambda: list(AnalysisRequest.objects.values_list("cohort_kind", "cohort_pseudonyms")))
    assert created == [(CohortKind.EXPLICIT, chosen)]
