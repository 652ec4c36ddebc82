"""Two organisations, each a custodian of its own patients, and their training consents.

An "organisation" here is a set of patients tagged with it: its custodian offers only its own record versions to a
run, as one platform instance per organisation would (tests model the two instances in one database)."""

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.utils import timezone

from health_platform.roles import Role
from health_platform.services import organisation_create
from records.codes import BREAST_CANCER_DATASET, DIABETES_DATASET
from records.models import Patient, Record, RecordVersion
from tests.conftest import demo_people_ingested
from tests.records.factories import UserFactory
from tests.signing import grant_signed

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


def trained_run(steward, split: dict[str, list[Person]], *, family: str = "breast-cancer", rounds: int = 2):
    """A finished run of `family` over `split` (organisation -> people: each offers its people's record versions),
    and the model it registered."""
    from analytics.models import DiagnosticModel
    from training.models import TrainingStatus
    from training.services import training_run_execute, training_run_request

    run = training_run_request(
        steward=steward,
        family=family,
        organisations={org: [p.version_id for p in members] for org, members in split.items()},
        rounds=rounds,
    )
    run = training_run_execute(run_id=str(run.pk))
    assert run.status == TrainingStatus.COMPLETED, run.failure_code
    return run, DiagnosticModel.objects.get(name=run.model_name, version=run.model_version)


def consent_to_analyses(clinician, people: list[Person], *, purpose: str = "diagnostic-model:breast-cancer") -> None:
    """Each of `people` (breast-cancer patients) consents to `clinician` running the model of `purpose`."""
    for person in people:
        consent_to_training(person, clinician.clinician_profile.grantee_id, BREAST_CANCER_DATASET, purpose=purpose)
