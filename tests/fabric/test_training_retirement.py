"""Models that answer to revocation on the real Fabric network, through the same code path as on the embedded
ledger: a small federated run writes its lineage on the chain, a patient revokes their training consent on the
chain, the training task counts it, retires the model with RetireModel (once, however often the event comes) and
the platform refuses new analyses with it. Skipped with the reason without FABRIC_BIN_DIR."""

import pytest

from analytics.models import DiagnosticModel
from analytics.services import analysis_request_create
from consent.models import Consent
from health_platform import bootstrap
from health_platform.errors import Conflict
from records.codes import BREAST_CANCER_DATASET
from tests.signing import revoke_signed
from tests.training.conftest import organisations, people, steward  # noqa: F401 (fixtures)
from tests.training_world import consent_to_training, trained_run
from training import tasks

pytestmark = [pytest.mark.fabric, pytest.mark.he, pytest.mark.slow]


def test_a_revocation_on_fabric_retires_the_model_on_the_chain_once_and_new_analyses_are_refused(
    people,  # noqa: F811
    organisations,  # noqa: F811
    steward,  # noqa: F811
    ledger,
    blob_dir,
    clinician,
    eager_tasks,
    django_capture_on_commit_callbacks,
):
    assert type(ledger).__name__ == "FabricLedger"
    everyone = people(BREAST_CANCER_DATASET, 4)
    split = {organisations[0]: everyone[:2], organisations[1]: everyone[2:]}
    consents = [
        consent_to_training(person, organisation, BREAST_CANCER_DATASET)
        for organisation, members in split.items()
        for person in members
    ]
    run, model = trained_run(steward, split, rounds=1)

    for _ in range(2):  # revoked twice: the event comes twice
        with django_capture_on_commit_callbacks(execute=True):
            revoke_signed(actor=consents[0].patient.user, consent=Consent.objects.get(pk=consents[0].pk))
    tasks.trained_models_standing_sweep()

    model = DiagnosticModel.objects.get(pk=model.pk)
    status = bootstrap.contracts().model_status(model.sha256)
    assert (status.status, status.reason, status.revocations) == ("retired", "revocations_threshold", 1)
    assert status.run_id == str(run.pk)
    assert model.retirement["tx_id"] == status.tx_id
    assert len(bootstrap.contracts().model_status_history(model.sha256)) == 1
    assert model.since_trained["revoked_consents"] == 1
    with pytest.raises(Conflict) as refused:
        analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    assert refused.value.code == "model_retired"
