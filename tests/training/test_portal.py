"""The model steward's training pages: who may open them, the request form's errors at their fields, the rounds
panel's polling, and a completed run's page with its lineage and its model card linking back."""

import html

import pytest
from django.urls import reverse

from health_platform.roles import Role
from records.codes import BREAST_CANCER_DATASET
from tests.clients import html_of, signed_in
from tests.conftest import tamper_with
from tests.records.factories import UserFactory
from tests.training.test_api import run_of
from tests.training_world import consent_to_training, model_steward
from training.models import TrainingRun, TrainingStatus
from training.services import training_run_execute

LIST, NEW = "/training/", "/training/new/"
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.mark.parametrize("role", [Role.PATIENT, Role.CLINICIAN, Role.AUDITOR, Role.CUSTODIAN, None])
def test_every_other_role_is_refused_the_training_pages(steward, role, db):
    run = run_of(steward)
    client = signed_in(UserFactory(username="someone-else", roles=[role] if role else []))
    for path in (LIST, NEW, f"/training/{run.pk}/"):
        response = client.get(path)
        assert response.status_code == 403, path
        assert "This page is for model stewards." in html_of(response)
    assert client.post(NEW, {"family": "breast-cancer"}).status_code == 403
    assert client.get(f"/training/{run.pk}/progress/", **HTMX).status_code == 403
    assert list(TrainingRun.objects.all()) == [run]


def test_signed_out_visitors_are_sent_to_sign_in(steward, client):
    run = run_of(steward)
    for path in (LIST, NEW, f"/training/{run.pk}/"):
        assert client.get(path).url.startswith("/accounts/login/")
    assert client.get(f"/training/{run.pk}/progress/", **HTMX)["HX-Redirect"].startswith("/accounts/login/")


@pytest.mark.parametrize("run_id", ["other", "not-a-run", "00000000-0000-4000-8000-000000000000"])
def test_another_stewards_run_page_is_answered_as_one_that_does_not_exist(steward, run_id):
    other = run_of(model_steward("steward-tom"))
    response = signed_in(steward).get(f"/training/{other.pk if run_id == 'other' else run_id}/")
    assert response.status_code == 404
    assert "There is no such training run among yours." in html_of(response)


def test_the_steward_lands_on_training_runs_reached_from_the_navigation(steward):
    client = signed_in(steward)
    assert client.get("/").url == LIST
    run = run_of(steward)
    html = html_of(client.get(LIST))
    assert '<a href="/training/" aria-current="page">Training runs</a>' in html
    assert f'data-run-id="{run.pk}"' in html
    assert "Request a training run" in html


def test_the_form_explains_each_family_in_plain_words_with_its_defaults(steward, offered_two):
    html = html_of(signed_in(steward).get(NEW))
    assert '<label for="id_family">Model family</label>' in html
    assert 'aria-describedby="family-help"' in html
    assert "Logistic regression: learns the probability of a yes/no outcome" in html
    assert "Linear regression: learns a value" in html
    assert "Defaults: 8 rounds, ridge\n        1." in html
    assert "2 records offered by\n          2 organisations" in html
    for field in ("id_rounds", "id_ridge"):
        assert f'aria-describedby="{field}_helptext"' in html


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"family": ""}, "family", "Choose a model family."),
        ({"family": "no-such-family"}, "family", "Choose a model family from the list."),
        ({"family": "breast-cancer", "rounds": "two"}, "rounds", "Enter a whole number of rounds."),
        ({"family": "breast-cancer", "rounds": "0"}, "rounds", "Rounds must be 1 to 50."),
        ({"family": "breast-cancer", "rounds": "1.5"}, "rounds", "Enter a whole number of rounds."),
        ({"family": "breast-cancer", "ridge": "-1"}, "ridge", "The ridge penalty cannot be negative."),
        ({"family": "breast-cancer", "ridge": "inf"}, "ridge", "Enter a number, such as 1 or 0.5."),
        ({"family": "breast-cancer", "ridge": "nan"}, "ridge", "Enter a number, such as 1 or 0.5."),
        ({"family": "breast-cancer", "ridge": "9" * 400}, "ridge", "Enter a number, such as 1 or 0.5."),
        ({"family": "diabetes-progression", "rounds": "2"}, "rounds", "A linear model trains in one round."),
        ({"family": "breast-cancer", "ridge": "1e300"}, "ridge", "The ridge penalty can be at most 1e+06."),
        ({"family": "breast-cancer", "dp_epsilon": "1"}, "dp_delta", "Give both epsilon and delta, or neither."),
        ({"family": "breast-cancer", "dp_epsilon": "a lot"}, "dp_epsilon", "Enter a number, such as 4 or 0.5."),
        (
            {"family": "breast-cancer", "dp_epsilon": "1", "dp_delta": "0.5"},
            "dp_delta",
            "delta must be a number above 0 and at most 0.001.",
        ),
    ],
)
def test_a_request_the_service_or_the_form_refuses_is_shown_at_its_field_and_nothing_is_stored(
    steward, offered_two, data, field, message
):
    response = signed_in(steward).post(NEW, data)
    html = html_of(response)
    assert response.status_code == 400
    assert f'<p class="field-error" id="id_{field}_error">{message}</p>' in html
    assert "The training run was not requested." in html
    assert not TrainingRun.objects.exists()


