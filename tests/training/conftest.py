"""The training tests' fixtures, over the two organisations of tests/training_world.py (shared with the browser
tests)."""

import pytest

from records.codes import BREAST_CANCER_DATASET
from tests.training_world import (
    consent_to_training,
    model_steward,
    people_ingested,
    training_run_completed,
    two_organisations,
)


@pytest.fixture
def steward(db):
    return model_steward()


@pytest.fixture
def organisations(db, ledger):
    """The two organisations' grantee ids, registered on the ledger."""
    return two_organisations()


@pytest.fixture
def people(db, ledger):
    """people(dataset, count) -> the dataset's demo patients 0..count-1 ingested (anchored), each with an account."""
    return people_ingested


@pytest.fixture
def small_breast_cancer_run(people, organisations, steward, blob_dir):
    """A real two-round federated run of the breast-cancer model over six patients, three per organisation, each
    consented to training with their own; the seventh patient never consented (their record is not used).
    Returns (run, the seven people)."""
    everyone = people(BREAST_CANCER_DATASET, 7)
    st_marys, northgate = organisations
    split = {st_marys: everyone[:3], northgate: everyone[3:6]}
    for organisation, members in split.items():
        for person in members:
            consent_to_training(person, organisation, BREAST_CANCER_DATASET)
    split[northgate] = everyone[3:]  # offered, refused by the gate: no consent
    offered = {org: [p.version_id for p in members] for org, members in split.items()}
    return training_run_completed(steward, "breast-cancer", offered, rounds=2), everyone


@pytest.fixture
def two_instances(people, steward, settings, start_web, start_worker, monkeypatch, tmp_path, blob_dir):
    """two_instances(ledger_environment) -> the completed run of the two-instance scenario
    (tests.training.second_instance.federated_across_two_instances), Northgate's instance on the ledger that
    `ledger_environment` names (LEDGER_URL, and on Fabric its organisation's client identity); (run, Instance)."""
    import secrets

    from tests.training.second_instance import Instance, federated_across_two_instances

    monkeypatch.setattr("training.services._enqueue", lambda run_id: None)  # this test's process is St Mary's worker

    def run(ledger_environment: dict[str, str]):
        key = secrets.token_bytes(32)
        instance = Instance(tmp_path / "northgate", key, ledger_environment)
        done = federated_across_two_instances(instance, key, steward, people, settings, start_web, start_worker)
        return done, instance

    return run
