"""Who may do what with training runs: the one place that says it.

Only a model steward requests training runs and reads them; a steward sees their own runs only."""

from typing import Any

from health_platform.api import permission
from health_platform.roles import Role, user_has_role


def user_may_request_training(user: Any) -> bool:
    return user_has_role(user, Role.MODEL_STEWARD)


def user_may_read_training_run(user: Any, run: Any) -> bool:
    """A run is its steward's: another steward, a clinician or an auditor does not see it."""
    return user_may_request_training(user) and run.steward_id == user.pk


IsModelSteward = permission(user_may_request_training, "Only model stewards request training runs and read them.")


def user_may_see_models_trained_on_own_records(user: Any) -> bool:
    """A patient sees the models their own records trained, with proofs; no staff role sees a patient's."""
    return user_has_role(user, Role.PATIENT)


CanSeeModelsTrainedOnOwnRecords = permission(
    user_may_see_models_trained_on_own_records, "Only a patient sees the models their records trained."
)