def test_with_nothing_offered_the_form_says_so_at_the_family(steward, db):
    response = signed_in(steward).post(NEW, {"family": "breast-cancer"})
    assert response.status_code == 400
    assert 'id="id_family_error">No organisation offers a record for this model family' in html_of(response)
    assert not TrainingRun.objects.exists()


def test_the_rounds_panel_polls_while_the_run_is_queued_and_answers_204_when_nothing_changed(steward):
    run = run_of(steward)
    client = signed_in(steward)
    page = html_of(client.get(f"/training/{run.pk}/"))
    assert 'hx-trigger="every 1s"' in page
    assert "Reload this page</a> to see the rounds." in page
    panel = client.get(f"/training/{run.pk}/progress/", **HTMX)
    assert panel.status_code == 200
    fingerprint = html_of(panel).split("?seen=")[1].split('"')[0]
    assert client.get(f"/training/{run.pk}/progress/?seen={fingerprint}", **HTMX).status_code == 204
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingStatus.FAILED, failure_code="organisation_missing")
    finished = client.get(f"/training/{run.pk}/progress/?seen={fingerprint}", **HTMX)
    assert finished["HX-Trigger"] == "training-run-finished"
    assert "hx-trigger" not in html_of(finished)
    assert "An organisation did not answer a round" in html_of(finished)
    assert client.get(f"/training/{run.pk}/progress/").url == f"/training/{run.pk}/"  # not htmx: the page


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("aggregator_failed", "The aggregator stopped during the run"),
        ("context_not_keyless", "The aggregator was handed a key that could decrypt and refused to start"),
        ("ledger_unavailable", "The ledger did not answer, so no record was used"),
        ("organisation_unreachable", "Another organisation's platform did not answer before the run's deadline"),
        ("organisation_unknown", "A client that is not one of the run's organisations sent an update"),
        ("invitation_refused", "Another organisation's platform refused the run's invitation"),
        ("peer_outcome_invalid", "sent back a training set that is not one"),
        ("peer_not_configured", "no longer among this platform's peers"),
    ],
)
def test_a_failed_runs_page_says_in_words_why_the_aggregator_or_the_ledger_stopped_it(steward, code, words):
    run = run_of(steward)
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingStatus.FAILED, failure_code=code)
    page = html.unescape(html_of(signed_in(steward).get(f"/training/{run.pk}/")))
    assert words in page
    assert code in page


@pytest.fixture
def offered_two(people, organisations):
    everyone = people(BREAST_CANCER_DATASET, 2)
    for person, organisation in zip(everyone, organisations, strict=True):
        consent_to_training(person, organisation, BREAST_CANCER_DATASET)
    return everyone


@pytest.mark.he
@pytest.mark.slow
def test_a_completed_runs_page_shows_its_rounds_reasons_in_words_and_links_to_its_model_card(
    steward, people, organisations, blob_dir, clinician
):
    everyone = people(BREAST_CANCER_DATASET, 4)
    for index, person in enumerate(everyone):
        consent_to_training(person, organisations[index % 2], BREAST_CANCER_DATASET)
    tamper_with(everyone[0].record)
    client = signed_in(steward)
    response = client.post(NEW, {"family": "breast-cancer", "rounds": "2", "ridge": "1"})
    run = TrainingRun.objects.get()
    assert response.url == f"/training/{run.pk}/"
    run = training_run_execute(run_id=str(run.pk))
    assert run.status == TrainingStatus.COMPLETED

    html = html_of(client.get(response.url))

    assert "hx-trigger" not in html  # finished: no more polling
    for round_ in run.rounds.all():
        assert f'<tr data-round="{round_.index}">' in html
        assert round_.aggregate_sha256 in html
    assert '<li data-reason="hash_mismatch">Record changed since it was anchored: <strong>1</strong></li>' in html
    card = reverse("analytics:model-card", kwargs={"name": "breast-cancer"}) + f"?version={run.model_version}"
    assert f'<a id="model-card-link" href="{card}">' in html
    assert run.lineage_tx_id in html

    card_html = html_of(client.get(card))
    assert f'<a id="training-run-link" href="/training/{run.pk}/">' in card_html
    assert 'id="lineage-organisations"' in card_html
    assert "data-lineage-trainer" in card_html
    assert "training-run-link" not in html_of(signed_in(clinician).get(card))  # the run is its steward's alone


def test_the_request_form_says_which_other_organisations_platforms_are_invited(steward, settings):
    """One platform instance per organisation: the form counts this instance's offer, and names how many other
    organisations' platforms the run will invite (they count their own records)."""
    from training.peers import Peer

    page = html.unescape(html_of(signed_in(steward).get(NEW)))
    assert "data-invited" not in page
    settings.TRAINING_FEDERATION_PEERS = {
        "org:northgate": Peer("org:northgate", "https://northgate.example", b"k" * 32)
    }
    page = html.unescape(html_of(signed_in(steward).get(NEW)))
    assert "and 1 other organisation's platform, invited" in " ".join(page.split())
