"""Reads on accounts."""

import time

from allauth.mfa import app_settings
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value


def totp_code_now(*, secret: str) -> str:
    """The code an authenticator app holding `secret` shows now (valid for the rest of its period)."""
    return format_hotp_value(hotp_value(secret, int(time.time()) // app_settings.TOTP_PERIOD))
