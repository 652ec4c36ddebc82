"""Models that answer to revocation: a trained model counts the consents of its lineage since revoked and its records
since erased; past the policy's threshold it is retired from new analyses, on the ledger too (RetireModel), once;
while the ledger is away the platform already refuses it and the retirement lands when the ledger is back; a new run
of the family leaves the revoked records out and its model serves.

A real small federated run (two organisations over Flower, CKKS sums) and the real contracts on the embedded ledger;
the revocations go through the consent service, its signal and the training task, as in the portal."""

import pytest
from django.urls import reverse

from analytics.models import AnalysisStatus, DiagnosticModel
from analytics.selectors import diagnostic_model_get
from analytics.services import analysis_request_create
from analytics.tasks import analysis_start
from audit.models import AccessEvent
from consent.models import Consent
from health_platform import bootstrap
from health_platform.errors import Conflict
from records.codes import BREAST_CANCER_DATASET
from records.services import patient_erase
from tests.clients import api_as, signed_in
from tests.signing import revoke_signed
from tests.training_world import consent_to_analyses, consent_to_training, trained_run
from training import tasks

pytestmark = [pytest.mark.he, pytest.mark.slow]

PATIENTS = 8


@pytest.fixture
def trained(people, organisations, steward, blob_dir):
    """Eight breast-cancer patients, four per organisation, each consenting to training with their organisation;
    a run over all of them. Returns (run, model, people, split, each person's training consent)."""
    everyone = people(BREAST_CANCER_DATASET, PATIENTS)
    split = {organisations[0]: everyone[:4], organisations[1]: everyone[4:]}
    consents = {
        person.patient.pk: consent_to_training(person, organisation, BREAST_CANCER_DATASET)
        for organisation, members in split.items()
        for person in members
    }
    run, model = trained_run(steward, split)
    return run, model, everyone, split, consents


@pytest.fixture
def revoke(eager_tasks, django_capture_on_commit_callbacks):
    """revoke(person's consent): the patient revokes it through the consent service; what follows at commit (the
    training task, run here) runs before it returns."""

    def do(consent):
        with django_capture_on_commit_callbacks(execute=True):
            revoke_signed(actor=consent.patient.user, consent=consent)

    return do


def _reread(model):
    return DiagnosticModel.objects.get(pk=model.pk)


def test_a_revocation_moves_the_counter_and_below_the_threshold_the_model_stays_in_use(
    trained, revoke, settings, clinician
):
    settings.TRAINING_RETIREMENT_REVOKED_FRACTION = 0.2  # more than 1.6 of 8 consents
    _run, model, everyone, _, consents = trained

    revoke(consents[everyone[3].patient.pk])

    model = _reread(model)
    assert model.since_trained["revoked_consents"] == 1
    assert (model.since_trained["records"], model.since_trained["consents"]) == (PATIENTS, PATIENTS)
    assert model.retired_at is None
    assert bootstrap.contracts().model_status(model.sha256).status == "active"
    assert analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    card = api_as(clinician).get(f"/api/models/breast-cancer/?version={model.version}").json()
    assert card["retired"] is False
    assert card["since_trained"]["revoked_consents"] == 1
    assert card["since_trained"]["erased_records"] == 0
    page = signed_in(clinician).get(reverse("analytics:model-card", kwargs={"name": "breast-cancer"}))
    assert "data-revoked-consents>1<" in page.content.decode()


def test_an_erasure_counts_as_a_record_since_erased_and_a_consent_withdrawn(
    trained, settings, eager_tasks, django_capture_on_commit_callbacks
):
    settings.TRAINING_RETIREMENT_REVOKED_FRACTION = 0.5
    _run, model, everyone, _, _ = trained
    erased = everyone[5]

    with django_capture_on_commit_callbacks(execute=True):
        patient_erase(actor=erased.user, patient=erased.patient)

    model = _reread(model)
    assert model.since_trained["erased_records"] == 1
    assert model.since_trained["revoked_consents"] == 0
    assert model.since_trained["withdrawn_consents"] == 1
    assert model.retired_at is None


def test_past_the_threshold_the_model_is_retired_on_the_ledger_and_new_analyses_are_refused_with_a_code(
    trained, revoke, clinician
):
    run, model, everyone, _, consents = trained  # default policy: more than 5 % of 8 consents, i.e. one

    revoke(consents[everyone[0].patient.pk])

    model = _reread(model)
    assert model.retired_at is not None
    status = bootstrap.contracts().model_status(model.sha256)
    assert (status.status, status.reason, status.revocations, status.run_id) == (
        "retired",
        "revocations_threshold",
        1,
        str(run.pk),
    )
    assert model.retirement["tx_id"] == status.tx_id
    with pytest.raises(Conflict) as refused:
        analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    assert refused.value.code == "model_retired"
    response = api_as(clinician).post(
        "/api/analyses/", {"model": "breast-cancer", "cohort": {"kind": "consented"}}, format="json"
    )
    assert (response.status_code, response.json()["code"]) == (409, "model_retired")
    listed = {card["name"]: card for card in api_as(clinician).get("/api/models/").json()}["breast-cancer"]
    assert listed["retired"] is True
    assert listed["retirement"]["reason"] == "revocations_threshold"
    assert listed["retirement"]["tx_id"] == status.tx_id
    form = signed_in(clinician).post(reverse("analytics:new"), {"model": "breast-cancer", "cohort_kind": "consented"})
    assert form.status_code == 409
    html = form.content.decode()
    assert "This model is retired from new analyses" in html
    assert 'data-retired="revocations_threshold"' in html
    assert "data-revoked-consents>1<" in html


