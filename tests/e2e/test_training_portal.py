"""The model steward's training portal in a real browser, with a real Celery worker running the federated rounds.

The steward signs in with their second factor, requests a breast-cancer training run over the records the two
organisations offer, watches the rounds panel (htmx, polling every second) fill in round by round until the run has
completed, without the page reloading, and opens the trained model's card, which shows the lineage and links back
to the run. Screenshots (desktop and 375px phone width, nothing cut off at the phone's) go to
test-artifacts/screenshots/training-*.png.
"""

import re

import pytest
from playwright.sync_api import expect

from records.codes import BREAST_CANCER_DATASET
from tests.conftest import tamper_with
from tests.e2e.conftest import off_browser_thread, screenshots_at_both_widths, sign_in
from tests.records.factories import PASSWORD
from tests.training_world import consent_to_training, model_steward, people_ingested, two_organisations
from training.models import TrainingRun, TrainingStatus

pytestmark = [pytest.mark.he, pytest.mark.timeout(300)]

PATIENTS = 8
ROUNDS = 3
COMPLETION_TIMEOUT_MS = 180_000


@pytest.fixture
def two_hospitals(transactional_db, ledger, blob_dir):
    """Eight breast-cancer patients, four per organisation, each consented to training by their own; one record of
    St Mary's tampered with (refused at every round). The model steward Sam."""
    everyone = people_ingested(BREAST_CANCER_DATASET, PATIENTS)
    organisations = two_organisations()
    for index, person in enumerate(everyone):
        consent_to_training(person, organisations[index % 2], BREAST_CANCER_DATASET)
    tamper_with(everyone[0].record)
    return model_steward()


def the_run() -> TrainingRun:
    return TrainingRun.objects.get()


def test_the_steward_requests_a_run_follows_its_rounds_and_opens_the_model_card_with_its_lineage(
    blob_dir, two_hospitals, celery_worker, new_page
):
    page = new_page()
    sign_in(page, "steward-sam", PASSWORD)  # with the authenticator code: a steward is staff

    # The start page is the steward's training runs, also in the navigation; none yet.
    expect(page.get_by_role("heading", name="Training runs", level=1)).to_be_visible()
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Training runs")).to_have_attribute(
        "aria-current", "page"
    )
    expect(page.locator("#no-training-runs")).to_be_visible()
    page.get_by_role("link", name="Request a training run").click()

    # The form: each family explained, with its defaults and what the organisations offer.
    expect(page.get_by_role("heading", name="Request a training run", level=1)).to_be_visible()
    expect(page.locator('[data-family="breast-cancer"]')).to_contain_text("Logistic regression")
    expect(page.locator('[data-family="breast-cancer"] [data-offered]')).to_contain_text(
        f"{PATIENTS} records offered by 2 organisations"
    )
    page.get_by_label("Model family").select_option("breast-cancer")
    page.get_by_label("Rounds").fill(str(ROUNDS))
    screenshots_at_both_widths(page, "training-request-form")
    page.get_by_role("button", name="Request training run").click()

    # The run's page: the rounds panel fills in place until the worker has written the lineage.
    expect(page).to_have_url(re.compile(r"/training/[0-9a-f-]{36}/$"))
    expect(page.get_by_role("heading", name="Training run of breast-cancer", level=1)).to_be_visible()
    page.evaluate("window.loadedOnce = true")  # survives only if the page is never reloaded
    panel = page.locator("#progress-panel")
    expect(panel).to_have_attribute("data-status", "completed", timeout=COMPLETION_TIMEOUT_MS)
    assert page.evaluate("window.loadedOnce") is True
    expect(panel.locator("#rounds tbody tr")).to_have_count(ROUNDS)
    expect(panel.locator('[data-organisation="org:st-marys"] [data-count="admitted"]')).to_have_text("3")
    expect(panel.locator('[data-organisation="org:st-marys"] [data-reason="hash_mismatch"]')).to_contain_text(
        "Record changed since it was anchored: 1"
    )
    expect(panel.locator('[data-organisation="org:northgate"] [data-count="admitted"]')).to_have_text("4")
    run = off_browser_thread(the_run)
    assert run.status == TrainingStatus.COMPLETED
    expect(panel.locator("[data-lineage-tx]")).to_have_text(run.lineage_tx_id)
    screenshots_at_both_widths(page, "training-run")

    # The trained model's card shows the lineage, and links back to the run for its steward.
    page.locator("#model-card-link").click()
    expect(page.get_by_role("heading", name=re.compile("Model card: breast-cancer"))).to_be_visible()
    lineage = page.locator("#lineage")
    expect(lineage.get_by_role("heading", name="Lineage")).to_be_visible()
    expect(lineage.locator("[data-lineage-records]")).to_have_text("7")
    expect(lineage.locator("[data-lineage-tx]")).to_have_text(run.lineage_tx_id)
    expect(lineage.locator("[data-lineage-rounds]")).to_have_text(str(ROUNDS))
    expect(lineage.locator("#lineage-organisations tbody tr")).to_have_count(2)
    expect(lineage.locator("#lineage-rounds li")).to_have_count(ROUNDS)
    screenshots_at_both_widths(page, "training-model-card")
    page.get_by_role("link", name="Your training run of this model").click()
    expect(page).to_have_url(re.compile(rf"/training/{run.pk}/$"))

    # The list shows the run completed, with its model.
    page.get_by_role("link", name="← Training runs").click()
    expect(page.locator(f'tr[data-run-id="{run.pk}"] [data-status]')).to_have_text("Completed")
