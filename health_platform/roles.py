"""Roles: the groups a user belongs to, and the one place that checks them.

patient    reads their own records and decides consent
clinician  requests analyses; never reads records directly
auditor    reads access logs and record metadata; never clinical values
custodian  the hospital's data steward or EHR integration: ingests records
model-steward  requests federated training runs over records consented for training and publishes the trained
           models with their lineage; never sees a record or an organisation's plaintext update

Every view and endpoint goes through these checks; object-level rules (a patient's own records)
live in the selectors of each app.
"""

from enum import StrEnum
from typing import Any

from rest_framework.permissions import BasePermission


class Role(StrEnum):
    PATIENT = "patient"
    CLINICIAN = "clinician"
    AUDITOR = "auditor"
    CUSTODIAN = "custodian"
    MODEL_STEWARD = "model-steward"


def user_roles(user: Any) -> frozenset[Role]:
    """The roles of `user`; an anonymous or inactive user has none."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return frozenset()
    cached = getattr(user, "_health_platform_roles", None)
    if cached is None:
        names = set(user.groups.values_list("name", flat=True))
        cached = frozenset(role for role in Role if role.value in names)
        user._health_platform_roles = cached
    return cached


def model_steward_actor(user: Any) -> str:
    """How the ledger names a model steward (the steward of a training run's lineage): model-steward:<user id>."""
    return f"model-steward:{user.pk}"


def role_group(role: Role) -> Any:
    """The auth Group of `role` (created by migration health_platform/0001_roles; recreated if missing)."""
    from django.contrib.auth.models import Group

    return Group.objects.get_or_create(name=role.value)[0]


def user_has_role(user: Any, role: Role) -> bool:
    return role in user_roles(user)


class HasRole(BasePermission):
    """DRF permission: the user holds at least one of `roles`."""

    roles: tuple[Role, ...] = ()

    def has_permission(self, request, view) -> bool:
        return bool(user_roles(request.user) & set(self.roles))


def role_permission(*roles: Role) -> type[HasRole]:
    """A DRF permission class admitting users with any of `roles`."""
    return type(f"Has{''.join(r.value.title() for r in roles)}Role", (HasRole,), {"roles": roles})


def roles_context(request) -> dict[str, Any]:
    """Template context: `roles` holds the current user's role names."""
    return {"roles": {role.value for role in user_roles(getattr(request, "user", None))}}
