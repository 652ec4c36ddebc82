"""The clinicians' analytics portal in a real browser, with a real Celery worker running the pipeline.

A clinician signs in, requests the breast-cancer model over everyone who consented to her, watches the
progress panel (htmx, polling every second) reach completed without the page reloading, and reads the
results table and the chart. Screenshots (desktop and 375px phone width) go to
test-artifacts/screenshots/analysis-*.png.
"""

import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from analytics.diagnostic_models import breast_cancer_model
from analytics.models import AnalysisRequest, AnalysisStatus
from analytics.registry import diagnostic_models_register
from health_platform.roles import Role
from health_platform.services import clinician_register
from records.codes import BREAST_CANCER_DATASET
from records.crypto import patient_pseudonym
from records.demo import demo_bundles, demo_patients
from records.models import Patient
from records.services import patient_link_user, record_ingest
from tests.e2e.conftest import (
    DESKTOP,
    PHONE,
    SCREENSHOTS,
    dr_carol,
    off_browser_thread,
    screenshot,
    screenshot_that_fits,
    screenshots_at_both_widths,
    sign_in,
    sign_out,
)
from tests.records.factories import PASSWORD, UserFactory
from tests.signing import grant_signed

pytestmark = [pytest.mark.he, pytest.mark.timeout(240)]

BREAST_CANCER = "diagnostic-model:breast-cancer"
CONSENTED = 28  # the first rows of the data set: malignant and benign cases
COMPLETION_TIMEOUT_MS = 120_000


@pytest.fixture
def hospital(transactional_db, ledger, blob_dir):
    """Registered models, Dr Carol Jones (St Mary's) and Dr Dave, and six breast-cancer demo patients with
    anchored records, five of whom consented to Dr Carol for the breast-cancer model."""
    diagnostic_models_register()
    custodian = UserFactory(username="e2e-custodian", roles=[Role.CUSTODIAN])
    carol = dr_carol()
    clinician_register(user=UserFactory(username="dr-dave"), display_name="Dr Dave")
    demo = demo_patients(dataset=BREAST_CANCER_DATASET, count=CONSENTED + 1)
    for document in demo_bundles(patients=demo, max_entries=1000):
        record_ingest(raw_body=json.dumps(document).encode(), actor=custodian)
    now = timezone.now()
    for index, person in enumerate(demo):
        patient = Patient.objects.get(pseudonym=patient_pseudonym(person.patient_key))
        user = UserFactory(username=f"patient-{person.identifier}", roles=[Role.PATIENT])
        patient_link_user(patient=patient, user=user)
        if index < CONSENTED:
            grant_signed(
                actor=user,
                patient=patient,
                grantee_id=carol.clinician_profile.grantee_id,
                purposes=[BREAST_CANCER],
                categories=["imaging"],
                valid_from=now,
                valid_until=now + timedelta(days=30),
            )
    return carol


def the_request() -> AnalysisRequest:
    return AnalysisRequest.objects.select_related("model").get()


