"""Who may do what with the access log: the one place these rules live, for the API and the portal.

auditor   searches and exports every event, verifies copies, reads the ledger view; never clinical values
patient   reads the events about their own records ("who used my data")
others    nothing

Which events a user may read is decided by audit.selectors.access_events_visible_to.
"""

from typing import Any

from health_platform.errors import PermissionDenied
from health_platform.roles import Role, user_has_role


def user_may_audit(user: Any) -> bool:
    return user_has_role(user, Role.AUDITOR)


def auditor_actor_id(user: Any) -> str:
    """An auditor's identity on the ledger (no name or e-mail: the user's primary key)."""
    return f"auditor:u{user.pk}"


def auditor_required(user: Any, message: str) -> None:
    """Refuse non-auditors with the access log's code (for the endpoints that no selector guards)."""
    if not user_may_audit(user):
        raise PermissionDenied(message, code="audit_forbidden")
