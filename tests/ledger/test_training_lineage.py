"""The typed door to the training lineage (ledger.contracts.Contracts, issue 18), on every backend: what goes in
as a TrainingRunRequest comes back as a TrainingRun with the same numbers and objects, its transaction and block;
retirement and reinstatement as ModelStatus."""

import pytest

from ledger import ContractRejected
from ledger.contracts import Contracts, ModelStatus, OrganisationLineage, TrainingRun, TrainingRunRequest
from tests.chaincode.conftest import chain, digest, ident, namespace

__all__ = ["chain", "namespace"]  # the backend fixture and the autouse fixture that keeps ids apart


@pytest.fixture
def contracts(chain):
    return Contracts(chain)


def request(run_id: str, weights: str, **overrides) -> TrainingRunRequest:
    organisations = (
        OrganisationLineage("org:st-marys", digest(10), digest(11), record_count=7, consent_count=5),
        OrganisationLineage("org:north", digest(12), digest(13), record_count=3, consent_count=3),
    )
    values = {
        "run_id": run_id,
        "model_family": "diabetes-progression",
        "model_version": ident("2"),
        "steward": "model-steward:u3",
        "organisations": organisations,
        "training_set_root": digest(20),
        "consent_root": digest(21),
        "record_count": 10,
        "consent_count": 8,
        "trainer_sha256": digest(30),
        "hyperparameters": {"ridge_alpha": 0.5, "solver": "normal-equations", "standardise": False},
        "rounds": 1,
        "round_aggregates": (digest(40),),
        "metrics": {"r2": 0.482, "rmse": 53.7},
        "weights_sha256": weights,
        "dp_epsilon": 2.0,
        "dp_delta": 1e-6,
        **overrides,
    }
    return TrainingRunRequest(**values)


def test_a_run_recorded_through_the_door_reads_back_typed_by_id_and_by_weights(contracts):
    asked = request(ident("run-1"), digest(90))
    recorded = contracts.record_training_run(asked)

    assert isinstance(recorded, TrainingRun)
    assert recorded.block_number is not None
    assert recorded.tx_id
    assert recorded.submitted_by
    for field in ("hyperparameters", "metrics", "round_aggregates", "dp_epsilon", "dp_delta", "record_count"):
        assert getattr(recorded, field) == getattr(asked, field), field
    # Kept sorted by organisation id on the ledger.
    assert recorded.organisations == tuple(sorted(asked.organisations, key=lambda part: part.organisation))
    assert contracts.read_training_run(ident("run-1")) == recorded
    assert contracts.model_lineage_by_weights(digest(90)) == recorded
    assert contracts.record_training_run(asked) == recorded  # a retry answers the original
    assert contracts.read_training_run(ident("run-none")) is None
    assert contracts.model_lineage_by_weights(digest(91)) is None


def test_a_run_without_differential_privacy_reads_back_with_none(contracts):
    recorded = contracts.record_training_run(request(ident("run-1"), digest(90), dp_epsilon=None, dp_delta=None))
    assert (recorded.dp_epsilon, recorded.dp_delta) == (None, None)


def test_a_refused_run_raises_the_contracts_code(contracts):
    with pytest.raises(ContractRejected) as refused:
        contracts.record_training_run(request(ident("run-1"), digest(90), record_count=11))
    assert refused.value.code == "inconsistent_counts"


def test_retirement_and_reinstatement_through_the_door(contracts):
    contracts.record_training_run(request(ident("run-1"), digest(90)))
    never = contracts.model_status(digest(90))
    assert (never.status, never.retired, never.tx_id, never.block_number) == ("active", False, None, None)

    retired = contracts.retire_model(weights_sha256=digest(90), reason="revocations_threshold", revocations=37)
    assert isinstance(retired, ModelStatus)
    assert (retired.retired, retired.revocations, retired.run_id) == (True, 37, ident("run-1"))
    assert retired.block_number is not None
    assert contracts.model_status(digest(90)) == retired
    assert contracts.retire_model(weights_sha256=digest(90), reason="revocations_threshold", revocations=37) == retired

    reinstated = contracts.reinstate_model(weights_sha256=digest(90), reason="steward_decision", revocations=12)
    assert (reinstated.retired, reinstated.reason) == (False, "steward_decision")
    history = contracts.model_status_history(digest(90))
    assert [change.value["status"] for change in history] == ["retired", "active"]
    assert [change.tx_id for change in history] == [retired.tx_id, reinstated.tx_id]