def test_clinician_requests_an_analysis_watches_it_complete_and_reads_the_results(
    blob_dir, hospital, celery_worker, new_page
):
    page = new_page()
    sign_in(page, "dr-carol", PASSWORD)

    # From the navigation to her (empty) list of analyses, and on to the form.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Analyses").click()
    expect(page.get_by_role("heading", name="My analyses", level=1)).to_be_visible()
    expect(page.locator("#no-analyses")).to_be_visible()
    page.get_by_role("link", name="Request an analysis").click()
    expect(page.get_by_role("heading", name="Request an analysis", level=1)).to_be_visible()
    expect(page.locator('[data-model="breast-cancer"]')).to_contain_text(
        f"{CONSENTED} patients with a consent in force"
    )
    page.get_by_label("Diagnostic model").select_option("breast-cancer")
    expect(page.get_by_label("Everyone who has consented to me for this model’s purpose")).to_be_checked()
    screenshots_at_both_widths(page, "analysis-request-form")

    page.get_by_role("button", name="Request analysis").click()

    # The request's page: the progress panel updates in place until the worker has finished.
    expect(page).to_have_url(re.compile(r"/analytics/[0-9a-f-]{36}/$"))
    expect(page.get_by_role("heading", name="Analysis with breast-cancer", level=1)).to_be_visible()
    page.evaluate("window.loadedOnce = true")  # survives only if the page is never reloaded
    screenshot(page, "analysis-progress-desktop")
    panel = page.locator("#progress-panel")
    expect(panel).to_have_attribute("data-status", "completed", timeout=COMPLETION_TIMEOUT_MS)
    assert page.evaluate("window.loadedOnce") is True
    expect(panel.locator('[data-count="scored"]')).to_have_text(str(CONSENTED))
    expect(panel.locator('[data-count="admitted"]')).to_have_text(str(CONSENTED))
    expect(panel.locator('[data-count="refused"]')).to_have_text("0")
    expect(panel.locator('[data-count="batches"]')).to_have_text("1 of 1")

    # The results panel loaded in place: a row per consented record, the summary and the chart.
    rows = page.locator("#results-table tbody tr")
    expect(rows).to_have_count(CONSENTED)
    expect(page.locator('[data-summary="count"]')).to_have_text(str(CONSENTED))
    chart = page.get_by_role("img", name="Distribution of breast-cancer scores")
    expect(chart).to_be_visible()
    expect(chart.locator("rect.bar")).to_have_count(10)
    expect(page.locator("#results [data-model-sha256]")).to_have_text(breast_cancer_model().sha256)

    analysis = off_browser_thread(the_request)
    assert analysis.status == AnalysisStatus.COMPLETED
    assert page.url.endswith(f"/analytics/{analysis.id}/")
    screenshots_at_both_widths(page, "analysis-results")
    page.set_viewport_size(PHONE)
    page.locator(".chart-figure").screenshot(path=str(SCREENSHOTS / "analysis-chart-phone.png"))
    page.set_viewport_size(DESKTOP)

    # The model card the results cite.
    page.locator("#results .cite").get_by_role("link").click()
    expect(page.get_by_role("heading", name=re.compile("Model card: breast-cancer"))).to_be_visible()
    expect(page.locator("#features tbody tr")).to_have_count(30)
    screenshots_at_both_widths(page, "analysis-model-card")

    # Her list shows it completed; another clinician cannot open it.
    page.goto("/analytics/")
    expect(page.locator(f'tr[data-analysis-id="{analysis.id}"] [data-status]')).to_have_text("Completed")
    sign_out(page)
    sign_in(page, "dr-dave", PASSWORD)
    response = page.goto(f"/analytics/{analysis.id}/")
    assert response is not None
    assert response.status == 404
    assert analysis.model.sha256 not in page.content()


def test_the_request_form_can_be_used_with_the_keyboard(blob_dir, hospital, new_page, monkeypatch):
    monkeypatch.setattr("analytics.services._enqueue_start", lambda request_id: None)  # no worker: stays queued
    page = new_page(viewport=PHONE)
    sign_in(page, "dr-carol", PASSWORD)
    page.goto("/analytics/new/")

    page.get_by_label("Diagnostic model").focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Tab")  # skips to the model card links, then the cohort choice
    while page.evaluate("document.activeElement.name") != "cohort_kind":
        page.keyboard.press("Tab")
    page.keyboard.press("ArrowDown")  # "Only the patients I list"
    expect(page.get_by_label("Only the patients I list")).to_be_checked()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Pseudonymous patient ids")).to_be_focused()
    page.keyboard.type("not-an-id")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")
    page.get_by_role("button", name="Request analysis").focus()
    page.keyboard.press("Enter")

    expect(page.locator("#id_pseudonyms_error")).to_contain_text("Entry 1 of your list is not a pseudonymous id")
    expect(page.get_by_role("alert").first).to_contain_text("The analysis was not requested.")
    screenshot_that_fits(page, "analysis-request-errors-phone")

    page.get_by_label("Everyone who has consented to me for this model’s purpose").check()
    page.get_by_label("Pseudonymous patient ids").fill("")
    page.get_by_role("button", name="Request analysis").click()
    expect(page.locator("#progress-panel")).to_have_attribute("data-status", "queued")
    expect(page.locator("#progress-panel")).to_have_attribute("hx-trigger", "every 1s")
