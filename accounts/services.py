"""Writes on accounts: second factors enrolled for a user by the platform itself (the demo's staff), and the reset
of a lost one."""

from typing import Any

import structlog
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from allauth.usersessions.models import UserSession
from django.core.mail import send_mail

log = structlog.get_logger(__name__)


def second_factors_remove(*, user: Any) -> None:
    """Remove every authenticator of `user` (TOTP, passkeys, recovery codes)."""
    Authenticator.objects.filter(user=user).delete()


def second_factor_reset(*, user: Any, actor: Any) -> int:
    """A member of staff lost their phone or passkey: remove every second factor of `user` and end their sessions.

    Staff then cannot use the platform until they enrol a new one at their next sign-in (with their password),
    so whoever resets it hands them nothing. The user is told by e-mail (when they have an address), so that a
    reset they did not ask for does not go unseen. Returns the number of authenticators removed.
    """
    removed, _ = Authenticator.objects.filter(user=user).delete()
    for session in UserSession.objects.filter(user=user):
        session.end()
    if user.email:
        send_mail(
            subject="Your health_platform second factor was reset",
            message=(
                "The hospital has reset the second factor of your health_platform account (your authenticator "
                "app, passkeys and recovery codes no longer work) and signed you out everywhere.\n\n"
                "At your next sign-in you will be asked to enrol a new one. If you did not ask for this, tell "
                "the hospital's support team now.\n"
            ),
            from_email=None,
            recipient_list=[user.email],
        )
    log.info("second_factor_reset", user_id=user.pk, actor_id=getattr(actor, "pk", None), removed=removed)
    return removed


def totp_enrol(*, user: Any, secret: str | None = None) -> str:
    """Enrol `user` with an authenticator app holding `secret` (a new random one by default); returns it (base32).

    The secret is stored encrypted by allauth; the caller shows it once (the demo prints it) and keeps no copy.
    """
    secret = secret or generate_totp_secret()
    TOTP.activate(user, secret)
    log.info("totp_enrolled", user_id=user.pk)
    return secret


def recovery_codes_enrol(*, user: Any) -> list[str]:
    """Give `user` a fresh set of single-use recovery codes; returns them."""
    Authenticator.objects.filter(user=user, type=Authenticator.Type.RECOVERY_CODES).delete()
    return RecoveryCodes.activate(user).get_unused_codes()
