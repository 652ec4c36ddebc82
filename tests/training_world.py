"""Two organisations, each a custodian of its own patients, and their training consents: what the training tests and
the training portal's browser tests share (plain functions, so that a browser test can call them off its thread).

An "organisation" here is a set of patients tagged with it: its custodian offers only its own record versions to a
run, as one platform instance per organisation would (tests model the two instances in one database)."""

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from django.utils import timezone

from health_platform.roles import Role
from health_platform.services import organisation_create
from records.codes import BREAST_CANCER_DATASET, DIABETES_DATASET, load_dataset
from records.models import Patient, Record, RecordVersion
from tests.conftest import demo_people_ingested, tamper_with
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


def model_steward(username: str = "steward-sam"):
    return UserFactory(username=username, roles=[Role.MODEL_STEWARD])


def two_organisations() -> list[str]:
    """The two organisations' grantee ids, registered on the ledger: St Mary's, then Northgate."""
    return [
        organisation_create(slug="st-marys", name="St Mary's").grantee_id,
        organisation_create(slug="northgate", name="Northgate").grantee_id,
    ]


def people_ingested(dataset: str, count: int) -> list[Person]:
    """The dataset's demo patients 0..count-1 ingested (anchored), each with an account."""
    ingested = demo_people_ingested(dataset=dataset, count=count, custodian=f"custodian-{dataset}")
    return [
        Person(user, patient, Record.objects.get(patient=patient, category=CATEGORY[dataset]), demo.row)
        for demo, user, patient in ingested
    ]


def consent_to_training(person: Person, organisation: str, dataset: str, *, purpose: str = "", days: int = 30):
    """`person` consents to `organisation` using their record to train the dataset's model family (or `purpose`)."""
    now = timezone.now()
    return grant_signed(
        actor=person.user,
        patient=person.patient,
        grantee_id=organisation,
        purposes=[purpose or f"training:{FAMILY[dataset]}"],
        categories=[CATEGORY[dataset]],
        valid_from=now,
        valid_until=now + timedelta(days=days),
    )


def mixed_breast_cancer_split(people, organisations, count: int) -> tuple[list[Person], dict[str, list[Person]]]:
    """`count` breast-cancer patients, half per organisation. At the first organisation, patient 0 consented only to
    RUNNING the model (diagnostic-model:breast-cancer) and patient 1's record is tampered with; everyone else consented
    to training:breast-cancer with their own organisation. Returns (everyone, organisation -> its patients)."""
    everyone = people(BREAST_CANCER_DATASET, count)
    first, second = organisations
    split = {first: everyone[: count // 2], second: everyone[count // 2 :]}
    consent_to_training(everyone[0], first, BREAST_CANCER_DATASET, purpose="diagnostic-model:breast-cancer")
    for organisation, members in split.items():
        for person in members:
            if person is not everyone[0]:
                consent_to_training(person, organisation, BREAST_CANCER_DATASET)
    tamper_with(everyone[1].record)
    return everyone, split


def consented_breast_cancer_split(people, organisations, count: int) -> dict[str, list[Person]]:
    """`count` breast-cancer patients, half per organisation, each consenting to training with their own."""
    return split_consenting(people(BREAST_CANCER_DATASET, count), organisations, BREAST_CANCER_DATASET)


def candidates(split: dict[str, list[Person]]) -> dict[str, list[int]]:
    """What each organisation's custodian offers a run: its patients' record versions."""
    return {organisation: [person.version_id for person in members] for organisation, members in split.items()}


def training_run_completed(steward, family: str, organisations: dict[str, list[int]], *, rounds: int):
    """Request a run over each organisation's record versions and run it here to its end (or find it run already,
    by a worker that runs tasks eagerly at commit)."""
    from training.models import TrainingRun, TrainingStatus
    from training.services import training_run_execute, training_run_request

    run = training_run_request(steward=steward, family=family, organisations=organisations, rounds=rounds)
    run = training_run_execute(run_id=str(run.pk)) or TrainingRun.objects.get(pk=run.pk)
    assert run.status == TrainingStatus.COMPLETED, run.failure_code
    return run


def trained_run(steward, split: dict[str, list[Person]], *, family: str = "breast-cancer", rounds: int = 2):
    """A finished run of `family` over `split` (organisation -> people: each offers its people's record versions),
    and the model it registered."""
    from analytics.models import DiagnosticModel

    run = training_run_completed(steward, family, candidates(split), rounds=rounds)
    return run, DiagnosticModel.objects.get(name=run.model_name, version=run.model_version)


def consent_to_analyses(clinician, people: list[Person], *, purpose: str = "diagnostic-model:breast-cancer") -> None:
    """Each of `people` (breast-cancer patients) consents to `clinician` running the model of `purpose`."""
    for person in people:
        consent_to_training(person, clinician.clinician_profile.grantee_id, BREAST_CANCER_DATASET, purpose=purpose)


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


def trained_with(steward, family, split, **terms):
    """Request a run over what each organisation of `split` offers and run it to its end: (run, the trained model's
    weights as analyses run them)."""
    from analytics.models import DiagnosticModel
    from analytics.registry import model_spec
    from training.models import TrainingStatus
    from training.services import training_run_execute, training_run_request

    run = training_run_request(steward=steward, family=family, organisations=candidates(split), **terms)
    run = training_run_execute(run_id=str(run.pk))
    assert run.status == TrainingStatus.COMPLETED, run.failure_code
    return run, model_spec(DiagnosticModel.objects.get(name=run.model_name, version=run.model_version))
