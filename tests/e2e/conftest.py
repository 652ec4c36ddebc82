"""Browser tests: Playwright's sync API driving Debian's Chromium against pytest-django's live server.

The live server runs in a thread of this process over the file-based test database, so each test
needs `django_db(transaction=True)`. Chromium is the distribution's package (scripts/test.sh installs
it); Playwright's own browser download is never used. The flags keep Chromium from reaching for the
network, which is closed on these machines and would make it hang.

Playwright's sync API keeps an asyncio event loop running on the test's thread while a browser is
open. Django refuses ORM calls from such a thread and the embedded ledger runs its contracts with
asyncio.run, so while a browser is open the test reaches the database and the ledger through
`off_browser_thread`. The browser is closed before the test database is flushed.
"""

import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.db import connections
from playwright.sync_api import Browser, Page, expect, sync_playwright

from health_platform.roles import Role
from records.crypto import patient_pseudonym
from records.models import Patient
from records.services import patient_link_user, record_ingest
from tests.clients import totp_code
from tests.records.factories import (
    MRN_SYSTEM,
    ObservationResourceFactory,
    PatientResourceFactory,
    UserFactory,
    bundle,
    encode,
)

CHROMIUM = os.environ.get("HEALTH_PLATFORM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}
TIMEOUT_MS = 15_000

BROWSER_TEST_TIMEOUT = 180  # seconds: a module whose tests need another limit marks its own

T = TypeVar("T")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this folder once: e2e, django_db(transaction=True) (the live server reads, from its own
    thread, what the test wrote) and a timeout of BROWSER_TEST_TIMEOUT unless its module names another. First, so
    that -m selects on these marks and the database groups are sorted with them."""
    folder = Path(__file__).parent
    for item in items:
        if folder not in item.path.parents:
            continue
        item.add_marker(pytest.mark.e2e)
        item.add_marker(pytest.mark.django_db(transaction=True))
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(BROWSER_TEST_TIMEOUT))


def dr_carol(username: str = "dr-carol") -> Any:
    """Dr Carol Jones of St Mary's Hospital, in the grantee directory: the clinician the browser tests share."""
    from health_platform.services import clinician_register, organisation_create

    carol = UserFactory(username=username)
    st_marys = organisation_create(slug="st-marys", name="St Mary's Hospital")
    clinician_register(user=carol, display_name="Dr Carol Jones", organisation=st_marys)
    return carol


def off_browser_thread(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run `function` (ORM or ledger calls) on a thread without the browser driver's event loop."""

    def run() -> T:
        try:
            return function(*args, **kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result(timeout=60)


@pytest.fixture
def chromium(live_server, transactional_db) -> Iterator[Browser]:
    """Chromium for one test; set up after (so torn down before) the live server and the database."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/test.sh, which installs Debian's chromium package")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_page(chromium, live_server) -> Callable[..., Page]:
    """new_page(javascript=True, viewport=DESKTOP): a page in a fresh context (its own cookies)."""

    def make(*, javascript: bool = True, viewport: dict[str, int] = DESKTOP) -> Page:
        context = chromium.new_context(base_url=live_server.url, java_script_enabled=javascript, viewport=viewport)
        context.set_default_timeout(TIMEOUT_MS)
        return context.new_page()

    return make


def sign_in(page: Page, username: str, password: str) -> None:
    """Sign in through the login form, as a person would; staff then type their authenticator app's code
    (tests/conftest.py enrols every member of staff with tests.clients.TOTP_SECRET)."""
    page.goto("/accounts/login/?next=/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    # The click only starts the form's submission: wait for the page it leads to (the second factor's, or the
    # next one), not for the login page's own load state, which holds already.
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    if "/accounts/2fa/authenticate/" in page.url:
        from django.core.cache import cache

        cache.clear()  # a code passes once per period: a test may sign the same member of staff in twice
        page.get_by_label("Authenticator code").fill(totp_code())
        page.get_by_role("button", name="Sign in", exact=True).click()
        page.wait_for_url(lambda url: "/accounts/2fa/authenticate/" not in url)


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/accounts/login/")


def screenshot(page: Page, name: str) -> Path:
    """Full-page screenshot to test-artifacts/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def screenshot_that_fits(page: Page, name: str) -> None:
    """Screenshot <name> of a page that must not scroll sideways (nothing reaches past the viewport)."""
    assert wider_than_the_viewport(page) == [], f"{name}: the page scrolls sideways"
    screenshot(page, name)


def screenshots_at_both_widths(page: Page, name: str) -> None:
    """Screenshots <name>-desktop and <name>-phone; at the phone's width nothing may reach past the viewport.
    The page is left at the desktop width."""
    screenshot(page, f"{name}-desktop")
    page.set_viewport_size(PHONE)
    screenshot_that_fits(page, f"{name}-phone")
    page.set_viewport_size(DESKTOP)


def wider_than_the_viewport(page: Page) -> list[str]:
    """What reaches past the right edge of the viewport (the page then scrolls sideways); [] if nothing.

    Measured against the layout width without the scroll bar. Reading the sizes forces the layout, so
    this works right after a viewport change, and with JavaScript disabled for the page too.
    """
    return page.evaluate(
        """() => {
            const width = document.documentElement.clientWidth;
            const wide = [...document.querySelectorAll("body *")]
                .filter((element) => element.getBoundingClientRect().right > width + 0.5)
                .map((element) => {
                    const name = element.tagName.toLowerCase() + (element.id ? "#" + element.id : "");
                    return `${name}.${[...element.classList].join(".")} (${element.getBoundingClientRect().right}px)`;
                });
            if (document.documentElement.scrollWidth > width) {
                wide.push(`document (${document.documentElement.scrollWidth}px > ${width}px)`);
            }
            return wide;
        }"""
    )


def devtools_of(page: Page) -> Any:
    """The page's DevTools session with WebAuthn on: where Chromium's virtual authenticators are driven."""
    devtools = page.context.new_cdp_session(page)
    devtools.send("WebAuthn.enable")
    return devtools


def virtual_authenticator(devtools: Any, *credentials: dict[str, Any]) -> str:
    """A platform authenticator (a phone's or laptop's): resident keys, user verification that passes, presence
    given without a touch; holding `credentials` (as WebAuthn.getCredentials gives them, or made: private key
    PKCS#8 base64, credential id base64). Returns its id. Chromium holds one such authenticator at a time."""
    options = {"protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True}
    added = devtools.send(
        "WebAuthn.addVirtualAuthenticator",
        {"options": {**options, "isUserVerified": True, "automaticPresenceSimulation": True}},
    )
    for credential in credentials:
        devtools.send("WebAuthn.addCredential", {"authenticatorId": added["authenticatorId"], "credential": credential})
    return str(added["authenticatorId"])


def add_passkey_with_allauth(page: Page, name: str, password: str) -> None:
    """From the patient's passkeys page, register a passkey with allauth's ceremony; the browser's (virtual)
    authenticator makes it. The first goes to the ledger as allauth registers it."""
    page.goto("/consent/passkeys/")
    page.get_by_role("link", name="Add a passkey").click()
    page.wait_for_load_state()
    if "/accounts/reauthenticate/" in page.url:  # allauth asks for the password unless the sign-in was recent
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Confirm").click()
    page.wait_for_url(re.compile(r"/accounts/2fa/webauthn/add/"))
    page.get_by_label("Name").fill(name)
    page.get_by_label("Passwordless").check()
    page.get_by_role("button", name="Add").click()
    page.wait_for_url(lambda url: "/accounts/2fa/webauthn/add/" not in url)
    expect(page).to_have_url(re.compile(r"/accounts/2fa/(webauthn/|recovery-codes/)?$"))


def passkey_in_browser(page: Page, patient: Any) -> Any:
    """Give `patient` a passkey on the ledger (their first) that this page's browser holds, in a virtual authenticator
    (tests/e2e/test_patient_signed_consent.py enrols them through allauth instead). Returns the passkey."""
    import base64
    from urllib.parse import urlsplit

    from cryptography.hazmat.primitives import serialization

    from tests.signing import enrol_passkey

    address = urlsplit(page.url)  # the page is on the site already: the passkey is the site's
    origin = f"{address.scheme}://{address.netloc}"
    passkey = off_browser_thread(enrol_passkey, patient, rp_id=address.hostname, origin=origin)
    private_key = passkey.private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    credential = {
        "credentialId": base64.b64encode(passkey.credential_id).decode(),
        "isResidentCredential": False,
        "rpId": address.hostname,
        "privateKey": base64.b64encode(private_key).decode(),
        "signCount": 0,
    }
    virtual_authenticator(devtools_of(page), credential)
    return passkey


@dataclass(frozen=True)
class People:
    alice: Any
    bob: Any
    carol: Any
    st_marys: Any


def _patient_resources(mrn: str) -> list[dict[str, Any]]:
    """One patient with an imaging and a laboratory observation: two records on the dashboard."""
    patient = PatientResourceFactory(mrn=mrn)
    return [
        patient,
        ObservationResourceFactory(
            patient=patient,
            category_code="imaging",
            code_value="bc-mean-radius",
            display="Nucleus radius, mean",
            value=14.1,
            unit="[arb'U]",
        ),
        ObservationResourceFactory(patient=patient, category_code="laboratory", value=87.0),
    ]


@pytest.fixture
def people(transactional_db: Any) -> "People":
    """Two patients with anchored records and portal accounts, and a clinician of St Mary's Hospital."""
    custodian = UserFactory(username="e2e-custodian", roles=[Role.CUSTODIAN])
    record_ingest(
        raw_body=encode(bundle(*_patient_resources("MRN-ALICE"), *_patient_resources("MRN-BOB"))), actor=custodian
    )
    accounts = {}
    for username, mrn in (("alice", "MRN-ALICE"), ("bob", "MRN-BOB")):
        accounts[username] = UserFactory(username=username, roles=[Role.PATIENT])
        patient = Patient.objects.get(pseudonym=patient_pseudonym(f"{MRN_SYSTEM}|{mrn}"))
        patient_link_user(patient=patient, user=accounts[username])
    carol = dr_carol()
    st_marys = carol.clinician_profile.organisation
    return People(alice=accounts["alice"], bob=accounts["bob"], carol=carol, st_marys=st_marys)
