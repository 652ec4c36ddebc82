"""The auditor's home in a real browser: the state of the log (figures, server-drawn charts, latest exports), then
a copy of an export verified by upload: untouched with its manifest (verifies), then edited (the changed event
named by its id, never its value).

Screenshots (desktop and 375 px) go to test-artifacts/screenshots/auditor-*.png.
"""

import json
import re

import pytest
from playwright.sync_api import expect

from audit.exports import export_path
from audit.selectors import AccessEventFilters, audit_export_manifest
from audit.services import access_batch_log, audit_export_create
from health_platform.roles import Role
from tests.audit.conftest import two_batches_logged
from tests.conftest import tasks_run_eagerly
from tests.e2e.conftest import screenshots_at_both_widths, sign_in
from tests.records.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def export_copy(transactional_db, ledger, export_dir, tmp_path):
    """An access log of three events, exported (CSV) and verified by the auditor; the copy and its manifest."""
    two_batches_logged(
        lambda batch_id, events: access_batch_log(batch_id=batch_id, events=events), mine="a" * 64, theirs="b" * 64
    )
    auditor = UserFactory(username="e2e-auditor", roles=[Role.AUDITOR])
    with tasks_run_eagerly():
        export = audit_export_create(requester=auditor, format="csv", filters=AccessEventFilters())
    export.refresh_from_db()
    assert export.status == "completed", export.failure_code
    copy = tmp_path / f"access-log-{export.pk}.csv"
    copy.write_bytes(export_path(export).read_bytes())
    manifest = tmp_path / f"access-log-{export.pk}.csv.manifest.json"
    manifest.write_text(json.dumps(audit_export_manifest(export=export)))
    edited = tmp_path / "edited.csv"
    edited.write_text(copy.read_text().replace("org:st-marys", "org:mallory-clinic"))
    return copy, manifest, edited


def test_auditor_reads_the_state_of_the_log_and_verifies_an_uploaded_copy(export_copy, new_page):
    copy, manifest, edited = export_copy
    page = new_page()
    sign_in(page, "e2e-auditor", PASSWORD)

    expect(page).to_have_url(re.compile(r"/audit/overview/$"))
    expect(page.get_by_role("heading", name="The access log at a glance", level=1)).to_be_visible()
    expect(page.locator('[data-figure="events"]')).to_have_text("4")  # three accesses and the export itself
    expect(page.locator('[data-figure="verification"]')).to_have_text("Verified")
    expect(page.locator("svg#events-per-day")).to_be_visible()
    expect(page.locator("svg#refusals-by-reason")).to_be_visible()
    expect(page.locator("#latest-exports tbody tr")).to_have_count(1)
    screenshots_at_both_widths(page, "auditor-overview")

    page.evaluate("window.loadedOnce = true")
    page.get_by_label("Copy of an export").set_input_files(str(copy))
    page.get_by_label("CSV").check()
    page.get_by_label("Its manifest (optional)").set_input_files(str(manifest))
    page.get_by_role("button", name="Verify the copy").click()
    verdict = page.locator("#verify-verdict")
    expect(verdict).to_have_attribute("data-ok", "true")
    expect(verdict).to_have_attribute("data-completeness-checked", "true")
    assert page.evaluate("window.loadedOnce") is True  # answered in place by htmx
    screenshots_at_both_widths(page, "auditor-verify-ok")

    page.get_by_label("Copy of an export").set_input_files(str(edited))
    page.get_by_label("Its manifest (optional)").set_input_files(str(manifest))
    page.get_by_role("button", name="Verify the copy").click()
    expect(verdict).to_have_attribute("data-ok", "false")
    expect(page.locator('#verify-problems tr[data-event-id="r2-e1"]')).to_have_attribute("data-kind", "changed")
    assert "mallory" not in page.content()
    screenshots_at_both_widths(page, "auditor-verify-problems")
