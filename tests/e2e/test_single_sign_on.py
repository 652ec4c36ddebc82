"""Single sign-on against a real OpenID Connect provider, in a real browser.

The provider is django-oauth-toolkit in a Django process of its own (tests/accounts/oidc_provider). The platform
is the web server as `make run` starts it (scripts/web.sh, gunicorn), configured for single sign-on by the OIDC_*
environment variables alone, as a hospital would configure it for its Entra ID, Okta or Keycloak.

What the tests hold the platform to:
- a provider user whose verified e-mail is that of one active member of staff signs in as that member of staff,
  and is still asked for the platform's second factor: the provider's sign-in stands for the password, never
  for the second factor (allauth's AuthenticateStage runs after a social sign-in as after a password; nothing
  in accounts/ or health_platform/second_factor.py exempts it);
- a provider user whose e-mail is no staff account's (here: a patient's) signs in to nothing: refused, no
  account made, none linked, nobody signed in.
"""

import re
from collections.abc import Iterator

import pytest
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from benchmarks.common import free_port
from health_platform.roles import Role
from tests.accounts.oidc_provider.server import DirectoryUser, Provider, running_provider
from tests.clients import totp_code
from tests.e2e.conftest import DESKTOP, TIMEOUT_MS, off_browser_thread, screenshots_at_both_widths
from tests.records.factories import UserFactory, patient_account

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

PROVIDER_ID = "hospital"
PROVIDER_NAME = "Hospital sign-in"
DOCTOR = DirectoryUser("jdoe", "directory-Passphrase-1", "jane.doe@hospital.example")
PATIENT = DirectoryUser("pat", "directory-Passphrase-2", "pat@home.example")


@pytest.fixture(scope="module")
def web_port() -> int:
    """The platform's port for this module: the provider's client must name its callback before it starts."""
    return free_port()


@pytest.fixture(scope="module")
def provider(web_port, tmp_path_factory) -> Iterator[Provider]:
    """The OpenID Connect provider, with DOCTOR and PATIENT in its directory; stopped after the module."""
    callback = f"http://127.0.0.1:{web_port}/accounts/oidc/{PROVIDER_ID}/login/callback/"
    with running_provider(
        tmp_path_factory.mktemp("oidc-provider"), redirect_uri=callback, users=[DOCTOR, PATIENT]
    ) as running:
        yield running


@pytest.fixture
def platform_url(provider, web_port, start_web) -> str:
    """The platform's web server, single sign-on configured by the OIDC_* variables only."""
    web = start_web(
        {
            "OIDC_PROVIDER_ID": PROVIDER_ID,
            "OIDC_PROVIDER_NAME": PROVIDER_NAME,
            "OIDC_SERVER_URL": provider.url,
            "OIDC_CLIENT_ID": provider.client_id,
            "OIDC_CLIENT_SECRET": provider.client_secret,
        },
        port=web_port,
    )
    return web.url


@pytest.fixture
def sso_page(chromium, platform_url) -> Page:
    context = chromium.new_context(base_url=platform_url, viewport=DESKTOP)
    context.set_default_timeout(TIMEOUT_MS)
    return context.new_page()


def _sign_in_at_the_provider(page: Page, provider: Provider, person: DirectoryUser, screenshots: str) -> None:
    """From the platform's sign-in page, through the SSO button, the provider's own form, and back."""
    page.goto("/accounts/login/?next=/analytics/")
    screenshots_at_both_widths(page, f"{screenshots}-login")
    page.get_by_role("link", name=PROVIDER_NAME).click()
    # SOCIALACCOUNT_LOGIN_ON_GET is off: a link alone never starts the flow, a POST does.
    expect(page.get_by_role("button", name="Continue")).to_be_visible()
    screenshots_at_both_widths(page, f"{screenshots}-confirm")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Hospital identity provider")).to_be_visible()
    assert page.url.startswith(provider.url.removesuffix("/o") + "/login/"), page.url
    page.get_by_label("Directory username").fill(person.username)
    page.get_by_label("Directory password").fill(person.password)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_load_state()


def _patient_with_the_e_mail(address: str) -> None:
    patient = patient_account("sso-patient")
    patient.email = address
    patient.save()


def _accounts() -> tuple[int, list]:
    return get_user_model().objects.count(), list(SocialAccount.objects.values_list("user__username", "uid"))


def test_a_member_of_staff_signs_in_through_the_hospital_provider_and_still_passes_the_second_factor(
    provider, sso_page, platform_url
):
    page = sso_page
    # The directory's address in other letter case: e-mail addresses are matched case-insensitively.
    off_browser_thread(lambda: UserFactory(username="dr-jane", email=DOCTOR.email.upper(), roles=[Role.CLINICIAN]))

    _sign_in_at_the_provider(page, provider, DOCTOR, "sso")

    # Back on the platform, past the password as it were: the second factor is asked, and nothing is open yet.
    expect(page).to_have_url(re.compile(re.escape(platform_url) + r"/accounts/2fa/authenticate/"))
    screenshots_at_both_widths(page, "sso-second-factor")
    held = page.context.request.get("/analytics/", max_redirects=0)
    assert (held.status, held.headers["location"]) == (302, "/accounts/login/?next=/analytics/")
    page.get_by_label("Authenticator code").fill(totp_code())
    page.get_by_role("button", name="Sign in", exact=True).click()

    expect(page).to_have_url(re.compile(r"/analytics/$"))
    expect(page.locator("body")).to_contain_text("dr-jane")
    screenshots_at_both_widths(page, "sso-signed-in")
    linked = off_browser_thread(lambda: list(SocialAccount.objects.values_list("user__username", "provider")))
    assert linked == [("dr-jane", PROVIDER_ID)]


def test_a_provider_user_with_the_e_mail_of_no_member_of_staff_signs_in_to_nothing(provider, sso_page):
    page = sso_page
    # The provider's user has the e-mail of a patient's account: single sign-on is for staff, and a patient's
    # account must never be reachable through it.
    off_browser_thread(_patient_with_the_e_mail, PATIENT.email)
    before = off_browser_thread(_accounts)

    _sign_in_at_the_provider(page, provider, PATIENT, "sso-refused")

    expect(page.get_by_role("heading", level=1)).to_have_text("No account for this sign-in")
    expect(page.get_by_role("alert")).to_contain_text("Nobody is signed in")
    screenshots_at_both_widths(page, "sso-refused")
    assert off_browser_thread(_accounts) == before
    response = page.context.request.get("/consent/", max_redirects=0)
    assert (response.status, response.headers["location"]) == (302, "/accounts/login/?next=/consent/")
