"""An invited organisation's instance shows its patients the models their records trained only once the run's
lineage on the ledger holds, for its organisation, exactly the root and count of the leaves it kept
(training.participation.participations_lineage_confirm); the proof it gives leads to that root."""

import uuid

import pytest

from chaincode import merkle
from health_platform import bootstrap
from ledger.contracts import OrganisationLineage, TrainingRunRequest
from records.codes import BREAST_CANCER_DATASET
from records.models import RecordVersion
from tests.training.conftest import people  # noqa: F401 (fixtures)
from training.lineage import index_rows, lineage_roots
from training.models import ParticipationStatus, TrainingParticipation, TrainingSetEntry
from training.participation import participations_lineage_confirm
from training.selectors import models_trained_on_patient, training_record_proof_for_patient

pytestmark = pytest.mark.django_db

NORTHGATE = "org:northgate"
HEX = "ab" * 32


def completed_participation(people_here, *, run_id=None, attempt: int = 0) -> TrainingParticipation:
    """This instance's completed part of another instance's run (`run_id`, or a new one) over `people_here`'s
    records, with its index."""
    manifest = [
        {
            "record_id": str(person.record.pk),
            "version": 1,
            "sha256": RecordVersion.objects.get(record=person.record).sha256,
            "consent_id": f"cns-{index}",
            "patient_pseudonym": person.patient.pseudonym,
            "split": "train",
        }
        for index, person in enumerate(people_here)
    ]
    participation = TrainingParticipation.objects.create(
        run_id=run_id or uuid.uuid4(),
        attempt=attempt,
        steward_organisation="org:st-marys",
        organisation=NORTHGATE,
        model_family="breast-cancer",
        status=ParticipationStatus.COMPLETED,
        manifest=manifest,
    )
    TrainingSetEntry.objects.bulk_create(
        TrainingSetEntry(participation=participation, **row) for row in index_rows({NORTHGATE: manifest})
    )
    return participation


def lineage_written(participation: TrainingParticipation, *, root: str, count: int) -> None:
    """The steward's instance writes the run's lineage, naming `root` and `count` for this organisation."""
    organisations = (
        OrganisationLineage("org:st-marys", HEX, HEX, record_count=1, consent_count=1),
        OrganisationLineage(NORTHGATE, root, HEX, record_count=count, consent_count=count),
    )
    bootstrap.contracts().record_training_run(
        TrainingRunRequest(
            run_id=str(participation.run_id),
            model_family="breast-cancer",
            model_version="run-" + participation.run_id.hex[:12],
            steward="model-steward:u1",
            organisations=organisations,
            training_set_root=HEX,
            consent_root=HEX,
            record_count=count + 1,
            consent_count=count + 1,
            trainer_sha256=HEX,
            hyperparameters={"ridge": 1.0},
            rounds=1,
            round_aggregates=(HEX,),
            metrics={"accuracy": 0.9},
            weights_sha256=uuid.uuid4().hex * 2,
        )
    )


def test_a_confirmed_part_is_shown_to_its_patients_with_a_proof_to_its_organisations_root(people):  # noqa: F811
    everyone = people(BREAST_CANCER_DATASET, 3)
    participation = completed_participation(everyone[:2])
    [kept], _ = lineage_roots({NORTHGATE: participation.manifest})
    assert models_trained_on_patient(patient=everyone[0].patient) == []  # no lineage on the ledger yet
    assert participations_lineage_confirm() == 0

    lineage_written(participation, root=kept.training_set_root, count=2)
    assert participations_lineage_confirm() == 1
    [shown] = models_trained_on_patient(patient=everyone[0].patient)
    assert (shown.run_id, shown.part_of, shown.model) == (
        str(participation.run_id),
        NORTHGATE,
        f"breast-cancer@run-{participation.run_id.hex[:12]}",
    )
    proof = training_record_proof_for_patient(
        patient=everyone[0].patient, run_id=participation.run_id, record_id=everyone[0].record.pk
    )
    assert merkle.verify_document(proof)
    assert (proof["root"], proof["size"], proof["about"]["organisation"]) == (kept.training_set_root, 2, NORTHGATE)
    assert models_trained_on_patient(patient=everyone[2].patient) == []  # not in the set


def test_a_part_the_ledger_names_otherwise_is_never_shown(people):  # noqa: F811
    everyone = people(BREAST_CANCER_DATASET, 2)
    participation = completed_participation(everyone)
    lineage_written(participation, root="cd" * 32, count=2)  # not the root of the leaves kept here
    assert participations_lineage_confirm() == 0
    assert TrainingParticipation.objects.get(pk=participation.pk).lineage_tx_id == ""
    assert models_trained_on_patient(patient=everyone[0].patient) == []
    with pytest.raises(Exception, match="No model was trained") as refused:
        training_record_proof_for_patient(
            patient=everyone[0].patient, run_id=participation.run_id, record_id=everyone[0].record.pk
        )
    assert refused.value.code == "not_found"


def test_a_participation_no_worker_will_finish_is_closed_by_the_sweep():
    """Taken by a worker that died (running past the task's time limit), or never taken: failed with its reason;
    one still within the limit, and one finished, are left as they are."""
    from datetime import timedelta

    from django.utils import timezone

    from training.participation import participations_abandoned_close

    long_ago = timezone.now() - timedelta(hours=2)

    def participation(status, **fields):
        made = TrainingParticipation.objects.create(
            run_id=uuid.uuid4(), steward_organisation="org:st-marys", organisation=NORTHGATE, status=status, **fields
        )
        TrainingParticipation.objects.filter(pk=made.pk).update(created_at=fields.get("claimed_at", timezone.now()))
        return made.pk

    lost = participation(ParticipationStatus.RUNNING, claimed_at=long_ago)
    untaken = participation(ParticipationStatus.QUEUED, claimed_at=long_ago)
    working = participation(ParticipationStatus.RUNNING, claimed_at=timezone.now())
    finished = participation(ParticipationStatus.COMPLETED, claimed_at=long_ago)

    assert participations_abandoned_close(older_than=timedelta(hours=1)) == 2
    statuses = dict(TrainingParticipation.objects.values_list("pk", "failure_code"))
    assert statuses == {lost: "worker_lost", untaken: "not_taken", working: "", finished: ""}
    assert participations_abandoned_close(older_than=timedelta(hours=1)) == 0


def test_of_two_completed_attempts_of_a_run_the_one_the_lineage_is_over_is_shown_and_the_other_closed(
    people,  # noqa: F811
):
    """The steward's instance tried the run again after this instance had completed its part (it could not read the
    outcome): the lineage is over the second attempt's leaves. One ledger read confirms that attempt; the first is
    closed, superseded."""
    everyone = people(BREAST_CANCER_DATASET, 3)
    first = completed_participation(everyone[:1])
    second = completed_participation(everyone[:2], run_id=first.run_id, attempt=1)
    [kept], _ = lineage_roots({NORTHGATE: second.manifest})
    lineage_written(second, root=kept.training_set_root, count=2)

    assert participations_lineage_confirm() == 1
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.failure_code, first.lineage_tx_id) == (ParticipationStatus.FAILED, "superseded", "")
    assert second.lineage_tx_id != ""
    [shown] = models_trained_on_patient(patient=everyone[1].patient)
    assert [r.record_id for r in shown.records] == [str(everyone[1].record.pk)]
    [shown] = models_trained_on_patient(patient=everyone[0].patient)  # in both attempts: shown once, the second's
    assert [r.record_id for r in shown.records] == [str(everyone[0].record.pk)]
    assert participations_lineage_confirm() == 0  # nothing left to look for
