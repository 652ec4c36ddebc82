"""Who may manage the directory and the invitations: custodians only (the one place this rule lives)."""

from typing import Any

from health_platform.api import permission
from health_platform.roles import Role, user_has_role


def user_may_manage_directory(user: Any) -> bool:
    """Custodians add, deactivate and reactivate grantees, and invite patients; nobody else."""
    return user_has_role(user, Role.CUSTODIAN)


CanManageDirectory = permission(user_may_manage_directory, "Only custodians manage the directory and invitations.")
