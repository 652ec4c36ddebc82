"""Two organisations, each a custodian of its own patients, and their training consents.

An "organisation" here is a set of patients tagged with it: its custodian offers only its own record versions to a
run, as one platform instance per organisation would (tests model the two instances in one database)."""

import json
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.utils import timezone

from health_platform.roles import Role
from health_platform.services import organisation_create
from records.codes import BREAST_CANCER_DATASET, DIABETES_DATASET
from records.crypto import patient_pseudonym
from records.demo import demo_bundles, demo_patients
from records.models import Patient, Record, RecordVersion
from records.services import patient_link_user, record_ingest
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
        custodian = UserFactory(username=f"custodian-{dataset}", roles=[Role.CUSTODIAN])
        patients = demo_patients(dataset=dataset, count=count)
        for document in demo_bundles(patients=patients, max_entries=1000):
            record_ingest(raw_body=json.dumps(document).encode(), actor=custodian)
        made = []
        for demo in patients:
            patient = Patient.objects.get(pseudonym=patient_pseudonym(demo.patient_key))
            user = UserFactory(username=f"patient-{demo.identifier}", roles=[Role.PATIENT])
            patient_link_user(patient=patient, user=user)
            made.append(
                Person(user, patient, Record.objects.get(patient=patient, category=CATEGORY[dataset]), demo.row)
            )
        return made

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
