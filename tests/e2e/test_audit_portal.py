"""The auditor portal in a real browser, with a real Celery worker writing the export.

An auditor signs in, filters the access log, exports what the filter selects as CSV from the portal,
watches the export's row (htmx, polling every second) turn completed without the page reloading,
downloads the file, and checks that its SHA-256 is the one the page shows and the manifest gives.
Screenshots go to test-artifacts/screenshots/audit-*.png.
"""

import csv
import hashlib
import io
import os

import pytest
from django.conf import settings
from django.db import connection
from playwright.sync_api import Page, expect

from analytics.registry import diagnostic_models_register
from audit.models import AuditExport
from audit.services import access_batch_log
from health_platform.roles import Role
from health_platform.services import clinician_register, organisation_create
from tests.conftest import worker_database_url
from tests.e2e.conftest import off_browser_thread, screenshot, screenshots_at_both_widths, sign_in
from tests.records.factories import PASSWORD, PatientFactory, UserFactory

pytestmark = pytest.mark.timeout(240)

BREAST_CANCER = "diagnostic-model:breast-cancer"
COMPLETION_TIMEOUT_MS = 60_000


@pytest.fixture
def access_log(transactional_db, ledger):
    """Erin the auditor; Dr Carol's breast-cancer analyses over five patients (three admitted, two refused)
    and one over two more by another request, as the pipeline logs them. Returns the admitted events' ids."""
    UserFactory(username="auditor-erin", roles=[Role.AUDITOR])
    model = next(m for m in diagnostic_models_register() if m.name == "breast-cancer")
    carol = UserFactory(username="dr-carol")
    clinician_register(
        user=carol, display_name="Dr Carol Jones", organisation=organisation_create(slug="st-marys", name="St Mary's")
    )
    grantee = carol.clinician_profile.grantee_id
    patients = [PatientFactory() for _ in range(7)]

    def event(number, patient, request_id, refused_for=None):
        return {
            "event_id": f"{request_id}:rec-{number}",
            "kind": "record_access",
            "record_id": f"rec-{number}",
            "patient_pseudonym": patient.pseudonym,
            "grantee": grantee,
            "purpose": BREAST_CANCER,
            "request_id": request_id,
            "model_hash": model.sha256,
            "category": "imaging",
            "decision": "refuse" if refused_for else "admit",
            **({"reason": refused_for} if refused_for else {}),
        }

    first = [event(n, patients[n], "req-a") for n in range(3)]
    first += [event(3, patients[3], "req-a", "no_consent"), event(4, patients[4], "req-a", "consent_revoked")]
    access_batch_log(batch_id="req-a:batch-0", events=first)
    access_batch_log(
        batch_id="req-b:batch-0",
        events=[event(5, patients[5], "req-b"), event(6, patients[6], "req-b", "category_not_covered")],
    )
    return {e["event_id"] for e in first if e["decision"] == "admit"} | {"req-b:rec-5"}


@pytest.fixture
def export_worker(start_worker, ledger_url, export_dir):
    """A real worker on the custodian queue, writing exports where this test's web process reads them."""
    return start_worker(
        queues="custodian",
        environment={
            **os.environ,
            "LEDGER_URL": ledger_url,
            "DATABASE_URL": worker_database_url(connection),
            "ANALYTICS_BLOB_DIR": str(settings.ANALYTICS_BLOB_DIR),
            "AUDIT_EXPORT_DIR": str(export_dir),
        },
    )


def the_export() -> AuditExport:
    return AuditExport.objects.get()


def test_auditor_filters_the_log_exports_it_as_csv_and_downloads_the_file_the_manifest_hashes(
    export_dir, access_log, export_worker, new_page
):
    admitted = access_log
    page: Page = new_page()
    sign_in(page, "auditor-erin", PASSWORD)

    # From the navigation to the search; filter: Dr Carol's breast-cancer model, admitted only.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Access log").click()
    expect(page.get_by_role("heading", name="Access log", level=1)).to_be_visible()
    expect(page.locator("#events tbody tr")).to_have_count(7)
    page.get_by_label("Model").select_option(label="breast-cancer@1")
    page.get_by_label("Decision").select_option(label="Admitted")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("heading", name="4 events found")).to_be_visible()
    rows = page.locator("#events tbody tr")
    expect(rows).to_have_count(4)
    assert set(rows.evaluate_all("rows => rows.map(r => r.dataset.eventId)")) == admitted
    expect(rows.first.locator("td[data-label=Model]")).to_have_text("breast-cancer@1")
    screenshots_at_both_widths(page, "audit-search")

    # Export what the search selects, as CSV.
    page.get_by_role("link", name="Export these events").click()
    expect(page.get_by_role("heading", name="Access-log exports", level=1)).to_be_visible()
    expect(page.locator("#export-filters")).to_contain_text("decision")
    expect(page.get_by_label("CSV")).to_be_checked()
    page.get_by_role("button", name="Create export").click()

    # The row of the new export turns completed in place: the page is not reloaded.
    row = page.locator("#exports tbody tr").first
    expect(row).to_be_visible()
    page.evaluate("window.loadedOnce = true")
    expect(row).to_have_attribute("data-status", "completed", timeout=COMPLETION_TIMEOUT_MS)
    assert page.evaluate("window.loadedOnce") is True
    expect(row.locator("[data-count]")).to_have_text("4")
    expect(row.locator("[data-verified]")).to_have_text("Verified against the ledger")
    shown_sha256 = row.locator("[data-sha256]").get_attribute("data-sha256")
    screenshot(page, "audit-exports-desktop")

    # Download it as a browser does; its bytes hash to what the page and the manifest say.
    with page.expect_download() as started:
        row.get_by_role("link", name="Download").click()
    download = started.value
    content = open(download.path(), "rb").read()  # noqa: SIM115 (Playwright owns the file)
    manifest = page.request.get(row.get_by_role("link", name="Manifest").get_attribute("href")).json()
    assert hashlib.sha256(content).hexdigest() == shown_sha256 == manifest["file"]["sha256"]
    assert download.suggested_filename == manifest["file"]["name"]
    assert manifest["count"] == 4
    assert manifest["filters"]["decision"] == "admit"
    assert manifest["verification"]["ok"] is True
    assert {row["event_id"] for row in csv.DictReader(io.StringIO(content.decode()))} == admitted

    export = off_browser_thread(the_export)
    assert (export.status, export.sha256, export.event_count) == ("completed", shown_sha256, 4)
    assert export.log_tx_id
    assert export.log_tx_id == manifest["ledger"]["tx_id"]

    # The export's own ledger entry is in the newest block of the ledger view.
    page.get_by_role("navigation", name="Audit").get_by_role("link", name="Ledger").click()
    expect(page.get_by_role("heading", name="Ledger", level=1)).to_be_visible()
    newest = page.locator("#blocks > li").first
    expect(newest.locator(f'tr[data-tx-id="{export.log_tx_id}"]')).to_be_visible()
    expect(newest.locator(f'tr[data-tx-id="{export.log_tx_id}"] td[data-label=Function]')).to_have_text(
        "AppendAccessEvents"
    )
    screenshot(page, "audit-ledger-desktop")
