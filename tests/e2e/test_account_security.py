"""The accounts' security in a real browser: a clinician's passkey (Chromium's virtual authenticator, driven
through the DevTools protocol), the second factor staff cannot do without, and a password reset from the e-mail
the platform writes to its var folder.

Screenshots of each page (desktop and 375px phone width) are written to test-artifacts/screenshots/.
"""

import re
from pathlib import Path

from allauth.mfa.models import Authenticator
from playwright.sync_api import Page, expect

from health_platform.roles import Role
from tests.clients import unenrol
from tests.e2e.conftest import (
    devtools_of,
    off_browser_thread,
    screenshots_at_both_widths,
    sign_in,
    sign_out,
    virtual_authenticator,
)
from tests.records.factories import PASSWORD, UserFactory

NEW_PASSWORD = "a-new-long-Passphrase-7"
RESET_LINK = re.compile(r"https?://\S+/accounts/password/reset/key/\S+/")


def _virtual_authenticator(page: Page) -> tuple:
    """A platform authenticator for `page`; the DevTools session and the authenticator's id."""
    devtools = devtools_of(page)
    return devtools, virtual_authenticator(devtools)


def _credentials(devtools, authenticator: str) -> list[dict]:
    """The credentials the virtual authenticator holds, with the count of signatures each has made."""
    return devtools.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]


def _passkeys(username: str) -> list[str]:
    return list(
        Authenticator.objects.filter(user__username=username, type=Authenticator.Type.WEBAUTHN).values_list(
            "data__name", flat=True
        )
    )


def _reauthenticate_if_asked(page: Page) -> None:
    """allauth asks for the password again before a factor is added, unless the sign-in was moments ago."""
    if "/accounts/reauthenticate/" in page.url:
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Confirm").click()
        page.wait_for_load_state()


def test_a_clinician_enrols_a_passkey_and_signs_in_with_it(new_page):
    off_browser_thread(lambda: UserFactory(username="dr-passkey", roles=[Role.CLINICIAN]))
    page = new_page()
    devtools, authenticator = _virtual_authenticator(page)

    sign_in(page, "dr-passkey", PASSWORD)  # password and authenticator app, as enrolled today
    page.goto("/accounts/2fa/webauthn/add/")
    _reauthenticate_if_asked(page)
    expect(page).to_have_url(re.compile(r"/accounts/2fa/webauthn/add/"))
    screenshots_at_both_widths(page, "passkey-add")
    page.get_by_label("Name").fill("Ward laptop")
    page.get_by_label("Passwordless").check()
    page.get_by_role("button", name="Add").click()
    page.wait_for_url(re.compile(r"/accounts/2fa/(webauthn/|recovery-codes/)?$"))
    screenshots_at_both_widths(page, "passkey-added")

    assert off_browser_thread(_passkeys, "dr-passkey") == ["Ward laptop"]
    (credential,) = _credentials(devtools, authenticator)
    assert credential["isResidentCredential"] is True  # a passkey: found by the site, no username needed
    enrolled_count = credential["signCount"]
    page.goto("/accounts/2fa/webauthn/")
    expect(page.locator("body")).to_contain_text("Ward laptop")
    screenshots_at_both_widths(page, "passkey-list")

    # Signed out, the clinician signs in with the passkey alone: no username, no password, no code.
    sign_out(page)
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url(re.compile(r"^(?!.*/accounts/login/).*$"))
    page.goto("/analytics/")
    expect(page).to_have_url(re.compile(r"/analytics/$"))
    expect(page.locator("body")).to_contain_text("dr-passkey")
    assert _credentials(devtools, authenticator)[0]["signCount"] == enrolled_count + 1
    # A passkey is a second factor in itself: the session may be given a staff API token.
    page.goto("/accounts/tokens/")
    page.get_by_role("button", name="Create a token").click()
    expect(page.locator("#personal-token")).to_be_visible()
    screenshots_at_both_widths(page, "passkey-signed-in-token")
    key = page.locator("#personal-token").inner_text()
    with_token = page.context.request.get("/api/analyses/", headers={"Authorization": f"Token {key}"})
    assert with_token.status == 200

    # And at the second-factor step of a password sign-in, the passkey stands in for the authenticator code.
    sign_out(page)
    page.get_by_label("Username").fill("dr-passkey")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(re.compile(r"/accounts/2fa/authenticate/"))
    screenshots_at_both_widths(page, "passkey-second-factor")
    page.get_by_role("button", name="Use a passkey or security key").click()
    page.wait_for_url(re.compile(r"^(?!.*/accounts/2fa/authenticate/).*$"))
    page.goto("/analytics/")
    expect(page).to_have_url(re.compile(r"/analytics/$"))
    assert _credentials(devtools, authenticator)[0]["signCount"] == enrolled_count + 2


