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
