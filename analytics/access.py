"""Who may do what with models and analyses: the one place these rules live, for the API and the portal.

- model cards: any signed-in user holding a role (patient, clinician, auditor, custodian, model steward). A card
  holds no personal data; patients deciding a consent for a model's purpose, auditors checking the model hash an
  access event cites and the model steward who publishes the model have as much reason to read it as clinicians.
- analyses: clinicians only (others 403, anonymous 401), and each clinician their own requests only:
  another clinician's request id is answered 404 exactly like an id that does not exist.
"""

from typing import Any
from uuid import UUID

from analytics.models import AnalysisRequest
from analytics.selectors import analyses_of
from health_platform.api import permission
from health_platform.errors import NotFound
from health_platform.roles import Role, user_has_role, user_roles


def user_may_read_model_cards(user: Any) -> bool:
    return bool(user_roles(user))


def user_may_request_analyses(user: Any) -> bool:
    """A clinician registered in the grantee directory (consents name directory ids)."""
    return user_has_role(user, Role.CLINICIAN)


def analysis_of_requester(*, user: Any, analysis_id: object) -> AnalysisRequest:
    """The user's own request with this id; anything else (another's, malformed, missing) is not found."""
    try:
        key = UUID(str(analysis_id))
    except ValueError:
        raise NotFound("No such analysis.") from None
    found = analyses_of(user=user).filter(pk=key).first()
    if found is None:
        raise NotFound("No such analysis.")
    return found


CanReadModelCards = permission(
    user_may_read_model_cards,
    "Model cards are for signed-in patients, clinicians, auditors, custodians and model stewards.",
)
IsClinician = permission(user_may_request_analyses, "Only clinicians request analyses and read their results.")
