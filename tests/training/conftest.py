"""Two organisations, each a custodian of its own patients, and their training consents.

An "organisation" here is a set of patients tagged with it: its custodian offers only its own record versions to a
run, as one platform instance per organisation would (tests model the two instances in one database)."""

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from health_platform.roles import Role
from health_platform.services import organisation_create
from records.codes import BREAST_CANCER_DATASET, DIABETES_DATASET, load_dataset
from records.models import Patient, Record, RecordVersion
from tests.conftest import demo_people_ingested
from tests.records.factories import UserFactory
from tests.signing import grant_signed
from training import maths
from training.local import TRAIN

CATEGORY = {BREAST_CANCER_DATASET: "imaging", DIABETES_DATASET: "laboratory"}
FAMILY = {BREAST_CANCER_DATASET: "breast-cancer", DIABETES_DATASET: "diabetes-progression"}


@dataclass(frozen=True)
class Person:
    user: object
    patient: Patient
    record: Record
    row: int  # the demo dataset's row

    @property
    def version_id(self) -> int:
        return RecordVersion.objects.get(record=self.record).pk


@pytest.fixture
def steward(db):
    return UserFactory(username="steward-sam", roles=[Role.MODEL_STEWARD])


@pytest.fixture
def organisations(db, ledger):
    """The two organisations' grantee ids, registered on the ledger."""
    return [
        organisation_create(slug="st-marys", name="St Mary's").grantee_id,
        organisation_create(slug="northgate", name="Northgate").grantee_id,
    ]


@pytest.fixture
def people(db, ledger):
    """people(dataset, count) -> the dataset's demo patients 0..count-1 ingested (anchored), each with an account."""

    def make(dataset: str, count: int) -> list[Person]:
        ingested = demo_people_ingested(dataset=dataset, count=count, custodian=f"custodian-{dataset}")
        return [
            Person(user, patient, Record.objects.get(patient=patient, category=CATEGORY[dataset]), demo.row)
            for demo, user, patient in ingested
        ]

    return make


def consent_to_training(person: Person, organisation: str, dataset: str, *, purpose: str = ""):
    """`person` consents to `organisation` using their record to train the dataset's model family (or `purpose`)."""
    now = timezone.now()
    return grant_signed(
        actor=person.user,
        patient=person.patient,
        grantee_id=organisation,
        purposes=[purpose or f"training:{FAMILY[dataset]}"],
        categories=[CATEGORY[dataset]],
        valid_from=now,
        valid_until=now + timedelta(days=30),
    )


def admitted_training_rows(run, everyone):
    """The dataset rows (and targets) of the records the run trained on (not the held-out ones)."""
    row_of = {str(p.record.id): p.row for p in everyone}
    target = load_dataset(BREAST_CANCER_DATASET).target
    rows = [
        row_of[e["record_id"]]
        for organisation in sorted(run.manifest)
        for e in run.manifest[organisation]
        if e["split"] == TRAIN
    ]
    return rows, [target[row] for row in rows]


def dataset_features(rows):
    return np.asarray([load_dataset(BREAST_CANCER_DATASET).data[row] for row in rows])


def malignant(targets):
    malignant = list(load_dataset(BREAST_CANCER_DATASET).target_names).index("malignant")
    return (np.asarray(targets) == malignant).astype(float)


def split_consenting(everyone: list[Person], organisations: list[str], dataset: str) -> dict[str, list[Person]]:
    """`everyone` split in two halves, one per organisation, each person consenting to training with theirs."""
    half = len(everyone) // 2
    split = dict(zip(organisations, (everyone[:half], everyone[half:]), strict=True))
    for organisation, members in split.items():
        for person in members:
            consent_to_training(person, organisation, dataset)
    return split


def offered(split: dict[str, list[Person]]) -> dict[str, list[int]]:
    """What each organisation offers a run: its people's record versions."""
    return {organisation: [person.version_id for person in members] for organisation, members in split.items()}


def central_newton(run, everyone, trained, rounds):
    """(weights, bias) of central Newton in the clear on the breast-cancer records `run` trained on."""
    rows, labels = admitted_training_rows(run, everyone)
    return maths.central_weights(
        "logistic",
        dataset_features(rows),
        malignant(labels),
        maths.Scaling.of_range(trained.feature_min, trained.feature_max),
        ridge=run.hyperparameters["ridge"],
        rounds=rounds,
    )


def trained_run(steward, family, split, **terms):
    """Request a run over what each organisation of `split` offers and run it to its end: (run, trained model)."""
    from analytics.models import DiagnosticModel
    from analytics.registry import model_spec
    from training.models import TrainingStatus
    from training.services import training_run_execute, training_run_request

    run = training_run_request(steward=steward, family=family, organisations=offered(split), **terms)
    run = training_run_execute(run_id=str(run.pk))
    assert run.status == TrainingStatus.COMPLETED, run.failure_code
    return run, model_spec(DiagnosticModel.objects.get(name=run.model_name, version=run.model_version))
