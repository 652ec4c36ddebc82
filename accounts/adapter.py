"""allauth adapters: accounts are made by the hospital, never by signing up; single sign-on is for staff; second
factors' secrets are sealed at rest.

Single sign-on maps the provider's user to a platform account by e-mail: the provider must say the address is
verified, and it must be the e-mail of exactly one existing active account holding a staff role (clinician,
auditor, custodian, model steward). Anyone else signs in to nothing: no account is created and no role is given.
"""

import base64
import binascii
from typing import Any

import structlog
from allauth.account.adapter import DefaultAccountAdapter
from allauth.mfa.adapter import DefaultMFAAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.contrib.auth import get_user_model
from django.http import HttpRequest

from health_platform.keyring import AesGcmKeyring, CiphertextInvalid, configured_keyring
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


SEALED_PREFIX = "sealed:v1:"
_ASSOCIATED_DATA = b"allauth-mfa-secret"


class SecondFactorSecretUnreadable(Exception):
    """A stored second-factor secret that does not open: not sealed, altered, or under a key no longer listed."""


def _second_factor_keyring() -> AesGcmKeyring:
    return configured_keyring("SECOND_FACTOR")


def second_factor_secret_seal(text: str) -> str:
    """`text` (a TOTP secret, a recovery-code seed) sealed under the active SECOND_FACTOR key, as text for
    allauth's JSON field: sealed:v1:<key id>:<base64 of nonce, ciphertext and tag>."""
    key_id, sealed = _second_factor_keyring().encrypt(text.encode(), associated_data=_ASSOCIATED_DATA)
    return f"{SEALED_PREFIX}{key_id}:{base64.b64encode(sealed).decode()}"


def second_factor_secret_open(stored: str) -> str:
    """The secret `second_factor_secret_seal` sealed. A value that is not sealed is refused, not read as it is:
    a secret written into the database by hand must not become a working second factor."""
    if not stored.startswith(SEALED_PREFIX):
        log.error("second_factor_secret_unreadable", key_id=None)
        raise SecondFactorSecretUnreadable("not sealed")
    key_id, _, encoded = stored[len(SEALED_PREFIX) :].partition(":")
    try:
        sealed = base64.b64decode(encoded, validate=True)
        return _second_factor_keyring().decrypt(sealed, key_id=key_id, associated_data=_ASSOCIATED_DATA).decode()
    except (binascii.Error, ValueError, CiphertextInvalid):
        # The operator's clue (a key id dropped from SECOND_FACTOR_KEYS, a row altered); never the value.
        log.error("second_factor_secret_unreadable", key_id=key_id[:64])
        raise SecondFactorSecretUnreadable(key_id) from None


class MFAAdapter(DefaultMFAAdapter):
    """allauth's hooks for the secrets it stores: TOTP secrets and recovery-code seeds are sealed (AES-256-GCM
    under SECOND_FACTOR_KEYS) in the database."""

    def encrypt(self, text: str) -> str:
        return second_factor_secret_seal(text)

    def decrypt(self, encrypted_text: str) -> str:
        return second_factor_secret_open(encrypted_text)