def test_a_revocation_delivered_twice_or_repeated_retires_the_model_once(trained, revoke):
    _run, model, everyone, _, consents = trained
    consent = consents[everyone[0].patient.pk]

    revoke(consent)
    revoke(Consent.objects.get(pk=consent.pk))  # the patient revokes again: the signal is sent again
    tasks.trained_models_standing_evaluate(consent_ids=[consent.consent_id])  # a task delivered twice
    tasks.trained_models_standing_sweep()
    revoke(consents[everyone[1].patient.pk])  # another revocation: the count moves, the retirement stands

    model = _reread(model)
    assert model.since_trained["revoked_consents"] == 2
    changes = bootstrap.contracts().model_status_history(model.sha256)
    assert len(changes) == 1
    assert bootstrap.contracts().model_status(model.sha256).revocations == 1


def test_while_the_ledger_is_away_the_model_is_refused_and_its_retirement_lands_once_it_is_back(
    trained, ledger_switch, django_capture_on_commit_callbacks, clinician
):
    _run, model, everyone, _, consents = trained
    consent = consents[everyone[0].patient.pk]
    with django_capture_on_commit_callbacks(execute=False):  # the task is not run before the ledger goes
        revoke_signed(actor=consent.patient.user, consent=consent)

    ledger_switch.down()
    tasks.trained_models_standing_evaluate(consent_ids=[consent.consent_id])
    ledger_switch.up()

    model = _reread(model)
    assert model.retired_at is not None
    assert model.retirement["tx_id"] == ""
    assert bootstrap.contracts().model_status(model.sha256).status == "active"
    with pytest.raises(Conflict):  # refused here already: the local decision is the conservative one
        analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    page = signed_in(clinician).get(reverse("analytics:model-card", kwargs={"name": "breast-cancer"}))
    assert "not yet on the ledger" in page.content.decode()

    tasks.trained_models_standing_sweep()  # the beat's sweep, the ledger back

    model = _reread(model)
    status = bootstrap.contracts().model_status(model.sha256)
    assert status.retired
    assert model.retirement["tx_id"] == status.tx_id
    assert len(bootstrap.contracts().model_status_history(model.sha256)) == 1


def test_an_analysis_requested_before_the_retirement_runs_to_its_end(
    trained, revoke, clinician, eager, django_capture_on_commit_callbacks
):
    _run, model, everyone, _, consents = trained
    consent_to_analyses(clinician, everyone[4:6])
    request = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    assert request.status == AnalysisStatus.QUEUED  # its start is sent at commit, which this test holds back
    revoke(consents[everyone[0].patient.pk])
    assert _reread(model).retired_at is not None

    with django_capture_on_commit_callbacks(execute=True):
        analysis_start(str(request.pk))

    request.refresh_from_db()
    assert (request.status, request.model_id, request.failure_code) == (AnalysisStatus.COMPLETED, model.pk, "")
    assert sum(batch.admitted_count for batch in request.batches.all()) == 2


def test_retraining_leaves_the_revoked_record_out_and_the_new_model_serves(trained, revoke, steward, clinician):
    _run, old, everyone, split, consents = trained
    revoked = everyone[2]
    revoke(consents[revoked.patient.pk])
    assert _reread(old).retired_at is not None

    retrained, new = trained_run(steward, split)  # the same candidates: the gate decides

    used = {entry["record_id"] for entries in retrained.manifest.values() for entry in entries}
    assert str(revoked.record.id) not in used
    assert used == {str(p.record.id) for p in everyone if p is not revoked}
    refusals = AccessEvent.objects.filter(request_id=str(retrained.pk), record_id=str(revoked.record.id))
    assert set(refusals.values_list("decision", "reason")) == {("refuse", "consent_revoked")}
    lineage = bootstrap.contracts().read_training_run(str(retrained.pk))
    assert (lineage.record_count, lineage.weights_sha256) == (PATIENTS - 1, new.sha256)
    assert new.sha256 != old.sha256
    assert diagnostic_model_get(name="breast-cancer").pk == new.pk  # the retrained version serves new requests
    request = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    assert request.model_id == new.pk
    assert bootstrap.contracts().model_status(old.sha256).retired  # the retired one stays retired
    assert bootstrap.contracts().model_status(new.sha256).status == "active"
    assert _reread(old).retired_at is not None
