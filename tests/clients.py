"""Clients signed in as a user: Django's test client for the portal, DRF's APIClient for the API; and the second
factor staff need (tests/conftest.py enrols every clinician, auditor and custodian with TOTP_SECRET)."""

import re

from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from tests.records.factories import PASSWORD

# The TOTP secret of every staff user the tests make (base32, as an authenticator app takes it).
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def signed_in(user) -> Client:
    """A portal client with `user` signed in (a session, as after the sign-in form)."""
    client = Client()
    client.force_login(user)
    return client


def html_of(response) -> str:
    return response.content.decode()


# What changes from run to run in a page: clock times (16:27:55.586589), hashes and ids. A short health value a test
# makes sure a page does not show ("55.5") can occur in them by chance, so they are taken out before looking for it.
_VOLATILE = re.compile(r"\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?|[0-9a-fA-F-]{12,}")


def shown_text(html: str) -> str:
    """`html` without the clock times, hashes and ids it holds."""
    return _VOLATILE.sub("", html)


def api_as(user=None) -> APIClient:
    """An API client authenticated as `user` (no session, no token); anonymous when `user` is None."""
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def totp_code(secret: str = TOTP_SECRET) -> str:
    """The authenticator app's code for `secret` now."""
    from accounts.selectors import totp_code_now

    return totp_code_now(secret=secret)


def enrol_totp(user, secret: str = TOTP_SECRET) -> None:
    """Enrol `user` with an authenticator app holding `secret`, as the enrolment page does (once)."""
    from allauth.mfa.models import Authenticator
    from allauth.mfa.totp.internal.auth import TOTP

    if not Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists():
        TOTP.activate(user, secret)


def unenrol(user) -> None:
    """Remove every second factor of `user` (a staff member who never enrolled)."""
    from allauth.mfa.models import Authenticator

    Authenticator.objects.filter(user=user).delete()


def sign_in_with_second_factor(client: Client, username: str, password: str = PASSWORD, secret: str = TOTP_SECRET):
    """Sign `client` in through the forms, as a person would: username and password, then the TOTP code.

    A code is accepted once per period (allauth marks it used): the mark is cleared first, so that a test may sign
    the same user in twice within 30 s. Returns the second form's response."""
    first = client.post("/accounts/login/", {"login": username, "password": password})
    assert first.status_code == 302, first.status_code
    assert first["Location"].startswith("/accounts/2fa/authenticate/"), first["Location"]
    from django.contrib.auth import get_user_model

    code = fresh_totp_code(get_user_model().objects.get(username=username).pk, secret)
    return client.post("/accounts/2fa/authenticate/", {"code": code})


def fresh_totp_code(user_id: int, secret: str = TOTP_SECRET) -> str:
    """The code for `secret` now, with allauth's used-mark for that user and code cleared: a test may then use it
    although an earlier test (whose user had the same id) used it within the same 30 s."""
    from allauth.core.internal.cryptokit import normalize_user_code

    code = totp_code(secret)
    cache.delete(f"allauth.mfa.totp.used?user={user_id}&code={normalize_user_code(code)}")
    return code


def staff_token(username: str, password: str = PASSWORD) -> str:
    """A staff user's API token, got as staff get one: a session that passed the second factor asks for it."""
    client = Client()
    passed = sign_in_with_second_factor(client, username, password)
    assert passed.status_code == 302, passed.status_code
    response = client.post("/api/auth/token/")
    assert response.status_code == 200, response.content
    return response.json()["token"]