def test_a_clinician_without_a_second_factor_cannot_reach_analyses_and_is_sent_to_enrolment(new_page):
    off_browser_thread(lambda: unenrol(UserFactory(username="dr-unenrolled", roles=[Role.CLINICIAN])))
    page = new_page()

    sign_in(page, "dr-unenrolled", PASSWORD)  # the password alone: nothing to ask after it
    page.goto("/analytics/")

    expect(page).to_have_url(re.compile(r"/accounts/2fa/$"))
    screenshots_at_both_widths(page, "second-factor-enrolment")
    refused = page.context.request.get("/api/analyses/")
    assert (refused.status, refused.json()["code"]) == (403, "mfa_required")
    for other in ("/analytics/new/", "/consent/granted-to-me/", "/"):
        page.goto(other)
        expect(page).to_have_url(re.compile(r"/accounts/2fa/$"))


def _reset_mail(folder: Path, before: set[Path], address: str) -> str:
    written = [path for path in sorted(folder.glob("*.log")) if path not in before]
    messages = [path.read_text() for path in written if address in path.read_text()]
    assert len(messages) == 1, written
    return messages[0]


def test_a_clinician_resets_the_password_from_the_e_mail_file_and_signs_in_with_the_new_one(new_page, settings):
    # The embedded default: Django's file backend, one file per message under the var folder's mail/.
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    mail = Path(settings.EMAIL_FILE_PATH)
    assert mail == Path(settings.VAR_DIR) / "mail"
    before = set(mail.glob("*.log"))
    off_browser_thread(
        lambda: UserFactory(username="dr-forgetful", email="forgetful@hospital.example", roles=[Role.CLINICIAN])
    )
    page = new_page()

    page.goto("/accounts/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    screenshots_at_both_widths(page, "password-reset")
    page.get_by_label("Email").fill("forgetful@hospital.example")
    page.get_by_role("button", name="Reset My Password").click()
    expect(page).to_have_url(re.compile(r"/accounts/password/reset/done/"))
    screenshots_at_both_widths(page, "password-reset-sent")

    message = _reset_mail(mail, before, "forgetful@hospital.example")
    link = RESET_LINK.search(message).group(0)
    page.goto(link)
    expect(page).to_have_url(re.compile(r"/accounts/password/reset/key/[^/]+-set-password/"))
    screenshots_at_both_widths(page, "password-reset-new")
    page.get_by_label("New Password:", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New Password (again):", exact=True).fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change Password").click()
    expect(page).to_have_url(re.compile(r"/accounts/password/reset/key/done/"))
    screenshots_at_both_widths(page, "password-reset-done")

    # The old password no longer opens the account; the new one does (and the second factor is still asked).
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("dr-forgetful")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("did not match")
    sign_in(page, "dr-forgetful", NEW_PASSWORD)
    page.goto("/analytics/")
    expect(page).to_have_url(re.compile(r"/analytics/$"))
    # The link was for one use.
    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_contain_text("Bad Token")
