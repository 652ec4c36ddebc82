"""Writes on accounts: second factors enrolled for a user by the platform itself (the demo's staff)."""

from typing import Any

import structlog
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

log = structlog.get_logger(__name__)


def second_factors_remove(*, user: Any) -> None:
    """Remove every authenticator of `user` (TOTP, passkeys, recovery codes)."""
    Authenticator.objects.filter(user=user).delete()


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
