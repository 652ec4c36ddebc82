"""Only a model steward requests training runs and reads them; a steward sees their own runs only."""

import pytest

from health_platform.errors import NotFound, PermissionDenied, ValidationFailed
from health_platform.roles import Role
from tests.records.factories import UserFactory
from training.models import TrainingRun
from training.selectors import training_run_get, training_runs_of_steward
from training.services import training_run_request


def test_a_clinician_cannot_request_a_training_run_and_nothing_is_stored(clinician, organisations):
    with pytest.raises(PermissionDenied):
        training_run_request(steward=clinician, family="breast-cancer", organisations={organisations[0]: [1]})
    assert not TrainingRun.objects.exists()


@pytest.mark.he
def test_a_steward_reads_their_own_runs_and_not_another_stewards(steward, organisations, blob_dir, clinician):
    run = training_run_request(steward=steward, family="breast-cancer", organisations={organisations[0]: [1]})
    other = UserFactory(username="steward-tom", roles=[Role.MODEL_STEWARD])
    assert list(training_runs_of_steward(steward=steward)) == [run]
    assert training_run_get(viewer=steward, run_id=run.pk) == run
    assert not training_runs_of_steward(steward=other).exists()
    assert not training_runs_of_steward(steward=clinician).exists()
    for viewer in (other, clinician):
        with pytest.raises(NotFound):
            training_run_get(viewer=viewer, run_id=run.pk)


@pytest.mark.django_db
@pytest.mark.parametrize("run_id", ["not-a-uuid", "", "00000000-0000-0000-0000-000000000000", "x" * 10_000])
def test_the_run_task_given_an_id_of_no_run_does_nothing_and_raises_nothing(run_id):
    from training.rounds import training_run_execute
    from training.tasks import training_run_execute as task

    assert training_run_execute(run_id=run_id) is None
    task.apply(args=[run_id]).get()  # a delivered message with such an id ends quietly, not as a task failure


@pytest.mark.parametrize(
    ("terms", "code"),
    [
        ({"rounds": True}, "invalid_rounds"),  # Python counts True as 1: not a number of rounds
        ({"rounds": 2.0}, "invalid_rounds"),
        ({"rounds": "2"}, "invalid_rounds"),
        ({"ridge": True}, "invalid_ridge"),
        ({"ridge": "1"}, "invalid_ridge"),
        ({"ridge": float("nan")}, "invalid_ridge"),
        ({"ridge": 10**400}, "invalid_ridge"),
        ({"validation_fraction": False}, "invalid_validation_fraction"),
        ({"validation_fraction": float("inf")}, "invalid_validation_fraction"),
    ],
)
def test_the_service_refuses_terms_of_the_wrong_type_whatever_calls_it(steward, organisations, terms, code):
    with pytest.raises(ValidationFailed) as refused:
        training_run_request(steward=steward, family="breast-cancer", organisations={organisations[0]: [1]}, **terms)
    assert refused.value.code == code
    assert not TrainingRun.objects.exists()
