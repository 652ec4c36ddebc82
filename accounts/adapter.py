"""allauth adapters: accounts are made by the hospital, never by signing up; single sign-on is for staff.

Single sign-on maps the provider's user to a platform account by e-mail: the provider must say the address is
verified, and it must be the e-mail of exactly one existing active account holding a staff role (clinician,
auditor, custodian). Anyone else signs in to nothing: no account is created and no role is given.
"""

from typing import Any

import structlog
from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.contrib.auth import get_user_model
from django.http import HttpRequest

from health_platform.second_factor import STAFF_ROLES

log = structlog.get_logger(__name__)


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return False


def staff_account_for_email(address: str) -> Any | None:
    """The one active staff account whose e-mail is `address` (case-insensitive), or None."""
    matches = list(
        get_user_model()
        .objects.filter(email__iexact=address, is_active=True, groups__name__in=[role.value for role in STAFF_ROLES])
        .distinct()[:2]
    )
    return matches[0] if len(matches) == 1 else None


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest, sociallogin: Any) -> bool:
        return False

    def pre_social_login(self, request: HttpRequest, sociallogin: Any) -> None:
        """Connect a first sign-in from the provider to the staff account with its verified e-mail address."""
        if sociallogin.is_existing:
            return
        for address in sociallogin.email_addresses:
            if not address.verified:
                continue
            user = staff_account_for_email(address.email)
            if user is not None:
                sociallogin.connect(request, user)
                log.info("sso_account_connected", user_id=user.pk, provider=sociallogin.account.provider)
                return
        log.info("sso_no_account", provider=sociallogin.account.provider)
