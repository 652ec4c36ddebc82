"""A patient's "Models my records trained" in a real browser, after a real federated training run (Flower over TLS,
CKKS sums, the lineage on the embedded ledger): the patient finds the model their record trained, downloads the
inclusion proof as a browser does, and the file verifies with the offline checker.

Screenshots (desktop and 375px phone width) are written to test-artifacts/screenshots/.
"""

import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from health_platform import bootstrap
from records.codes import BREAST_CANCER_DATASET
from tests.e2e.conftest import off_browser_thread, screenshots_at_both_widths, sign_in
from tests.records.factories import PASSWORD
from tests.training.conftest import organisations, people, small_breast_cancer_run, steward  # noqa: F401 (fixtures)

pytestmark = pytest.mark.he

REPOSITORY = Path(__file__).resolve().parents[2]
NORTHGATE = "org:northgate"


def test_patient_sees_the_model_their_record_trained_and_the_downloaded_proof_verifies_offline(
    small_breast_cancer_run,  # noqa: F811 (a fixture)
    new_page,
):
    run, everyone = small_breast_cancer_run
    alice, bob = everyone[0], everyone[4]
    lineage = off_browser_thread(bootstrap.contracts().read_training_run, str(run.pk))
    page = new_page()
    sign_in(page, alice.user.username, PASSWORD)
    page.get_by_role("link", name="Models my records trained").click()
    page.wait_for_url("**/training/my-models/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Models my records trained")

    model = page.locator(f'section[data-run-id="{run.pk}"]')
    expect(model.get_by_role("heading", level=2)).to_contain_text(f"breast-cancer {run.model_version}")
    row = model.locator(f'tr[data-record-id="{alice.record.pk}"]')
    expect(row).to_contain_text("Imaging-derived measurements, version 1")
    expect(row.locator("[data-label='Under your consent']")).to_contain_text("Still in force")
    expect(page.locator(f'tr[data-record-id="{bob.record.pk}"]')).to_have_count(0)
    expect(page.locator("#check-a-proof")).to_contain_text("python -m chaincode.merkle verify proof.json")
    screenshots_at_both_widths(page, "patient-models-my-records-trained")

    with page.expect_download() as started:
        row.get_by_role("link", name="Download proof").click()
    download = started.value
    assert download.suggested_filename == f"training-proof-breast-cancer-{run.model_version}-{alice.record.pk}.json"
    checked = subprocess.run(
        [sys.executable, "-m", "chaincode.merkle", "verify", download.path()],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    assert f"under root {lineage.training_set_root}" in checked.stdout  # the root the ledger holds for the run


def test_at_an_invited_instance_the_patient_sees_the_model_and_their_proof_leads_to_their_organisations_root(
    people,  # noqa: F811 (a fixture)
    new_page,
):
    """One platform instance per organisation: this instance took part in another instance's run (its participation
    and its part of the lineage on the ledger, as tests/training/test_participation_lineage.py makes them). Once the
    sweep has confirmed the lineage, the patient finds the model, is told their records are in their organisation's
    part, and the downloaded proof verifies offline against that part's root."""
    from health_platform.services import organisation_create
    from tests.training.test_participation_lineage import completed_participation, lineage_written
    from training.lineage import lineage_roots
    from training.participation import participations_lineage_confirm

    def prepared():
        organisation_create(slug="northgate", name="Northgate Research Institute")
        alice = people(BREAST_CANCER_DATASET, 2)[0]
        participation = completed_participation([alice])
        [kept], _ = lineage_roots({NORTHGATE: participation.manifest})
        lineage_written(participation, root=kept.training_set_root, count=1)
        assert participations_lineage_confirm() == 1
        return alice, participation, kept

    alice, participation, kept = off_browser_thread(prepared)
    page = new_page()
    sign_in(page, alice.user.username, PASSWORD)
    page.get_by_role("link", name="Models my records trained").click()
    page.wait_for_url("**/training/my-models/")
    model = page.locator(f'section[data-run-id="{participation.run_id}"]')
    part = model.locator(f'[data-part-of="{NORTHGATE}"]')
    expect(part).to_contain_text("your records stayed here")
    expect(part).to_contain_text("the part of its training set Northgate Research Institute gave")
    screenshots_at_both_widths(page, "patient-models-trained-with-other-organisations")

    row = model.locator(f'tr[data-record-id="{alice.record.pk}"]')
    with page.expect_download() as started:
        row.get_by_role("link", name="Download proof").click()
    checked = subprocess.run(
        [sys.executable, "-m", "chaincode.merkle", "verify", started.value.path()],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    assert f"under root {kept.training_set_root}" in checked.stdout  # Northgate's part, as the lineage lists it
