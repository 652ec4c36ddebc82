"""The second factor: who must have one, and the doors that hold staff back until they do.

Clinicians, auditors, custodians and model stewards act over many patients' records (or, for the model steward,
over models trained on them): each must have enrolled a second factor (an authenticator app's TOTP or a passkey;
recovery codes come with either) before the platform serves them anything but enrolment and their own account
pages. Patients may enrol one; nothing requires it.

The rule is checked here and only here: by EnrolmentRequiredMiddleware for the portal (and the API with a
session) and by the API's authentication classes for tokens.
"""

from collections.abc import Callable
from typing import Any

from allauth.account.authentication import get_authentication_records
from allauth.mfa.models import Authenticator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from rest_framework import authentication

from health_platform.errors import SecondFactorEnrolmentRequired
from health_platform.fhir_outcomes import error_response_for
from health_platform.roles import Role, user_roles

STAFF_ROLES = frozenset({Role.CLINICIAN, Role.AUDITOR, Role.CUSTODIAN, Role.MODEL_STEWARD})
# The factors that count as enrolled (recovery codes are a fallback for them, never a factor of their own).
ENROLLED_TYPES = (Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN)
# Reachable without a second factor: enrolment and the account's own pages (sign-out, password, e-mail,
# sessions), the static files those pages load, and the admin (which has its own staff flag).
OPEN_PREFIXES = ("/accounts/", "/static/", "/admin/")


def second_factor_required(user: Any) -> bool:
    """Whether `user`'s roles require a second factor (any staff role)."""
    return bool(user_roles(user) & STAFF_ROLES)


def second_factor_enrolled(user: Any) -> bool:
    """Whether `user` has a TOTP or passkey authenticator."""
    if not getattr(user, "is_authenticated", False):
        return False
    return Authenticator.objects.filter(user=user, type__in=ENROLLED_TYPES).exists()


def second_factor_missing(user: Any) -> bool:
    """A staff user without an enrolled second factor: held back everywhere but enrolment."""
    return second_factor_required(user) and not second_factor_enrolled(user)


def session_passed_second_factor(request: HttpRequest) -> bool:
    """Whether this session's sign-in included a second factor (a TOTP or recovery code, or a passkey)."""
    records = get_authentication_records(request, getattr(request, "user", None))
    return any(record.get("method") == "mfa" for record in records)


class EnrolmentRequiredMiddleware:
    """A staff user with no second factor is sent to enrolment from every portal page, and refused
    (403 mfa_required) by the API when they come with a session. Placed after the authentication middleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path
        if path.startswith(OPEN_PREFIXES) or not second_factor_missing(request.user):
            return self.get_response(request)
        error = SecondFactorEnrolmentRequired()
        refused = error_response_for(request, status=error.status, code=error.code, message=error.message)
        if refused is not None:
            return refused
        return redirect("mfa_index")


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication; a staff token whose owner has no second factor is refused, mfa_required."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        user, token = super().authenticate_credentials(key)
        if second_factor_missing(user):
            raise SecondFactorEnrolmentRequired()
        return user, token
